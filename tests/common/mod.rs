//! Shared helpers for end-to-end tests: start the relay binary on 127.0.0.1:0 with
//! a fresh data directory, and speak the client protocol over real WebSockets.
#![allow(dead_code)]

pub mod ca;
pub mod noise;

pub use noise::{NoiseClient, Wire};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

/// How long a test waits for something that should happen at once before it
/// declares the relay stuck (a hang guard, not a performance assertion).
pub const STUCK: Duration = Duration::from_secs(30);

pub const A: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
pub const B: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = std::env::temp_dir().join(format!(
            "vauchi-{label}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running relay process, killed when dropped.
pub struct Relay {
    pub child: Child,
    pub addr: SocketAddr,
    /// The metrics listener's address (logged before the main one).
    pub metrics_addr: Option<SocketAddr>,
    pub log: Arc<Mutex<Vec<String>>>,
    /// Set by [`Relay::start_over`] with [`Wire::Noise`]: the relay's Noise public
    /// key, which `connect` and `handshake` then open sessions with.
    pub noise_key: Option<[u8; 32]>,
}

impl Relay {
    /// Starts the relay with these variables on top of test defaults.
    pub fn start(data_dir: &Path, vars: &[(&str, &str)]) -> Relay {
        let mut command = relay_command(data_dir, vars);
        let mut child = command.spawn().expect("start the relay binary");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let metrics = Arc::new(Mutex::new(None));
        let metrics_sink = Arc::clone(&metrics);
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("metrics on ").nth(1) {
                    *metrics_sink.lock().unwrap() = rest.trim().parse::<SocketAddr>().ok();
                }
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = addr_tx.send(rest.trim().parse::<SocketAddr>().unwrap());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match addr_rx.recv_timeout(STUCK) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("relay did not start: {:?}", log.lock().unwrap());
            }
        };
        let metrics_addr = *metrics.lock().unwrap();
        Relay {
            child,
            addr,
            metrics_addr,
            log,
            noise_key: None,
        }
    }

    /// Starts the relay; with [`Wire::Noise`], the sessions `connect` and
    /// `handshake` open are Noise sessions (the key read from `/pubkey`).
    pub fn start_over(wire: Wire, data_dir: &Path, vars: &[(&str, &str)]) -> Relay {
        let mut relay = Relay::start(data_dir, vars);
        if wire == Wire::Noise {
            let metrics = relay.metrics_addr.expect("metrics address logged");
            relay.noise_key = Some(noise::fetch_pubkey(metrics));
        }
        relay
    }

    pub fn wire(&self) -> Wire {
        if self.noise_key.is_some() {
            Wire::Noise
        } else {
            Wire::Plain
        }
    }

    /// A session before its Handshake, over this relay's wire.
    pub fn connect(&self) -> Client {
        let mut client = Client::connect(self.addr);
        if let Some(key) = &self.noise_key {
            client.open_noise(key);
        }
        client
    }

    /// A session after its Handshake for `client_id` and the HandshakeAck.
    pub fn handshake(&self, client_id: &str) -> Client {
        let mut client = self.connect();
        client.handshake_as(client_id);
        client
    }

    /// Kills the process at once (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The relay binary with the test defaults (127.0.0.1:0 listeners, this data
/// directory, no pinning, info logs on stderr) and these variables on top.
pub fn relay_command(data_dir: &Path, vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vauchi-relay"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RELAY_LISTEN_ADDR", "127.0.0.1:0")
        .env("RELAY_METRICS_ADDR", "127.0.0.1:0")
        .env("RELAY_DATA_DIR", data_dir)
        .env("RELAY_CPU_PIN", "false")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in vars {
        command.env(name, value);
    }
    command
}

/// GET /metrics from the relay's metrics listener; the whole response.
pub fn scrape_metrics(relay: &Relay) -> String {
    let mut stream =
        TcpStream::connect(relay.metrics_addr.expect("metrics address logged")).unwrap();
    stream.set_read_timeout(Some(STUCK)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The sum of every sample of `name` in a scrape whose labels contain `labels`.
pub fn metric_value(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(labels))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// A frame: 4-byte big-endian length prefix + JSON text.
pub fn frame(json: &str) -> Vec<u8> {
    let mut out = (json.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out
}

pub fn envelope(message_id: &str, payload: Value) -> String {
    serde_json::json!({"version": 1, "message_id": message_id, "timestamp": 1767225600u64, "payload": payload}).to_string()
}

pub fn handshake_json(client_id: &str) -> String {
    envelope(
        "hs",
        serde_json::json!({"type": "Handshake", "client_id": client_id}),
    )
}

pub fn update_json(message_id: &str, recipient: &str, ciphertext: &[u8]) -> String {
    envelope(
        message_id,
        serde_json::json!({"type": "EncryptedUpdate", "recipient_id": recipient, "ciphertext": ciphertext}),
    )
}

pub fn ack_json(blob_id: &str, status: &str) -> String {
    envelope(
        "ack",
        serde_json::json!({"type": "Acknowledgment", "message_id": blob_id, "status": status}),
    )
}

/// What a read produced.
#[derive(Debug)]
pub enum Received {
    Json(Value),
    Close(u16, String),
    Eof,
}

/// A client session over a plain TCP stream, or another (a TLS one).
pub struct Client<S: Read + Write = TcpStream> {
    pub ws: WebSocket<S>,
    /// A Noise session's client state (§15.1); `None`: plain.
    pub noise: Option<NoiseClient>,
}

/// A TCP connection to `target` from `source`, a loopback address of the test's
/// choosing (bound before connecting, which std cannot do).
pub fn connect_from(source: IpAddr, target: SocketAddr) -> TcpStream {
    let domain = socket2::Domain::for_address(target);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .unwrap_or_else(|e| panic!("bind {source}: {e}"));
    socket.connect(&target.into()).unwrap();
    let tcp: TcpStream = socket.into();
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(STUCK)).unwrap();
    tcp
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(STUCK)).unwrap();
        Client::over(stream, addr)
    }

    /// A client session over `stream`, connected to `addr`.
    pub fn over(stream: TcpStream, addr: SocketAddr) -> Client {
        let (ws, _) = tungstenite::client::client(format!("ws://{addr}/"), stream).unwrap();
        Client { ws, noise: None }
    }

    /// Connects and completes a Handshake for `client_id`, returning the client
    /// after its HandshakeAck.
    pub fn handshake(addr: SocketAddr, client_id: &str) -> Client {
        let mut client = Client::connect(addr);
        client.handshake_as(client_id);
        client
    }
}

