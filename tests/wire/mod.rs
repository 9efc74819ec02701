//! Wire-level helpers for the spec-conformance end-to-end tests: plain HTTP
//! exchanges, a hand-rolled WebSocket client that can break RFC 6455 on purpose,
//! raw-JSON reads that keep member order, layout checks, and authenticated
//! Handshakes signed with a fresh Ed25519 key.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use tungstenite::Message;

use crate::common::{Client, NoiseClient, Relay, STUCK, frame};

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// RFC 6455 §1.3's accept value for `KEY`.
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// 64 × `0`: shard 3 of 4 (Appendix A.2).
pub const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// 32 bytes from the operating system's random source (via UUIDv4).
pub fn random32() -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    out[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    out
}

/// A 64-hex id nobody else uses, for tests that need their own mailbox.
pub fn fresh_id() -> String {
    hex::encode(random32())
}

// ---------------------------------------------------------------- HTTP

/// A plain HTTP response read to EOF.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn body_text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// Splits a response head from its body.
pub fn parse_response(bytes: &[u8]) -> Response {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {:?}", String::from_utf8_lossy(bytes)));
    let head = std::str::from_utf8(&bytes[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap().to_owned();
    let status = status_line[9..12].parse().unwrap();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("header has ':'");
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    Response {
        status,
        status_line,
        headers,
        body: bytes[end + 4..].to_vec(),
    }
}

/// Writes `request` and reads until the relay closes the connection. Bytes read
/// before a reset are kept.
pub fn http_exchange(addr: SocketAddr, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(STUCK)).unwrap();
    let _ = stream.write_all(request);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("relay neither answered nor closed within {STUCK:?}")
            }
            Err(_) => break,
        }
    }
    parse_response(&bytes)
}

pub fn upgrade_request(path: &str, extra_headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}

// ---------------------------------------------------------------- raw WebSocket

/// What the relay sent on a raw connection.
#[derive(Debug, PartialEq)]
pub enum Event {
    Binary(Vec<u8>),
    Text(Vec<u8>),
    Pong(Vec<u8>),
    Ping(Vec<u8>),
    Close(u16, String),
    /// A Close frame with no body.
    CloseEmpty,
    Eof,
}

/// A WebSocket client written by hand, so tests can send what tungstenite refuses to.
pub struct RawWs {
    pub stream: TcpStream,
    /// Bytes of the 101 response head.
    pub head: String,
    /// On a Noise session (§15.1), `send_json` seals and `next_event` opens data
    /// messages, giving whole frames; other sends stay raw.
    pub noise: Option<NoiseClient>,
}

