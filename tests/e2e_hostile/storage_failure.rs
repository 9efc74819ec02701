//! Storage failure (§6.1 `storage_unavailable`, §10.3) against the relay binary on
//! a small tmpfs the test mounts: when the disk fills, a store is answered with
//! Error `storage_unavailable` and never acked; the session stays open and the
//! shard keeps serving what needs no space (replies, connect-time delivery); when
//! space returns a store is `Stored` again; and after a restart exactly the blobs
//! acked `Stored` are delivered. Needs root (mount(8)); fails loudly without it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use serde_json::{Value, json};
use tungstenite::Message;

/// Each blob's size: a few fill the 2 MiB filesystem quickly, one fits a page set.
const BLOB_BYTES: usize = 30 * 1024;
/// Stores tried before the test declares that the filesystem never filled.
const STORES_MAX: u32 = 400;
/// Stores tried after the first refusal, to see the refusals are stable.
const EXTRA_STORES: u32 = 3;

/// A tmpfs of a given size mounted on a fresh directory; unmounted and removed
/// when dropped (after the relay using it, which must be declared later).
struct TmpfsMount {
    path: PathBuf,
}

impl TmpfsMount {
    fn new(size: &str) -> TmpfsMount {
        let dir = TempDir::new("tmpfs");
        // The directory outlives `TempDir`: the guard removes it after unmounting.
        let path = dir.0.clone();
        std::mem::forget(dir);
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .expect("run mount(8)");
        if !output.status.success() {
            let _ = std::fs::remove_dir(&path);
            panic!(
                "this test needs to mount a tmpfs (run it as root, or with CAP_SYS_ADMIN): \
                 mount -t tmpfs -o size={size} tmpfs {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        TmpfsMount { path }
    }

    fn resize(&self, size: &str) {
        let output = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .output()
            .expect("run mount(8)");
        assert!(
            output.status.success(),
            "remount failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Blob `index`: its index in the first four bytes, then a pattern of its own.
fn blob(index: u32) -> Vec<u8> {
    let mut data = index.to_be_bytes().to_vec();
    data.extend((0..BLOB_BYTES - 4).map(|i| (i as u32).wrapping_mul(31).wrapping_add(index) as u8));
    data
}

fn index_of(ciphertext: &Value) -> u32 {
    let bytes: Vec<u8> = serde_json::from_value(ciphertext.clone()).unwrap();
    let index = u32::from_be_bytes(bytes[..4].try_into().unwrap());
    assert_eq!(bytes, blob(index), "blob {index} delivered byte for byte");
    index
}

#[derive(Debug, PartialEq)]
enum Outcome {
    /// `Stored`, with the blob id.
    Stored(String),
    Unavailable,
}

/// Stores blob `index` for B and classifies the reply; anything else fails.
fn store(client: &mut Client, index: u32) -> Outcome {
    let message_id = format!("store-{index}");
    client.send_json(&update_json(&message_id, B, &blob(index)));
    // Blobs delivered to B earlier bring Delivered notifications: skip them.
    let reply = loop {
        let message = client.recv_json();
        if message["payload"]["status"] != "Delivered" {
            break message;
        }
    };
    let payload = &reply["payload"];
    match payload["type"].as_str() {
        Some("Acknowledgment") => {
            assert_eq!(payload["status"], "Stored", "{reply}");
            assert_eq!(payload["message_id"], message_id.as_str(), "{reply}");
            Outcome::Stored(payload["blob_id"].as_str().unwrap().to_owned())
        }
        Some("Error") => {
            assert_eq!(payload["code"], "storage_unavailable", "{reply}");
            assert_eq!(payload["message_id"], message_id.as_str(), "{reply}");
            Outcome::Unavailable
        }
        _ => panic!("store {index}: unexpected reply {reply}"),
    }
}

/// Connects as B and returns every blob delivered at connect time, in order, as
/// (index, blob id). A query sent right after the Handshake marks the end: its
/// reply follows the whole connect-time delivery (§4.6).
fn connect_time_delivery(relay: &Relay) -> Vec<(u32, String)> {
    let mut client = Client::handshake(relay.addr, B);
    client.send_json(&envelope(
        "end",
        json!({"type": "RecoveryProofQuery", "key_hashes": []}),
    ));
    let mut delivered = Vec::new();
    loop {
        let message = client.recv_json();
        match message["payload"]["type"].as_str() {
            Some("EncryptedUpdate") => delivered.push((
                index_of(&message["payload"]["ciphertext"]),
                message["message_id"].as_str().unwrap().to_owned(),
            )),
            Some("RecoveryProofResponse") => break,
            _ => panic!("unexpected {message}"),
        }
    }
    client.close();
    delivered
}

fn expect_error_code(client: &mut Client, message: Message, code: &str) {
    client.send_raw(message);
    let reply = client.recv_json();
    assert_eq!(reply["payload"]["code"], code, "{reply}");
}

#[test]
fn a_full_disk_answers_storage_unavailable_and_the_relay_recovers() {
    let mount = TmpfsMount::new("2m");
    let data_dir = mount.path().join("data");
    let vars = [
        ("RELAY_STORAGE_BACKEND", "sqlite"),
        ("RELAY_SHARDS", "1"),
        ("RELAY_MAX_BLOBS_PER_USER", "0"),
        ("RELAY_MAX_STORAGE_PER_USER", "0"),
        ("RELAY_RATE_LIMIT", "1000000"),
    ];
    let mut relay = Relay::start(&data_dir, &vars);
    let mut sender = Client::handshake(relay.addr, A);

    // Fill the filesystem: blob id of every store acked Stored, by index.
    let mut stored: BTreeMap<u32, String> = BTreeMap::new();
    let mut refused = Vec::new();
    let mut index = 0;
    while refused.is_empty() {
        assert!(
            index < STORES_MAX,
            "{STORES_MAX} stores of {BLOB_BYTES} bytes never filled a 2 MiB tmpfs"
        );
        match store(&mut sender, index) {
            Outcome::Stored(id) => {
                stored.insert(index, id);
            }
            Outcome::Unavailable => refused.push(index),
        }
        index += 1;
    }
    for _ in 0..EXTRA_STORES {
        match store(&mut sender, index) {
            Outcome::Stored(id) => {
                stored.insert(index, id);
            }
            Outcome::Unavailable => refused.push(index),
        }
        index += 1;
    }
    eprintln!("{} blobs stored, then refused: {refused:?}", stored.len());
    assert!(!stored.is_empty(), "the first store already failed");

    // The session stays open and requests that need no space are answered.
    let query = envelope(
        "q",
        json!({"type": "RecoveryProofQuery", "key_hashes": [B]}),
    );
    sender.send_json(&query);
    let reply = sender.recv_json();
    assert_eq!(reply["payload"]["type"], "RecoveryProofResponse", "{reply}");
    assert_eq!(reply["message_id"], "q");
    expect_error_code(
        &mut sender,
        Message::binary(frame(&envelope("u", json!({"type": "Gossip"})))),
        "unknown_type",
    );
    expect_error_code(&mut sender, Message::text("hello"), "unsupported_frame");

    // Connect-time delivery reads, so it still works: exactly the acked blobs.
    let delivered = connect_time_delivery(&relay);
    let expected: Vec<(u32, String)> = stored.clone().into_iter().collect();
    assert_eq!(delivered, expected, "delivered while the disk is full");

    // Space returns: a new store is acked.
    mount.resize("16m");
    let recovered = index;
    match store(&mut sender, recovered) {
        Outcome::Stored(id) => {
            stored.insert(recovered, id);
        }
        Outcome::Unavailable => {
            panic!("still storage_unavailable after the filesystem grew to 16 MiB")
        }
    }
    sender.close();

    // The failures were logged, without ids (§14.2).
    let log = relay.log.lock().unwrap().join("\n");
    assert!(log.contains("storage commit failed"), "{log}");
    for id in [A, B] {
        assert!(!log.contains(&id[..16]), "an id in the log:\n{log}");
    }

    // After a restart exactly the acked blobs are there, in store order.
    relay.kill();
    drop(relay);
    let relay = Relay::start(&data_dir, &vars);
    let delivered = connect_time_delivery(&relay);
    let expected: Vec<(u32, String)> = stored.into_iter().collect();
    for (index, _) in &delivered {
        assert!(
            !refused.contains(index),
            "blob {index} was answered storage_unavailable yet is delivered after a restart"
        );
    }
    assert_eq!(delivered, expected, "delivered after the restart");

    // And they can be deleted: acked, they are not delivered again.
    let mut owner = Client::handshake(relay.addr, B);
    for _ in &expected {
        assert_eq!(owner.recv_json()["payload"]["type"], "EncryptedUpdate");
    }
    for (_, blob_id) in &expected {
        owner.send_json(&ack_json(blob_id, "ReceivedByRecipient"));
    }
    owner.send_json(&envelope(
        "sync",
        json!({"type": "RecoveryProofQuery", "key_hashes": []}),
    ));
    assert_eq!(
        owner.recv_json()["payload"]["type"],
        "RecoveryProofResponse"
    );
    owner.close();
    assert_eq!(connect_time_delivery(&relay), vec![], "acked blobs deleted");
}
