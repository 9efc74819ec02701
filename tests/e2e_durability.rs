//! Durability against the relay binary: the exclusive lock on RELAY_DATA_DIR
//! (§10.3), resharding on a changed RELAY_SHARDS, also when killed mid-way (§10.5),
//! and the SIGKILL crash test: every blob acknowledged `Stored` before the kill is
//! delivered after the restart, once, and nothing that was never sent appears.
//!
//! The crash test runs `CRASH_ITERATIONS` iterations (default 1) with
//! `RELAY_SQLITE_SYNCHRONOUS=$CRASH_SYNCHRONOUS` (default normal);
//! `scripts/crash_loop.sh` runs it many times in both modes.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Condvar, Mutex};

use common::*;
use serde_json::Value;
use tungstenite::{Message, WebSocket};

/// Variables that let a test store as fast as it likes.
const UNLIMITED: [(&str, &str); 3] = [
    ("RELAY_RATE_LIMIT", "1000000"),
    ("RELAY_MAX_BLOBS_PER_USER", "0"),
    ("RELAY_MAX_STORAGE_PER_USER", "0"),
];

/// A random 64-hex id.
fn random_id() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Starts the binary with the test defaults of `Relay::start`, returning the child
/// and its stderr lines as they come.
fn spawn_relay(data_dir: &Path, vars: &[(&str, &str)]) -> (Child, Receiver<String>) {
    let mut command = relay_command(data_dir, vars);
    let mut child = command.spawn().expect("start the relay binary");
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines_rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines_rx)
}

/// Waits for the first line containing `needle`; the lines read on the way are
/// returned too. Panics after `STUCK` or at the end of the log.
fn wait_for_line(lines: &Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(STUCK) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(_) => panic!("no log line with {needle:?}; log so far: {seen:?}"),
        }
    }
}

#[test]
fn a_second_relay_on_the_same_data_dir_exits_with_status_1() {
    let dir = TempDir::new("lock");
    let _first = Relay::start(dir.path(), &[]);
    let (second, lines) = spawn_relay(dir.path(), &[]);
    let pid = second.id();
    let (done_tx, done_rx) = channel();
    std::thread::spawn(move || {
        let mut second = second;
        let _ = done_tx.send(second.wait());
    });
    let status = match done_rx.recv_timeout(STUCK) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on the pid of a child this test started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("the second relay did not exit by itself");
        }
    };
    assert_eq!(status.code(), Some(1), "{status:?}");
    // The reader thread may still hold lines the child wrote before exiting: read
    // until it reaches the end of the pipe and drops its sender.
    let mut log = Vec::new();
    while let Ok(line) = lines.recv_timeout(STUCK) {
        log.push(line);
    }
    assert!(
        log.iter()
            .any(|l| l.contains("RELAY_DATA_DIR") && l.contains("locked")),
        "the message names RELAY_DATA_DIR and the lock: {log:?}"
    );
}

/// Sends `count` blobs round-robin to `recipients` from one session, pipelined in
/// windows, and returns the blob ids per recipient in send order.
fn store_blobs(
    addr: SocketAddr,
    recipients: &[String],
    count: usize,
    data_bytes: usize,
) -> HashMap<String, Vec<String>> {
    const WINDOW: usize = 256;
    let mut sender = Client::handshake(addr, &random_id());
    let mut ids: HashMap<String, Vec<String>> = HashMap::new();
    let mut next = 0;
    while next < count {
        let end = (next + WINDOW).min(count);
        for i in next..end {
            let recipient = &recipients[i % recipients.len()];
            let mut data = format!("blob {i} ").into_bytes();
            data.resize(data_bytes.max(data.len()), b'.');
            sender.feed_json(&update_json(&format!("m{i}"), recipient, &data));
        }
        sender.flush();
        for i in next..end {
            let ack = sender.recv_json();
            assert_eq!(ack["payload"]["status"], "Stored", "{ack}");
            assert_eq!(ack["payload"]["message_id"], format!("m{i}"));
            let recipient = recipients[i % recipients.len()].clone();
            let blob_id = ack["payload"]["blob_id"].as_str().unwrap().to_owned();
            ids.entry(recipient).or_default().push(blob_id);
        }
        next = end;
    }
    sender.close();
    ids
}

const MARKER_PREFIX: &str = "end marker ";

