//! Helpers for the federation end-to-end tests (§11): relays started with
//! federation on, a raw federation peer speaking the v1 messages of §11.2 over real
//! WebSockets (as initiator against `/federation`, or as acceptor on a test
//! listener), mailbox reads that separate connect-time blobs from the
//! ForwardingHints (§4.6), and waits on the metrics of §12.2.
//!
//! Nothing here uses the relay's own code: frames are built and parsed with
//! serde_json, so the tests check the wire, not an implementation.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tungstenite::handshake::server::{Request, Response};
use tungstenite::{HandshakeError, Message, WebSocket};

use crate::common::{Client, Relay, STUCK, TempDir, envelope, frame, scrape_metrics, update_json};
use crate::wire::now;

/// How often a raw link's pump thread looks for something to send while it
/// waits for input; only a polling step, never an expectation.
const PUMP_TICK: Duration = Duration::from_millis(20);
/// Pause between two metric scrapes while waiting for a state.
pub const POLL: Duration = Duration::from_millis(25);

/// The `RELAY_BLOB_TTL_SECS` default (§13.2): hints expire at created + this.
pub const DEFAULT_TTL: u64 = 7_776_000;

// ---------------------------------------------------------------- relays

/// The variables of a federating relay: federation on, an explicit relay_id, two
/// shards, one-second offload ticks and capacity reports, and the smallest peer
/// timeout (2 s: keepalive Pings every second, acks awaited 2 s).
pub struct FedRelay {
    vars: Vec<(String, String)>,
}

impl FedRelay {
    pub fn new(relay_id: &str) -> FedRelay {
        let mut relay = FedRelay { vars: Vec::new() };
        relay
            .set("RELAY_FEDERATION_ENABLED", "true")
            .set("RELAY_FEDERATION_RELAY_ID", relay_id)
            .set("RELAY_SHARDS", "2")
            .set("RELAY_FEDERATION_CAPACITY_INTERVAL", "1")
            .set("RELAY_FEDERATION_PEER_TIMEOUT", "2")
            .set("RELAY_RATE_LIMIT", "100000");
        relay
    }

    /// Sets (or replaces) one variable.
    pub fn set(&mut self, name: &str, value: &str) -> &mut FedRelay {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }

    /// `RELAY_FEDERATION_PEERS` = this one URL.
    pub fn peer(&mut self, url: &str) -> &mut FedRelay {
        self.set("RELAY_FEDERATION_PEERS", url)
    }

    /// A tiny `RELAY_MAX_STORAGE_BYTES` with this offload threshold, so that a
    /// few 200-byte blobs put the relay over it.
    pub fn tiny(&mut self, max_bytes: u64, threshold: &str) -> &mut FedRelay {
        self.set("RELAY_MAX_STORAGE_BYTES", &max_bytes.to_string())
            .set("RELAY_FEDERATION_OFFLOAD_THRESHOLD", threshold)
    }

    /// Listen on this exact address instead of 127.0.0.1:0.
    pub fn listen(&mut self, addr: SocketAddr) -> &mut FedRelay {
        self.set("RELAY_LISTEN_ADDR", &addr.to_string())
    }

    pub fn start(&self, dir: &Path) -> Relay {
        let vars: Vec<(&str, &str)> = self
            .vars
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        Relay::start(dir, &vars)
    }
}

/// A listener for a test-side acceptor and a relay `relay_id` that dials it, with
/// `RELAY_MAX_STORAGE_BYTES` 1000 and this offload threshold; the listener, its
/// URL, the relay's data directory and the relay.
pub fn relay_with_peer(
    relay_id: &str,
    label: &str,
    threshold: &str,
) -> (TcpListener, String, TempDir, Relay) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let dir = TempDir::new(label);
    let relay = FedRelay::new(relay_id)
        .peer(&url)
        .tiny(1000, threshold)
        .start(dir.path());
    (listener, url, dir, relay)
}

/// The base URL a peer configures for this relay (§13.2: hints carry it as is).
pub fn url_of(relay: &Relay) -> String {
    format!("ws://{}", relay.addr)
}

/// A port that was free a moment ago, for relays that must know each other's
/// address before either starts (bidirectional peering). The listener is dropped
/// at once; another process could take the port in between, which is unlikely on
/// a test machine and would show as a failed start, not as a wrong result.
pub fn free_port_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Waits (bounded by `STUCK`) for the relay process to exit; its status.
pub fn wait_exit(relay: &mut Relay) -> std::process::ExitStatus {
    let deadline = Instant::now() + STUCK;
    loop {
        if let Some(status) = relay.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "relay still running {STUCK:?} after the signal: {:?}",
            tail(relay)
        );
        std::thread::sleep(POLL);
    }
}

