//! Startup benchmark: time from spawning `target/release/vauchi-relay` until it logs
//! `listening on`, over a sqlite data directory holding `--blobs` (default
//! 1,000,000) blobs of 200 bytes on 2 shards, built here the way the relay writes
//! them. Target: 2 s or less for 1,000,000 blobs. Then `/health` must report them all.
//!
//! `cargo build --release && cargo bench --bench startup [-- --blobs N --runs R]`.
//! Prints `RESULT\tstartup\tsqlite\t<metric>\t<value>` lines like the load generator.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vauchi_relay::config::SqliteSynchronous;
use vauchi_relay::protocol::{Id64, shard_of};
use vauchi_relay::storage::sqlite::{SqliteStore, shard_file_name};
use vauchi_relay::storage::{BlobId, BlobRecord, Store, WriteOp};

const USAGE: &str = "\
usage: cargo bench --bench startup [-- options]
  --blobs N        blobs in the data directory (default 1000000)
  --recipients N   distinct random recipients they are spread over (default 10000)
  --runs N         timed starts on the same directory (default 3)
  --relay-bin PATH relay binary (default target/release/vauchi-relay)
";

const SHARDS: usize = 2;
const BLOB_BYTES: usize = 200;
/// Records per commit while building, like one group-commit batch.
const BATCH_RECORDS: usize = 1000;
/// How long one start may take before the run is abandoned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a stopped relay may take to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The figure the relay is held to for 1,000,000 blobs.
const TARGET_MS: f64 = 2000.0;

struct Options {
    blobs: u64,
    recipients: usize,
    runs: usize,
    relay_bin: PathBuf,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        blobs: 1_000_000,
        recipients: 10_000,
        runs: 3,
        relay_bin: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/vauchi-relay"),
    };
    // cargo bench passes `--bench` to harness-less targets.
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--bench");
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |text: String| {
            text.replace('_', "")
                .parse::<u64>()
                .map_err(|_| format!("{arg}: not a number: {text}"))
        };
        match arg.as_str() {
            "--blobs" => options.blobs = number(value()?)?,
            "--recipients" => options.recipients = number(value()?)?.max(1) as usize,
            "--runs" => options.runs = number(value()?)?.max(1) as usize,
            "--relay-bin" => options.relay_bin = PathBuf::from(value()?),
            "--help" | "-h" => return Err(String::new()),
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    Ok(options)
}

