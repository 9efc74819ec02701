//! Load generator for vauchi-relay (or any relay speaking client protocol v1):
//! `cargo bench --bench loadgen -- <scenario> [options]`, see `USAGE`.
//!
//! Layout: `net` (epoll and sockets via libc), `wire` (WebSocket frames and the
//! protocol's messages, built from templates and scanned, not fully parsed),
//! `pool` (one thread's connections and event loop; its read path in
//! `inbound`), `tls` (`--tls`: rustls sessions driven by the pool, the throwaway
//! certificate), `noise` (`--noise`: Noise NK sessions, §15.1), `common` (options, clock, windows, tallies), `store`, `live`,
//! `connections` (drain, idle, churn) are the scenarios, `relay` starts the relay
//! under test, and this file parses options, runs worker threads and prints the
//! report.

#[path = "loadgen/common.rs"]
mod common;
#[path = "loadgen/connections.rs"]
mod connections;
#[path = "loadgen/live.rs"]
mod live;
#[path = "loadgen/net.rs"]
mod net;
#[path = "loadgen/noise.rs"]
mod noise;
#[path = "loadgen/pool.rs"]
mod pool;
#[path = "loadgen/relay.rs"]
mod relay;
#[path = "loadgen/store.rs"]
mod store;
#[path = "loadgen/tls.rs"]
mod tls;
#[path = "loadgen/wire.rs"]
mod wire;

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Control, Options, Tally};
use pool::{Driver, Pool, Target};

const USAGE: &str = "\
usage: cargo bench --bench loadgen -- <scenario> [options]
scenarios:
  store     closed loop: each connection keeps --window EncryptedUpdates in flight;
            with --rate, open loop at that total rate. Reports Stored acks/s, ack latency.
  live      --connections recipients (acking every push) and as many senders at --rate
            (default 10000) msgs/s in total. Reports send-to-receive latency.
  drain     stores --backlog blobs for one recipient, then times its connect until all
            are received and acked.
  idle      opens --connections (default 15000) handshaken idle connections and reports
            the relay's VmRSS per connection.
  churn     --connections (default 64) slots connect, handshake, close, repeat for
            --duration. Reports handshakes/s.
  selftest  checks the generator's own codec.