/// Stores one end marker per recipient, then connects each recipient and reads its
/// deliveries up to the marker: everything stored before the marker, in delivery
/// order. The marker is stored last, so it is delivered last (§7.1 order). Markers
/// of earlier drains are skipped.
fn drain(addr: SocketAddr, recipients: &[String]) -> HashMap<String, Vec<(String, Vec<u8>)>> {
    let end = format!("{MARKER_PREFIX}{}", uuid::Uuid::new_v4()).into_bytes();
    let mut marker = Client::handshake(addr, &random_id());
    for (i, recipient) in recipients.iter().enumerate() {
        marker.send_json(&update_json(&format!("end{i}"), recipient, &end));
        let ack = marker.recv_json();
        assert_eq!(ack["payload"]["status"], "Stored", "{ack}");
    }
    let mut delivered = HashMap::new();
    for recipient in recipients {
        let mut client = Client::handshake(addr, recipient);
        let mut blobs = Vec::new();
        loop {
            let blob = client.recv_json();
            if blob["payload"]["type"] != "EncryptedUpdate" {
                continue;
            }
            let data: Vec<u8> =
                serde_json::from_value(blob["payload"]["ciphertext"].clone()).unwrap();
            if data == end {
                break;
            }
            if data.starts_with(MARKER_PREFIX.as_bytes()) {
                continue;
            }
            blobs.push((blob["message_id"].as_str().unwrap().to_owned(), data));
        }
        client.close();
        delivered.insert(recipient.clone(), blobs);
    }
    delivered
}

/// Asserts that each recipient received exactly its stored blobs, in store order.
fn assert_delivered_in_order(
    stored: &HashMap<String, Vec<String>>,
    delivered: &HashMap<String, Vec<(String, Vec<u8>)>>,
) {
    for (recipient, ids) in stored {
        let got: Vec<&String> = delivered[recipient].iter().map(|(id, _)| id).collect();
        assert_eq!(got.len(), ids.len(), "delivered count");
        assert!(
            got.iter().zip(ids).all(|(a, b)| *a == b),
            "every blob once, in store order"
        );
    }
}

#[test]
fn blobs_stored_with_two_shards_are_delivered_with_three_and_one() {
    let dir = TempDir::new("reshard-e2e");
    let recipients: Vec<String> = (0..6).map(|_| random_id()).collect();
    let mut vars = UNLIMITED.to_vec();
    vars.push(("RELAY_SHARDS", "2"));
    let stored = {
        let relay = Relay::start(dir.path(), &vars);
        store_blobs(relay.addr, &recipients, 120, 16)
    };
    for shards in ["3", "1"] {
        vars.pop();
        vars.push(("RELAY_SHARDS", shards));
        let relay = Relay::start(dir.path(), &vars);
        let log = relay.log.lock().unwrap().join("\n");
        assert!(log.contains("resharding done"), "{log}");
        let delivered = drain(relay.addr, &recipients);
        assert_delivered_in_order(&stored, &delivered);
    }
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("shard-") && !n.ends_with("-wal") && !n.ends_with("-shm"))
        .collect();
    assert_eq!(files, vec!["shard-0.db".to_string()], "old files removed");
}

#[test]
fn a_relay_killed_while_resharding_completes_the_move_on_restart() {
    const BLOBS: usize = 20_000;
    let dir = TempDir::new("reshard-kill");
    let recipients: Vec<String> = (0..8).map(|_| random_id()).collect();
    let mut vars = UNLIMITED.to_vec();
    vars.push(("RELAY_SHARDS", "2"));
    let stored = {
        let relay = Relay::start(dir.path(), &vars);
        store_blobs(relay.addr, &recipients, BLOBS, 1024)
    };
    vars.pop();
    vars.push(("RELAY_SHARDS", "3"));
    // Killed once after the first of the two source files is copied (mid-way by
    // construction), then again as the resumed move starts.
    for kill_at in [
        "resharding: source file copied",
        "resharding the data directory",
    ] {
        let (mut child, lines) = spawn_relay(dir.path(), &vars);
        wait_for_line(&lines, kill_at);
        child.kill().unwrap();
        child.wait().unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("reshard"))
            .collect();
        left.sort();
        eprintln!("killed at {kill_at:?}; move files left: {left:?}");
    }

    let relay = Relay::start(dir.path(), &vars);
    let delivered = drain(relay.addr, &recipients);
    assert_delivered_in_order(&stored, &delivered);
}