/// splitmix64, seeded from the clock and printed, so a run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// Writes `blobs` blobs over `SHARDS` shard files in `dir`, as the relay would:
/// each recipient on shard `shard_of(recipient)`, shard-local keys increasing,
/// per-recipient `seq` increasing, committed in batches of `BATCH_RECORDS`.
fn build_data_dir(dir: &Path, options: &Options, rng: &mut Rng) -> Result<(), String> {
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let recipients: Vec<(Id64, usize)> = (0..options.recipients)
        .map(|_| {
            let mut bytes = [0u8; 32];
            rng.fill(&mut bytes);
            let id = Id64(bytes);
            (id, shard_of(&id, SHARDS))
        })
        .collect();
    let mut next_seq = vec![0u64; recipients.len()];
    let mut stores = Vec::with_capacity(SHARDS);
    for index in 0..SHARDS {
        let path = dir.join(shard_file_name(index));
        let mut store = SqliteStore::open(&path, SqliteSynchronous::Normal)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        store
            .meta_set("shard_count", &SHARDS.to_string())
            .map_err(|e| e.to_string())?;
        stores.push(store);
    }
    let mut next_key = [0u64; SHARDS];
    let mut batches: Vec<Vec<WriteOp>> = (0..SHARDS)
        .map(|_| Vec::with_capacity(BATCH_RECORDS))
        .collect();
    for _ in 0..options.blobs {
        let which = rng.next() as usize % recipients.len();
        let (recipient, shard) = recipients[which];
        next_key[shard] += 1;
        next_seq[which] += 1;
        let mut data = vec![0u8; BLOB_BYTES];
        rng.fill(&mut data);
        batches[shard].push(WriteOp::InsertBlob(BlobRecord {
            key: next_key[shard],
            id: BlobId::from_u128(u128::from(rng.next()) << 64 | u128::from(rng.next())),
            recipient,
            data,
            created_at_secs: now_secs,
            hop_count: 0,
            seq: next_seq[which],
        }));
        if batches[shard].len() == BATCH_RECORDS {
            stores[shard]
                .commit(&batches[shard])
                .map_err(|e| e.to_string())?;
            batches[shard].clear();
        }
    }
    for (store, batch) in stores.iter_mut().zip(&batches) {
        if !batch.is_empty() {
            store.commit(batch).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// A started relay: its stderr is drained by a thread for its whole life.
struct Relay {
    child: Child,
    address: SocketAddr,
}

impl Relay {
    /// Spawns the relay and returns it with the time until it logged `listening on`.
    fn start(binary: &Path, dir: &Path) -> Result<(Relay, Duration), String> {
        let started = Instant::now();
        let mut child = Command::new(binary)
            .env("RELAY_DATA_DIR", dir)
            .env("RELAY_SHARDS", SHARDS.to_string())
            .env("RELAY_STORAGE_BACKEND", "sqlite")
            .env("RELAY_LISTEN_ADDR", "127.0.0.1:0")
            .env("RELAY_METRICS_ADDR", "127.0.0.1:0")
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (found, listening) = mpsc::channel();
        std::thread::spawn(move || {
            let mut found = Some(found);
            let mut log = Vec::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = listening_address(&line)
                    && let Some(found) = found.take()
                {
                    let _ = found.send(Ok((Instant::now(), address)));
                }
                if found.is_some() {
                    log.push(line);
                }
            }
            // The relay exited (or closed stderr) without listening.
            if let Some(found) = found {
                let _ = found.send(Err(log.join("\n")));
            }
        });
        let outcome = listening.recv_timeout(STARTUP_TIMEOUT);
        let mut relay = Relay {
            child,
            address: "0.0.0.0:0".parse().expect("literal"),
        };
        match outcome {
            Ok(Ok((at, address))) => {
                relay.address = address;
                Ok((relay, at - started))
            }
            Ok(Err(log)) => Err(format!("relay exited without listening; its log:\n{log}")),
            Err(_) => Err(format!("no `listening on` within {STARTUP_TIMEOUT:?}")),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // SIGTERM (graceful shutdown closes the databases), SIGKILL if it lingers.
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses `... listening on 127.0.0.1:PORT` from one log line.
fn listening_address(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// `blob_count` from `GET /health` over plain HTTP/1.1.
fn health_blob_count(address: SocketAddr) -> Result<u64, String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .map_err(|e| format!("connect {address}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    // Read until the body declared by Content-Length is in (or the relay closes).
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&response);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .ok_or("no Content-Length in the health reply")?;
            if response.len() >= head_end + 4 + length {
                break;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => response.extend_from_slice(&chunk[..read]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&response);
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!("health reply: {text}"));
    }
    let count = text
        .split("\"blob_count\":")
        .nth(1)
        .and_then(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .ok_or_else(|| format!("no blob_count in the health reply: {text}"))?;
    Ok(count)
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn run(options: &Options) -> Result<(), String> {
    if !options.relay_bin.is_file() {
        return Err(format!(
            "{} is missing: run `cargo build --release` first",
            options.relay_bin.display()
        ));
    }
    let dir = std::env::temp_dir().join(format!("vauchi-startup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let result = measure(options, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(options: &Options, dir: &Path) -> Result<(), String> {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |since| since.as_nanos() as u64);
    eprintln!(
        "startup: building {} blobs of {BLOB_BYTES} bytes for {} recipients on {SHARDS} shards \
         in {} (seed {seed})",
        options.blobs,
        options.recipients,
        dir.display()
    );
    let building = Instant::now();
    build_data_dir(dir, options, &mut Rng(seed))?;
    let build_secs = building.elapsed().as_secs_f64();
    let data_bytes: u64 = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|metadata| metadata.len())
        .sum();
    eprintln!(
        "startup: built in {build_secs:.1} s, {:.0} MiB on disk",
        data_bytes as f64 / (1024.0 * 1024.0)
    );

    let mut listen_ms = Vec::with_capacity(options.runs);
    let mut blob_count = None;
    for run in 1..=options.runs {
        let (relay, elapsed) = Relay::start(&options.relay_bin, dir)?;
        listen_ms.push(millis(elapsed));
        eprintln!(
            "startup: run {run}: listening after {:.0} ms",
            millis(elapsed)
        );
        if run == options.runs {
            blob_count = Some(health_blob_count(relay.address)?);
        }
        drop(relay);
    }
    listen_ms.sort_by(f64::total_cmp);
    let median = listen_ms[listen_ms.len() / 2];
    let (min, max) = (listen_ms[0], listen_ms[listen_ms.len() - 1]);
    let blob_count = blob_count.expect("the last run reads /health");
    let row = |metric: &str, value: String| println!("RESULT\tstartup\tsqlite\t{metric}\t{value}");
    row("blobs", options.blobs.to_string());
    row("listen_ms_min", format!("{min:.0}"));
    row("listen_ms_median", format!("{median:.0}"));
    row("listen_ms_max", format!("{max:.0}"));
    row("health_blob_count", blob_count.to_string());
    if options.blobs == 1_000_000 {
        let verdict = if max <= TARGET_MS { "met" } else { "NOT met" };
        eprintln!(
            "startup: target listening <= {TARGET_MS:.0} ms with 1,000,000 blobs: {verdict} \
             (max of {} runs {max:.0} ms)",
            options.runs
        );
    }
    if blob_count != options.blobs {
        return Err(format!(
            "/health reports blob_count {blob_count}, expected {}",
            options.blobs
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("startup: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("startup: {message}");
            ExitCode::FAILURE
        }
    }
}
