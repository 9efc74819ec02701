//! What a shard does for federation (PROTOCOL.md §11.4, §11.7): finds its oldest
//! offload candidates, replaces an offloaded blob by its forwarding hint in one
//! transaction, and stores blobs a peer offloads here.
//!
//! Invariants: a blob leaves storage only in the transaction that writes its hint,
//! and only after the peer accepted it; an accepted offer is answered only after
//! its insert committed.

use crate::mesh::{AcceptOffload, Candidate, OffloadCandidates, OffloadCommit};
use crate::protocol::Id64;
use crate::protocol::encode;
use crate::storage::{BlobRecord, HintRecord, StorageError, WriteOp};

use super::Shard;
use super::owner::{blob_committed, push_live};
use super::pending::{CandidatesRead, HintSwap, OfferCommit, Pending, ReadData};
use super::session::outbound::OutFrame;

/// Answers with this shard's oldest candidates, read from storage.
pub fn candidates(shard: &Shard, m: OffloadCandidates) {
    let entries = shard.state.borrow().mailboxes.oldest_offloadable(
        m.limit,
        shard.now(),
        shard.config.blob_ttl_secs,
        |id| m.exclude.contains(id),
    );
    if entries.is_empty() {
        let _ = m.reply.try_send(Vec::new());
        return;
    }
    let keys = entries.iter().map(|(_, e)| e.key).collect();
    let work = CandidatesRead {
        reply: m.reply,
        entries,
    };
    shard.submit_read(keys, Pending::CandidatesRead(work));
}

/// The candidates' data has been read: blobs deleted meanwhile are left out; a
/// failed read offers none.
pub fn candidates_read(shard: &Shard, work: CandidatesRead, data: Option<ReadData>) {
    let Some(data) = data else {
        tracing::warn!(shard = shard.index, "offload candidates read failed");
        let _ = work.reply.try_send(Vec::new());
        return;
    };
    let found = work
        .entries
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
    let _ = work.reply.try_send(found);
}

/// The peer accepted a blob (§11.7 step 4): if it is still stored, delete it and
/// write its hint in one transaction. If it was acked or purged meanwhile, nothing
/// is written.
pub fn commit(shard: &Shard, m: OffloadCommit) {
    let now = shard.now();
    let ttl = shard.config.blob_ttl_secs;
    let entry = shard
        .state
        .borrow()
        .mailboxes
        .deliverable(&m.recipient, m.key, now, ttl)
        .filter(|e| e.id == m.id);
    let Some(entry) = entry else {
        let _ = m.reply.try_send(false);
        return;
    };
    let hint = HintRecord {
        key: shard.state.borrow_mut().next_key(),
        blob_id: m.id,
        routing_id: m.recipient,
        relay_url: m.relay_url,
        created_at_secs: entry.created_at_secs,
        expires_at_secs: entry.created_at_secs.saturating_add(ttl),
    };
    let ops = vec![
        WriteOp::DeleteBlob { key: m.key },
        WriteOp::InsertHint(hint.clone()),
    ];
    let work = HintSwap {
        recipient: m.recipient,
        key: m.key,
        hint,
        reply: m.reply,
    };
    shard.submit_unrefusable(ops, Pending::HintSwap(work));
}

/// The offload transaction committed (or failed: then the blob stays, untouched).
pub fn hint_swapped(shard: &Shard, work: HintSwap, result: Result<(), StorageError>) {
    if let Err(error) = result {
        tracing::warn!(shard = shard.index, %error, "offload commit failed");
        let _ = work.reply.try_send(false);
        return;
    }
    let hint = work.hint;
    let removed = {
        let mut state = shard.state.borrow_mut();
        let removed = state.mailboxes.remove_key(&work.recipient, work.key);
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
        let ops = vec![WriteOp::DeleteHint { key: hint.key }];
        shard.submit_unrefusable(ops, Pending::Delete);
    }
    shard.publish_blob_count();
    let _ = work.reply.try_send(true);
}

/// Stores a blob a peer offloaded (§11.4 item 4): a new id, the original
/// `created_at_secs`, the given `hop_count`, the next `seq`; no per-user quota (§9).
pub fn accept(shard: &Shard, m: AcceptOffload) {
    let id = crate::protocol::ids::random_uuid();
    let (key, seq) = {
        let mut state = shard.state.borrow_mut();
        let key = state.next_key();
        let size = m.data.len() as u32;
        let seq =
            state
                .mailboxes
                .reserve(m.recipient, key, id, m.created_at_secs, m.hop_count, size);
        (key, seq)
    };
    let record = BlobRecord {
        key,
        id,
        recipient: m.recipient,
        data: m.data.clone(),
        created_at_secs: m.created_at_secs,
        hop_count: m.hop_count,
        seq,
    };
    let work = OfferCommit {
        recipient: m.recipient,
        key,
        id,
        data: m.data,
        reply: m.reply,
    };
    shard.submit_unrefusable(vec![WriteOp::InsertBlob(record)], Pending::Offer(work));
}

/// An accepted offer's insert finished: the answer, then the live push.
pub fn offer_committed(shard: &Shard, work: OfferCommit, result: Result<(), StorageError>) {
    let recipient = work.recipient;
    if let Err(error) = result {
        tracing::warn!(shard = shard.index, %error, "offloaded blob store failed");
        let mut state = shard.state.borrow_mut();
        state.mailboxes.remove_key(&recipient, work.key);
        drop(state);
        let _ = work.reply.try_send(false);
        return;
    }
    let still_there = blob_committed(shard, &recipient, work.key);
    let _ = work.reply.try_send(true);
    if still_there {
        let id = work.id.to_string();
        let frame = OutFrame {
            bytes: encode::encrypted_update(shard.now(), &id, &recipient, &work.data).into(),
            blob: Some(work.id),
        };
        push_live(shard, &recipient, frame);
    }
}

/// The ForwardingHints frame for a new session (§4.6 item 2, §5.13), if federation
/// is enabled and the routing id has unexpired hints.
pub fn hints_frame(shard: &Shard, routing_id: &Id64) -> Option<Vec<u8>> {
    if !shard.config.federation_enabled {
        return None;
    }
    let now = shard.now();
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
