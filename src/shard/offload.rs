//! What a shard does for federation (PROTOCOL.md §11.4, §11.7): finds its oldest
//! offload candidates, replaces an offloaded blob by its forwarding hint in one
//! transaction, and stores blobs a peer offloads here.
//!
//! Invariants: a blob leaves storage only in the transaction that writes its hint,
//! and only after the peer accepted it; an accepted offer is answered only after
//! its insert committed.

use std::rc::Rc;

use crate::protocol::Id64;
use crate::protocol::encode;
use crate::session::mailbox::Entry;
use crate::storage::writer::Job;
use crate::storage::{BlobId, BlobRecord, HintRecord, WriteOp};

use super::outbound::OutFrame;
use super::owner::{self, Pending};
use super::{Shard, unix_now};

/// One offload candidate with its data (§11.7 step 2).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub shard: usize,
    pub key: u64,
    pub id: BlobId,
    pub recipient: Id64,
    pub created_at_secs: u64,
    pub seq: u64,
    pub data: Vec<u8>,
}

/// Answers with this shard's oldest candidates, read from storage.
pub fn candidates(
    shard: &Rc<Shard>,
    limit: usize,
    exclude: &ahash::HashSet<BlobId>,
    reply: flume::Sender<Vec<Candidate>>,
) {
    let entries = shard.state.borrow().mailboxes.oldest_offloadable(
        limit,
        unix_now(),
        shard.config.blob_ttl_secs,
        |id| exclude.contains(id),
    );
    if entries.is_empty() {
        let _ = reply.try_send(Vec::new());
        return;
    }
    let keys = entries.iter().map(|(_, e)| e.key).collect();
    let token = owner::next_token(shard);
    shard
        .state
        .borrow_mut()
        .pending
        .insert(token, Pending::OffloadRead { reply, entries });
    shard.storage.submit(Job::Read { token, keys });
}

/// The candidates' data has been read: blobs deleted meanwhile are left out.
pub fn candidates_read(
    shard: &Shard,
    reply: flume::Sender<Vec<Candidate>>,
    entries: Vec<(Id64, Entry)>,
    data: Vec<Option<Vec<u8>>>,
) {
    let found = entries
        .into_iter()
        .zip(data)
        .filter_map(|((recipient, entry), data)| {
            Some(Candidate {
                shard: shard.index,
                key: entry.key,
                id: entry.id,
                recipient,
                created_at_secs: entry.created_at_secs,
                seq: entry.seq,
                data: data?,
            })
        })
        .collect();
    let _ = reply.try_send(found);
}

/// The peer accepted a blob (§11.7 step 4): if it is still stored, delete it and
/// write its hint in one transaction. If it was acked or purged meanwhile, nothing
/// is written.
pub fn commit(
    shard: &Rc<Shard>,
    recipient: Id64,
    key: u64,
    id: BlobId,
    relay_url: String,
    reply: flume::Sender<bool>,
) {
    let now = unix_now();
    let ttl = shard.config.blob_ttl_secs;
    let entry = shard
        .state
        .borrow()
        .mailboxes
        .deliverable(&recipient, key, now, ttl)
        .filter(|e| e.id == id);
    let Some(entry) = entry else {
        let _ = reply.try_send(false);
        return;
    };
    let hint = HintRecord {
        key: owner::next_key(shard),
        blob_id: id,
        routing_id: recipient,
        relay_url,
        created_at_secs: entry.created_at_secs,
        expires_at_secs: entry.created_at_secs.saturating_add(ttl),
    };
    let ops = vec![
        WriteOp::DeleteBlob { key },
        WriteOp::InsertHint(hint.clone()),
    ];
    owner::submit_unrefusable(
        shard,
        ops,
        Pending::Offloaded {
            recipient,
            key,
            hint,
            reply,
        },
    );
}

/// The offload transaction committed (or failed: then the blob stays, untouched).
pub fn offloaded(
    shard: &Shard,
    recipient: Id64,
    key: u64,
    hint: HintRecord,
    reply: flume::Sender<bool>,
    committed: bool,
) {
    if !committed {
        let _ = reply.try_send(false);
        return;
    }
    let removed = {
        let mut state = shard.state.borrow_mut();
        let removed = state.mailboxes.remove_key(&recipient, key);
        if removed.is_some() {
            state.sender_map.remove(&hint.blob_id);
        }
        removed
    };
    if removed.is_some() {
        shard.state.borrow_mut().hints.insert(hint);
    } else {
        // Acked or purged while the transaction was queued: the hint must not
        // outlive the blob (§11.7 step 4, §5.11).
        owner::submit_unrefusable(
            shard,
            vec![WriteOp::DeleteHint { key: hint.key }],
            Pending::Delete,
        );
    }
    shard.publish_blob_count();
    let _ = reply.try_send(true);
}

/// Stores a blob a peer offloaded (§11.4 item 4): a new id, the original
/// `created_at_secs`, the given `hop_count`, the next `seq`; no per-user quota (§9).
pub fn accept(
    shard: &Rc<Shard>,
    recipient: Id64,
    data: Vec<u8>,
    created_at_secs: u64,
    hop_count: u8,
    reply: flume::Sender<bool>,
) {
    let id = crate::protocol::ids::random_uuid();
    let key = owner::next_key(shard);
    let seq = shard.state.borrow_mut().mailboxes.reserve(
        recipient,
        key,
        id,
        created_at_secs,
        hop_count,
        data.len() as u32,
    );
    let record = BlobRecord {
        key,
        id,
        recipient,
        data: data.clone(),
        created_at_secs,
        hop_count,
        seq,
    };
    owner::submit_unrefusable(
        shard,
        vec![WriteOp::InsertBlob(record)],
        Pending::Offer {
            recipient,
            key,
            id,
            data,
            reply,
        },
    );
}

/// An accepted offer's insert finished.
pub fn offer_stored(
    shard: &Rc<Shard>,
    recipient: Id64,
    key: u64,
    id: BlobId,
    data: Vec<u8>,
    reply: flume::Sender<bool>,
    committed: bool,
) {
    if !committed {
        shard
            .state
            .borrow_mut()
            .mailboxes
            .remove_key(&recipient, key);
        let _ = reply.try_send(false);
        return;
    }
    let still_there = shard.state.borrow_mut().mailboxes.commit(&recipient, key);
    shard.metrics().blobs_created_total.inc();
    let _ = reply.try_send(true);
    if still_there {
        let now = unix_now();
        let frame = OutFrame {
            bytes: encode::encrypted_update(now, &id.to_string(), &recipient, &data).into(),
            blob: Some(id),
        };
        owner::push_live(shard, &recipient, frame);
    }
}

/// The ForwardingHints frame for a new session (§4.6 item 2, §5.13), if federation
/// is enabled and the routing id has unexpired hints.
pub fn hints_frame(shard: &Shard, routing_id: &Id64) -> Option<Vec<u8>> {
    if !shard.config.federation_enabled {
        return None;
    }
    let now = unix_now();
    let state = shard.state.borrow();
    let hints = state.hints.unexpired(routing_id, now);
    if hints.is_empty() {
        return None;
    }
    let ids: Vec<String> = hints.iter().map(|h| h.blob_id.to_string()).collect();
    let listed: Vec<(&str, &str, u64)> = hints
        .iter()
        .zip(&ids)
        .map(|(h, id)| (id.as_str(), h.relay_url.as_str(), h.expires_at_secs))
        .collect();
    Some(encode::forwarding_hints(now, &listed))
}