/// One crash iteration's outcome.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    sent: u64,
    acked: u64,
    delivered: u64,
    lost: u64,
    duplicated: u64,
    unexpected: u64,
    reordered: u64,
}

/// What the senders recorded: every payload written (with its recipient) and the
/// payloads acknowledged `Stored`.
#[derive(Default)]
struct Ledger {
    sent: HashMap<Vec<u8>, String>,
    acked: Vec<Vec<u8>>,
}

const CRASH_SENDERS: usize = 20;
const CRASH_RECIPIENTS: usize = 6;
/// Requests a sender keeps in flight.
const CRASH_WINDOW: usize = 4;
/// A sender stops after this many requests even if no kill comes (bound).
const CRASH_REQUESTS_PER_SENDER_MAX: usize = 20_000;

/// A minimal client that reports errors instead of panicking: the relay dies under
/// it.
struct Connection {
    ws: WebSocket<TcpStream>,
}

impl Connection {
    fn open(addr: SocketAddr, client_id: &str) -> Result<Connection, String> {
        let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(STUCK))
            .map_err(|e| e.to_string())?;
        let (ws, _) = tungstenite::client::client(format!("ws://{addr}/"), stream)
            .map_err(|e| e.to_string())?;
        let mut connection = Connection { ws };
        connection.send(&handshake_json(client_id))?;
        let ack = connection.recv()?;
        if ack["payload"]["type"] != "HandshakeAck" {
            return Err(format!("handshake refused: {ack}"));
        }
        Ok(connection)
    }

    fn send(&mut self, json: &str) -> Result<(), String> {
        self.ws
            .send(Message::binary(frame(json)))
            .map_err(|e| e.to_string())
    }

    fn recv(&mut self) -> Result<Value, String> {
        loop {
            match self.ws.read().map_err(|e| e.to_string())? {
                Message::Binary(bytes) if bytes.len() >= 4 => {
                    return serde_json::from_slice(&bytes[4..]).map_err(|e| e.to_string());
                }
                Message::Close(_) => return Err("closed".to_string()),
                _ => continue,
            }
        }
    }
}

/// One sender: streams EncryptedUpdates with unique payloads until its connection
/// fails (the kill) or the bound, recording what it sent and what was acked.
fn run_sender(
    addr: SocketAddr,
    index: usize,
    recipients: Arc<Vec<String>>,
    ledger: Arc<(Mutex<Ledger>, Condvar)>,
    stop: Arc<AtomicBool>,
) {
    let Ok(mut connection) = Connection::open(addr, &random_id()) else {
        return;
    };
    let mut in_flight: std::collections::VecDeque<(String, Vec<u8>)> = Default::default();
    let mut counter = 0usize;
    loop {
        while in_flight.len() < CRASH_WINDOW
            && counter < CRASH_REQUESTS_PER_SENDER_MAX
            && !stop.load(Ordering::Relaxed)
        {
            let recipient = &recipients[(index + counter) % recipients.len()];
            let payload = format!("sender {index} message {counter}").into_bytes();
            let message_id = format!("{index}-{counter}");
            ledger
                .0
                .lock()
                .unwrap()
                .sent
                .insert(payload.clone(), recipient.clone());
            if connection
                .send(&update_json(&message_id, recipient, &payload))
                .is_err()
            {
                return;
            }
            in_flight.push_back((message_id, payload));
            counter += 1;
        }
        let Some((message_id, payload)) = in_flight.pop_front() else {
            return;
        };
        let Ok(reply) = connection.recv() else {
            return;
        };
        if reply["payload"]["type"] != "Acknowledgment" {
            // An error reply (e.g. overloaded): not stored, not acked.
            continue;
        }
        assert_eq!(
            reply["payload"]["message_id"], message_id,
            "replies in request order: {reply}"
        );
        if reply["payload"]["status"] == "Stored" {
            let (lock, acked) = &*ledger;
            lock.lock().unwrap().acked.push(payload);
            acked.notify_all();
        }
    }
}

/// The payload's sender and counter, for the per-pair order check.
fn origin(payload: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let rest = text.strip_prefix("sender ")?;
    let (sender, counter) = rest.split_once(" message ")?;
    Some((sender.parse().ok()?, counter.parse().ok()?))
}

