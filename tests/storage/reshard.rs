//! Resharding of the sqlite data directory (PROTOCOL.md §10.5) on real shard files:
//! every record lands on `shard_of(key) mod N` exactly once with its id, seq and
//! data, per-recipient order is kept, and a move interrupted at any durable step
//! is completed by the next run without loss or duplicates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common::TempDir;
use vauchi_relay::config::SqliteSynchronous;
use vauchi_relay::protocol::{Id64, shard_of};
use vauchi_relay::storage::reshard::{self, Options, Outcome, ReshardError};
use vauchi_relay::storage::sqlite::{SqliteStore, shard_file_name};
use vauchi_relay::storage::{
    BlobRecord, DeviceSyncRecord, HintRecord, RecoveryProofRecord, Store, WriteOp,
};

const SYNC: SqliteSynchronous = SqliteSynchronous::Normal;

/// A deterministic id from a small number (spread by hashing so that shards differ).
fn id64(n: u32) -> Id64 {
    use sha2::Digest;
    Id64(sha2::Sha256::digest(n.to_be_bytes()).into())
}

/// A blob as the wire sees it: (id, seq, created_at_secs, hop_count, data).
type Blob = (uuid::Uuid, u64, u64, u8, Vec<u8>);
/// A device-sync message: (id, target, sender_device_id, version, created, payload).
type Sync = (uuid::Uuid, Id64, String, u64, u64, Vec<u8>);
/// A forwarding hint: (blob_id, relay_url, created_at_secs, expires_at_secs).
type Hint = (uuid::Uuid, String, u64, u64);

/// What a data directory holds, independent of keys and files.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Content {
    /// Per recipient, its blobs in delivery order: (id, seq, created, hop, data).
    blobs: BTreeMap<Id64, Vec<Blob>>,
    /// Per identity, device-sync messages in store order.
    device_sync: BTreeMap<Id64, Vec<Sync>>,
    proofs: BTreeMap<Id64, (Vec<u8>, u64, u64)>,
    /// Per routing_id, its hints in store order.
    hints: BTreeMap<Id64, Vec<Hint>>,
}

const RECIPIENTS: u32 = 7;
const BLOBS_PER_RECIPIENT: u64 = 5;
const IDENTITIES: u32 = 3;
const PROOFS: u32 = 4;
const HINT_ROUTINGS: u32 = 5;
const HINTS_PER_ROUTING: u64 = 2;