/// The last lines of a relay's log, for failure messages.
pub fn tail(relay: &Relay) -> Vec<String> {
    let log = relay.log.lock().unwrap();
    log.iter().rev().take(15).rev().cloned().collect()
}

pub fn signal(relay: &Relay, signal: i32) {
    // SAFETY: kill(2) on the child's pid, which the test owns.
    let result = unsafe { libc::kill(relay.child.id() as i32, signal) };
    assert_eq!(result, 0);
}

/// Waits (bounded by `STUCK`) for a log line holding every one of `parts`.
pub fn wait_log(relay: &Relay, parts: &[&str]) -> String {
    let deadline = Instant::now() + STUCK;
    loop {
        let found = relay
            .log
            .lock()
            .unwrap()
            .iter()
            .find(|line| parts.iter().all(|part| line.contains(part)))
            .cloned();
        if let Some(line) = found {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?} within {STUCK:?}: {:?}",
            tail(relay)
        );
        std::thread::sleep(POLL);
    }
}

/// How many log lines hold every one of `parts`.
pub fn count_log(relay: &Relay, parts: &[&str]) -> usize {
    let log = relay.log.lock().unwrap();
    log.iter()
        .filter(|line| parts.iter().all(|part| line.contains(part)))
        .count()
}

// ---------------------------------------------------------------- metrics

/// One scrape of a relay's `/metrics`.
pub struct Metrics(pub String);

impl Metrics {
    pub fn of(relay: &Relay) -> Metrics {
        Metrics(scrape_metrics(relay))
    }

