//! Hostile traffic in volume against the relay binary (issue #8), starting with Ping
//! floods. Each case checks that the relay stays up, that its memory stays bounded,
//! that every offending connection gets what PROTOCOL.md specifies, and that an
//! honest client connected meanwhile still stores a blob and its recipient
//! receives it.
//!
//! Memory is read from /proc/<relay pid>/status: `VmRSS` once the relay has served
//! a first honest exchange (the baseline), and `VmHWM`, the peak RSS, after the
//! attack, so that memory held only while the attack ran counts too. Each bound is
//! the baseline, plus a per-connection allowance stated next to the case, plus
//! `SLACK_KIB`.

mod common;
mod wire;

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use wire::*;

/// Fixed slack on every memory bound: the allocator's per-thread arenas and the
/// caches and maps a shard grows once under load and keeps (a few MiB each on two
/// shards), far below what any of the attacks would pin if the relay buffered it.
const SLACK_KIB: u64 = 16 * 1024;

/// The relay's memory at the start of a case.
struct MemoryWatch {
    pid: u32,
    baseline_kib: u64,
}

impl MemoryWatch {
    fn start(relay: &Relay) -> MemoryWatch {
        let pid = relay.child.id();
        MemoryWatch {
            pid,
            baseline_kib: status_kib(pid, "VmRSS"),
        }
    }

    /// Asserts that the peak RSS stayed within the baseline plus
    /// `connections` x `per_connection_kib` plus `SLACK_KIB`.
    fn assert_bounded(&self, label: &str, connections: usize, per_connection_kib: u64) {
        let rss = status_kib(self.pid, "VmRSS");
        let peak = status_kib(self.pid, "VmHWM");
        let bound = self.baseline_kib + connections as u64 * per_connection_kib + SLACK_KIB;
        eprintln!(
            "{label}: relay RSS {} KiB before, {rss} KiB now, peak {peak} KiB, bound {bound} KiB",
            self.baseline_kib
        );
        assert!(
            peak <= bound,
            "{label}: the relay's peak RSS {peak} KiB exceeds {} KiB + {connections} x \
             {per_connection_kib} KiB + {SLACK_KIB} KiB",
            self.baseline_kib
        );
    }
}

/// The relay process has not exited.
fn assert_alive(relay: &mut Relay, label: &str) {
    let status = relay.child.try_wait().expect("wait on the relay");
    assert!(status.is_none(), "{label}: the relay exited: {status:?}");
}

/// An honest client pair: a recipient and a sender, both past their Handshake.
struct Honest {
    sender: Client,
    recipient: Client,
    recipient_id: String,
}

impl Honest {
    fn connect(addr: SocketAddr) -> Honest {
        let sender = Client::handshake(addr, &fresh_id());
        Honest::with_sender(addr, sender)
    }

    fn with_sender(addr: SocketAddr, sender: Client) -> Honest {
        let recipient_id = fresh_id();
        let recipient = Client::handshake(addr, &recipient_id);
        Honest {
            sender,
            recipient,
            recipient_id,
        }
    }

    /// The sender stores a blob for the recipient and gets `Stored`; the recipient
    /// receives exactly that blob live and acks it; the sender hears
    /// `ReceivedByRecipient`.
    fn exchange(mut self, label: &str) {
        let ciphertext = label.as_bytes().to_vec();
        self.sender
            .send_json(&update_json("honest", &self.recipient_id, &ciphertext));
        let ack = self.sender.recv_json();
        assert_eq!(ack["payload"]["status"], "Stored", "{label}: {ack}");
        assert_eq!(ack["payload"]["message_id"], "honest", "{label}: {ack}");
        let blob_id = ack["payload"]["blob_id"].as_str().unwrap().to_owned();
        let delivered = self.recipient.recv_json();
        assert_eq!(
            delivered["payload"]["type"], "EncryptedUpdate",
            "{label}: {delivered}"
        );
        assert_eq!(delivered["message_id"], blob_id.as_str(), "{label}");
        assert_eq!(delivered["payload"]["ciphertext"], json!(ciphertext));
        self.recipient
            .send_json(&ack_json(&blob_id, "ReceivedByRecipient"));
        loop {
            let notification = self.sender.recv_json();
            assert_eq!(
                notification["payload"]["message_id"],
                blob_id.as_str(),
                "{label}: {notification}"
            );
            if notification["payload"]["status"] == "ReceivedByRecipient" {
                break;
            }
            assert_eq!(notification["payload"]["status"], "Delivered", "{label}");
        }
        self.sender.close();
        self.recipient.close();
    }
}

