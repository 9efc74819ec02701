//! Offload throughput into a relay (PROTOCOL.md §11.4, §15.3): how many
//! `OffloadBlob`s per second one federation link gets stored and acknowledged,
//! over a plain `/federation` link on the main port and over the mTLS listener,
//! in interleaved rounds. `cargo bench --bench offload -- [options]`, see `USAGE`.
//!
//! A relay's own offloading sends at most one batch of 10 per
//! `RELAY_FEDERATION_CAPACITY_INTERVAL` (§11.7), so relay to relay the rate is
//! set by that tick, not by the link; this measures what the link and the
//! acceptor can take: a raw initiator keeps `--window` offers in flight, each in
//! its own WebSocket message and write, and counts accepted acks.
//!
//! Both processes' CPU is reported (the relay's from /proc, this one's own), so
//! that a generator at its limit shows.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use futures_rustls::rustls::pki_types::pem::PemObject;
use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use futures_rustls::rustls::{self, ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tungstenite::{Message, WebSocket};

const USAGE: &str = "\
usage: cargo bench --bench offload -- [options]
  --blobs N (20000)   offers per run      --window W (64)    offers in flight
  --size BYTES (200)  data per blob       --rounds R (3)     plain/mTLS pairs
  --backend memory|sqlite (memory)        --shards N (2)
  --relay-bin PATH    relay binary (default: the one cargo built)
";

struct Options {
    blobs: usize,
    window: usize,
    size: usize,
    rounds: usize,
    backend: String,
    shards: usize,
    relay_bin: PathBuf,
}

fn options() -> Options {
    let mut o = Options {
        blobs: 20_000,
        window: 64,
        size: 200,
        rounds: 3,
        backend: "memory".to_owned(),
        shards: 2,
        relay_bin: option_env!("CARGO_BIN_EXE_vauchi-relay").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/vauchi-relay"),
            PathBuf::from,
        ),
    };
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| fail(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--blobs" => o.blobs = number(&value()),
            "--window" => o.window = number(&value()).max(1),
            "--size" => o.size = number(&value()).max(1),
            "--rounds" => o.rounds = number(&value()).max(1),
            "--backend" => o.backend = value(),
            "--shards" => o.shards = number(&value()).max(1),
            "--relay-bin" => o.relay_bin = PathBuf::from(value()),
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => fail(&format!("unknown option {other}")),
        }
    }
    o
}

fn number(text: &str) -> usize {
    text.parse()
        .unwrap_or_else(|_| fail(&format!("not a number: {text}")))
}

fn fail(message: &str) -> ! {
    eprintln!("offload: {message}\n{USAGE}");
    std::process::exit(2)
}

/// The throwaway PKI of a run: a CA, the relay's certificate and the client's.
struct Pki {
    dir: PathBuf,
    client: Arc<ClientConfig>,
}

fn pki(dir: &Path) -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (stem, names) in [
        ("relay", ["bench-relay", "localhost"]),
        ("peer", ["bench-peer", "localhost"]),
    ] {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(dir.join(format!("{stem}-cert.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{stem}-key.pem")), key.serialize_pem()).unwrap();
    }
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("peer-cert.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("peer-key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    Pki {
        dir: dir.to_owned(),
        client: Arc::new(client),
    }
}

