//! The runtime-free per-key state: token buckets (§8), mailboxes and quotas (§7,
//! §9), the sender map (§7.3), the nonce cache and signature checks (§4.3).

use vauchi_relay::keyed::auth;
use vauchi_relay::keyed::mailbox::{Mailboxes, Quota};
use vauchi_relay::keyed::nonce::{NonceCache, NonceVerdict};
use vauchi_relay::keyed::ratelimit::TokenBucket;
use vauchi_relay::keyed::sender_map::SenderMap;
use vauchi_relay::protocol::Id64;
use vauchi_relay::protocol::decode::HandshakeAuth;
use vauchi_relay::storage::BlobMeta;

fn id(byte: u8) -> Id64 {
    Id64([byte; 32])
}

#[test]
fn a_bucket_starts_full_and_refuses_with_the_retry_formula() {
    let mut bucket = TokenBucket::new(60, 0.0);
    for _ in 0..60 {
        assert_eq!(bucket.take(0.0), Ok(()));
    }
    // N = 60: ceil((1 - 0) * 60 / 60) = 1.
    assert_eq!(bucket.take(0.0), Err(1));
    // Refill is N/60 per second: one token after one second.
    assert_eq!(bucket.take(1.0), Ok(()));
    let mut slow = TokenBucket::new(3, 0.0);
    for _ in 0..3 {
        slow.take(0.0).unwrap();
    }
    // N = 3: ceil(1 * 60 / 3) = 20 s; half a token later, ceil(0.5 * 20) = 10.
    assert_eq!(slow.take(0.0), Err(20));
    assert_eq!(slow.take(10.0), Err(10));
    assert_eq!(slow.take(20.0), Ok(()));
    assert!(!slow.is_full(20.0));
    assert!(slow.is_full(80.0));
}

fn meta(key: u64, recipient: Id64, created: u64, seq: u64, len: u32) -> BlobMeta {
    BlobMeta {
        key,
        id: uuid::Uuid::new_v4(),
        recipient,
        created_at_secs: created,
        hop_count: 0,
        seq,
        data_len: len,
    }
}

#[test]
fn quotas_count_unexpired_blobs_and_bytes() {
    let quota = Quota {
        max_blobs: 2,
        max_bytes: 100,
    };
    let mut index = Mailboxes::rebuild(vec![meta(1, id(1), 1000, 0, 40)]);
    assert!(index.fits_quota(&id(1), 60, quota, 1000, 500));
    assert!(
        !index.fits_quota(&id(1), 61, quota, 1000, 500),
        "bytes + new > max"
    );
    index.reserve(id(1), 2, uuid::Uuid::new_v4(), 1000, 0, 10);
    assert!(
        !index.fits_quota(&id(1), 1, quota, 1000, 500),
        "count >= max, pending included"
    );
    // Once the first blob has expired it no longer counts.
    assert!(index.fits_quota(&id(1), 1, quota, 1500, 500));
    assert!(
        index.fits_quota(
            &id(1),
            1,
            Quota {
                max_blobs: 0,
                max_bytes: 0
            },
            1000,
            500
        ),
        "0 = unlimited"
    );
}

#[test]
fn snapshots_are_ordered_committed_and_unexpired() {
    let (a, b, c) = (
        meta(1, id(1), 20, 0, 1),
        meta(2, id(1), 10, 1, 1),
        meta(3, id(1), 10, 2, 1),
    );
    let mut index = Mailboxes::rebuild(vec![a, b, c, meta(4, id(2), 5, 0, 1)]);
    let order: Vec<u64> = index
        .snapshot(&id(1), None, 25, 100)
        .iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(order, vec![2, 3, 1], "by (created_at_secs, seq)");
    index.reserve(id(1), 5, uuid::Uuid::new_v4(), 30, 0, 1);
    assert_eq!(
        index.snapshot(&id(1), Some(3), 30, 100).len(),
        0,
        "pending entries are not delivered"
    );
    assert!(index.commit(&id(1), 5));
    assert_eq!(index.snapshot(&id(1), Some(3), 30, 100).len(), 1);
    assert_eq!(
        index.snapshot(&id(1), None, 125, 100).len(),
        1,
        "expired blobs are absent"
    );
    let expired = index.take_expired(125, 100);
    assert_eq!(expired.len(), 4);
    assert_eq!(index.blob_count(), 1);
}

