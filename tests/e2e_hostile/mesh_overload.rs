//! A shard whose mesh queue is full answers `overloaded` instead of blocking
//! (PROTOCOL.md §1.4, §5.2, §6; issue #8, item 3): against the relay binary with
//! two shards, shard 1's executor thread is stopped with ptrace, so its inbox (the
//! bounded mesh queue, `MESH_QUEUE_DEPTH`) fills with stores from sessions on
//! shard 0 for a recipient shard 1 owns. Shard 0 then refuses further stores for
//! that recipient with Error `overloaded` at once, while it keeps serving requests
//! it owns, shard 1 still stopped. Once shard 1 runs again every request is
//! answered in order, and the recipient receives exactly the blobs acked `Stored`:
//! a refused store was never stored.
//!
//! Needs ptrace of a child process (any user under Yama scope 0 or 1, or
//! CAP_SYS_PTRACE); fails loudly without it.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::wire::*;
use serde_json::Value;
use vauchi_relay::protocol::{Id64, shard_of};

const SHARDS: usize = 2;
/// Sessions on shard 0 that pipeline stores for the frozen shard, and how many each
/// sends: each may have 1024 requests unanswered (PIPELINED_REQUESTS_MAX), so
/// together they exceed the 16 384 messages of a mesh queue by a quarter.
const FILLERS: usize = 20;
const FILLER_REQUESTS: usize = 1100;

/// A fresh id owned by `shard`.
fn id_on(shard: usize) -> String {
    loop {
        let id = fresh_id();
        if shard_of(&Id64::parse(&id).unwrap(), SHARDS) == shard {
            return id;
        }
    }
}

/// One thread of a child process stopped with ptrace until dropped; the other
/// threads run on.
struct FrozenThread {
    tid: libc::pid_t,
}

impl FrozenThread {
    /// Stops thread `tid` of `pid` where it waits in a system call, so that it
    /// holds no lock another thread could need.
    fn freeze(pid: u32, tid: libc::pid_t) -> FrozenThread {
        let start = Instant::now();
        loop {
            // SAFETY: plain ptrace requests on a thread of our own child process;
            // no pointers are passed.
            unsafe {
                if libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0) != 0 {
                    panic!(
                        "this test needs to ptrace the relay (Yama ptrace_scope <= 1 or \
                         CAP_SYS_PTRACE): PTRACE_SEIZE failed: {}",
                        std::io::Error::last_os_error()
                    );
                }
                assert_eq!(libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0), 0);
                let mut status = 0;
                assert_eq!(libc::waitpid(tid, &mut status, libc::__WALL), tid);
                assert!(libc::WIFSTOPPED(status), "status {status:#x}");
            }
            let frozen = FrozenThread { tid };
            // The first field is the system call the thread was in, or -1 / "running".
            let syscall = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))
                .unwrap_or_default();
            let number = syscall.split_whitespace().next().unwrap_or("");
            if number.parse::<i64>().is_ok_and(|n| n >= 0) {
                return frozen;
            }
            drop(frozen);
            assert!(
                start.elapsed() < STUCK,
                "thread {tid} never stopped inside a system call"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for FrozenThread {
    fn drop(&mut self) {
        // SAFETY: as in `freeze`; detaching resumes the thread.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, self.tid, 0, 0) };
    }
}

/// Stops every thread of shard `index`: glommio names an executor's threads
/// `shard-<index>-<executor id>`.
fn freeze_shard(pid: u32, index: usize) -> Vec<FrozenThread> {
    let prefix = format!("shard-{index}-");
    let mut frozen = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = entry.unwrap().path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.starts_with(&prefix) {
            let tid = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
            frozen.push(FrozenThread::freeze(pid, tid));
        }
    }
    assert!(
        !frozen.is_empty(),
        "no thread of shard {index} in process {pid}"
    );
    frozen
}