    /// The sum of every sample of `name` whose labels contain `labels` (0 if absent).
    pub fn get(&self, name: &str, labels: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(labels))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    }

    pub fn offload_sent(&self, result: &str) -> f64 {
        self.get("relay_offload_sent_total", &format!("result=\"{result}\""))
    }

    pub fn offload_received(&self, result: &str) -> f64 {
        self.get(
            "relay_offload_received_total",
            &format!("result=\"{result}\""),
        )
    }

    pub fn used_bytes(&self) -> f64 {
        self.get("relay_storage_used_bytes", "")
    }

    pub fn blobs_stored(&self) -> f64 {
        self.get("relay_blobs_stored", "")
    }

    /// The federation and storage samples, for failure messages.
    pub fn summary(&self) -> String {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                [
                    "relay_offload",
                    "relay_federation",
                    "relay_storage_used",
                    "relay_blobs_stored",
                ]
                .iter()
                .any(|p| l.starts_with(p))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Polls the relays' metrics until `done` holds for them (in order), or panics
/// after `STUCK` with what was last seen and the end of each log.
pub fn wait_metrics(what: &str, relays: &[&Relay], done: impl Fn(&[Metrics]) -> bool) {
    let deadline = Instant::now() + STUCK;
    loop {
        let seen: Vec<Metrics> = relays.iter().map(|r| Metrics::of(r)).collect();
        if done(&seen) {
            return;
        }
        if Instant::now() >= deadline {
            let report: Vec<String> = relays
                .iter()
                .zip(&seen)
                .map(|(r, m)| format!("[{}] logs: {:?}", m.summary(), tail(r)))
                .collect();
            panic!("{what}: not within {STUCK:?}; {report:#?}");
        }
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------- client side

/// What `offload_four` stored: the recipient, the ciphertexts and their ids on A.
pub struct Offloaded {
    pub recipient: String,
    pub datas: Vec<Vec<u8>>,
    pub ids: Vec<String>,
}

/// Stores four 200-byte blobs (tagged `tag`) on `a`, which is over its threshold
/// and peers with `b`, for a recipient connected to `b`; waits until all four
/// went to `b` (accepted there, none left on `a`) and were pushed live to it.
pub fn offload_four(a: &Relay, b: &Relay, tag: u8, what: &str) -> Offloaded {
    let recipient = crate::wire::fresh_id();
    let mut live_on_b = Client::handshake(b.addr, &recipient);
    let datas: Vec<Vec<u8>> = (0..4).map(|i| blob_data(tag, i, 200)).collect();
    let ids = store_blobs(a, &recipient, &datas);
    wait_metrics(what, &[a, b], |m| {
        m[0].offload_sent("accepted") == 4.0
            && m[0].used_bytes() == 0.0
            && m[1].offload_received("accepted") == 4.0
    });
    let pushed: Vec<Vec<u8>> = (0..4)
        .map(|_| bytes_of(&live_on_b.recv_json()["payload"]["ciphertext"]))
        .collect();
    assert_eq!(sorted(&pushed), sorted(&datas), "B pushed them live");
    live_on_b.close();
    Offloaded {
        recipient,
        datas,
        ids,
    }
}

/// A 200-byte ciphertext that tells its test, blob and purpose apart.
pub fn blob_data(tag: u8, index: usize, len: usize) -> Vec<u8> {
    let mut data = vec![tag; len];
    data[0] = index as u8;
    data[len - 1] = 0xee;
    data
}

/// Stores each ciphertext for `recipient` through a client session, in order;
/// returns the blob ids of the `Stored` acks.
pub fn store_blobs(relay: &Relay, recipient: &str, datas: &[Vec<u8>]) -> Vec<String> {
    let sender_id = crate::wire::fresh_id();
    let mut sender = Client::handshake(relay.addr, &sender_id);
    for (i, data) in datas.iter().enumerate() {
        sender.feed_json(&update_json(&format!("s{i}"), recipient, data));
    }
    sender.flush();
    let mut ids = Vec::new();
    while ids.len() < datas.len() {
        let reply = sender.recv_json();
        let payload = &reply["payload"];
        if payload["type"] == "Acknowledgment" && payload["status"] == "Delivered" {
            continue;
        }
        assert_eq!(payload["status"], "Stored", "{reply}");
        assert_eq!(payload["message_id"], format!("s{}", ids.len()), "{reply}");
        ids.push(payload["blob_id"].as_str().unwrap().to_owned());
    }
    sender.close();
    ids
}

/// Sorted copies, for comparing sets of ciphertexts.
pub fn sorted(datas: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut datas = datas.to_vec();
    datas.sort();
    datas
}

/// The bytes of a JSON byte array (§3.3).
pub fn bytes_of(value: &Value) -> Vec<u8> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a byte array: {value}"))
        .iter()
        .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
        .collect()
}

/// A delivered blob: the envelope `message_id` (the blob's id on that relay) and
/// its ciphertext.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub id: String,
    pub data: Vec<u8>,
}

/// What one session of a routing_id receives at connect time (§4.6): the blobs,
/// then at most one ForwardingHints, and anything that came after the hints.
#[derive(Debug)]
pub struct Mailbox {
    pub blobs: Vec<Delivered>,
    /// The raw ForwardingHints message, if one came.
    pub hints_raw: Option<String>,
    pub hints: Vec<Value>,
    /// EncryptedUpdates after the ForwardingHints (live pushes only).
    pub after_hints: Vec<Delivered>,
}

impl Mailbox {
    /// Connects as `routing_id`, reads everything sent until the reply to a
    /// request pipelined after the Handshake (that reply follows the connect-time
    /// delivery, §4.6), and closes without acking anything.
    pub fn read(addr: SocketAddr, routing_id: &str) -> Mailbox {
        const END: &str = "end-of-mailbox";
        let mut client = Client::handshake(addr, routing_id);
        client.send_json(&envelope(
            END,
            json!({"type": "RecoveryProofQuery", "key_hashes": []}),
        ));
        let mut mailbox = Mailbox {
            blobs: Vec::new(),
            hints_raw: None,
            hints: Vec::new(),
            after_hints: Vec::new(),
        };
        loop {
            let raw = crate::wire::recv_text(&mut client);
            let message: Value = serde_json::from_str(&raw).unwrap();
            let payload = &message["payload"];
            match payload["type"].as_str().unwrap() {
                "RecoveryProofResponse" if message["message_id"] == END => break,
                "EncryptedUpdate" => {
                    assert_eq!(payload["recipient_id"], routing_id, "{raw}");
                    let blob = Delivered {
                        id: message["message_id"].as_str().unwrap().to_owned(),
                        data: bytes_of(&payload["ciphertext"]),
                    };
                    if mailbox.hints_raw.is_some() {
                        mailbox.after_hints.push(blob);
                    } else {
                        mailbox.blobs.push(blob);
                    }
                }
                "ForwardingHints" => {
                    assert!(mailbox.hints_raw.is_none(), "one ForwardingHints: {raw}");
                    mailbox.hints = payload["hints"]
                        .as_array()
                        .unwrap_or_else(|| panic!("hints is an array: {raw}"))
                        .clone();
                    mailbox.hints_raw = Some(raw);
                }
                _ => panic!("unexpected at connect time: {raw}"),
            }
        }
        client.close();
        mailbox
    }

    /// The ciphertexts of every blob received, sorted.
    pub fn datas(&self) -> Vec<Vec<u8>> {
        let mut datas: Vec<Vec<u8>> = self
            .blobs
            .iter()
            .chain(&self.after_hints)
            .map(|b| b.data.clone())
            .collect();
        datas.sort();
        datas
    }

    /// The hinted blob ids, in the order listed.
    pub fn hint_ids(&self) -> Vec<String> {
        self.hints
            .iter()
            .map(|h| h["blob_id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Checks the ForwardingHints message byte for byte (§3.5 member order,
    /// compact), that every hint points at `relay_url`, and the order of the hints
    /// (by `expires_at_secs`, then `blob_id`, §5.13).
    pub fn check_hints(&self, relay_url: &str) {
        let raw = self
            .hints_raw
            .as_deref()
            .expect("a ForwardingHints message");
        let value: Value = serde_json::from_str(raw).unwrap();
        let mut listed = Vec::new();
        for hint in &self.hints {
            let mut keys: Vec<&str> = hint
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            keys.sort();
            assert_eq!(keys, ["blob_id", "expires_at_secs", "relay_url"], "{raw}");
            assert_eq!(hint["relay_url"], relay_url, "{raw}");
            assert!(hint["expires_at_secs"].is_u64(), "{raw}");
            listed.push(format!(
                "{{\"blob_id\":{},\"relay_url\":{},\"expires_at_secs\":{}}}",
                hint["blob_id"], hint["relay_url"], hint["expires_at_secs"]
            ));
        }
        let rebuilt = format!(
            "{{\"version\":1,\"message_id\":{},\"timestamp\":{},\"payload\":{{\"type\":\"ForwardingHints\",\"hints\":[{}]}}}}",
            value["message_id"],
            value["timestamp"],
            listed.join(",")
        );
        assert_eq!(raw, rebuilt, "member order, members or compactness");
        assert!(
            crate::wire::is_uuid_v4(value["message_id"].as_str().unwrap()),
            "{raw}"
        );
        assert!(
            now().abs_diff(value["timestamp"].as_u64().unwrap()) <= 5,
            "{raw}"
        );
        let order: Vec<(u64, &str)> = self
            .hints
            .iter()
            .map(|h| {
                (
                    h["expires_at_secs"].as_u64().unwrap(),
                    h["blob_id"].as_str().unwrap(),
                )
            })
            .collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(
            order, sorted,
            "hints ordered by expiry, then blob_id: {raw}"
        );
    }
}

/// The address a hint's `relay_url` (`ws://host:port`) points at.
pub fn addr_of_url(url: &str) -> SocketAddr {
    url.strip_prefix("ws://")
        .unwrap_or_else(|| panic!("a ws:// URL: {url}"))
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

// ---------------------------------------------------------------- federation frames

/// The payload `type` of a message ("" if it has none).
pub fn payload_type(message: &Value) -> &str {
    message["payload"]["type"].as_str().unwrap_or_default()
}

/// The next OffloadBlob on a link to the raw acceptor, skipping capacity reports.
pub fn next_offer(peer: &FedPeer) -> (String, Value) {
    let (raw, message) = peer.recv_except(&["CapacityReport"]);
    assert_eq!(payload_type(&message), "OffloadBlob", "{raw}");
    (raw, message)
}

/// Lower-case hex SHA-256 of `data` (§11.2 `integrity_hash`).
pub fn integrity_hash(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A federation message: the envelope of §3.2 (new UUIDv4, now) around `payload`,
/// framed as in §3.1.
pub fn fed_frame(payload: Value) -> Vec<u8> {
    let text = json!({
        "version": 1,
        "message_id": uuid::Uuid::new_v4().to_string(),
        "timestamp": now(),
        "payload": payload,
    })
    .to_string();
    frame(&text)
}

pub fn peer_handshake(relay_id: &str, version: u64) -> Value {
    json!({"type": "PeerHandshake", "relay_id": relay_id, "version": version, "listen_addr": "127.0.0.1:0"})
}

pub fn peer_handshake_ack(relay_id: &str, accepted: bool, used: u64, max: u64) -> Value {
    json!({
        "type": "PeerHandshakeAck",
        "relay_id": relay_id,
        "version": 1,
        "accepted": accepted,
        "capacity_used_bytes": used,
        "capacity_max_bytes": max,
    })
}

/// An `OffloadBlob` with a correct integrity hash.
pub fn offload_blob(
    blob_id: &str,
    routing_id: &str,
    data: &[u8],
    created_at: u64,
    hop_count: u64,
) -> Value {
    json!({
        "type": "OffloadBlob",
        "blob_id": blob_id,
        "routing_id": routing_id,
        "data": data,
        "created_at_secs": created_at,
        "integrity_hash": integrity_hash(data),
        "hop_count": hop_count,
    })
}

pub fn offload_ack(blob_id: &str, accepted: bool, reason: Option<&str>) -> Value {
    json!({"type": "OffloadAck", "blob_id": blob_id, "accepted": accepted, "reason": reason})
}

pub fn capacity_report(used: u64, max: u64, blob_count: u64) -> Value {
    json!({"type": "CapacityReport", "used_bytes": used, "max_bytes": max, "blob_count": blob_count})
}

pub fn drain_notice(secs: u64) -> Value {
    json!({"type": "DrainNotice", "drain_timeout_secs": secs})
}

pub fn drain_ack() -> Value {
    json!({"type": "DrainAck"})
}

// ---------------------------------------------------------------- raw federation link

/// What arrived on a raw federation link.
#[derive(Debug)]
pub enum FedEvent {
    /// A binary message with an exact prefix and a JSON object: raw text and value.
    Message(String, Value),
    /// A binary message that is not a well-formed frame.
    Malformed(Vec<u8>),
    Text(String),
    Close(u16, String),
    /// The connection ended (after or without a Close).
    Eof,
}

/// One end of a federation WebSocket, written by hand for the tests. A thread
/// owns the socket: it keeps reading (so Pings are answered and the relay's
/// keepalive is satisfied while the test does something else), hands every event
/// to the test, and writes what the test queues. Dropping the peer closes the link.
pub struct FedPeer {
    outgoing: Sender<Message>,
    incoming: Receiver<FedEvent>,
    /// The request path the relay used (acceptor role).
    pub path: String,
}

impl FedPeer {
    /// Initiator role: upgrades `ws://addr/federation`. An `Err` carries the
    /// refusal (status and body).
    pub fn connect(addr: SocketAddr) -> Result<FedPeer, String> {
        let stream = connect_stream(addr);
        let socket = stream.try_clone().unwrap();
        FedPeer::connect_on(stream, &format!("ws://{addr}/federation"), &socket)
    }

    /// Initiator role on a stream layered over a connection (TLS, say): upgrades
    /// to `url`. `socket` is the TCP connection under it (a clone).
    pub fn connect_on<S: Read + Write + Send + 'static>(
        stream: S,
        url: &str,
        socket: &TcpStream,
    ) -> Result<FedPeer, String> {
        match tungstenite::client::client(url, stream) {
            Ok((ws, _)) => Ok(FedPeer::run(ws, "/federation".to_owned(), socket)),
            Err(HandshakeError::Failure(tungstenite::Error::Http(response))) => Err(format!(
                "the relay refused the /federation upgrade: {} {}",
                response.status(),
                String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
            )),
            Err(e) => Err(format!("the /federation upgrade failed: {e}")),
        }
    }

    /// Connects, sends a `PeerHandshake` as `relay_id` and expects an accepting
    /// `PeerHandshakeAck`; returns the link and the ack's raw text and value.
    pub fn join(addr: SocketAddr, relay_id: &str) -> (FedPeer, String, Value) {
        let peer = FedPeer::connect(addr).unwrap_or_else(|e| panic!("{e}"));
        peer.send(peer_handshake(relay_id, 1));
        let (raw, ack) = peer.recv_message();
        assert_eq!(ack["payload"]["type"], "PeerHandshakeAck", "{raw}");
        assert_eq!(ack["payload"]["accepted"], true, "{raw}");
        (peer, raw, ack)
    }

    /// Acceptor role: waits (bounded by `STUCK`) for the relay to connect to
    /// `listener` and completes the upgrade.
    pub fn accept(listener: &TcpListener) -> FedPeer {
        let stream = accept_stream(listener);
        let socket = stream.try_clone().unwrap();
        FedPeer::accept_on(stream, &socket)
    }

    /// Acceptor role on a stream layered over an accepted connection (TLS, say):
    /// completes the upgrade on `stream`. `socket` is the TCP connection under it
    /// (a clone), whose read timeout the pump shortens.
    pub fn accept_on<S: Read + Write + Send + 'static>(stream: S, socket: &TcpStream) -> FedPeer {
        let mut path = String::new();
        // The callback's error type is tungstenite's, not ours to shrink.
        #[allow(clippy::result_large_err)]
        let record_path = |request: &Request, response: Response| {
            path = request.uri().path().to_owned();
            Ok(response)
        };
        let ws = tungstenite::accept_hdr(stream, record_path)
            .unwrap_or_else(|e| panic!("the relay's upgrade to its peer failed: {e}"));
        FedPeer::run(ws, path, socket)
    }

    /// `socket` is the TCP connection under `ws` (or a clone of it).
    fn run<S: Read + Write + Send + 'static>(
        ws: WebSocket<S>,
        path: String,
        socket: &TcpStream,
    ) -> FedPeer {
        socket.set_read_timeout(Some(PUMP_TICK)).unwrap();
        let (outgoing, to_send) = mpsc::channel();
        let (received, incoming) = mpsc::channel();
        std::thread::spawn(move || pump(ws, to_send, received));
        FedPeer {
            outgoing,
            incoming,
            path,
        }
    }

    /// Sends `payload` in a fresh envelope as one binary message.
    pub fn send(&self, payload: Value) {
        self.send_message(Message::binary(fed_frame(payload)));
    }

    /// Sends any WebSocket message as is (garbage included).
    pub fn send_message(&self, message: Message) {
        // A link that has already ended drops what is sent; the test sees its Eof.
        let _ = self.outgoing.send(message);
    }

    /// The next event; panics after `STUCK` without one.
    pub fn recv(&self) -> FedEvent {
        self.incoming
            .recv_timeout(STUCK)
            .unwrap_or_else(|_| panic!("the federation link was silent for {STUCK:?}"))
    }

    /// The next event, or `None` if nothing arrives within `wait`.
    pub fn try_recv(&self, wait: Duration) -> Option<FedEvent> {
        self.incoming.recv_timeout(wait).ok()
    }

    /// The next event, which must be a well-formed message.
    pub fn recv_message(&self) -> (String, Value) {
        match self.recv() {
            FedEvent::Message(raw, value) => (raw, value),
            other => panic!("expected a federation message, got {other:?}"),
        }
    }

    /// The next message whose payload type is not in `skip` (Close and Eof panic).
    pub fn recv_except(&self, skip: &[&str]) -> (String, Value) {
        loop {
            let (raw, value) = self.recv_message();
            let kind = value["payload"]["type"].as_str().unwrap_or_default();
            if !skip.contains(&kind) {
                return (raw, value);
            }
        }
    }

    /// Reads past messages of the types in `skip` until the link closes; the code
    /// and reason of the relay's Close.
    pub fn expect_close(&self, skip: &[&str]) -> (u16, String) {
        loop {
            match self.recv() {
                FedEvent::Close(code, reason) => return (code, reason),
                FedEvent::Message(_, value)
                    if skip.contains(&value["payload"]["type"].as_str().unwrap_or_default()) => {}
                other => panic!("expected the relay to close the link, got {other:?}"),
            }
        }
    }
}

/// A blocking connection to `addr` with `STUCK` read and write timeouts.
pub fn connect_stream(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(STUCK)).unwrap();
    stream.set_write_timeout(Some(STUCK)).unwrap();
    stream
}

/// Waits (bounded by `STUCK`) for the relay to connect to `listener`; the
/// connection, blocking, with `STUCK` read and write timeouts.
pub fn accept_stream(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + STUCK;
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "the relay did not connect to its configured peer within {STUCK:?}"
                );
                std::thread::sleep(PUMP_TICK);
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(STUCK)).unwrap();
    stream.set_write_timeout(Some(STUCK)).unwrap();
    stream
}