/// A fresh honest pair's exchange.
fn honest_exchange(addr: SocketAddr, label: &str) {
    Honest::connect(addr).exchange(label);
}

/// Starts a relay for one case and has it serve a first honest exchange, so that
/// the memory baseline includes what any first session allocates.
fn start(label: &str, vars: &[(&str, &str)]) -> (TempDir, Relay, MemoryWatch) {
    let dir = TempDir::new(label);
    let relay = Relay::start(dir.path(), vars);
    honest_exchange(relay.addr, "warm-up");
    let memory = MemoryWatch::start(&relay);
    (dir, relay, memory)
}

/// Deterministic noise (xorshift64*).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// A session: upgraded and past its Handshake.
fn open_session(addr: SocketAddr) -> RawWs {
    let mut ws = RawWs::connect(addr);
    ws.send_json(&handshake_json(&fresh_id()));
    let ack: Value = serde_json::from_str(&ws.recv_text()).unwrap();
    assert_eq!(ack["payload"]["type"], "HandshakeAck");
    ws
}

// ---------------------------------------------------------------- (b) Ping floods

/// Connections that flood Pings after their Handshake, and before it.
const PING_FLOOD_SESSIONS: usize = 4;
const PING_FLOOD_PRE_HANDSHAKE: usize = 4;
/// Bytes of Pings each flooding session writes (without reading) before it starts
/// reading its Pongs: far more than the kernel buffers of a connection hold (the
/// relay's send buffer grows to 4 MiB), so that Pongs the relay kept would show.
const PING_FLOOD_BYTES: usize = 24 * 1024 * 1024;
/// Bytes of Pings each pre-Handshake flooder writes.
const PING_FLOOD_PRE_HANDSHAKE_BYTES: usize = 1024 * 1024;
/// Rounds of no progress at all, `FLOOD_STALL_POLL` apart, after which the flooders
/// take the relay to have stopped reading them (TCP back-pressure). A spurious stall
/// on a slow machine only ends the flood phase early; it cannot fail the test.
const FLOOD_STALLED_ROUNDS: u32 = 20;
const FLOOD_STALL_POLL: Duration = Duration::from_millis(10);

/// The largest control payload (RFC 6455 §5.5).
const PING_PAYLOAD_BYTES: usize = 125;
/// A masked Ping with a 125-byte payload: 2 + 4 + 125 bytes.
const PING_FRAME_BYTES: usize = 131;

/// Ping `index` of flooder `connection`: its payload names both.
fn ping_payload(connection: usize, index: usize) -> Vec<u8> {
    let mut payload = noise((connection as u64) << 32 | index as u64, PING_PAYLOAD_BYTES);
    payload[..8].copy_from_slice(&(connection as u64).to_be_bytes());
    payload[8..16].copy_from_slice(&(index as u64).to_be_bytes());
    payload
}

struct Flooder {
    ws: RawWs,
    /// Every byte this connection will write.
    bytes: Vec<u8>,
    written: usize,
    /// Set when the relay closed the connection under the flood.
    failed: Option<std::io::Error>,
}

impl Flooder {
    fn new(ws: RawWs, bytes: Vec<u8>) -> Flooder {
        Flooder {
            ws,
            bytes,
            written: 0,
            failed: None,
        }
    }

