//! The owner shard's rules driven by hand, with the memory store and a manual
//! clock, without sockets or threads: shards built with `runtime::assemble`, mesh
//! messages and store completions delivered by the test, sessions opened through
//! the registry and fed through the §3.6 pipeline, and a session's connection
//! state machine fed raw frames at times the test chooses.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use vauchi_relay::config::Config;
use vauchi_relay::mesh::{self, MeshMessage};
use vauchi_relay::process::{Clock, ManualTime, Shared};
use vauchi_relay::protocol::{Id64, decode, shard_of};
use vauchi_relay::shard::runtime::{self, ShardIndex, ShardParts};
use vauchi_relay::shard::session::connection::{Connection, Flow, Phase};
use vauchi_relay::shard::session::outbound::SessionHandle;
use vauchi_relay::shard::session::{registry, requests};
use vauchi_relay::shard::{Shard, backlog, dispatch, owner};
use vauchi_relay::storage::memory::MemoryStore;
use vauchi_relay::storage::writer::Completion;

use crate::common::{A, B, ack_json, frame, handshake_json, update_json};
use crate::wire::encode_frame;

const START_UNIX: u64 = 1_767_225_600;

/// Shards of one process, driven by the test.
struct Bench {
    shards: Vec<Rc<Shard>>,
    inboxes: Vec<flume::Receiver<MeshMessage>>,
    completions: Vec<flume::Receiver<Completion>>,
    clock: Arc<ManualTime>,
}

/// A session opened on its owner shard.
struct Session {
    shard: usize,
    handle: Rc<SessionHandle>,
}

impl Bench {
    fn new(shards: usize, vars: &[(&str, &str)]) -> Bench {
        let config = Arc::new(Config::from_vars(vars.iter().copied()).unwrap().config);
        let shared = Arc::new(Shared::new(shards));
        let (senders, inboxes) = mesh::channels(shards);
        let (clock, hand) = Clock::manual(START_UNIX);
        let mut built = Vec::new();
        let mut completions = Vec::new();
        for index in 0..shards {
            let (storage, done) = runtime::inline_storage(Box::new(MemoryStore::new()));
            let parts = ShardParts {
                index,
                config: Arc::clone(&config),
                shared: Arc::clone(&shared),
                senders: senders.clone(),
                storage,
                clock: clock.clone(),
                federation: None,
            };
            let empty = ShardIndex {
                blobs: Vec::new(),
                device_sync: Vec::new(),
                proofs: Vec::new(),
                hints: Vec::new(),
            };
            built.push(runtime::assemble(parts, empty));
            completions.push(done);
        }
        Bench {
            shards: built,
            inboxes,
            completions,
            clock: hand,
        }
    }