/// Starts a relay, kills it with SIGKILL once `kill_after_acks` blobs are acked
/// while the senders are still streaming, restarts it on the same directory and
/// counts what was lost, duplicated, unexpected or reordered.
fn crash_iteration(synchronous: &str, kill_after_acks: usize) -> Tally {
    let dir = TempDir::new("crash");
    let mut vars = UNLIMITED.to_vec();
    vars.push(("RELAY_SQLITE_SYNCHRONOUS", synchronous));
    vars.push(("RELAY_SHARDS", "2"));
    let recipients: Arc<Vec<String>> =
        Arc::new((0..CRASH_RECIPIENTS).map(|_| random_id()).collect());
    let ledger = Arc::new((Mutex::new(Ledger::default()), Condvar::new()));
    let stop = Arc::new(AtomicBool::new(false));

    let mut relay = Relay::start(dir.path(), &vars);
    let senders: Vec<_> = (0..CRASH_SENDERS)
        .map(|index| {
            let (addr, recipients, ledger, stop) = (
                relay.addr,
                Arc::clone(&recipients),
                Arc::clone(&ledger),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || run_sender(addr, index, recipients, ledger, stop))
        })
        .collect();
    {
        let (lock, acked) = &*ledger;
        let (guard, timeout) = acked
            .wait_timeout_while(lock.lock().unwrap(), STUCK, |l| {
                l.acked.len() < kill_after_acks
            })
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "only {} acks before the hang guard",
            guard.acked.len()
        );
    }
    relay.kill();
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.join().expect("sender thread");
    }
    let ledger = Arc::try_unwrap(ledger)
        .ok()
        .expect("senders are done")
        .0
        .into_inner()
        .unwrap();

    let relay = Relay::start(dir.path(), &vars);
    let delivered = drain(relay.addr, &recipients);

    let mut tally = Tally {
        sent: ledger.sent.len() as u64,
        acked: ledger.acked.len() as u64,
        ..Tally::default()
    };
    let mut seen: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut last_counter: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for (recipient, blobs) in &delivered {
        for (_, payload) in blobs {
            tally.delivered += 1;
            *seen.entry(payload.clone()).or_default() += 1;
            if ledger.sent.get(payload) != Some(recipient) {
                tally.unexpected += 1;
                continue;
            }
            if let Some((sender, counter)) = origin(payload) {
                let previous = last_counter.insert((recipient.clone(), sender), counter);
                if previous.is_some_and(|p| p >= counter) {
                    tally.reordered += 1;
                }
            }
        }
    }
    tally.duplicated = seen.values().map(|n| n - 1).sum();
    tally.lost = ledger
        .acked
        .iter()
        .filter(|p| !seen.contains_key(*p))
        .count() as u64;
    tally
}

#[test]
fn crash_every_acknowledged_blob_survives_sigkill_once() {
    let iterations: u64 = std::env::var("CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let synchronous = std::env::var("CRASH_SYNCHRONOUS").unwrap_or_else(|_| "normal".into());
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()));
    eprintln!("CRASH-SEED {seed}");
    let mut random = seed | 1;
    let mut total = Tally::default();
    for iteration in 0..iterations {
        // xorshift64: the kill point varies between 200 and 3199 acks.
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        let kill_after = 200 + (random % 3000) as usize;
        let tally = crash_iteration(&synchronous, kill_after);
        eprintln!(
            "CRASH-RESULT iteration={iteration} synchronous={synchronous} kill_after={kill_after} \
             sent={} acked={} delivered={} lost={} duplicated={} unexpected={} reordered={}",
            tally.sent,
            tally.acked,
            tally.delivered,
            tally.lost,
            tally.duplicated,
            tally.unexpected,
            tally.reordered
        );
        total.sent += tally.sent;
        total.acked += tally.acked;
        total.delivered += tally.delivered;
        total.lost += tally.lost;
        total.duplicated += tally.duplicated;
        total.unexpected += tally.unexpected;
        total.reordered += tally.reordered;
    }
    eprintln!(
        "CRASH-TOTAL iterations={iterations} synchronous={synchronous} sent={} acked={} \
         delivered={} lost={} duplicated={} unexpected={} reordered={}",
        total.sent,
        total.acked,
        total.delivered,
        total.lost,
        total.duplicated,
        total.unexpected,
        total.reordered
    );
    assert!(
        total.acked > 0,
        "something was acknowledged before the kill"
    );
    assert_eq!(
        (
            total.lost,
            total.duplicated,
            total.unexpected,
            total.reordered
        ),
        (0, 0, 0, 0),
        "lost, duplicated, unexpected, reordered (seed {seed})"
    );
}