/// Writes a data directory as a relay with `shards` shards would: each record on
/// its owner shard, keys increasing in store order, `shard_count` recorded.
fn write_layout(dir: &Path, shards: usize) -> Content {
    let mut stores: Vec<SqliteStore> = (0..shards)
        .map(|i| {
            let mut store = SqliteStore::open(&dir.join(shard_file_name(i)), SYNC).unwrap();
            store.meta_set("shard_count", &shards.to_string()).unwrap();
            store
        })
        .collect();
    let mut next_key = vec![0u64; shards];
    let mut content = Content {
        blobs: BTreeMap::new(),
        device_sync: BTreeMap::new(),
        proofs: BTreeMap::new(),
        hints: BTreeMap::new(),
    };
    // Interleave recipients so that each shard's keys mix several of them.
    for round in 0..BLOBS_PER_RECIPIENT {
        for r in 0..RECIPIENTS {
            let recipient = id64(r);
            let shard = shard_of(&recipient, shards);
            next_key[shard] += 1;
            let seq = round;
            let record = BlobRecord {
                key: next_key[shard],
                id: uuid::Uuid::new_v4(),
                recipient,
                data: format!("blob {r} {round}").into_bytes(),
                created_at_secs: 1_767_225_600 + round / 2,
                hop_count: (round % 3) as u8,
                seq,
            };
            content.blobs.entry(recipient).or_default().push((
                record.id,
                record.seq,
                record.created_at_secs,
                record.hop_count,
                record.data.clone(),
            ));
            stores[shard]
                .commit(&[WriteOp::InsertBlob(record)])
                .unwrap();
        }
        for i in 0..IDENTITIES {
            let identity = id64(1000 + i);
            let shard = shard_of(&identity, shards);
            next_key[shard] += 1;
            let record = DeviceSyncRecord {
                key: next_key[shard],
                id: uuid::Uuid::new_v4(),
                identity,
                target: id64(2000 + i),
                sender_device_id: format!("device {i}"),
                payload: vec![round as u8; 3],
                version: u64::MAX - round,
                created_at_secs: 1_767_225_600,
            };
            content.device_sync.entry(identity).or_default().push((
                record.id,
                record.target,
                record.sender_device_id.clone(),
                record.version,
                record.created_at_secs,
                record.payload.clone(),
            ));
            stores[shard]
                .commit(&[WriteOp::InsertDeviceSync(record)])
                .unwrap();
        }
        if round < HINTS_PER_ROUTING {
            for h in 0..HINT_ROUTINGS {
                let routing_id = id64(4000 + h);
                let shard = shard_of(&routing_id, shards);
                next_key[shard] += 1;
                let record = HintRecord {
                    key: next_key[shard],
                    blob_id: uuid::Uuid::new_v4(),
                    routing_id,
                    relay_url: format!("ws://relay-{h}.example:8080"),
                    created_at_secs: 1_767_225_600 + round,
                    expires_at_secs: 1_767_225_600 + round + 7_776_000,
                };
                content.hints.entry(routing_id).or_default().push((
                    record.blob_id,
                    record.relay_url.clone(),
                    record.created_at_secs,
                    record.expires_at_secs,
                ));
                stores[shard]
                    .commit(&[WriteOp::InsertHint(record)])
                    .unwrap();
            }
        }
    }
    for p in 0..PROOFS {
        let key_hash = id64(3000 + p);
        let record = RecoveryProofRecord {
            key_hash,
            proof_data: vec![p as u8; 5],
            created_at_secs: 1_767_225_600,
            expires_at_secs: 1_767_225_600 + 7_776_000,
        };
        content.proofs.insert(
            key_hash,
            (
                record.proof_data.clone(),
                record.created_at_secs,
                record.expires_at_secs,
            ),
        );
        stores[shard_of(&key_hash, shards)]
            .commit(&[WriteOp::UpsertProof(record)])
            .unwrap();
    }
    content
}

/// Reads a directory laid out with `shards` shards, asserting the layout: exactly
/// the files `shard-0.db..shard-{N-1}.db`, each recording N, each record on its
/// owner shard, ids unique, keys unique per file, and per-recipient keys increasing
/// in delivery order.
fn read_layout(dir: &Path, shards: usize) -> Content {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm"))
        .collect();
    names.sort();
    let mut expected: Vec<String> = (0..shards).map(shard_file_name).collect();
    expected.sort();
    assert_eq!(names, expected, "only the new shard files remain");

    let mut content = Content {
        blobs: BTreeMap::new(),
        device_sync: BTreeMap::new(),
        proofs: BTreeMap::new(),
        hints: BTreeMap::new(),
    };
    let mut blob_ids = BTreeSet::new();
    let mut sync_ids = BTreeSet::new();
    let mut hint_ids = BTreeSet::new();
    for shard in 0..shards {
        let mut store = SqliteStore::open(&dir.join(shard_file_name(shard)), SYNC).unwrap();
        assert_eq!(
            store.meta_get("shard_count").unwrap().as_deref(),
            Some(shards.to_string().as_str())
        );
        let index = store.load_blob_index().unwrap();
        let syncs = store.load_device_sync().unwrap();
        let hints = store.load_hints().unwrap();
        let mut keys = BTreeSet::new();
        for key in index
            .iter()
            .map(|m| m.key)
            .chain(syncs.iter().map(|r| r.key))
            .chain(hints.iter().map(|r| r.key))
        {
            assert!(keys.insert(key), "keys are unique per shard file");
        }
        let data = store
            .read_blob_data(&index.iter().map(|m| m.key).collect::<Vec<_>>())
            .unwrap();
        let mut last_key: BTreeMap<Id64, (u64, u64, u64)> = BTreeMap::new();
        for (meta, data) in index.iter().zip(data) {
            assert_eq!(
                shard_of(&meta.recipient, shards),
                shard,
                "blob on its owner"
            );
            assert!(blob_ids.insert(meta.id), "blob stored once");
            // Keys come in ascending order; the delivery order must agree.
            let order = (meta.created_at_secs, meta.seq, meta.key);
            if let Some(previous) = last_key.insert(meta.recipient, order) {
                assert!(previous < order, "per-recipient key order follows seq");
            }
            content.blobs.entry(meta.recipient).or_default().push((
                meta.id,
                meta.seq,
                meta.created_at_secs,
                meta.hop_count,
                data.unwrap(),
            ));
        }
        for record in syncs {
            assert_eq!(shard_of(&record.identity, shards), shard);
            assert!(sync_ids.insert(record.id), "device sync stored once");
            content
                .device_sync
                .entry(record.identity)
                .or_default()
                .push((
                    record.id,
                    record.target,
                    record.sender_device_id,
                    record.version,
                    record.created_at_secs,
                    record.payload,
                ));
        }
        for proof in store.load_proofs().unwrap() {
            assert_eq!(shard_of(&proof.key_hash, shards), shard);
            let previous = content.proofs.insert(
                proof.key_hash,
                (
                    proof.proof_data,
                    proof.created_at_secs,
                    proof.expires_at_secs,
                ),
            );
            assert!(previous.is_none(), "proof stored once");
        }
        for hint in hints {
            assert_eq!(
                shard_of(&hint.routing_id, shards),
                shard,
                "hint on its owner"
            );
            assert!(hint_ids.insert(hint.blob_id), "hint stored once");
            content.hints.entry(hint.routing_id).or_default().push((
                hint.blob_id,
                hint.relay_url,
                hint.created_at_secs,
                hint.expires_at_secs,
            ));
        }
    }
    content
}