/// `relay_messages_rejected_total{code="overloaded"}` summed over the shards.
fn overloaded_total(relay: &Relay) -> u64 {
    scrape_metrics(relay)
        .lines()
        .filter(|l| l.starts_with("relay_messages_rejected_total{") && l.contains("\"overloaded\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

/// A session for `id`, past its Handshake.
fn session(relay: &Relay, id: &str) -> RawWs {
    let mut ws = RawWs::connect(relay.addr);
    ws.send_json(&handshake_json(id));
    let ack: Value = serde_json::from_str(&ws.recv_text()).unwrap();
    assert_eq!(ack["payload"]["type"], "HandshakeAck");
    ws
}

/// The next reply on a session, skipping notifications.
fn next_reply(ws: &mut RawWs) -> Value {
    loop {
        let message: Value = serde_json::from_str(&ws.recv_text()).unwrap();
        let status = &message["payload"]["status"];
        if status != "Delivered" && status != "ReceivedByRecipient" {
            return message;
        }
    }
}

/// Checks an Error `overloaded` for `message_id` (§5.14: `retry_after_secs` ≥ 1).
fn assert_overloaded(raw: &Value, message_id: &str) {
    assert_eq!(raw["payload"]["type"], "Error", "{raw}");
    assert_eq!(raw["payload"]["code"], "overloaded", "{raw}");
    assert_eq!(raw["payload"]["message_id"], message_id, "{raw}");
    assert!(
        raw["payload"]["retry_after_secs"].as_u64().unwrap() >= 1,
        "{raw}"
    );
}

#[test]
fn a_full_mesh_queue_is_answered_overloaded_while_other_shards_serve() {
    let dir = TempDir::new("mesh-overload");
    let relay = Relay::start(
        dir.path(),
        &[
            ("RELAY_SHARDS", "2"),
            ("RELAY_STORAGE_BACKEND", "memory"),
            ("RELAY_RATE_LIMIT", "1000000"),
            ("RELAY_MAX_BLOBS_PER_USER", "0"),
            ("RELAY_MAX_STORAGE_PER_USER", "0"),
        ],
    );
    let far = id_on(1);
    let near = id_on(0);
    // Everything that talks while shard 1 is stopped connects first: a new
    // connection may be accepted by either shard, and a stopped one accepts none.
    let mut fillers: Vec<RawWs> = (0..FILLERS).map(|_| session(&relay, &id_on(0))).collect();
    let mut probe = session(&relay, &id_on(0));
    let mut honest_sender = Client::handshake(relay.addr, &id_on(0));
    let mut honest_recipient = Client::handshake(relay.addr, &near);

    let frozen = freeze_shard(relay.child.id(), 1);
    let overloaded_before = overloaded_total(&relay);
    let writers: Vec<_> = fillers
        .iter()
        .enumerate()
        .map(|(f, ws)| {
            let mut bytes = Vec::new();
            for r in 0..FILLER_REQUESTS {
                let json = update_json(&format!("f{f}-{r}"), &far, &[f as u8, r as u8]);
                bytes.extend(encode_frame(0x82, &frame(&json), true));
            }
            let mut stream = ws.stream.try_clone().unwrap();
            // Blocks once the relay stops reading; ends after shard 1 runs again.
            std::thread::spawn(move || stream.write_all(&bytes))
        })
        .collect();
    // Shard 0 has read as many requests as the sessions may have unanswered;
    // once the queue to shard 1 is full it refuses the rest.
    let start = Instant::now();
    while overloaded_total(&relay) == overloaded_before {
        assert!(
            start.elapsed() < STUCK,
            "no store refused with overloaded within {STUCK:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // Shard 1 still stopped: a new store for it is refused at once, and shard 0
    // serves what it owns.
    probe.send_json(&update_json("probe-far", &far, &[1]));
    assert_overloaded(&next_reply(&mut probe), "probe-far");
    probe.send_json(&update_json("probe-near", &near, &[2]));
    let stored = next_reply(&mut probe);
    assert_eq!(stored["payload"]["status"], "Stored", "{stored}");
    honest_sender.send_json(&update_json("honest", &near, &[3]));
    let ack = honest_sender.recv_json();
    assert_eq!(ack["payload"]["status"], "Stored", "{ack}");
    let pushed = honest_recipient.recv_json();
    assert_eq!(pushed["payload"]["recipient_id"], near.as_str());
    drop(frozen);

    // Every filler request is answered, in order: Stored, or overloaded.
    let mut acked = BTreeSet::new();
    let mut refused = 0;
    for (f, ws) in fillers.iter_mut().enumerate() {
        for r in 0..FILLER_REQUESTS {
            let message_id = format!("f{f}-{r}");
            let reply = next_reply(ws);
            if reply["payload"]["type"] == "Error" {
                assert_overloaded(&reply, &message_id);
                refused += 1;
            } else {
                assert_eq!(reply["payload"]["status"], "Stored", "{reply}");
                assert_eq!(reply["payload"]["message_id"], message_id.as_str());
                acked.insert(reply["payload"]["blob_id"].as_str().unwrap().to_owned());
            }
        }
    }
    for writer in writers {
        writer.join().unwrap().unwrap();
    }
    eprintln!(
        "{} stores acked, {refused} refused with overloaded",
        acked.len()
    );
    assert!(refused > 0, "the queue to shard 1 never filled");
    drop(fillers);

    // The recipient receives exactly the acked blobs: connect-time delivery comes
    // before the reply to a request sent after the Handshake (§4.6).
    let mut recipient = Client::handshake(relay.addr, &far);
    recipient.send_json(&update_json("barrier", &near, &[]));
    let mut delivered = BTreeSet::new();
    loop {
        let message = recipient.recv_json();
        if message["payload"]["type"] == "EncryptedUpdate" {
            delivered.insert(message["message_id"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(message["payload"]["message_id"], "barrier", "{message}");
            break;
        }
    }
    assert_eq!(delivered.len(), acked.len());
    assert!(delivered == acked, "delivered blobs are the acked ones");
}
