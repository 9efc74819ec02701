//! What a shard does for the routing ids it owns (§5.2, §5.4, §4.7, §7.3):
//! quota-checked stores committed through its store, acks, live pushes, delivery
//! notifications and expiry; also the handshake nonces of the keys it owns (§4.3)
//! and its part of shutdown (§14.1).
//!
//! Invariants: a `Stored` ack is sent only from a committed store; a failed commit
//! removes its index entries and answers `storage_unavailable`, never an ack.

use std::rc::Rc;

use crate::keyed::mailbox::Quota;
use crate::mesh::{MeshMessage, NonceCheck, Notify, PushOrdered, ReplyTo, StoreBlob};
use crate::protocol::decode::AckStatus;
use crate::protocol::encode::{self, Notification};
use crate::protocol::{ErrorCode, Id64};
use crate::storage::{BlobId, BlobRecord, StorageError, WriteOp};

use super::Shard;
use super::pending::{Pending, StoreCommit};
use super::session::outbound::{Backlog, OutFrame, SessionHandle};

/// Checks and records a handshake nonce for a key this shard owns (§4.3 step 4).
pub fn check_nonce(shard: &Shard, m: NonceCheck) {
    let verdict = shard.state.borrow_mut().nonces.check(m.key, m.nonce, m.now);
    let _ = m.verdict.try_send(verdict);
}

/// Stores a blob for a recipient this shard owns (§5.2 steps 1-3).
pub fn store(shard: &Rc<Shard>, m: StoreBlob) {
    let now = shard.now();
    let config = &shard.config;
    let quota = Quota {
        max_blobs: config.max_blobs_per_user,
        max_bytes: config.max_storage_per_user,
    };
    let recipient = m.recipient;
    let fits = shard.state.borrow().mailboxes.fits_quota(
        &recipient,
        m.ciphertext.len(),
        quota,
        now,
        config.blob_ttl_secs,
    );
    if !fits {
        shard.send_reply(m.reply, shard.failed_ack(&m.request_message_id));
        return;
    }
    let id = crate::protocol::ids::random_uuid();
    let (key, seq) = {
        let mut state = shard.state.borrow_mut();
        let key = state.next_key();
        let size = m.ciphertext.len() as u32;
        (
            key,
            state.mailboxes.reserve(recipient, key, id, now, 0, size),
        )
    };
    let record = BlobRecord {
        key,
        id,
        recipient,
        data: m.ciphertext.clone(),
        created_at_secs: now,
        hop_count: 0,
        seq,
    };
    let work = StoreCommit {
        reply: m.reply,
        request_message_id: m.request_message_id,
        recipient,
        key,
        id,
        sender: m.sender,
        ciphertext: m.ciphertext,
    };
    let ops = vec![WriteOp::InsertBlob(record)];
    if let Err(Pending::Store(work)) = shard.submit_refusable(ops, Pending::Store(work)) {
        let mut state = shard.state.borrow_mut();
        state.mailboxes.remove_key(&recipient, key);
        drop(state);
        shard.refuse_overloaded(work.reply, &work.request_message_id);
    }
}

/// A store's commit finished: the `Stored` ack, then the live push (§5.2, §4.7);
/// or, if it failed, `storage_unavailable` and the reservation undone.
pub fn store_committed(shard: &Rc<Shard>, work: StoreCommit, result: Result<(), StorageError>) {
    let recipient = work.recipient;
    if let Err(error) = result {
        let mut state = shard.state.borrow_mut();
        state.mailboxes.remove_key(&recipient, work.key);
        drop(state);
        storage_failed(
            shard,
            work.reply,
            &work.request_message_id,
            "blob store",
            &error,
        );
        return;
    }
    let now = shard.now();
    let still_there = blob_committed(shard, &recipient, work.key);
    let blob_id = work.id.to_string();
    let ack = encode::stored_ack(now, &work.request_message_id, Some(&blob_id));
    shard.send_reply(work.reply, ack);
    if still_there {
        if let Some(sender) = work.sender {
            shard.state.borrow_mut().sender_map.insert(work.id, sender);
        }
        let frame = OutFrame {
            bytes: encode::encrypted_update(now, &blob_id, &recipient, &work.ciphertext).into(),
            blob: Some(work.id),
        };
        push_live(shard, &recipient, frame);
    }
}

/// A blob's insert committed: its mailbox entry becomes deliverable and counts as
/// created. False if it was acked or purged while the insert was queued.
pub fn blob_committed(shard: &Shard, recipient: &Id64, key: u64) -> bool {
    let still_there = shard.state.borrow_mut().mailboxes.commit(recipient, key);
    shard.metrics().blobs_created_total.inc();
    still_there
}

/// A store whose commit failed: `storage_unavailable`, never an ack (§6.1).
pub fn storage_failed(
    shard: &Rc<Shard>,
    reply: ReplyTo,
    request_message_id: &str,
    what: &str,
    error: &StorageError,
) {
    tracing::warn!(shard = shard.index, %error, "{what} failed");
    let frame = shard.error_frame(
        ErrorCode::StorageUnavailable,
        Some(request_message_id),
        Some(1),
    );
    shard.send_reply(reply, frame);
}