options:
  --url ws[s]://host:port[/path]  relay to load (default: start target/release/vauchi-relay)
  --tls                        wss://: the relay started here gets a throwaway self-signed
                               certificate (trusted alone); with --url, use a wss:// URL
  --tls-ca PEM                 certificates to trust for an external wss:// relay
                               (default: the platform's trust store)
  --noise                      every session in Noise NK (PROTOCOL.md §15.1): the relay
                               started here gets a key made now (RELAY_NOISE_STATIC_KEY)
  --uncoalesced                every message in its own write (its own TCP segment, as a
                               device with one connection sends it); default: each
                               connection's messages of one loop turn in one write
  --noise-pubkey B64URL        with --url and --noise: the relay's /pubkey
  --backend memory|sqlite      storage of the relay started here (default memory)
  --shards N                   RELAY_SHARDS of the relay started here (default 2)
  --relay-bin PATH             relay binary to start
  --relay-pid PID              relay process to read VmRSS from (idle, with --url)
  --connections N  --window W (32)  --duration SECS (10)  --warmup SECS (2)
  --rate MSGS_PER_SEC  --size BYTES (200)  --backlog N (10000)  --threads T (1)
  --quantum-us US   open loop: batch sends due within US microseconds (0)
";

struct Cli {
    scenario: String,
    url: Option<String>,
    tls: bool,
    tls_ca: Option<PathBuf>,
    noise: bool,
    noise_pubkey: Option<String>,
    uncoalesced: bool,
    backend: String,
    shards: usize,
    relay_bin: PathBuf,
    relay_pid: Option<u32>,
    connections: Option<usize>,
    options: Options,
}

fn parse_cli() -> Result<Cli, String> {
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
    let mut cli = Cli {
        scenario: String::new(),
        url: None,
        tls: false,
        tls_ca: None,
        noise: false,
        noise_pubkey: None,
        uncoalesced: false,
        backend: "memory".to_string(),
        shards: 2,
        relay_bin: relay::default_binary(),
        relay_pid: None,
        connections: None,
        options: Options {
            window: 32,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            rate: None,
            send_quantum: Duration::ZERO,
            size_bytes: 200,
            backlog: 10_000,
            threads: 1,
        },
    };
    while let Some(arg) = args.next() {
        if !arg.starts_with("--") {
            if !cli.scenario.is_empty() {
                return Err(format!("unexpected argument {arg:?}"));
            }
            cli.scenario = arg;
            continue;
        }
        if arg == "--noise" {
            cli.noise = true;
            continue;
        }
        if arg == "--uncoalesced" {
            cli.uncoalesced = true;
            continue;
        }
        if arg == "--tls" {
            cli.tls = true;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        let number = |value: &str| {
            value
                .parse::<f64>()
                .map_err(|_| format!("{arg}: not a number: {value:?}"))
        };
        let options = &mut cli.options;
        match arg.as_str() {
            "--url" => cli.url = Some(value),
            "--tls-ca" => cli.tls_ca = Some(PathBuf::from(value)),
            "--noise-pubkey" => cli.noise_pubkey = Some(value.clone()),
            "--backend" => cli.backend = value,
            "--shards" => cli.shards = number(&value)? as usize,
            "--relay-bin" => cli.relay_bin = PathBuf::from(value),
            "--relay-pid" => cli.relay_pid = Some(number(&value)? as u32),
            "--connections" => cli.connections = Some(number(&value)? as usize),
            "--window" => options.window = number(&value)? as usize,
            "--duration" => options.duration = Duration::from_secs_f64(number(&value)?),
            "--warmup" => options.warmup = Duration::from_secs_f64(number(&value)?),
            "--rate" => options.rate = Some(number(&value)?),
            "--quantum-us" => options.send_quantum = Duration::from_secs_f64(number(&value)? / 1e6),
            "--size" => options.size_bytes = number(&value)? as usize,
            "--backlog" => options.backlog = number(&value)? as u64,
            "--threads" => options.threads = (number(&value)? as usize).max(1),
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    if cli.scenario.is_empty() {
        return Err("no scenario given".to_string());
    }
    match (&cli.url, cli.noise, &cli.noise_pubkey) {
        (Some(_), true, None) => return Err("--noise with --url needs --noise-pubkey".into()),
        (_, false, Some(_)) => return Err("--noise-pubkey needs --noise".into()),
        (None, _, Some(_)) => {
            return Err("--noise-pubkey is for --url: a relay started here gets a key".into());
        }
        _ => {}
    }
    match &cli.url {
        Some(url) if cli.tls && !url.starts_with("wss://") => {
            return Err("--tls with --url needs a wss:// URL".to_string());
        }
        Some(url) if cli.tls_ca.is_some() && !url.starts_with("wss://") => {
            return Err("--tls-ca needs a wss:// URL".to_string());
        }
        None if cli.tls_ca.is_some() => {
            return Err(
                "--tls-ca is for --url: a relay started here has its own certificate".into(),
            );
        }
        _ => {}
    }
    Ok(cli)
}

/// `ws://` or `wss://host:port[/path]` -> resolved target; `trust` says which
/// certificates a wss:// relay may present.
fn parse_url(url: &str, trust: &tls::Trust) -> Result<Target, String> {
    let (rest, secure) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => return Err(format!("{url}: only ws:// and wss:// URLs are supported")),
    };
    let (host, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let address = host
        .to_socket_addrs()
        .map_err(|error| format!("{host}: {error}"))?
        .find(|address| address.is_ipv4())
        .ok_or_else(|| format!("{host}: no IPv4 address"))?;
    let tls = match secure {
        true => Some(tls::Client::new(trust, host)?),
        false => None,
    };
    Ok(Target {
        address,
        host: host.to_string(),
        path: path.to_string(),
        tls,
        noise: None,
        uncoalesced: false,
    })
}

/// Splits `total` connections over `threads` as evenly as possible.
fn share(total: usize, threads: usize, index: usize) -> usize {
    total / threads + usize::from(index < total % threads)
}

/// What the main thread does while the workers run.
enum Supervise {
    /// Set the common start once every connection is open (or failed).
    StartWhenOpen(usize),
    /// Nothing: the workers end by themselves.
    Nothing,
}

/// Runs one driver per thread, each on its own pool, and merges their tallies.
fn run_workers<D: Driver + Send>(
    target: &Arc<Target>,
    slots: &[usize],
    control: &Arc<Control>,
    supervise: Supervise,
    make: impl Fn(usize, &mut Pool) -> D + Sync,
    tally_of: impl Fn(D) -> Tally + Sync,
) -> Tally {
    std::thread::scope(|scope| {
        let handles: Vec<_> = slots
            .iter()
            .enumerate()
            .map(|(index, &count)| {
                let (make, tally_of) = (&make, &tally_of);
                let target = Arc::clone(target);
                scope.spawn(move || {
                    let mut pool =
                        Pool::new(target, count, wire::seed(index as u64), index as u64 * 1000)
                            .expect("epoll instance");
                    let mut driver = make(index, &mut pool);
                    pool::run(&mut pool, &mut driver).expect("event loop");
                    pool.close_all();
                    let mut tally = tally_of(driver);
                    tally.io.merge(&pool.stats);
                    tally
                })
            })
            .collect();
        if let Supervise::StartWhenOpen(total) = supervise {
            wait_until_open(control, total, Duration::from_secs(60));
            control.set_start(Instant::now());
        }
        let mut total = Tally::default();
        for handle in handles {
            total.merge(&handle.join().expect("worker thread"));
        }
        total
    })
}

/// Waits until `total` connections have opened or failed; returns how long it took.
fn wait_until_open(control: &Control, total: usize, limit: Duration) -> Duration {
    let started = Instant::now();
    while control.opened.load(Ordering::Relaxed) + control.failed.load(Ordering::Relaxed) < total
        && started.elapsed() < limit
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    started.elapsed()
}

/// One line of the final table: scenario, backend, metric, value.
struct Results {
    scenario: String,
    backend: String,
    rows: Vec<(String, String)>,
}

impl Results {
    fn add(&mut self, metric: &str, value: impl std::fmt::Display) {
        self.rows.push((metric.to_string(), value.to_string()));
    }

    fn latency(&mut self, prefix: &str, histogram: &hdrhistogram::Histogram<u64>) {
        if histogram.is_empty() {
            return;
        }
        for (name, quantile) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
            self.add(
                &format!("{prefix}_{name}_ms"),
                format!("{:.3}", histogram.value_at_quantile(quantile) as f64 / 1e3),
            );
        }
        self.add(
            &format!("{prefix}_max_ms"),
            format!("{:.3}", histogram.max() as f64 / 1e3),
        );
    }

    fn diagnostics(&mut self, tally: &Tally) {
        for (name, count) in &tally.outcomes {
            self.add(&format!("replies[{name}]"), count);
        }
        if tally.unanswered > 0 {
            self.add("unanswered", tally.unanswered);
        }
        let io = &tally.io;
        if io.connect_errors > 0 {
            self.add("connect_errors", io.connect_errors);
        }
        if io.closed_by_relay > 0 {
            self.add("closed_by_relay", io.closed_by_relay);
        }
        if io.malformed_messages > 0 {
            self.add("malformed_messages", io.malformed_messages);
        }
        if io.tls_errors > 0 {
            self.add("tls_errors", io.tls_errors);
        }
        if let Some(error) = &io.tls_first_error {
            self.add("tls_first_error", error);
        }
        for (suite, count) in &io.tls_sessions {
            self.add(&format!("tls[{suite}]"), count);
        }
        for (status, count) in &io.refused_upgrades {
            self.add(&format!("upgrade_refused[{status}]"), count);
        }
        for (code, count) in &io.close_codes {
            self.add(&format!("close_code[{code}]"), count);
        }
    }

    fn print(&self) {
        for (metric, value) in &self.rows {
            println!(
                "RESULT\t{}\t{}\t{metric}\t{value}",
                self.scenario, self.backend
            );
        }
    }
}

fn main() {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(message) => {
            eprintln!("loadgen: {message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if cli.scenario == "selftest" {
        wire::self_test();
        relay::self_test();
        tls::self_test();
        println!("loadgen selftest: ok");
        return;
    }
    common::base();
    let open_files = net::raise_open_file_limit();
    let (relay, target, backend) = relay_and_target(&cli);
    let relay_pid = cli.relay_pid.or(relay.as_ref().map(|relay| relay.pid()));
    let scheme = if target.tls.is_some() { "wss" } else { "ws" };
    let inside = match (target.noise.is_some(), target.uncoalesced) {
        (true, true) => ", inside Noise NK, one write per message",
        (true, false) => ", inside Noise NK",
        (false, true) => ", one write per message",
        (false, false) => "",
    };
    eprintln!(
        "loadgen: {} against {scheme}://{}{}{inside} (backend {backend}, {} thread(s), open-file limit {open_files})",
        cli.scenario, target.address, target.path, cli.options.threads
    );
    let mut results = Results {
        // Open-loop store runs get their own label in the table.
        scenario: match (cli.scenario.as_str(), cli.options.rate) {
            ("store", Some(_)) => "store-open".to_string(),
            (scenario, _) => scenario.to_string(),
        },
        backend,
        rows: Vec::new(),
    };
    let own_pid = std::process::id();
    let cpu_before = (
        relay::cpu_time(own_pid),
        relay_pid.and_then(relay::cpu_time),
        Instant::now(),
    );
    let outcome = match cli.scenario.as_str() {
        "store" => run_store(&cli, &target, &mut results),
        "live" => run_live(&cli, &target, &mut results),
        "drain" => run_drain(&cli, &target, &mut results),
        "idle" => run_idle(&cli, &target, relay_pid, &mut results),
        "churn" => run_churn(&cli, &target, &mut results),
        other => Err(format!("unknown scenario {other:?}\n{USAGE}")),
    };
    // CPU use over the whole scenario (set-up included), in percent of one core:
    // shows whether the generator or the relay was the limit.
    let wall = cpu_before.2.elapsed().as_secs_f64().max(1e-9);
    let percent = |before: Option<Duration>, after: Option<Duration>| match (before, after) {
        (Some(before), Some(after)) => {
            format!("{:.0}", (after - before).as_secs_f64() / wall * 100.0)
        }
        _ => "n/a".to_string(),
    };
    results.add(
        "loadgen_cpu_pct",
        percent(cpu_before.0, relay::cpu_time(own_pid)),
    );
    if relay_pid.is_some() {
        results.add(
            "relay_cpu_pct",
            percent(cpu_before.1, relay_pid.and_then(relay::cpu_time)),
        );
    }
    results.print();
    if let Some(mut relay) = relay
        && !relay.is_running()
    {
        eprintln!(
            "loadgen: the relay exited during the run; its log:\n{}",
            relay.log_tail()
        );
    }
    if let Err(message) = outcome {
        eprintln!("loadgen: {message}");
        std::process::exit(1);
    }
}

/// The relay under test (started here unless `--url` names one), the target to
/// load and the backend label; exits on failure.
fn relay_and_target(cli: &Cli) -> (Option<relay::Relay>, Arc<Target>, String) {
    // --noise: the key the relay started here is given, or the external one's.
    let (noise_env, mut noise_public) = match (cli.noise, &cli.noise_pubkey) {
        (false, _) => (Vec::new(), None),
        (true, Some(text)) => match noise::parse_public(text) {
            Ok(public) => (Vec::new(), Some(public)),
            Err(message) => {
                eprintln!("loadgen: {message}");
                std::process::exit(2);
            }
        },
        (true, None) => {
            let (text, public) = noise::relay_key();
            let env = vec![("RELAY_NOISE_STATIC_KEY".to_string(), text)];
            (env, Some(public))
        }
    };
    let (relay, target, backend) = match &cli.url {
        Some(url) => {
            let trust = match &cli.tls_ca {
                Some(path) => tls::Trust::CaFile(path.clone()),
                None => tls::Trust::Platform,
            };
            (None, parse_url(url, &trust), "external".to_string())
        }
        None => match relay::Relay::start(
            &cli.relay_bin,
            &cli.backend,
            cli.shards,
            &noise_env,
            cli.tls,
        ) {
            Ok(relay) => {
                let (scheme, trust) = match &relay.certificate {
                    Some(der) => ("wss", tls::Trust::Certificate(der.clone())),
                    None => ("ws", tls::Trust::Platform),
                };
                let url = format!("{scheme}://{}/", relay.address);
                (Some(relay), parse_url(&url, &trust), cli.backend.clone())
            }
            Err(message) => {
                eprintln!("loadgen: {message}\n(build it first: cargo build --release)");
                std::process::exit(1);
            }
        },
    };
    let target = match target {
        Ok(mut target) => {
            target.noise = noise_public.take();
            target.uncoalesced = cli.uncoalesced;
            Arc::new(target)
        }
        Err(message) => {
            eprintln!("loadgen: {message}");
            drop(relay); // exit skips destructors: stop the relay started here first
            std::process::exit(2);
        }
    };
    (relay, target, backend)
}

fn thread_slots(cli: &Cli, total: usize) -> Vec<usize> {
    let threads = cli.options.threads.min(total.max(1));
    (0..threads)
        .map(|index| share(total, threads, index))
        .collect()
}

fn run_store(cli: &Cli, target: &Arc<Target>, results: &mut Results) -> Result<(), String> {
    let options = &cli.options;
    let connections = cli.connections.unwrap_or(100);
    let slots = thread_slots(cli, connections);
    let control = Arc::new(Control::default());
    let threads = slots.len() as f64;
    let tally = run_workers(
        target,
        &slots,
        &control,
        Supervise::StartWhenOpen(connections),
        |index, pool| {
            let setup = store::StoreSetup {
                connections: slots[index],
                window: options.window,
                rate_per_thread: options.rate.map(|rate| rate / threads),
                send_quantum: options.send_quantum,
                warmup: options.warmup,
                duration: options.duration,
                size_bytes: options.size_bytes,
                recipient: None,
                total: None,
                thread_index: index,
            };
            store::Store::new(Arc::clone(&control), setup, pool)
        },
        |driver| driver.tally,
    );
    let mode = match options.rate {
        Some(rate) => format!("open loop {rate} msg/s"),
        None => format!("closed loop window {}", options.window),
    };
    results.add(
        "mode",
        format!("{connections} conns, {mode}, {} B", options.size_bytes),
    );
    results.add(
        "stored_acks_per_sec",
        format!(
            "{:.0}",
            tally.completed as f64 / options.duration.as_secs_f64()
        ),
    );
    results.latency("ack", &tally.latency);
    results.diagnostics(&tally);
    Ok(())
}

fn run_live(cli: &Cli, target: &Arc<Target>, results: &mut Results) -> Result<(), String> {
    let options = &cli.options;
    let pairs = cli.connections.unwrap_or(100);
    let rate = options.rate.unwrap_or(10_000.0);
    let slots = thread_slots(cli, pairs);
    let control = Arc::new(Control::default());
    let threads = slots.len() as f64;
    let tally = run_workers(
        target,
        &slots.iter().map(|pairs| 2 * pairs).collect::<Vec<_>>(),
        &control,
        Supervise::StartWhenOpen(2 * pairs),
        |index, pool| {
            live::Live::new(
                Arc::clone(&control),
                slots[index],
                rate / threads,
                options,
                index,
                pool,
            )
        },
        |driver| driver.tally,
    );
    results.add(
        "mode",
        format!(
            "{pairs} senders -> {pairs} recipients, {rate} msg/s, {} B",
            options.size_bytes
        ),
    );
    results.add(
        "delivered_per_sec",
        format!(
            "{:.0}",
            tally.completed as f64 / options.duration.as_secs_f64()
        ),
    );
    results.latency("deliver", &tally.latency);
    results.latency("stored_ack", &tally.secondary);
    results.diagnostics(&tally);
    Ok(())
}

fn run_drain(cli: &Cli, target: &Arc<Target>, results: &mut Results) -> Result<(), String> {
    let options = &cli.options;
    let recipient = wire::random_id(&mut wire::Rng::new(wire::seed(99)));
    let control = Arc::new(Control::default());
    let fill_started = Instant::now();
    let fill = run_workers(
        target,
        &[1],
        &control,
        Supervise::StartWhenOpen(1),
        |index, pool| {
            let setup = store::StoreSetup {
                connections: 1,
                window: options.window.max(1),
                rate_per_thread: None,
                send_quantum: options.send_quantum,
                warmup: Duration::ZERO,
                duration: Duration::ZERO,
                size_bytes: options.size_bytes,
                recipient: Some(recipient.clone()),
                total: Some(options.backlog),
                thread_index: index,
            };
            store::Store::new(Arc::clone(&control), setup, pool)
        },
        |driver| driver.tally,
    );
    results.add("backlog_stored", fill.completed);
    results.add(
        "fill_ms",
        format!("{:.1}", fill_started.elapsed().as_secs_f64() * 1e3),
    );
    if fill.completed < options.backlog {
        results.diagnostics(&fill);
        return Err(format!(
            "only {} of {} blobs were stored",
            fill.completed, options.backlog
        ));
    }
    let drain = run_workers(
        target,
        &[1],
        &control,
        Supervise::Nothing,
        |_, _| {
            connections::Drain::new(recipient.clone(), options.backlog, Duration::from_secs(120))
        },
        |driver| driver.tally,
    );
    for name in [
        "handshake_ms",
        "first_blob_ms",
        "drain_ms",
        "received",
        "blobs_per_sec",
    ] {
        let value = drain.figures.get(name).copied().unwrap_or(f64::NAN);
        results.add(
            name,
            if name == "received" {
                format!("{value:.0}")
            } else {
                format!("{value:.1}")
            },
        );
    }
    results.diagnostics(&drain);
    Ok(())
}

fn run_idle(
    cli: &Cli,
    target: &Arc<Target>,
    relay_pid: Option<u32>,
    results: &mut Results,
) -> Result<(), String> {
    let connections = cli.connections.unwrap_or(15_000);
    let slots = thread_slots(cli, connections);
    let control = Arc::new(Control::default());
    // Let the relay finish starting before the baseline.
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = relay_pid.and_then(relay::rss_kib);
    let mut rss_after = None;
    let mut open_secs = 0.0;
    let mut opened = 0;
    let tally = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let took = wait_until_open(&control, connections, Duration::from_secs(300));
            opened = control.opened.load(Ordering::Relaxed);
            open_secs = took.as_secs_f64();
            // Give the relay a moment to finish per-session work before measuring.
            std::thread::sleep(Duration::from_millis(500));
            rss_after = relay_pid.and_then(relay::rss_kib);
            control.stop.store(true, Ordering::Relaxed);
        });
        let tally = run_workers(
            target,
            &slots,
            &control,
            Supervise::Nothing,
            |index, _| connections::Idle::new(Arc::clone(&control), slots[index]),
            |driver| driver.tally,
        );
        watcher.join().expect("watcher thread");
        tally
    });
    results.add("connections_open", opened);
    results.add("open_all_secs", format!("{open_secs:.2}"));
    results.add(
        "handshakes_per_sec_while_opening",
        format!("{:.0}", opened as f64 / open_secs.max(1e-9)),
    );
    results.latency("handshake", &tally.latency);
    match (rss_before, rss_after) {
        (Some(before), Some(after)) => {
            results.add("relay_rss_before_kib", before);
            results.add("relay_rss_after_kib", after);
            let per = after.saturating_sub(before) as f64 / opened.max(1) as f64;
            results.add("relay_rss_per_conn_kib", format!("{per:.2}"));
        }
        _ => results.add(
            "relay_rss_per_conn_kib",
            "n/a (no relay pid: use --relay-pid)",
        ),
    }
    results.diagnostics(&tally);
    Ok(())
}

fn run_churn(cli: &Cli, target: &Arc<Target>, results: &mut Results) -> Result<(), String> {
    let options = &cli.options;
    let concurrency = cli.connections.unwrap_or(64);
    let slots = thread_slots(cli, concurrency);
    let control = Arc::new(Control::default());
    let tally = run_workers(
        target,
        &slots,
        &control,
        Supervise::Nothing,
        |_, _| connections::Churn::new(Arc::clone(&control), options.warmup, options.duration),
        |driver| driver.tally,
    );
    results.add(
        "mode",
        format!("{concurrency} concurrent connect-handshake-close loops"),
    );
    results.add(
        "handshakes_per_sec",
        format!(
            "{:.0}",
            tally.completed as f64 / options.duration.as_secs_f64()
        ),
    );
    results.latency("connect_to_ack", &tally.latency);
    results.diagnostics(&tally);
    Ok(())
}