impl RawWs {
    /// Upgrades with `request` and returns after the `101` head.
    pub fn upgrade_with(addr: SocketAddr, request: &str) -> RawWs {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(STUCK)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).expect("read the 101 head");
            assert_eq!(n, 1, "EOF inside the upgrade response: {head:?}");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        RawWs {
            stream,
            head,
            noise: None,
        }
    }

    pub fn connect(addr: SocketAddr) -> RawWs {
        RawWs::upgrade_with(addr, &upgrade_request("/", ""))
    }

    /// A connection over `relay`'s wire: with a Noise key, opened (§15.1).
    pub fn connect_to(relay: &Relay) -> RawWs {
        let mut ws = RawWs::connect(relay.addr);
        if let Some(key) = &relay.noise_key {
            ws.open_noise(key);
        }
        ws
    }

    /// Sends a Noise opening and reads the reply (§15.1).
    pub fn open_noise(&mut self, server_public: &[u8; 32]) {
        let (opening, state) = crate::common::noise::opening(server_public);
        self.send_binary(&opening);
        let reply = match self.next_event() {
            Event::Binary(bytes) => bytes,
            other => panic!("expected the opening's reply, got {other:?}"),
        };
        self.noise = Some(NoiseClient::finish(state, &reply));
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn send_frame(&mut self, first_byte: u8, payload: &[u8], masked: bool) {
        let bytes = encode_frame(first_byte, payload, masked);
        self.write(&bytes);
    }

    pub fn send_binary(&mut self, payload: &[u8]) {
        self.send_frame(0x82, payload, true);
    }

    pub fn send_json(&mut self, json: &str) {
        let frame = frame(json);
        match self.noise.as_mut() {
            None => self.send_binary(&frame),
            Some(noise) => {
                let mut bytes = Vec::new();
                for message in noise.seal_frame(&frame) {
                    bytes.extend(encode_frame(0x82, &message, true));
                }
                self.write(&bytes);
            }
        }
    }

    /// Reads one frame from the relay; server frames are never masked. On a Noise
    /// session, binary messages are opened and a whole v1 frame is returned.
    pub fn next_event(&mut self) -> Event {
        loop {
            if let Some(frame) = self.noise.as_mut().and_then(NoiseClient::next_frame) {
                return Event::Binary(frame);
            }
            match self.next_raw_event() {
                Event::Binary(message) if self.noise.is_some() => {
                    self.noise.as_mut().unwrap().open(&message);
                }
                other => return other,
            }
        }
    }

    /// Reads one WebSocket frame as it is on the wire.
    pub fn next_raw_event(&mut self) -> Event {
        let mut header = [0u8; 2];
        if !self.read_exact_or_eof(&mut header) {
            return Event::Eof;
        }
        assert_eq!(header[1] & 0x80, 0, "server frames are not masked");
        assert_eq!(header[0] & 0x80, 0x80, "the relay never fragments");
        let len = match header[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                assert!(self.read_exact_or_eof(&mut b));
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                assert!(self.read_exact_or_eof(&mut b));
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        if !self.read_exact_or_eof(&mut payload) {
            return Event::Eof;
        }
        match header[0] & 0x0f {
            1 => Event::Text(payload),
            2 => Event::Binary(payload),
            8 if payload.is_empty() => Event::CloseEmpty,
            8 => Event::Close(
                u16::from_be_bytes([payload[0], payload[1]]),
                String::from_utf8(payload[2..].to_vec()).unwrap(),
            ),
            9 => Event::Ping(payload),
            10 => Event::Pong(payload),
            other => panic!("relay sent opcode {other}"),
        }
    }

    /// The next data message as JSON text, after checking its prefix.
    pub fn recv_text(&mut self) -> String {
        match self.next_event() {
            Event::Binary(bytes) => unprefix(&bytes),
            other => panic!("expected a binary message, got {other:?}"),
        }
    }

    /// Expects the very next frame to be this Close.
    pub fn expect_close(&mut self, code: u16, reason: &str) {
        let event = self.next_event();
        assert_eq!(event, Event::Close(code, reason.to_owned()));
    }

    fn read_exact_or_eof(&mut self, buf: &mut [u8]) -> bool {
        read_exact_or_eof(&mut self.stream, buf)
    }
}

/// A frame with this first byte (FIN, RSV and opcode), masked or not.
pub fn encode_frame(first_byte: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut out = vec![first_byte];
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend((n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend((n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend(mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A masked frame whose payload length is written with `length_bytes` extended
/// bytes (0, 2 or 8) whether or not that is the minimal form (RFC 6455 §5.2).
pub fn encode_frame_with_length_form(
    first_byte: u8,
    payload: &[u8],
    length_bytes: usize,
) -> Vec<u8> {
    frame_with_length_form(first_byte, payload, length_bytes, true)
}

/// The same, masked (client to server) or not (server to client).
pub fn frame_with_length_form(
    first_byte: u8,
    payload: &[u8],
    length_bytes: usize,
    masked: bool,
) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut out = vec![first_byte];
    match length_bytes {
        0 => out.push(mask_bit | u8::try_from(payload.len()).unwrap()),
        2 => {
            out.push(mask_bit | 126);
            out.extend(u16::try_from(payload.len()).unwrap().to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend((payload.len() as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend(mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Opens a bare connection and returns once the relay has ended it, which its
/// handshake timer does (`RELAY_HANDSHAKE_TIMEOUT`): a clock kept by the relay, to
/// order another connection's end against without timing anything here.
pub fn wait_out_the_handshake_timer(addr: SocketAddr) {
    let mut sentinel = TcpStream::connect(addr).unwrap();
    sentinel.set_read_timeout(Some(STUCK)).unwrap();
    let mut rest = Vec::new();
    let _ = sentinel.read_to_end(&mut rest);
}

/// Panics unless `stream` is still open with nothing to read: the relay neither
/// closed it nor sent anything.
pub fn assert_still_open(stream: &TcpStream, label: &str) {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    match (&*stream).read(&mut byte) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("{label}: the sentinel connection was closed or answered: {other:?}"),
    }
    stream.set_nonblocking(false).unwrap();
}

/// Checks the exact 4-byte prefix and returns the JSON text.
pub fn unprefix(bytes: &[u8]) -> String {
    assert!(bytes.len() >= 4, "message shorter than its prefix");
    let length = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    assert_eq!(length, bytes.len() - 4, "relay wrote an exact prefix");
    String::from_utf8(bytes[4..].to_vec()).expect("relay wrote UTF-8")
}

// ---------------------------------------------------------------- raw JSON via tungstenite

/// The next data message of a tungstenite client as raw JSON text (Pings and
/// Pongs skipped).
pub fn recv_text(client: &mut Client) -> String {
    loop {
        match client.ws.read() {
            Ok(Message::Binary(bytes)) => return unprefix(&bytes),
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
}

/// Checks that `raw` is compact JSON with the envelope members and then exactly
/// `payload_keys`, in that order, a `version` of 1 and a `timestamp` of now; returns
/// the parsed value.
pub fn expect_layout(raw: &str, payload_keys: &[&str]) -> Value {
    let value: Value = serde_json::from_str(raw).unwrap_or_else(|e| panic!("{e}: {raw}"));
    let mut rebuilt = format!(
        "{{\"version\":{},\"message_id\":{},\"timestamp\":{},\"payload\":{{",
        value["version"], value["message_id"], value["timestamp"]
    );
    for (i, key) in payload_keys.iter().enumerate() {
        if i > 0 {
            rebuilt.push(',');
        }
        let member = value["payload"]
            .get(*key)
            .unwrap_or_else(|| panic!("payload lacks {key}: {raw}"));
        rebuilt.push_str(&format!("{}:{}", json!(key), member));
    }
    rebuilt.push_str("}}");
    assert_eq!(raw, rebuilt, "member order, members or compactness");
    assert_eq!(value["version"], 1, "{raw}");
    let timestamp = value["timestamp"].as_u64().expect("u64 timestamp");
    assert!(now().abs_diff(timestamp) <= 5, "timestamp is now: {raw}");
    value
}

/// A relay-made id: UUID version 4, lower case, hyphenated, 36 characters.
pub fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            14 => c == b'4',
            19 => matches!(c, b'8' | b'9' | b'a' | b'b'),
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

/// Error layout of §5.14 without `retry_after_secs`; returns (code, message_id).
pub fn expect_error(raw: &str) -> (String, Value) {
    let value = expect_layout(raw, &["type", "code", "reason", "message_id"]);
    assert_eq!(value["payload"]["type"], "Error", "{raw}");
    assert!(is_uuid_v4(value["message_id"].as_str().unwrap()), "{raw}");
    let reason = value["payload"]["reason"].as_str().unwrap();
    assert!(!reason.is_empty() && reason.len() <= 200, "{raw}");
    (
        value["payload"]["code"].as_str().unwrap().to_owned(),
        value["payload"]["message_id"].clone(),
    )
}

// ---------------------------------------------------------------- authenticated Handshake

/// An Ed25519 identity whose public key hex is the client_id.
pub struct Identity {
    pub key: SigningKey,
    pub id: String,
}

impl Identity {
    pub fn fresh() -> Identity {
        Identity::from_seed(random32())
    }
    pub fn from_seed(seed: [u8; 32]) -> Identity {
        let key = SigningKey::from_bytes(&seed);
        let id = hex::encode(key.verifying_key().to_bytes());
        Identity { key, id }
    }
    /// Signs `nonce || timestamp_be` (§4.3 step 5) and returns the signature hex.
    pub fn sign(&self, nonce: &[u8; 32], timestamp: u64) -> String {
        let mut message = nonce.to_vec();
        message.extend(timestamp.to_be_bytes());
        hex::encode(self.key.sign(&message).to_bytes())
    }
    /// The payload of a signed Handshake at `timestamp`.
    pub fn handshake_payload(&self, nonce: &[u8; 32], timestamp: u64) -> Value {
        json!({
            "type": "Handshake",
            "client_id": self.id,
            "identity_public_key": self.id,
            "nonce": hex::encode(nonce),
            "signature": self.sign(nonce, timestamp),
            "timestamp": timestamp,
        })
    }
}

pub fn envelope_of(payload: Value) -> String {
    json!({"version": 1, "message_id": "hs", "timestamp": 1767225600u64, "payload": payload})
        .to_string()
}

/// Sends `json` as the first message and returns what came first: the
/// HandshakeAck's payload type, or the Close.
pub fn first_reply(addr: SocketAddr, first: &[u8], text: bool) -> Event {
    let mut ws = RawWs::connect(addr);
    ws.send_frame(if text { 0x81 } else { 0x82 }, first, true);
    ws.next_event()
}

/// Fills `buf` from a stream with a read timeout: false at the end of the
/// connection; panics when the relay sent nothing for the timeout (`STUCK`).
pub fn read_exact_or_eof(stream: &mut TcpStream, buf: &mut [u8]) -> bool {
    match stream.read_exact(buf) {
        Ok(()) => true,
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut =>
        {
            panic!("the relay sent nothing for {STUCK:?}")
        }
        Err(_) => false,
    }
}