    fn writing(&self) -> bool {
        self.failed.is_none() && self.written < self.bytes.len()
    }
}

/// Writes every flooder's bytes without reading anything, until each has written
/// all, has had its connection closed, or nothing could be written for
/// `FLOOD_STALLED_ROUNDS` rounds (the relay stopped reading).
fn flood(flooders: &mut [Flooder]) {
    for flooder in flooders.iter() {
        flooder.ws.stream.set_nonblocking(true).unwrap();
    }
    let mut stalled = 0;
    while stalled < FLOOD_STALLED_ROUNDS && flooders.iter().any(Flooder::writing) {
        let mut progress = false;
        for flooder in flooders.iter_mut().filter(|f| f.writing()) {
            match flooder.ws.stream.write(&flooder.bytes[flooder.written..]) {
                Ok(n) => {
                    flooder.written += n;
                    progress |= n > 0;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => flooder.failed = Some(e),
            }
        }
        if progress {
            stalled = 0;
        } else {
            stalled += 1;
            std::thread::sleep(FLOOD_STALL_POLL);
        }
    }
    for flooder in flooders.iter() {
        flooder.ws.stream.set_nonblocking(false).unwrap();
    }
}

#[test]
fn ping_floods_are_answered_in_full_without_piling_up_pongs() {
    // §2.6: the relay answers every Ping with a Pong carrying the same payload, and
    // Pings take no rate-limit token (§8), so a client that floods Pings without
    // reading its Pongs must be slowed by TCP back-pressure rather than by the
    // relay buffering Pongs: every Pong is still sent, in order, once it reads.
    let (_dir, mut relay, memory) = start(
        "attack-ping",
        &[
            ("RELAY_SHARDS", "2"),
            ("RELAY_STORAGE_BACKEND", "memory"),
            // The pre-Handshake flooders must not meet the handshake timer.
            ("RELAY_HANDSHAKE_TIMEOUT", "600"),
        ],
    );
    let mut flooders: Vec<Flooder> = (0..PING_FLOOD_SESSIONS + PING_FLOOD_PRE_HANDSHAKE)
        .map(|connection| {
            let session = connection < PING_FLOOD_SESSIONS;
            let ws = if session {
                open_session(relay.addr)
            } else {
                RawWs::connect(relay.addr)
            };
            let bytes = if session {
                PING_FLOOD_BYTES
            } else {
                PING_FLOOD_PRE_HANDSHAKE_BYTES
            };
            let frames = bytes / PING_FRAME_BYTES;
            let mut all = Vec::with_capacity(frames * PING_FRAME_BYTES);
            for index in 0..frames {
                all.extend(encode_frame(0x89, &ping_payload(connection, index), true));
            }
            Flooder::new(ws, all)
        })
        .collect();

    flood(&mut flooders);
    for (connection, flooder) in flooders.iter().enumerate() {
        assert!(
            flooder.failed.is_none(),
            "Ping flooder {connection} lost its connection: {:?}",
            flooder.failed
        );
    }
    let pings_written: usize = flooders.iter().map(|f| f.written).sum();
    eprintln!(
        "ping flood: {} MiB of Pings written before reading any Pong",
        pings_written >> 20
    );

    // The flooders hold their Pongs unread: an honest client is served meanwhile,
    // and the relay has not buffered what the flooders do not read.
    honest_exchange(relay.addr, "during the ping flood");
    // Per connection: the session's unwritten output (up to 64 KiB of coalesced
    // frames plus one 16 KiB read's worth of Pongs) and its read buffer, with
    // allocation slack; 256 KiB is several times that.
    let connections = flooders.len();
    memory.assert_bounded("ping flood, Pongs unread", connections, 256);

    // Now each flooder finishes its last Ping and reads: every Ping it wrote gets
    // its Pong, in order, with the same payload.
    for (connection, flooder) in flooders.iter_mut().enumerate() {
        let frames = flooder.written.div_ceil(PING_FRAME_BYTES);
        let end = frames * PING_FRAME_BYTES;
        let rest = flooder.bytes[flooder.written..end].to_vec();
        let mut writer = flooder.ws.stream.try_clone().unwrap();
        let finish = std::thread::spawn(move || writer.write_all(&rest));
        let mut reader =
            BufReader::with_capacity(64 * 1024, flooder.ws.stream.try_clone().unwrap());
        let mut pong = [0u8; 2 + PING_PAYLOAD_BYTES];
        for index in 0..frames {
            reader
                .read_exact(&mut pong)
                .unwrap_or_else(|e| panic!("Pong {index} of {frames} on {connection}: {e}"));
            assert_eq!(pong[..2], [0x8a, PING_PAYLOAD_BYTES as u8], "Pong header");
            assert!(
                pong[2..] == ping_payload(connection, index)[..],
                "Pong {index} on {connection} carries Ping {index}'s payload"
            );
        }
        finish.join().unwrap().unwrap();
        // The connection still works.
        if connection < PING_FLOOD_SESSIONS {
            flooder
                .ws
                .send_json(&update_json("after-pings", &fresh_id(), &[1]));
            let reply: Value = serde_json::from_str(&flooder.ws.recv_text()).unwrap();
            assert_eq!(reply["payload"]["status"], "Stored", "{reply}");
        } else {
            flooder.ws.send_json(&handshake_json(&fresh_id()));
            let ack: Value = serde_json::from_str(&flooder.ws.recv_text()).unwrap();
            assert_eq!(ack["payload"]["type"], "HandshakeAck", "{ack}");
        }
    }
    honest_exchange(relay.addr, "after the ping flood");
    memory.assert_bounded("ping flood, all answered", connections, 256);
    assert_alive(&mut relay, "ping flood");
}

// ---------------------------------------------------------------- (c) fragment floods

/// `RELAY_IDLE_TIMEOUT` in the slow-fragments case, and the pause between
/// fragments there: far apart, so only a scheduling stall of most of the timeout
/// could make the pause look like idleness.
const SLOW_FRAGMENTS_IDLE_TIMEOUT_SECS: u64 = 2;
const SLOW_FRAGMENT_PAUSE: Duration = Duration::from_millis(100);
/// Fragments sent that slowly: together they take longer than the idle timeout.
const SLOW_FRAGMENTS: usize = 30;

#[test]
fn continuation_frames_count_as_inbound_frames_for_the_idle_timer() {
    // §2.6: the session closes with 1000 `idle timeout` only if no frame, data or
    // control, arrives within RELAY_IDLE_TIMEOUT. Found red: the frames of an
    // unfinished fragmented message did not restart the timer, so a message sent
    // in fragments over longer than the timeout was cut off mid-way.
    let timeout = SLOW_FRAGMENTS_IDLE_TIMEOUT_SECS.to_string();
    let (_dir, mut relay, _memory) =
        start("attack-slow-fragments", &[("RELAY_IDLE_TIMEOUT", &timeout)]);
    let mut ws = open_session(relay.addr);
    let request = frame(&update_json("slow", B, &[1; 64]));
    ws.send_frame(0x02, &request[..1], true);
    for i in 1..SLOW_FRAGMENTS {
        std::thread::sleep(SLOW_FRAGMENT_PAUSE);
        ws.send_frame(0x00, &request[i..i + 1], true);
    }
    ws.send_frame(0x80, &request[SLOW_FRAGMENTS..], true);
    let reply: Value = serde_json::from_str(&ws.recv_text()).unwrap();
    assert_eq!(reply["payload"]["status"], "Stored", "{reply}");
    assert_eq!(reply["payload"]["message_id"], "slow", "{reply}");
    assert_alive(&mut relay, "slow fragments");
}