impl<S: Read + Write> Client<S> {
    /// Sends a Noise opening for `server_public` and reads the relay's reply: from
    /// then on every data message is sealed (§15.1).
    pub fn open_noise(&mut self, server_public: &[u8; 32]) {
        let (opening, state) = noise::opening(server_public);
        self.ws.send(Message::binary(opening)).unwrap();
        let reply = loop {
            match self.ws.read().unwrap() {
                Message::Binary(bytes) => break bytes,
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected the opening's reply, got {other:?}"),
            }
        };
        self.noise = Some(NoiseClient::finish(state, &reply));
    }

    /// Sends the Handshake for `client_id` and expects its HandshakeAck.
    pub fn handshake_as(&mut self, client_id: &str) {
        self.send_json(&handshake_json(client_id));
        let ack = self.recv_json();
        assert_eq!(ack["payload"]["type"], "HandshakeAck", "{ack}");
    }

    pub fn send_json(&mut self, json: &str) {
        self.feed_json(json);
        self.flush();
    }

    pub fn send_raw(&mut self, message: Message) {
        self.ws.send(message).unwrap();
    }

    /// Queues without flushing (for pipelining), then `flush`.
    pub fn feed_json(&mut self, json: &str) {
        self.feed_frame(&frame(json));
    }

    /// Queues one v1 frame: one binary message, or sealed in as many as it needs.
    pub fn feed_frame(&mut self, frame: &[u8]) {
        match self.noise.as_mut() {
            None => self.ws.write(Message::binary(frame.to_vec())).unwrap(),
            Some(noise) => {
                for message in noise.seal_frame(frame) {
                    self.ws.write(Message::binary(message)).unwrap();
                }
            }
        }
    }

    pub fn flush(&mut self) {
        self.ws.flush().unwrap();
    }

    pub fn recv(&mut self) -> Received {
        loop {
            if let Some(frame) = self.noise.as_mut().and_then(NoiseClient::next_frame) {
                return Received::Json(serde_json::from_slice(&frame[4..]).unwrap());
            }
            match self.ws.read() {
                Ok(Message::Binary(bytes)) if self.noise.is_some() => {
                    self.noise.as_mut().unwrap().open(&bytes);
                }
                Ok(Message::Binary(bytes)) => {
                    let length = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
                    assert_eq!(length, bytes.len() - 4, "relay wrote an exact prefix");
                    return Received::Json(serde_json::from_slice(&bytes[4..]).unwrap());
                }
                Ok(Message::Close(frame)) => {
                    return match frame {
                        Some(f) => Received::Close(u16::from(f.code), f.reason.to_string()),
                        None => Received::Close(1005, String::new()),
                    };
                }
                Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
                Ok(other) => panic!("unexpected message {other:?}"),
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed) => return Received::Eof,
                Err(tungstenite::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    panic!("relay sent nothing for {STUCK:?}")
                }
                Err(tungstenite::Error::Io(_)) | Err(tungstenite::Error::Protocol(_)) => {
                    return Received::Eof;
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    pub fn recv_json(&mut self) -> Value {
        match self.recv() {
            Received::Json(value) => value,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Expects the relay to close with this code.
    pub fn expect_close(&mut self, code: u16) -> String {
        match self.recv() {
            Received::Close(got, reason) => {
                assert_eq!(got, code, "close reason {reason:?}");
                reason
            }
            other => panic!("expected close {code}, got {other:?}"),
        }
    }

    pub fn close(&mut self) {
        let _ = self.ws.close(Some(tungstenite::protocol::CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }));
        let _ = self.ws.flush();
    }
}

/// A field of /proc/<pid>/status given in kB (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let line = status
        .lines()
        .find(|line| line.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Raises this (test) process's soft open-file limit to its hard limit and returns
/// the soft limit in effect.
pub fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-pointer.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid in-pointer; failure leaves the old limit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
        // SAFETY: as above.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    }
    limit.rlim_cur
}

/// The soft open-file limit of another process, from /proc/<pid>/limits.
pub fn open_file_limit_of(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/limits: {e}"));
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("Max open files in /proc/<pid>/limits");
    let soft = line["Max open files".len()..]
        .split_whitespace()
        .next()
        .unwrap();
    if soft == "unlimited" {
        u64::MAX
    } else {
        soft.parse().unwrap()
    }
}
