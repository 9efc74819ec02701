//! The peer registry (§11.3) and offload choices (§11.7 steps 1, 2 and 5), and the
//! per-shard candidate search of the mailbox index, and the peers gossip discovered
//! (§15.2).

use vauchi_relay::federation::registry::{
    BoundedSet, Capacity, Discovered, LinkId, Refusal, Registry,
};
use vauchi_relay::keyed::mailbox::Mailboxes;
use vauchi_relay::protocol::Id64;
use vauchi_relay::storage::BlobMeta;

const OWN: &str = "own-relay";
const REFUSE: f64 = 0.95;

fn capacity(used: u64, max: u64) -> Capacity {
    Capacity {
        used,
        max,
        blob_count: 0,
    }
}

#[test]
fn the_least_full_peer_with_an_outbound_link_is_chosen_ties_to_the_smallest_id() {
    let mut registry = Registry::default();
    registry
        .attach_outbound("b", "ws://b", LinkId(1), capacity(50, 100))
        .unwrap();
    registry
        .attach_outbound("a", "ws://a", LinkId(2), capacity(50, 100))
        .unwrap();
    registry
        .attach_outbound("c", "ws://c", LinkId(3), capacity(60, 100))
        .unwrap();
    assert_eq!(registry.choose(OWN, REFUSE), Some("a"));
    registry.report_capacity("c", capacity(10, 100));
    assert_eq!(registry.choose(OWN, REFUSE), Some("c"));
}

#[test]
fn inbound_only_draining_full_unknown_and_self_peers_are_never_chosen() {
    let mut registry = Registry::default();
    assert_eq!(registry.attach_inbound("in", LinkId(1)), Ok(None));
    registry.report_capacity("in", capacity(0, 100));
    registry
        .attach_outbound("full", "ws://f", LinkId(2), capacity(95, 100))
        .unwrap();
    registry
        .attach_outbound("zero", "ws://z", LinkId(3), capacity(0, 0))
        .unwrap();
    registry
        .attach_outbound(OWN, "ws://own", LinkId(4), capacity(0, 100))
        .unwrap();
    registry
        .attach_outbound("drains", "ws://d", LinkId(5), capacity(0, 100))
        .unwrap();
    registry.mark_draining("drains");
    assert_eq!(registry.choose(OWN, REFUSE), None);
    // A new handshake clears the draining mark (§11.6).
    registry.detach("drains", LinkId(5));
    registry
        .attach_outbound("drains", "ws://d", LinkId(6), capacity(0, 100))
        .unwrap();
    assert_eq!(registry.choose(OWN, REFUSE), Some("drains"));
}

#[test]
fn inbound_and_outbound_links_are_independent_and_duplicates_are_refused() {
    let mut registry = Registry::default();
    registry
        .attach_outbound("p", "ws://p1", LinkId(1), capacity(0, 100))
        .unwrap();
    assert_eq!(registry.attach_inbound("p", LinkId(2)), Ok(None));
    // A second inbound replaces the first; the outbound link stays.
    assert_eq!(registry.attach_inbound("p", LinkId(3)), Ok(Some(LinkId(2))));
    assert_eq!(
        registry.attach_outbound("p", "ws://p2", LinkId(4), capacity(0, 100)),
        Err(Refusal::DuplicateLink)
    );
    registry.detach("p", LinkId(3));
    let peer = registry.get("p").unwrap();
    assert_eq!(peer.outbound, Some(LinkId(1)));
    assert_eq!(peer.inbound, None);
    assert_eq!(peer.url.as_deref(), Some("ws://p1"));
    assert_eq!(registry.choose(OWN, REFUSE), Some("p"));
    let counts = registry.counts();
    assert_eq!((counts.connected, counts.disconnected), (1, 0));
    registry.detach("p", LinkId(1));
    assert_eq!(registry.counts().disconnected, 1);
}

#[test]
fn capacity_refusals_pause_a_peer_until_a_report_shows_room_other_refusals_skip_the_blob() {
    let mut registry = Registry::default();
    registry
        .attach_outbound("p", "ws://p", LinkId(1), capacity(0, 100))
        .unwrap();
    let blob = uuid::Uuid::new_v4();
    registry.refused("p", blob, "integrity check failed");
    assert!(registry.get("p").unwrap().refused.contains(&blob));
    assert_eq!(registry.choose(OWN, REFUSE), Some("p"));
    registry.refused("p", uuid::Uuid::new_v4(), "at capacity");
    assert_eq!(registry.choose(OWN, REFUSE), None);
    registry.report_capacity("p", capacity(100, 100));
    assert_eq!(registry.choose(OWN, REFUSE), None);
    registry.report_capacity("p", capacity(10, 100));
    assert_eq!(registry.choose(OWN, REFUSE), Some("p"));
    registry.refused("p", uuid::Uuid::new_v4(), "draining");
    assert_eq!(registry.choose(OWN, REFUSE), None);
}