#[test]
fn acks_delete_only_the_recipients_own_blobs() {
    let blob = meta(1, id(1), 10, 0, 3);
    let mut index = Mailboxes::rebuild(vec![blob]);
    assert!(
        index.remove_id(&id(2), &blob.id, 10, 100).is_none(),
        "foreign blob"
    );
    assert!(index.remove_id(&id(1), &blob.id, 10, 100).is_some());
    assert!(
        index.remove_id(&id(1), &blob.id, 10, 100).is_none(),
        "idempotent"
    );
    assert_eq!((index.blob_count(), index.data_bytes()), (0, 0));
}

#[test]
fn the_sender_map_evicts_the_oldest_and_notifies_delivered_once() {
    let mut map = SenderMap::new(2);
    let blobs: Vec<uuid::Uuid> = (0..3).map(|_| uuid::Uuid::new_v4()).collect();
    map.insert(blobs[0], id(1));
    map.insert(blobs[1], id(2));
    map.insert(blobs[2], id(3));
    assert_eq!(map.len(), 2);
    assert_eq!(map.mark_delivered(&blobs[0]), None, "evicted");
    assert_eq!(map.mark_delivered(&blobs[1]), Some(id(2)));
    assert_eq!(map.mark_delivered(&blobs[1]), None, "at most once");
    assert_eq!(map.remove(&blobs[1]), Some(id(2)));
    for _ in 0..10 {
        map.insert(uuid::Uuid::new_v4(), id(4));
    }
    assert_eq!(map.len(), 2, "bounded under churn");
}

#[test]
fn nonces_are_used_up_for_120_seconds_and_the_cache_is_bounded() {
    let mut cache = NonceCache::new(2);
    assert_eq!(cache.check(id(1), [1; 32], 1000), NonceVerdict::Fresh);
    assert_eq!(cache.check(id(1), [1; 32], 1119), NonceVerdict::Replayed);
    assert_eq!(
        cache.check(id(2), [1; 32], 1119),
        NonceVerdict::Fresh,
        "per key"
    );
    assert_eq!(cache.check(id(3), [1; 32], 1119), NonceVerdict::Full);
    assert_eq!(
        cache.check(id(1), [1; 32], 1120),
        NonceVerdict::Fresh,
        "after 120 s"
    );
}

fn appendix_a3() -> HandshakeAuth {
    let mut signature = [0u8; 64];
    hex::decode_to_slice(
        "ba60e1debfee7a5fa58161f2224e26671a39ed105deefae3adc97603c469bae8f20690af899d5bb9f3c40d01ed842cb6d4e066bebd899862100c485cc31f320a",
        &mut signature,
    )
    .unwrap();
    let mut nonce = [0u8; 32];
    hex::decode_to_slice(
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        &mut nonce,
    )
    .unwrap();
    HandshakeAuth {
        identity_public_key: Id64::parse(
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        )
        .unwrap(),
        nonce,
        signature,
        timestamp: 1_767_225_600,
    }
}

#[test]
fn appendix_a3_verifies_and_tampering_does_not() {
    let auth = appendix_a3();
    assert!(auth::signature_verifies(&auth));
    let client = auth.identity_public_key;
    assert!(auth::precheck(&auth, &client, 1_767_225_540));
    assert!(auth::precheck(&auth, &client, 1_767_225_660));
    assert!(
        !auth::precheck(&auth, &client, 1_767_225_661),
        "outside ±60 s"
    );
    assert!(
        !auth::precheck(&auth, &id(9), 1_767_225_600),
        "key must be the client_id"
    );
    let mut later = auth.clone();
    later.timestamp += 1;
    assert!(!auth::signature_verifies(&later));
    let mut flipped = auth;
    flipped.nonce[0] ^= 1;
    assert!(!auth::signature_verifies(&flipped));
}