fn pump<S: Read + Write>(
    mut ws: WebSocket<S>,
    to_send: Receiver<Message>,
    received: Sender<FedEvent>,
) {
    loop {
        loop {
            match to_send.try_recv() {
                Ok(message) => {
                    let _ = ws.send(message);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    // The test dropped its end: close the link and stop.
                    let _ = ws.close(None);
                    let _ = ws.flush();
                    return;
                }
            }
        }
        let event = match ws.read() {
            Ok(Message::Binary(bytes)) => decode(&bytes),
            Ok(Message::Text(text)) => FedEvent::Text(text.to_string()),
            Ok(Message::Close(frame)) => match frame {
                Some(f) => FedEvent::Close(u16::from(f.code), f.reason.to_string()),
                None => FedEvent::Close(1005, String::new()),
            },
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue;
            }
            Err(_) => {
                let _ = received.send(FedEvent::Eof);
                return;
            }
        };
        if received.send(event).is_err() {
            return;
        }
    }
}

/// Parses one binary message as a frame of §3.1 holding a JSON object.
fn decode(bytes: &[u8]) -> FedEvent {
    if bytes.len() < 4 {
        return FedEvent::Malformed(bytes.to_vec());
    }
    let length = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    if length != bytes.len() - 4 {
        return FedEvent::Malformed(bytes.to_vec());
    }
    let Ok(text) = String::from_utf8(bytes[4..].to_vec()) else {
        return FedEvent::Malformed(bytes.to_vec());
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(value) if value.is_object() => FedEvent::Message(text, value),
        _ => FedEvent::Malformed(bytes.to_vec()),
    }
}

