//! The per-shard index of forwarding hints (PROTOCOL.md §5.13, §5.11 step 2, §10.6):
//! unexpired hints of a routing_id in (`expires_at_secs`, `blob_id`) order, purge by
//! routing_id, and expiry that hands back the keys to delete.

use vauchi_relay::keyed::hints::HintIndex;
use vauchi_relay::protocol::Id64;
use vauchi_relay::storage::HintRecord;

fn routing(byte: u8) -> Id64 {
    Id64([byte; 32])
}

/// A hint with storage key `key`, for `routing`, expiring at `expires`, whose blob
/// id sorts as `blob`.
fn hint(key: u64, routing_byte: u8, expires: u64, blob: u128) -> HintRecord {
    HintRecord {
        key,
        blob_id: uuid::Uuid::from_u128(blob),
        routing_id: routing(routing_byte),
        relay_url: format!("ws://peer-{key}.example:8080"),
        created_at_secs: expires.saturating_sub(100),
        expires_at_secs: expires,
    }
}

fn keys(hints: &[&HintRecord]) -> Vec<u64> {
    hints.iter().map(|h| h.key).collect()
}

#[test]
fn unexpired_hints_come_in_expiry_then_blob_id_order() {
    let mut index = HintIndex::default();
    index.insert(hint(1, 7, 300, 0x10));
    index.insert(hint(2, 7, 100, 0x90));
    index.insert(hint(3, 8, 50, 0x01));
    index.insert(hint(4, 7, 200, 0x20));
    // Same expiry as key 2: the smaller blob id first, whatever the key.
    index.insert(hint(5, 7, 100, 0x30));
    assert_eq!(index.len(), 5);
    assert!(!index.is_empty());
    assert_eq!(keys(&index.unexpired(&routing(7), 0)), vec![5, 2, 4, 1]);
    assert_eq!(index.unexpired(&routing(7), 0)[0], &hint(5, 7, 100, 0x30));
    assert_eq!(keys(&index.unexpired(&routing(8), 0)), vec![3]);
    assert!(index.unexpired(&routing(9), 0).is_empty());
}

#[test]
fn a_hint_expiring_now_or_earlier_is_not_listed_but_stays_until_taken() {
    let mut index = HintIndex::default();
    index.insert(hint(1, 7, 10, 1));
    index.insert(hint(2, 7, 20, 2));
    assert_eq!(keys(&index.unexpired(&routing(7), 9)), vec![1, 2]);
    assert_eq!(keys(&index.unexpired(&routing(7), 10)), vec![2]);
    assert_eq!(keys(&index.unexpired(&routing(7), 19)), vec![2]);
    assert!(index.unexpired(&routing(7), 20).is_empty());
    assert!(index.unexpired(&routing(7), u64::MAX).is_empty());
    assert_eq!(index.len(), 2, "listing removes nothing");
}

#[test]
fn take_expired_removes_and_returns_exactly_the_expired_keys() {
    let mut index = HintIndex::default();
    index.insert(hint(1, 7, 15, 1));
    index.insert(hint(2, 8, 10, 2));
    index.insert(hint(3, 7, 5, 3));
    index.insert(hint(4, 9, 10, 4));
    index.insert(hint(5, 7, 10, 5));
    assert!(index.take_expired(4).is_empty());
    assert_eq!(index.len(), 5);
    // Ordered by expiry, then key.
    assert_eq!(index.take_expired(10), vec![3, 2, 4, 5]);
    assert_eq!(index.len(), 1);
    assert!(index.take_expired(10).is_empty(), "taken once");
    // What is left is still listed, with nothing of the taken ones.
    assert_eq!(keys(&index.unexpired(&routing(7), 0)), vec![1]);
    assert!(index.unexpired(&routing(8), 0).is_empty());
    assert!(index.unexpired(&routing(9), 0).is_empty());
    assert_eq!(index.take_expired(u64::MAX), vec![1]);
    assert_eq!(index.len(), 0);
    assert!(index.is_empty());
    // The index works on after being emptied.
    index.insert(hint(6, 8, 30, 6));
    assert_eq!(keys(&index.unexpired(&routing(8), 0)), vec![6]);
    assert_eq!(index.len(), 1);
}