/// Pushes a committed blob to every live session of its recipient (§4.7).
pub fn push_live(shard: &Shard, recipient: &Id64, frame: OutFrame) {
    let state = shard.state.borrow();
    let Some(ids) = state.sessions_by_routing.get(recipient) else {
        return;
    };
    for id in ids {
        if let Some(handle) = state.sessions.get(id) {
            let mut out = handle.out.borrow_mut();
            if matches!(out.backlog, Backlog::Live) {
                out.push(frame.clone());
            }
        }
    }
}

/// A live device-sync push for a session here, after its pending replies.
pub fn push_ordered(shard: &Shard, m: PushOrdered) {
    if let Some(handle) = shard.state.borrow().sessions.get(&m.session) {
        handle.out.borrow_mut().push_ordered(m.frame);
    }
}

/// Routes a notification to the shard that owns the sender's sessions (§7.3).
pub fn notify(shard: &Rc<Shard>, sender: Id64, blob_id: BlobId, status: Notification) {
    let message = Notify {
        sender,
        blob_id,
        status,
    };
    shard.post(shard.owner_of(&sender), MeshMessage::Notify(message));
}

/// Queues a notification on every session of its sender on this shard.
pub fn notify_local(shard: &Shard, m: Notify) {
    let state = shard.state.borrow();
    let Some(ids) = state.sessions_by_routing.get(&m.sender) else {
        return;
    };
    let frame = encode::notification(shard.now(), &m.blob_id.to_string(), m.status);
    for id in ids {
        if let Some(handle) = state.sessions.get(id) {
            handle.out.borrow_mut().notify(frame.clone());
        }
    }
}

/// A blob was written to a recipient socket: the `Delivered` notification (§7.3).
pub fn blob_written(shard: &Rc<Shard>, session: &SessionHandle, blob: &BlobId) {
    if session.suppress_presence {
        return;
    }
    let sender = shard.state.borrow_mut().sender_map.mark_delivered(blob);
    if let Some(sender) = sender {
        notify(shard, sender, *blob, Notification::Delivered);
    }
}

/// An Acknowledgment from a session this shard owns (§5.4): any status deletes.
pub fn ack(shard: &Rc<Shard>, session: &SessionHandle, blob_id: &str, status: AckStatus) {
    let Ok(id) = uuid::Uuid::parse_str(blob_id) else {
        return;
    };
    let now = shard.now();
    let removed = shard.state.borrow_mut().mailboxes.remove_id(
        &session.routing_id,
        &id,
        now,
        shard.config.blob_ttl_secs,
    );
    let Some(entry) = removed else { return };
    let sender = shard.state.borrow_mut().sender_map.remove(&id);
    if let (Some(sender), AckStatus::ReceivedByRecipient, false) =
        (sender, status, session.suppress_presence)
    {
        notify(shard, sender, id, Notification::ReceivedByRecipient);
    }
    delete_keys(shard, vec![entry.key]);
    shard.publish_blob_count();
}

/// Queues the deletion of stored blobs (acks, expiry); no reply is due.
pub fn delete_keys(shard: &Shard, keys: Vec<u64>) {
    if keys.is_empty() {
        return;
    }
    let ops = keys
        .into_iter()
        .map(|key| WriteOp::DeleteBlob { key })
        .collect();
    shard.submit_unrefusable(ops, Pending::Delete);
}

/// A deletion finished; a failed one is only logged (the rows expire anyway).
pub fn deleted(shard: &Shard, result: Result<(), StorageError>) {
    if let Err(error) = result {
        tracing::warn!(shard = shard.index, %error, "blob delete failed");
    }
}

/// Deletes expired blobs (§10.6) and their sender-map entries.
pub fn expire(shard: &Shard) {
    let now = shard.now();
    let expired = shard
        .state
        .borrow_mut()
        .mailboxes
        .take_expired(now, shard.config.blob_ttl_secs);
    if expired.is_empty() {
        return;
    }
    {
        let mut state = shard.state.borrow_mut();
        for (_, entry) in &expired {
            state.sender_map.remove(&entry.id);
        }
    }
    tracing::debug!(
        shard = shard.index,
        count = expired.len(),
        "expired blobs deleted"
    );
    shard
        .metrics()
        .blobs_expired_total
        .add(expired.len() as u64);
    delete_keys(shard, expired.into_iter().map(|(_, e)| e.key).collect());
    shard.publish_blob_count();
}

/// Graceful shutdown (§14.1): sessions stop reading and drain.
pub fn shut_down(shard: &Shard) {
    shard.shutdown.fire();
    shard.shared.global_metrics.set_draining(true);
    for handle in shard.state.borrow().sessions.values() {
        handle.out.borrow_mut().begin_drain();
    }
}