/// The relay under test, killed when dropped.
struct Relay {
    child: Child,
    main: SocketAddr,
    mtls: SocketAddr,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the relay: with `pki`, federation over mTLS (whose listener it logs);
/// without, plain federation on the main port (which refuses `/federation` while
/// mTLS is configured, §15.3).
fn start_relay(o: &Options, pki: Option<&Pki>, data: &Path) -> Relay {
    let mut command = Command::new(&o.relay_bin);
    command
        .env_clear()
        .env("RELAY_LISTEN_ADDR", "127.0.0.1:0")
        .env("RELAY_METRICS_ADDR", "127.0.0.1:0")
        .env("RELAY_DATA_DIR", data)
        .env("RELAY_SHARDS", o.shards.to_string())
        .env("RELAY_STORAGE_BACKEND", &o.backend)
        .env("RELAY_FEDERATION_ENABLED", "true")
        .env("RELAY_FEDERATION_RELAY_ID", "bench-relay")
        .env("RELAY_MAX_STORAGE_BYTES", u64::MAX.to_string())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(pki) = pki {
        let file = |name: &str| pki.dir.join(name);
        command
            .env("RELAY_FEDERATION_MTLS_ADDR", "127.0.0.1:0")
            .env("RELAY_FEDERATION_TLS_CERT", file("relay-cert.pem"))
            .env("RELAY_FEDERATION_TLS_KEY", file("relay-key.pem"))
            .env("RELAY_FEDERATION_TLS_CA", file("ca.pem"));
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| fail(&format!("cannot start {}: {e}", o.relay_bin.display())));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut main, mut mtls) = (None, None);
    while main.is_none() {
        let line = lines
            .next()
            .unwrap_or_else(|| fail("the relay exited while starting"))
            .unwrap();
        let after = |marker: &str| line.split(marker).nth(1).map(|a| a.trim().parse().unwrap());
        mtls = mtls.or(after("federation mTLS on "));
        main = after("listening on ");
    }
    // Keep reading its log so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let main = main.unwrap();
    if pki.is_some() && mtls.is_none() {
        fail("the relay logged no mTLS listener");
    }
    Relay {
        child,
        main,
        mtls: mtls.unwrap_or(main),
    }
}

/// A federation frame: 4-byte length prefix and the JSON envelope.
fn frame(payload: Value) -> Vec<u8> {
    let envelope = json!({
        "version": 1,
        "message_id": uuid::Uuid::new_v4().to_string(),
        "timestamp": unix_now(),
        "payload": payload,
    });
    let text = serde_json::to_vec(&envelope).unwrap();
    let mut out = (text.len() as u32).to_be_bytes().to_vec();
    out.extend(text);
    out
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn payload_of(message: Message) -> Option<Value> {
    let Message::Binary(bytes) = message else {
        return None;
    };
    let value: Value = serde_json::from_slice(bytes.get(4..)?).ok()?;
    Some(value["payload"].clone())
}

fn offer(index: usize, size: usize) -> Vec<u8> {
    let mut data = vec![(index % 251) as u8; size];
    data[..8.min(size)].copy_from_slice(&(index as u64).to_be_bytes()[..8.min(size)]);
    let routing_id = hex::encode(Sha256::digest((index % 10_000).to_be_bytes()));
    frame(json!({
        "type": "OffloadBlob",
        "blob_id": uuid::Uuid::new_v4().to_string(),
        "routing_id": routing_id,
        "data": data,
        "created_at_secs": unix_now(),
        "integrity_hash": hex::encode(Sha256::digest(&data)),
        "hop_count": 0,
    }))
}

/// One run on an upgraded link: the handshake, then `blobs` offers with `window`
/// in flight. Accepted acks per second.
fn run<S: Read + Write>(ws: &mut WebSocket<S>, o: &Options) -> f64 {
    let hello = json!({"type": "PeerHandshake", "relay_id": "bench-peer", "version": 1, "listen_addr": "127.0.0.1:0"});
    ws.send(Message::binary(frame(hello))).unwrap();
    loop {
        if let Some(p) = payload_of(ws.read().unwrap())
            && p["type"] == "PeerHandshakeAck"
        {
            assert_eq!(p["accepted"], true, "{p}");
            break;
        }
    }
    let offers: Vec<Vec<u8>> = (0..o.blobs).map(|i| offer(i, o.size)).collect();
    let started = Instant::now();
    let (mut sent, mut accepted) = (0, 0);
    while sent < o.window.min(o.blobs) {
        ws.send(Message::binary(offers[sent].clone())).unwrap();
        sent += 1;
    }
    while accepted < o.blobs {
        let Some(p) = payload_of(ws.read().unwrap()) else {
            continue;
        };
        if p["type"] != "OffloadAck" {
            continue;
        }
        assert_eq!(p["accepted"], true, "{p}");
        accepted += 1;
        if sent < o.blobs {
            ws.send(Message::binary(offers[sent].clone())).unwrap();
            sent += 1;
        }
    }
    o.blobs as f64 / started.elapsed().as_secs_f64()
}

/// CPU seconds (user + system) of a process so far, from /proc.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().map(|t| t.parse::<f64>().unwrap_or(0.0)).sum()
    });
    ticks / 100.0
}