// ---------------------------------------------------------------- hand-rolled acceptor

/// What the relay sent on a [`RawLink`]: data messages as [`FedEvent`] would
/// report them, and the control frames that [`FedPeer`] hides.
#[derive(Debug)]
pub enum RawEvent {
    Message(String, Value),
    Malformed(Vec<u8>),
    Text(String),
    Ping,
    Pong,
    Close(u16, String),
    /// A Close frame without a body.
    CloseEmpty,
    /// The connection ended.
    Eof,
}

/// The acceptor end of a federation link written by hand on a plain socket, for
/// peers that misbehave in ways tungstenite does not allow: nothing is ever sent
/// unless the test sends it (no Pong to the relay's Pings, no Close in reply to
/// its Close), bytes that are no WebSocket frame can be written, and the TCP
/// connection can be dropped without a Close. Nothing runs in the background:
/// the relay's frames are read only when the test asks.
pub struct RawLink {
    stream: TcpStream,
    /// The request path the relay used.
    pub path: String,
}

impl RawLink {
    /// Waits (bounded by `STUCK`) for the relay to connect to `listener` and
    /// answers its upgrade with a 101 (RFC 6455 §4.2.2).
    pub fn accept(listener: &TcpListener) -> RawLink {
        use std::io::{Read, Write};
        let mut stream = accept_stream(listener);
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        // Byte by byte, so nothing after the request head is consumed here.
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).expect("read the upgrade request");
            assert_eq!(n, 1, "EOF inside the upgrade request: {head:?}");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let path = head
            .split(' ')
            .nth(1)
            .unwrap_or_else(|| panic!("request line: {head}"))
            .to_owned();
        let key = head
            .split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-key"))
            .map(|(_, value)| value.trim().to_owned())
            .unwrap_or_else(|| panic!("no Sec-WebSocket-Key: {head}"));
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        // An attempt the relay has already given up on shows as Eof next.
        let _ = stream.write_all(response.as_bytes());
        RawLink { stream, path }
    }

    /// Accepts the relay's next connection that sends a `PeerHandshake`. A
    /// connection that ends first is an attempt the relay gave up on while it
    /// waited in the listen queue (its upgrade timer is the peer timeout): the
    /// relay dials again, so the next one is taken.
    pub fn accept_handshake(listener: &TcpListener) -> (RawLink, Value) {
        let deadline = Instant::now() + STUCK;
        loop {
            let mut link = RawLink::accept(listener);
            assert_eq!(link.path, "/federation");
            match link.next_event() {
                RawEvent::Message(raw, message) => {
                    assert_eq!(payload_type(&message), "PeerHandshake", "{raw}");
                    return (link, message);
                }
                RawEvent::Eof => assert!(
                    Instant::now() < deadline,
                    "no connection with a PeerHandshake within {STUCK:?}"
                ),
                other => panic!("expected a PeerHandshake, got {other:?}"),
            }
        }
    }

    /// [`RawLink::accept_handshake`], then accepts the handshake as `relay_id` with
    /// plenty of room.
    pub fn join(listener: &TcpListener, relay_id: &str) -> RawLink {
        let (mut link, _) = RawLink::accept_handshake(listener);
        link.send(peer_handshake_ack(relay_id, true, 0, 1_000_000));
        link
    }

    /// The next frame from the relay; panics after `STUCK` without one. Frames from
    /// the initiator are masked (RFC 6455 §5.3) and never fragmented.
    pub fn next_event(&mut self) -> RawEvent {
        let mut header = [0u8; 2];
        if !self.read_exact_or_eof(&mut header) {
            return RawEvent::Eof;
        }
        assert_eq!(header[0] & 0x80, 0x80, "the relay never fragments");
        assert_eq!(header[1] & 0x80, 0x80, "client frames are masked");
        let len = match header[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                if !self.read_exact_or_eof(&mut b) {
                    return RawEvent::Eof;
                }
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                if !self.read_exact_or_eof(&mut b) {
                    return RawEvent::Eof;
                }
                usize::try_from(u64::from_be_bytes(b)).unwrap()
            }
            n => n as usize,
        };
        let mut mask = [0u8; 4];
        let mut payload = vec![0u8; len];
        if !self.read_exact_or_eof(&mut mask) || !self.read_exact_or_eof(&mut payload) {
            return RawEvent::Eof;
        }
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        match header[0] & 0x0f {
            1 => RawEvent::Text(String::from_utf8_lossy(&payload).into_owned()),
            2 => match decode(&payload) {
                FedEvent::Message(raw, value) => RawEvent::Message(raw, value),
                _ => RawEvent::Malformed(payload),
            },
            8 if payload.is_empty() => RawEvent::CloseEmpty,
            8 => RawEvent::Close(
                u16::from_be_bytes([payload[0], payload[1]]),
                String::from_utf8_lossy(&payload[2..]).into_owned(),
            ),
            9 => RawEvent::Ping,
            10 => RawEvent::Pong,
            other => panic!("the relay sent opcode {other}"),
        }
    }

    /// The next data message (Pings and Pongs skipped, never answered), which
    /// must be a well-formed one.
    pub fn recv_message(&mut self) -> (String, Value) {
        loop {
            match self.next_event() {
                RawEvent::Ping | RawEvent::Pong => {}
                RawEvent::Message(raw, value) => return (raw, value),
                other => panic!("expected a federation message, got {other:?}"),
            }
        }
    }

    /// The next OffloadBlob, skipping capacity reports.
    pub fn next_offer(&mut self) -> (String, Value) {
        loop {
            let (raw, message) = self.recv_message();
            match payload_type(&message) {
                "CapacityReport" => {}
                "OffloadBlob" => return (raw, message),
                _ => panic!("unexpected on an outbound link: {raw}"),
            }
        }
    }

    /// Reads on (answering nothing) until the relay's Close or the end of the
    /// connection.
    pub fn read_to_close(&mut self) -> RawEvent {
        loop {
            let event = self.next_event();
            if matches!(
                event,
                RawEvent::Close(..) | RawEvent::CloseEmpty | RawEvent::Eof
            ) {
                return event;
            }
        }
    }

    /// Sends `payload` in a fresh envelope as one binary message.
    pub fn send(&mut self, payload: Value) {
        self.send_frame(0x82, &fed_frame(payload));
    }

    /// Sends one unmasked frame with this first byte (FIN, RSV, opcode).
    pub fn send_frame(&mut self, first_byte: u8, payload: &[u8]) {
        self.write_raw(&crate::wire::encode_frame(first_byte, payload, false));
    }

    /// Writes bytes as they are, frame or not. A connection the relay has already
    /// dropped swallows them.
    pub fn write_raw(&mut self, bytes: &[u8]) {
        use std::io::Write;
        let _ = self.stream.write_all(bytes);
    }

    /// Drops the TCP connection at once: no Close frame, no reply to anything read.
    pub fn vanish(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    fn read_exact_or_eof(&mut self, buf: &mut [u8]) -> bool {
        crate::wire::read_exact_or_eof(&mut self.stream, buf)
    }
}

