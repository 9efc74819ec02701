//! Everything one shard owns, behind the shard's one `RefCell` (single-threaded):
//! the per-key indices of its routing ids, identities and key hashes (§10.2), the
//! sessions living here, gathers in progress and storage work waiting by token.

use std::collections::HashMap;
use std::rc::Rc;

use crate::keyed::device_sync::DeviceSyncIndex;
use crate::keyed::hints::HintIndex;
use crate::keyed::mailbox::Mailboxes;
use crate::keyed::nonce::NonceCache;
use crate::keyed::ratelimit::TokenBucket;
use crate::keyed::sender_map::SenderMap;
use crate::mesh::SessionRef;
use crate::protocol::Id64;
use crate::storage::RecoveryProofRecord;

use super::gather::Gather;
use super::pending::Pending;
use super::session::outbound::SessionHandle;

/// The two rate buckets of one routing_id (§8).
pub struct Buckets {
    pub general: TokenBucket,
    pub recovery: TokenBucket,
    /// Open sessions using them; a full bucket with no session may be dropped.
    pub sessions: usize,
}

type Map<K, V> = HashMap<K, V, ahash::RandomState>;

pub struct State {
    pub mailboxes: Mailboxes,
    pub sender_map: SenderMap,
    pub nonces: NonceCache,
    pub device_sync: DeviceSyncIndex,
    /// Sessions to push device-sync messages to, by (identity, device), for the
    /// identities this shard owns; the sessions may live on any shard.
    pub device_sessions: Map<(Id64, Id64), Vec<SessionRef>>,
    pub proofs: Map<Id64, RecoveryProofRecord>,
    /// Forwarding hints of the routing ids this shard owns (§5.13), rebuilt from
    /// storage at startup.
    pub hints: HintIndex,
    pub gathers: Map<u64, Gather>,
    pub buckets: Map<Id64, Buckets>,
    pub sessions: Map<u64, Rc<SessionHandle>>,
    pub sessions_by_routing: Map<Id64, Vec<u64>>,
    pub pending: Map<u64, Pending>,
    next_key: u64,
    next_token: u64,
    next_session: u64,
    next_gather: u64,
}

impl State {
    /// A shard's state rebuilt from its store's indices; new storage keys start
    /// above `highest_key`. The sender map and nonce cache get this shard's share
    /// of their process-wide bounds.
    pub fn new(
        mailboxes: Mailboxes,
        device_sync: DeviceSyncIndex,
        proofs: Vec<RecoveryProofRecord>,
        hints: HintIndex,
        highest_key: u64,
        shards: usize,
    ) -> State {
        use crate::limits::{NONCE_CACHE_ENTRIES_MAX, SENDER_MAP_ENTRIES_MAX};
        State {
            mailboxes,
            sender_map: SenderMap::new((SENDER_MAP_ENTRIES_MAX / shards).max(1)),
            nonces: NonceCache::new((NONCE_CACHE_ENTRIES_MAX / shards).max(1)),
            device_sync,
            device_sessions: Map::default(),
            proofs: proofs.into_iter().map(|p| (p.key_hash, p)).collect(),
            hints,
            gathers: Map::default(),
            buckets: Map::default(),
            sessions: Map::default(),
            sessions_by_routing: Map::default(),
            pending: Map::default(),
            next_key: highest_key,
            next_token: 0,
            next_session: 0,
            next_gather: 0,
        }
    }

    /// The next shard-local storage key (blobs, device-sync messages and hints
    /// share one counter).
    pub fn next_key(&mut self) -> u64 {
        self.next_key += 1;
        self.next_key
    }

    /// The next token for storage work.
    pub fn next_token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    pub fn next_session(&mut self) -> u64 {
        self.next_session += 1;
        self.next_session
    }

    pub fn next_gather(&mut self) -> u64 {
        self.next_gather += 1;
        self.next_gather
    }
}