/// One measured run: rate, relay CPU %, own CPU %.
fn measure(o: &Options, mtls: bool, pki: &Pki, base: &Path, round: usize) -> (f64, f64, f64) {
    let data = base.join(format!("data-{round}-{mtls}"));
    std::fs::create_dir_all(&data).unwrap();
    let relay = start_relay(o, mtls.then_some(pki), &data);
    let pid = relay.child.id().to_string();
    let (relay_cpu, own_cpu, wall) = (cpu_seconds(&pid), cpu_seconds("self"), Instant::now());
    let rate = if mtls {
        let tcp = TcpStream::connect(relay.mtls).unwrap();
        tcp.set_nodelay(true).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = StreamOwned::new(
            ClientConnection::new(pki.client.clone(), name).unwrap(),
            tcp,
        );
        let url = format!("wss://localhost:{}/federation", relay.mtls.port());
        let (mut ws, _) = tungstenite::client::client(url, tls).unwrap();
        run(&mut ws, o)
    } else {
        let tcp = TcpStream::connect(relay.main).unwrap();
        tcp.set_nodelay(true).unwrap();
        let url = format!("ws://{}/federation", relay.main);
        let (mut ws, _) = tungstenite::client::client(url, tcp).unwrap();
        run(&mut ws, o)
    };
    let elapsed = wall.elapsed().as_secs_f64();
    let relay_pct = 100.0 * (cpu_seconds(&pid) - relay_cpu) / elapsed;
    let own_pct = 100.0 * (cpu_seconds("self") - own_cpu) / elapsed;
    drop(relay);
    let _ = std::fs::remove_dir_all(&data);
    (rate, relay_pct, own_pct)
}

fn main() {
    let o = options();
    let base = std::env::temp_dir().join(format!("vauchi-offload-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let pki = pki(&base);
    println!(
        "offload: {} blobs of {} B, window {}, backend {}, {} shards, {} interleaved rounds",
        o.blobs, o.size, o.window, o.backend, o.shards, o.rounds
    );
    let mut results: [Vec<(f64, f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..o.rounds {
        for (slot, mtls) in [(0, false), (1, true)] {
            let (rate, relay, own) = measure(&o, mtls, &pki, &base, round);
            let name = if mtls { "mtls " } else { "plain" };
            println!(
                "round {round} {name}: {rate:>9.0} accepted offloads/s  relay CPU {relay:>5.1} %  generator CPU {own:>5.1} %"
            );
            results[slot].push((rate, relay, own));
        }
    }
    let median = |runs: &[(f64, f64, f64)], pick: fn(&(f64, f64, f64)) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    for (slot, name) in [(0, "plain"), (1, "mtls ")] {
        println!(
            "median {name}: {:>9.0} accepted offloads/s  relay CPU {:>5.1} %  generator CPU {:>5.1} %",
            median(&results[slot], |r| r.0),
            median(&results[slot], |r| r.1),
            median(&results[slot], |r| r.2),
        );
    }
    println!(
        "mtls / plain: {:.2}",
        median(&results[1], |r| r.0) / median(&results[0], |r| r.0)
    );
    let _ = std::fs::remove_dir_all(&base);
}