    /// Delivers every mesh message and store completion until nothing moves.
    fn settle(&self) {
        loop {
            let mut moved = false;
            for (index, shard) in self.shards.iter().enumerate() {
                while let Ok(message) = self.inboxes[index].try_recv() {
                    dispatch::handle(shard, message);
                    moved = true;
                }
                while let Ok(completion) = self.completions[index].try_recv() {
                    runtime::complete(shard, completion);
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn owner_of(&self, id: &str) -> usize {
        shard_of(&Id64::parse(id).unwrap(), self.shards.len())
    }

    /// Opens a session for `client_id` on its owner shard, as a hand-off would.
    fn open(&self, client_id: &str) -> Session {
        let handshake = decode::decode_handshake(&frame(&handshake_json(client_id))).unwrap();
        let shard = self.owner_of(client_id);
        let handle = registry::open(&self.shards[shard], &handshake, false);
        self.settle();
        Session { shard, handle }
    }

    fn close(&self, session: Session) {
        registry::close(&self.shards[session.shard], &session.handle);
        self.settle();
    }

    /// One request through the pipeline of §3.6.
    fn send(&self, session: &Session, json: &str) {
        let shard = &self.shards[session.shard];
        requests::handle_message(shard, &session.handle, true, frame(json));
        self.settle();
    }

    /// Takes every frame the session would write now, in order, as its socket loop
    /// does: a blob counts as written (and may notify its sender) once taken, and
    /// the connect-time backlog moves on once its chunk is out.
    fn written(&self, session: &Session) -> Vec<Value> {
        let shard = &self.shards[session.shard];
        let mut frames = Vec::new();
        loop {
            let mut next = session.handle.out.borrow_mut().next_frame();
            if next.is_none() {
                backlog::pump(shard, &session.handle);
                self.settle();
                next = session.handle.out.borrow_mut().next_frame();
            }
            let Some(out) = next else { return frames };
            frames.push(serde_json::from_slice(&out.bytes[4..]).unwrap());
            if let Some(blob) = out.blob {
                owner::blob_written(shard, &session.handle, &blob);
                self.settle();
            }
        }
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

fn kind(frame: &Value) -> &str {
    frame["payload"]["type"].as_str().unwrap_or("")
}

/// Client ids whose routing ids live on shard 0 and on shard 1 of two.
fn one_on_each_shard() -> (String, String) {
    let mut on = [None, None];
    for n in 0u32.. {
        let id = format!("{:064x}", 0xabc0_0000u64 + n as u64);
        let shard = shard_of(&Id64::parse(&id).unwrap(), 2);
        on[shard].get_or_insert(id);
        if on.iter().all(Option::is_some) {
            break;
        }
    }
    let [Some(zero), Some(one)] = on else {
        unreachable!()
    };
    (zero, one)
}

fn vars<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut vars = vec![("RELAY_RATE_LIMIT", "1000")];
    vars.extend_from_slice(extra);
    vars
}

#[test]
fn stored_comes_before_delivered_and_the_recipient_gets_the_blob_once() {
    let (sender_id, recipient_id) = one_on_each_shard();
    let bench = Bench::new(2, &vars(&[]));
    let sender = bench.open(&sender_id);
    let recipient = bench.open(&recipient_id);
    assert_eq!(kind(&bench.written(&sender)[0]), "HandshakeAck");
    assert_eq!(kind(&bench.written(&recipient)[0]), "HandshakeAck");

    bench.send(&sender, &update_json("m1", &recipient_id, b"hello"));
    let pushed = bench.written(&recipient);
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert_eq!(kind(&pushed[0]), "EncryptedUpdate");
    let blob_id = pushed[0]["message_id"].as_str().unwrap().to_owned();
    // The recipient's write happened before the sender read anything: its
    // Delivered still comes after the Stored ack of the same blob (§7.3).
    let replies = bench.written(&sender);
    let statuses: Vec<&Value> = replies.iter().map(|r| &r["payload"]["status"]).collect();
    assert_eq!(statuses, ["Stored", "Delivered"], "{replies:?}");
    assert_eq!(replies[0]["payload"]["message_id"], "m1");
    assert_eq!(replies[0]["payload"]["blob_id"], blob_id.as_str());
    assert_eq!(replies[1]["payload"]["message_id"], blob_id.as_str());
    assert!(
        bench.written(&recipient).is_empty(),
        "pushed once per session"
    );

    // Unacked, it is delivered again to the next session, once.
    bench.close(recipient);
    let again = bench.open(&recipient_id);
    let frames = bench.written(&again);
    let kinds: Vec<&str> = frames.iter().map(kind).collect();
    assert_eq!(kinds, ["HandshakeAck", "EncryptedUpdate"], "{frames:?}");
    assert_eq!(frames[1]["message_id"], blob_id.as_str());
    // Acked, it is gone, and the sender hears that it was received.
    bench.send(&again, &ack_json(&blob_id, "ReceivedByRecipient"));
    bench.close(again);
    let last = bench.open(&recipient_id);
    assert_eq!(bench.written(&last).len(), 1, "only the HandshakeAck");
    let told: Vec<Value> = bench.written(&sender);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["payload"]["status"], "ReceivedByRecipient");
}

#[test]
fn replies_keep_request_order_across_shards() {
    let (zero, one) = one_on_each_shard();
    let bench = Bench::new(2, &vars(&[]));
    let sender = bench.open(A);
    bench.written(&sender);
    for (i, recipient) in [&zero, &one, &zero, &one, B].iter().enumerate() {
        let json = update_json(&format!("m{i}"), recipient, &[i as u8]);
        // Queued without settling in between: the owner shards answer in any order.
        let shard = &bench.shards[sender.shard];
        requests::handle_message(shard, &sender.handle, true, frame(&json));
    }
    bench.settle();
    let replies = bench.written(&sender);
    let ids: Vec<&str> = replies
        .iter()
        .map(|r| r["payload"]["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m0", "m1", "m2", "m3", "m4"]);
    assert!(replies.iter().all(|r| r["payload"]["status"] == "Stored"));
}

#[test]
fn a_blob_stored_while_the_backlog_loads_is_delivered_exactly_once() {
    let bench = Bench::new(1, &vars(&[]));
    let sender = bench.open(A);
    for i in 0..3 {
        bench.send(&sender, &update_json(&format!("m{i}"), B, &[i]));
    }
    let recipient = bench.open(B);
    // The snapshot holds three; a fourth commits before the session has read any.
    bench.send(&sender, &update_json("m3", B, &[3]));
    let frames = bench.written(&recipient);
    let blobs: Vec<&str> = frames
        .iter()
        .filter(|f| kind(f) == "EncryptedUpdate")
        .map(|f| f["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(blobs.len(), 4, "{frames:?}");
    let mut unique = blobs.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 4, "no blob twice: {blobs:?}");
}

#[test]
fn the_quota_counts_live_blobs_and_expiry_frees_it() {
    let bench = Bench::new(
        1,
        &vars(&[
            ("RELAY_MAX_BLOBS_PER_USER", "2"),
            ("RELAY_BLOB_TTL_SECS", "60"),
        ]),
    );
    let sender = bench.open(A);
    bench.written(&sender);
    for i in 0..3 {
        bench.send(&sender, &update_json(&format!("m{i}"), B, &[i]));
    }
    let statuses: Vec<Value> = bench
        .written(&sender)
        .iter()
        .map(|r| r["payload"]["status"].clone())
        .collect();
    assert_eq!(statuses, ["Stored", "Stored", "Failed"]);
    // Past the TTL the two no longer count (§9), and cleanup removes them.
    bench.advance(Duration::from_secs(61));
    bench.send(&sender, &update_json("m3", B, &[3]));
    assert_eq!(bench.written(&sender)[0]["payload"]["status"], "Stored");
    let shard = &bench.shards[0];
    assert_eq!(
        shard.shared.blob_count(),
        3,
        "expired but not cleaned up yet"
    );
    runtime::expire(shard);
    bench.settle();
    assert_eq!(shard.metrics().blobs_expired_total.get(), 2);
    assert_eq!(shard.shared.blob_count(), 1);
    let recipient = bench.open(B);
    let frames = bench.written(&recipient);
    let kinds: Vec<&str> = frames.iter().map(kind).collect();
    assert_eq!(
        kinds,
        ["HandshakeAck", "EncryptedUpdate"],
        "only the fresh one"
    );
}

#[test]
fn the_rate_bucket_refills_with_the_clock() {
    let bench = Bench::new(1, &[("RELAY_RATE_LIMIT", "2")]);
    let sender = bench.open(A);
    bench.written(&sender);
    for i in 0..3 {
        bench.send(&sender, &update_json(&format!("m{i}"), B, &[i]));
    }
    let replies = bench.written(&sender);
    assert_eq!(replies[2]["payload"]["code"], "rate_limited", "{replies:?}");
    // Two tokens a minute: the next whole one is 30 s away (§8).
    let retry = replies[2]["payload"]["retry_after_secs"].as_u64().unwrap();
    assert_eq!(retry, 30);
    bench.advance(Duration::from_secs(retry - 1));
    bench.send(&sender, &update_json("m3", B, &[3]));
    assert_eq!(bench.written(&sender)[0]["payload"]["code"], "rate_limited");
    bench.advance(Duration::from_secs(1));
    bench.send(&sender, &update_json("m4", B, &[4]));
    assert_eq!(bench.written(&sender)[0]["payload"]["status"], "Stored");
}

// ---- the connection state machine, fed raw frames --------------------------------

fn client_binary(json: &str) -> Vec<u8> {
    encode_frame(0x82, &frame(json), true)
}

fn client_close(code: u16) -> Vec<u8> {
    encode_frame(0x88, &code.to_be_bytes(), true)
}

/// Writes everything the connection has for the socket; returns the frames'
/// first bytes and payloads (server frames are unmasked, short here).
fn flush(bench: &Bench, session: &Session, conn: &mut Connection, now: Instant) -> Vec<Vec<u8>> {
    let shard = &bench.shards[session.shard];
    let mut frames = Vec::new();
    loop {
        conn.prepare_output(shard, &session.handle, now);
        let bytes = conn.unwritten().to_vec();
        conn.wrote(shard, &session.handle, bytes.len());
        bench.settle();
        frames.extend(split_frames(&bytes));
        let flow = conn.after_write(&session.handle, now);
        if flow != Flow::Again && bytes.is_empty() {
            return frames;
        }
    }
}

/// A session with its connection, opened at the returned instant, HandshakeAck
/// written.
fn connected(bench: &Bench, client_id: &str, idle_secs: u64) -> (Session, Connection, Instant) {
    let session = bench.open(client_id);
    let max = bench.shards[session.shard].config.max_message_size;
    let now = Instant::now();
    let mut conn = Connection::new(max, Duration::from_secs(idle_secs), now);
    flush(bench, &session, &mut conn, now);
    (session, conn, now)
}

fn split_frames(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (len, header) = match bytes[1] & 0x7f {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let mut frame = vec![bytes[0]];
        frame.extend_from_slice(&bytes[header..header + len]);
        frames.push(frame);
        bytes = &bytes[header + len..];
    }
    frames
}

#[test]
fn the_idle_timer_counts_from_the_last_frame_and_closes_with_1000() {
    let bench = Bench::new(1, &vars(&[]));
    let (session, mut conn, start) = connected(&bench, A, 10);
    let shard = &bench.shards[0];
    let ping = encode_frame(0x89, b"p", true);
    conn.received(
        shard,
        &session.handle,
        &ping,
        start + Duration::from_secs(8),
    );
    // Due at 10 s from the start, the timer finds the ping and waits until 18 s.
    assert!(!conn.timer_fired(&session.handle, start + Duration::from_secs(10)));
    assert_eq!(conn.deadline(), start + Duration::from_secs(18));
    let frames = flush(&bench, &session, &mut conn, start + Duration::from_secs(10));
    assert_eq!(frames, [vec![0x8a, b'p']], "the pong, no close yet");
    assert!(!conn.timer_fired(&session.handle, start + Duration::from_secs(18)));
    let frames = flush(&bench, &session, &mut conn, start + Duration::from_secs(18));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0][0], 0x88);
    assert_eq!(&frames[0][1..3], &1000u16.to_be_bytes());
    assert_eq!(conn.phase(), Phase::Closing);
    // The peer's Close ends it at once, before the close wait.
    conn.received(
        shard,
        &session.handle,
        &client_close(1000),
        start + Duration::from_secs(19),
    );
    assert_eq!(conn.phase(), Phase::Done);
    assert_eq!(conn.after_write(&session.handle, start), Flow::End);
}

#[test]
fn a_client_close_is_echoed_only_after_the_replies_it_waited_for() {
    let (here, there) = one_on_each_shard();
    let bench = Bench::new(2, &vars(&[]));
    let (session, mut conn, now) = connected(&bench, &here, 60);
    let shard = &bench.shards[session.shard];
    // A store on the other shard, and the Close right behind it, in one read; the
    // reply is not in yet when the Close is read.
    let mut bytes = client_binary(&update_json("m1", &there, b"x"));
    bytes.extend_from_slice(&client_close(4000));
    requests_without_settling(&bench, &session, &mut conn, &bytes, now);
    assert_eq!(conn.phase(), Phase::ClientClosed { code: 4000 });
    assert!(flush_without_settling(shard, &session, &mut conn, now).is_empty());
    bench.settle();
    let frames = flush(&bench, &session, &mut conn, now);
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0][0], 0x82);
    let reply: Value = serde_json::from_slice(&frames[0][5..]).unwrap();
    assert_eq!(reply["payload"]["status"], "Stored");
    assert_eq!(
        frames[1],
        [vec![0x88], 4000u16.to_be_bytes().to_vec()].concat()
    );
    assert_eq!(conn.after_write(&session.handle, now), Flow::End);
}

fn requests_without_settling(
    bench: &Bench,
    session: &Session,
    conn: &mut Connection,
    bytes: &[u8],
    now: Instant,
) {
    conn.received(&bench.shards[session.shard], &session.handle, bytes, now);
}

fn flush_without_settling(
    shard: &Rc<Shard>,
    session: &Session,
    conn: &mut Connection,
    now: Instant,
) -> Vec<Vec<u8>> {
    conn.prepare_output(shard, &session.handle, now);
    let bytes = conn.unwritten().to_vec();
    conn.wrote(shard, &session.handle, bytes.len());
    assert_eq!(conn.after_write(&session.handle, now), Flow::Read);
    split_frames(&bytes)
}

#[test]
fn back_pressure_stops_reading_at_the_pipelining_window() {
    let (here, there) = one_on_each_shard();
    let bench = Bench::new(
        2,
        &vars(&[
            ("RELAY_RATE_LIMIT", "100000"),
            ("RELAY_MAX_BLOBS_PER_USER", "10000"),
        ]),
    );
    let (session, mut conn, now) = connected(&bench, &here, 60);
    let shard = &bench.shards[session.shard];
    let window = vauchi_relay::limits::PIPELINED_REQUESTS_MAX;
    for i in 0..window {
        assert!(conn.may_read(&session.handle), "request {i}");
        let json = update_json(&format!("m{i}"), &there, b"x");
        conn.received(shard, &session.handle, &client_binary(&json), now);
    }
    // Every slot waits on the other shard: no more reading until replies leave.
    assert!(!conn.may_read(&session.handle));
    bench.settle();
    let frames = flush(&bench, &session, &mut conn, now);
    assert_eq!(frames.len(), window);
    for frame in &frames {
        let reply: Value = serde_json::from_slice(&frame[5..]).unwrap();
        assert_eq!(reply["payload"]["status"], "Stored", "{reply}");
    }
    assert!(conn.may_read(&session.handle));
}

#[test]
fn the_close_wait_ends_a_connection_whose_peer_never_answers_our_close() {
    let bench = Bench::new(1, &vars(&[]));
    let (session, mut conn, start) = connected(&bench, A, 60);
    let shard = &bench.shards[0];
    // An unmasked frame: 1002, then the close wait (§2.7).
    conn.received(
        shard,
        &session.handle,
        &encode_frame(0x82, b"x", false),
        start,
    );
    let frames = flush(&bench, &session, &mut conn, start);
    assert_eq!(frames.len(), 1);
    assert_eq!(&frames[0][..3], &[0x88, 0x03, 0xea], "1002 first");
    assert_eq!(conn.phase(), Phase::Closing);
    let wait = vauchi_relay::limits::CLOSE_WAIT;
    assert_eq!(conn.deadline(), start + wait);
    assert!(!conn.timer_fired(&session.handle, start + wait - Duration::from_millis(1)));
    assert!(conn.timer_fired(&session.handle, start + wait));
}

#[test]
fn a_draining_session_finishes_its_replies_then_closes_with_1001() {
    let (here, there) = one_on_each_shard();
    let bench = Bench::new(2, &vars(&[]));
    let (session, mut conn, now) = connected(&bench, &here, 60);
    let shard = &bench.shards[session.shard];
    let json = update_json("m1", &there, b"x");
    conn.received(shard, &session.handle, &client_binary(&json), now);
    owner::shut_down(shard);
    assert!(
        !conn.may_read(&session.handle),
        "draining stops reading (§14.1)"
    );
    assert!(flush_without_settling(shard, &session, &mut conn, now).is_empty());
    bench.settle();
    let frames = flush(&bench, &session, &mut conn, now);
    assert_eq!(frames.len(), 2, "{frames:?}");
    let reply: Value = serde_json::from_slice(&frames[0][5..]).unwrap();
    assert_eq!(reply["payload"]["status"], "Stored");
    assert_eq!(&frames[1][..3], &[0x88, 0x03, 0xe9], "then 1001");
    assert_eq!(conn.phase(), Phase::Closing);
}

/// A server frame's payload from a Noise connection, opened by the client, as JSON.
fn open_json(client: &mut snow::TransportState, sealed: &[u8]) -> Value {
    let mut plain = vec![0u8; sealed.len()];
    let n = client.read_message(sealed, &mut plain).unwrap();
    serde_json::from_slice(&plain[4..n]).unwrap()
}

/// §15.1 by hand: a Noise connection seals every frame it writes, opens what it
/// reads (here a request split over two messages), and closes in clear with 1008
/// `decryption failed` on a message that does not decrypt.
#[test]
fn a_noise_connection_seals_what_it_writes_and_refuses_what_does_not_open() {
    let bench = Bench::new(1, &vars(&[]));
    let session = bench.open(A);
    let shard = &bench.shards[0];
    let max = shard.config.max_message_size;
    let (mut client, channel) = crate::noise::opened(max + 4);
    let now = Instant::now();
    let mut conn =
        Connection::new(max, Duration::from_secs(300), now).with_noise(Box::new(channel));
    let frames = flush(&bench, &session, &mut conn, now);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0][0], 0x82);
    let ack = open_json(&mut client, &frames[0][1..]);
    assert_eq!(ack["payload"]["type"], "HandshakeAck");
    let request = frame(&update_json("n1", B, &[1, 2]));
    let mut bytes = encode_frame(0x82, &crate::noise::seal(&mut client, &request[..10]), true);
    bytes.extend(encode_frame(
        0x82,
        &crate::noise::seal(&mut client, &request[10..]),
        true,
    ));
    conn.received(shard, &session.handle, &bytes, now);
    bench.settle();
    let frames = flush(&bench, &session, &mut conn, now);
    assert_eq!(frames.len(), 1);
    let stored = open_json(&mut client, &frames[0][1..]);
    assert_eq!(stored["payload"]["status"], "Stored", "{stored}");
    let mut bad = crate::noise::seal(&mut client, &frame(&update_json("n2", B, &[3])));
    bad[0] ^= 1;
    conn.received(shard, &session.handle, &encode_frame(0x82, &bad, true), now);
    let frames = flush(&bench, &session, &mut conn, now);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0][0], 0x88);
    assert_eq!(&frames[0][1..3], &1008u16.to_be_bytes());
    assert_eq!(&frames[0][3..], b"decryption failed");
    assert_eq!(conn.phase(), Phase::Closing);
}