// ---------------------------------------------------------------- relay still fine

/// `GET /health` answers 200 `healthy` (§2.4): the process is up and serving.
pub fn assert_healthy(relay: &Relay) {
    let response =
        crate::wire::http_exchange(relay.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(response.status, 200, "{response:?}: {:?}", tail(relay));
    assert!(
        response.body_text().starts_with(r#"{"status":"healthy","#),
        "{response:?}"
    );
}

/// An honest client's round trip: a sender stores a small blob for a connected
/// recipient, which receives it (pushed live, §4.7, or at connect time, §4.6) and
/// acks it, which deletes it (§5.4).
pub fn honest_round_trip(relay: &Relay, tag: u8) {
    let r = crate::wire::fresh_id();
    let mut recipient = Client::handshake(relay.addr, &r);
    let data = blob_data(tag, 0, 10);
    let ids = store_blobs(relay, &r, std::slice::from_ref(&data));
    let pushed = recipient.recv_json();
    assert_eq!(pushed["payload"]["type"], "EncryptedUpdate", "{pushed}");
    assert_eq!(pushed["message_id"], ids[0].as_str(), "{pushed}");
    assert_eq!(bytes_of(&pushed["payload"]["ciphertext"]), data, "{pushed}");
    recipient.send_json(&crate::common::ack_json(&ids[0], "ReceivedByRecipient"));
    recipient.close();
}

/// Every blob of `ids` is still on the relay for `routing_id`, in store order, and
/// no ForwardingHints is sent.
pub fn assert_kept(relay: &Relay, routing_id: &str, ids: &[String]) {
    let mailbox = Mailbox::read(relay.addr, routing_id);
    let got: Vec<&str> = mailbox.blobs.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(got, ids, "every blob stays, in order: {mailbox:?}");
    assert!(mailbox.hints_raw.is_none(), "no hint: {mailbox:?}");
    assert!(mailbox.after_hints.is_empty(), "{mailbox:?}");
}