fn options(batch_rows_max: usize, stop_after_steps: Option<u64>) -> Options {
    Options {
        batch_rows_max,
        stop_after_steps,
    }
}

#[test]
fn two_shards_are_redistributed_to_three_and_to_one() {
    for (from, to) in [(2, 3), (2, 1), (3, 2), (1, 4)] {
        let dir = TempDir::new("reshard");
        let written = write_layout(dir.path(), from);
        let outcome = reshard::prepare(dir.path(), to, SYNC).unwrap();
        assert_eq!(
            outcome,
            Outcome::Moved {
                from,
                blobs: u64::from(RECIPIENTS) * BLOBS_PER_RECIPIENT,
                device_sync: u64::from(IDENTITIES) * BLOBS_PER_RECIPIENT,
                proofs: u64::from(PROOFS),
                hints: u64::from(HINT_ROUTINGS) * HINTS_PER_ROUTING,
            },
            "{from} -> {to}"
        );
        assert_eq!(read_layout(dir.path(), to), written, "{from} -> {to}");
    }
}

#[test]
fn the_same_count_or_an_empty_directory_is_left_alone() {
    let dir = TempDir::new("reshard");
    assert_eq!(
        reshard::prepare(dir.path(), 3, SYNC).unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let written = write_layout(dir.path(), 2);
    assert_eq!(
        reshard::prepare(dir.path(), 2, SYNC).unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(read_layout(dir.path(), 2), written);
}

#[test]
fn a_file_past_the_recorded_count_is_merged_in() {
    // A stray shard-2.db next to a 2-shard layout (e.g. files copied in by hand)
    // still holds records: they must be moved, not ignored.
    let dir = TempDir::new("reshard");
    let written = write_layout(dir.path(), 3);
    for i in 0..3 {
        let mut store = SqliteStore::open(&dir.path().join(shard_file_name(i)), SYNC).unwrap();
        store.meta_set("shard_count", "2").unwrap();
    }
    assert!(matches!(
        reshard::prepare(dir.path(), 2, SYNC).unwrap(),
        Outcome::Moved { from: 2, .. }
    ));
    assert_eq!(read_layout(dir.path(), 2), written);
}

/// The exhaustive crash test of the move: for every durable step k (a commit, the
/// commit mark, a file removal or rename), stop right after step k as a crash would,
/// then run again: the result is the full, correct layout.
#[test]
fn a_move_interrupted_after_any_step_completes_without_loss_or_duplicates() {
    for (from, to) in [(2, 3), (2, 1)] {
        let mut stop = 1u64;
        loop {
            let dir = TempDir::new("reshard");
            let written = write_layout(dir.path(), from);
            let first = reshard::prepare_with(dir.path(), to, SYNC, &options(5, Some(stop)));
            let done = match first {
                Err(ReshardError::Interrupted) => false,
                Ok(Outcome::Moved { .. }) => true,
                other => panic!("{from} -> {to}, stop {stop}: {other:?}"),
            };
            if !done {
                // A second crash during the resumed run, then a clean run.
                let second =
                    reshard::prepare_with(dir.path(), to, SYNC, &options(5, Some(stop / 2 + 1)));
                assert!(
                    matches!(second, Err(ReshardError::Interrupted) | Ok(_)),
                    "{second:?}"
                );
                reshard::prepare(dir.path(), to, SYNC).unwrap();
            }
            assert_eq!(
                read_layout(dir.path(), to),
                written,
                "{from} -> {to}, stopped after step {stop}"
            );
            if done {
                break;
            }
            stop += 1;
        }
        assert!(stop > 10, "the move took several steps ({stop})");
    }
}

#[test]
fn an_interrupted_move_is_abandoned_when_the_old_count_comes_back() {
    let dir = TempDir::new("reshard");
    let written = write_layout(dir.path(), 2);
    let first = reshard::prepare_with(dir.path(), 3, SYNC, &options(3, Some(5)));
    assert!(matches!(first, Err(ReshardError::Interrupted)), "{first:?}");
    assert_eq!(
        reshard::prepare(dir.path(), 2, SYNC).unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(read_layout(dir.path(), 2), written, "staging files removed");
}

#[test]
fn an_interrupted_move_to_three_is_redone_for_four() {
    let dir = TempDir::new("reshard");
    let written = write_layout(dir.path(), 2);
    let first = reshard::prepare_with(dir.path(), 3, SYNC, &options(3, Some(7)));
    assert!(matches!(first, Err(ReshardError::Interrupted)), "{first:?}");
    reshard::prepare(dir.path(), 4, SYNC).unwrap();
    assert_eq!(read_layout(dir.path(), 4), written);
}

#[test]
fn an_unknown_table_with_rows_stops_the_move_and_keeps_the_files() {
    let dir = TempDir::new("reshard");
    let written = write_layout(dir.path(), 2);
    {
        let connection = rusqlite::Connection::open(dir.path().join(shard_file_name(1))).unwrap();
        connection
            .execute_batch("CREATE TABLE hints (x BLOB); INSERT INTO hints VALUES (x'00');")
            .unwrap();
    }
    let error = reshard::prepare(dir.path(), 3, SYNC).unwrap_err();
    assert!(error.to_string().contains("hints"), "{error}");
    {
        let connection = rusqlite::Connection::open(dir.path().join(shard_file_name(1))).unwrap();
        connection.execute_batch("DROP TABLE hints").unwrap();
    }
    assert_eq!(
        reshard::prepare(dir.path(), 2, SYNC).unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(read_layout(dir.path(), 2), written);
}

#[test]
fn source_files_from_before_hints_are_moved() {
    // A relay of an earlier version wrote no forwarding_hints table. Only the first
    // source is opened through the store (for its shard count), so the others may
    // still lack it.
    let dir = TempDir::new("reshard");
    let mut written = write_layout(dir.path(), 2);
    {
        let path = dir.path().join(shard_file_name(1));
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch("DROP TABLE forwarding_hints")
            .unwrap();
    }
    written
        .hints
        .retain(|routing_id, _| shard_of(routing_id, 2) != 1);
    assert!(!written.hints.is_empty(), "shard 0 still holds hints");
    assert!(matches!(
        reshard::prepare(dir.path(), 3, SYNC).unwrap(),
        Outcome::Moved { from: 2, .. }
    ));
    assert_eq!(read_layout(dir.path(), 3), written);
}