#[test]
fn a_bounded_set_forgets_its_oldest_member() {
    let mut set = BoundedSet::new(2);
    set.insert(1);
    set.insert(2);
    set.insert(2);
    set.insert(3);
    assert!(!set.contains(&1));
    assert!(set.contains(&2) && set.contains(&3));
    assert_eq!(set.len(), 2);
}

fn id(byte: u8) -> Id64 {
    Id64([byte; 32])
}

fn meta(key: u64, recipient: Id64, created: u64, seq: u64, hop_count: u8) -> BlobMeta {
    BlobMeta {
        key,
        id: uuid::Uuid::from_u128(key as u128),
        recipient,
        created_at_secs: created,
        hop_count,
        seq,
        data_len: 10,
    }
}

#[test]
fn offload_candidates_are_the_oldest_unexpired_hop_zero_blobs_not_excluded() {
    let ttl = 1000;
    let now = 2000;
    let mailboxes = Mailboxes::rebuild(vec![
        meta(1, id(1), 900, 0, 0), // expired
        meta(2, id(1), 1500, 1, 0),
        meta(3, id(2), 1200, 0, 1), // arrived by offload
        meta(4, id(2), 1300, 1, 0),
        meta(5, id(3), 1400, 0, 0), // excluded
        meta(6, id(3), 1600, 1, 0),
        meta(7, id(1), 1700, 2, 0),
    ]);
    let excluded = uuid::Uuid::from_u128(5);
    let found = mailboxes.oldest_offloadable(3, now, ttl, |blob| *blob == excluded);
    let keys: Vec<u64> = found.iter().map(|(_, e)| e.key).collect();
    assert_eq!(keys, vec![4, 2, 6]);
    assert_eq!(found[0].0, id(2));
    let all = mailboxes.oldest_offloadable(10, now, ttl, |_| false);
    let keys: Vec<u64> = all.iter().map(|(_, e)| e.key).collect();
    assert_eq!(keys, vec![4, 5, 2, 6, 7]);
    assert!(
        mailboxes
            .oldest_offloadable(0, now, ttl, |_| false)
            .is_empty()
    );
}

#[test]
fn inbound_relays_are_capped_but_configured_peers_always_enter() {
    use vauchi_relay::limits::FEDERATION_PEERS_MAX;
    let mut registry = Registry::default();
    for i in 0..FEDERATION_PEERS_MAX {
        registry
            .attach_inbound(&format!("in-{i}"), LinkId(i as u64))
            .unwrap();
    }
    assert_eq!(
        registry.attach_inbound("one-too-many", LinkId(1 << 40)),
        Err(Refusal::TooManyPeers)
    );
    registry
        .attach_outbound("configured", "ws://c", LinkId(1 << 41), capacity(0, 100))
        .unwrap();
    assert_eq!(registry.choose(OWN, REFUSE), Some("configured"));
    assert_eq!(registry.urls().collect::<Vec<_>>(), vec!["ws://c"]);
}

// ---- §15.2: discovered peers --------------------------------------------------------

#[test]
fn discovered_peers_are_bounded_forgetting_the_least_recently_advertised() {
    let mut discovered = Discovered::new(3);
    assert!(discovered.remember("a", "ws://a", 100));
    assert!(discovered.remember("b", "ws://b", 100));
    assert!(discovered.remember("c", "ws://c", 100));
    // Advertised again: not new, and now the most recent.
    assert!(!discovered.remember("a", "ws://a2", 100));
    assert_eq!(discovered.url("a"), Some("ws://a2"));
    // A fourth pushes out b, the one advertised least recently.
    assert!(discovered.remember("d", "ws://d", 100));
    assert_eq!(discovered.len(), 3);
    assert!(!discovered.contains("b"));
    assert!(discovered.contains("a") && discovered.contains("c") && discovered.contains("d"));
    assert!(
        discovered.remember("b", "ws://b", 100),
        "forgotten, so new again"
    );
    assert!(!discovered.contains("c"));
}

#[test]
fn discovered_peers_expire_from_their_newest_advertisement() {
    let mut discovered = Discovered::new(10);
    discovered.remember("a", "ws://a", 110);
    discovered.remember("b", "ws://b", 105);
    // Refreshed: the later expiry holds.
    discovered.remember("b", "ws://b", 120);
    discovered.forget_expired(109);
    assert_eq!(discovered.len(), 2);
    discovered.forget_expired(110);
    assert!(!discovered.contains("a") && discovered.contains("b"));
    discovered.forget_expired(120);
    assert!(discovered.is_empty());
    // The order index was emptied too: a full set of new ones fits.
    for i in 0..10 {
        assert!(discovered.remember(&format!("p{i}"), "ws://p", 200));
    }
    assert_eq!(discovered.len(), 10);
}