#[test]
fn hints_expiring_at_the_largest_time_are_taken_at_it() {
    let mut index = HintIndex::default();
    index.insert(hint(1, 7, u64::MAX, 1));
    index.insert(hint(2, 7, u64::MAX - 1, 2));
    assert_eq!(index.take_expired(u64::MAX - 1), vec![2]);
    assert_eq!(index.take_expired(u64::MAX), vec![1]);
    assert!(index.is_empty());
}

#[test]
fn remove_routing_purges_one_routing_id_and_returns_its_keys() {
    let mut index = HintIndex::default();
    index.insert(hint(4, 7, 30, 1));
    index.insert(hint(1, 8, 10, 2));
    index.insert(hint(2, 7, 10, 3));
    index.insert(hint(3, 7, 20, 4));
    // Expired hints are purged too.
    let mut removed = index.remove_routing(&routing(7));
    removed.sort_unstable();
    assert_eq!(removed, vec![2, 3, 4]);
    assert_eq!(index.len(), 1);
    assert!(index.unexpired(&routing(7), 0).is_empty());
    assert_eq!(keys(&index.unexpired(&routing(8), 0)), vec![1]);
    assert!(index.remove_routing(&routing(7)).is_empty());
    assert!(index.remove_routing(&routing(9)).is_empty());
    // Purged hints are not handed out again by expiry.
    assert_eq!(index.take_expired(u64::MAX), vec![1]);
}

#[test]
fn rebuild_holds_every_stored_hint_expired_ones_included() {
    let stored = vec![
        hint(1, 7, 300, 0x10),
        hint(2, 7, 100, 0x90),
        hint(3, 8, 50, 0x01),
        hint(5, 7, 100, 0x30),
    ];
    let mut index = HintIndex::rebuild(stored);
    assert_eq!(index.len(), 4);
    assert_eq!(keys(&index.unexpired(&routing(7), 0)), vec![5, 2, 1]);
    assert_eq!(keys(&index.unexpired(&routing(7), 100)), vec![1]);
    assert_eq!(index.take_expired(100), vec![3, 2, 5]);
    assert_eq!(index.len(), 1);
    assert!(HintIndex::rebuild(Vec::new()).is_empty());
}

// ---- startup: what a shard starts from ------------------------------------------------

#[test]
fn the_shard_key_counter_starts_above_every_stored_key_hints_included() {
    use vauchi_relay::shard::runtime::ShardIndex;
    use vauchi_relay::storage::{BlobMeta, DeviceSyncRecord};

    let blob = BlobMeta {
        key: 4,
        id: uuid::Uuid::from_u128(1),
        recipient: routing(7),
        created_at_secs: 1,
        hop_count: 0,
        seq: 0,
        data_len: 1,
    };
    let sync = DeviceSyncRecord {
        key: 6,
        id: uuid::Uuid::from_u128(2),
        identity: routing(8),
        target: routing(9),
        sender_device_id: String::new(),
        payload: Vec::new(),
        version: 0,
        created_at_secs: 1,
    };
    let init = |blobs: Vec<BlobMeta>, device_sync: Vec<DeviceSyncRecord>, hints| ShardIndex {
        blobs,
        device_sync,
        proofs: Vec::new(),
        hints,
    };
    assert_eq!(init(Vec::new(), Vec::new(), Vec::new()).highest_key(), 0);
    assert_eq!(
        init(vec![blob], vec![sync.clone()], Vec::new()).highest_key(),
        6
    );
    assert_eq!(
        init(vec![blob], vec![sync.clone()], vec![hint(9, 7, 10, 3)]).highest_key(),
        9
    );
    assert_eq!(
        init(
            Vec::new(),
            Vec::new(),
            vec![hint(3, 7, 10, 3), hint(2, 8, 10, 4)]
        )
        .highest_key(),
        3
    );
    assert_eq!(
        init(vec![blob], vec![sync], vec![hint(5, 7, 10, 3)]).highest_key(),
        6
    );
}
