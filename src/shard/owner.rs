//! What a shard does for the routing ids it owns (§5.2, §5.4, §4.6, §4.7, §7.3):
//! quota-checked stores committed through the writer thread, acks, connect-time
//! delivery read in chunks, live pushes and delivery notifications.
//!
//! Invariants: a `Stored` ack is sent only from a `Committed(Ok)` completion; a
//! failed commit removes its index entries and answers `storage_unavailable`.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::limits::BACKLOG_CHUNK_BLOBS;
use crate::protocol::decode::AckStatus;
use crate::protocol::encode::{self, Notification};
use crate::protocol::{CloseReason, ErrorCode, Id64};
use crate::session::mailbox::{Entry, Quota};
use crate::storage::writer::{Completion, Job};
use crate::storage::{BlobId, BlobRecord, HintRecord, RecoveryProofRecord, StorageError, WriteOp};

use super::mesh::{GatherTo, MeshMessage, Part, ReplyTo};
use super::outbound::{Backlog, OutFrame, SessionHandle};
use super::{Shard, unix_now};
use super::{dispatch, features, offload};

/// Work queued in the writer thread, by token.
pub enum Pending {
    Store {
        reply: ReplyTo,
        request_message_id: String,
        recipient: Id64,
        key: u64,
        id: BlobId,
        sender: Option<Id64>,
        ciphertext: Vec<u8>,
    },
    Delete,
    Backlog {
        session: u64,
        entries: Vec<Entry>,
    },
    DeviceSync {
        reply: ReplyTo,
        request_message_id: String,
        identity: Id64,
        key: u64,
    },
    Proof {
        reply: ReplyTo,
        request_message_id: String,
        record: RecoveryProofRecord,
    },
    /// Federation: offload candidates whose data is being read.
    OffloadRead {
        reply: flume::Sender<Vec<super::offload::Candidate>>,
        entries: Vec<(Id64, Entry)>,
    },
    /// Federation: a blob replaced by its hint (§11.7 step 4).
    Offloaded {
        recipient: Id64,
        key: u64,
        hint: HintRecord,
        reply: flume::Sender<bool>,
    },
    /// Federation: a blob a peer offloaded here (§11.4).
    Offer {
        recipient: Id64,
        key: u64,
        id: BlobId,
        data: Vec<u8>,
        reply: flume::Sender<bool>,
    },
    /// A purge step's deletions: `part` is reported to the gather once committed.
    PurgePart {
        gather: GatherTo,
        part: Part,
    },
}

pub fn next_token(shard: &Shard) -> u64 {
    let mut state = shard.state.borrow_mut();
    state.next_token += 1;
    state.next_token
}

/// The next shard-local storage key (shared by blobs and device-sync messages).
pub fn next_key(shard: &Shard) -> u64 {
    let mut state = shard.state.borrow_mut();
    state.next_key += 1;
    state.next_key
}

/// Queues a commit that must not be refused (deletions, purge steps): it counts
/// against the writer's limit but is queued even past it, and the hand-over waits
/// for channel room in a task, so the event loop never blocks.
pub fn submit_unrefusable(shard: &Shard, ops: Vec<WriteOp>, pending: Pending) {
    let token = next_token(shard);
    shard.state.borrow_mut().pending.insert(token, pending);
    shard.storage.submit(Job::Commit { token, ops });
}

/// Queues `ops` as one commit answered by `pending`, or gives `pending` back when
/// the writer already has `WRITER_QUEUE_DEPTH` jobs outstanding (the caller answers
/// `overloaded`).
#[allow(clippy::result_large_err)] // Given back by value, as `Mesh::try_send`.
pub fn submit_refusable(shard: &Shard, ops: Vec<WriteOp>, pending: Pending) -> Result<(), Pending> {
    let token = next_token(shard);
    match shard.storage.try_submit(Job::Commit { token, ops }) {
        Ok(()) => {
            shard.state.borrow_mut().pending.insert(token, pending);
            Ok(())
        }
        Err(_) => Err(pending),
    }
}

/// Answers a request the writer could not queue (§5.2: the shard's queue is full).
pub fn refuse_overloaded(shard: &Rc<Shard>, reply: ReplyTo, request_message_id: &str) {
    let frame = shard.error_frame(ErrorCode::Overloaded, Some(request_message_id), Some(1));
    send_reply(shard, reply, frame);
}

/// Stores a blob for a recipient this shard owns (§5.2 steps 1-3).
pub fn store(
    shard: &Rc<Shard>,
    reply: ReplyTo,
    request_message_id: String,
    recipient: Id64,
    ciphertext: Vec<u8>,
    sender: Option<Id64>,
) {
    let now = unix_now();
    let config = &shard.config;
    let quota = Quota {
        max_blobs: config.max_blobs_per_user,
        max_bytes: config.max_storage_per_user,
    };
    let fits = shard.state.borrow().mailboxes.fits_quota(
        &recipient,
        ciphertext.len(),
        quota,
        now,
        config.blob_ttl_secs,
    );
    if !fits {
        send_reply(shard, reply, shard.failed_ack(&request_message_id));
        return;
    }
    let id = crate::protocol::ids::random_uuid();
    let key = next_key(shard);
    let seq = {
        let mut state = shard.state.borrow_mut();
        state
            .mailboxes
            .reserve(recipient, key, id, now, 0, ciphertext.len() as u32)
    };
    let record = BlobRecord {
        key,
        id,
        recipient,
        data: ciphertext.clone(),
        created_at_secs: now,
        hop_count: 0,
        seq,
    };
    let pending = Pending::Store {
        reply,
        request_message_id,
        recipient,
        key,
        id,
        sender,
        ciphertext,
    };
    if let Err(Pending::Store {
        request_message_id, ..
    }) = submit_refusable(shard, vec![WriteOp::InsertBlob(record)], pending)
    {
        shard
            .state
            .borrow_mut()
            .mailboxes
            .remove_key(&recipient, key);
        refuse_overloaded(shard, reply, &request_message_id);
    }
}

/// Handles one writer completion.
pub fn on_completion(shard: &Rc<Shard>, completion: Completion) {
    let (token, result) = match completion {
        Completion::Committed { token, result } => (token, result.map(|()| None)),
        Completion::Read { token, result } => (token, result.map(Some)),
    };
    let Some(pending) = shard.state.borrow_mut().pending.remove(&token) else {
        return;
    };
    let now = unix_now();
    match (pending, result) {
        (
            Pending::Store {
                reply,
                request_message_id,
                recipient,
                key,
                id,
                sender,
                ciphertext,
            },
            Ok(_),
        ) => {
            let still_there = shard.state.borrow_mut().mailboxes.commit(&recipient, key);
            shard.metrics().blobs_created_total.inc();
            let blob_id = id.to_string();
            send_reply(
                shard,
                reply,
                encode::stored_ack(now, &request_message_id, Some(&blob_id)),
            );
            if still_there {
                if let Some(sender) = sender {
                    shard.state.borrow_mut().sender_map.insert(id, sender);
                }
                let frame = OutFrame {
                    bytes: encode::encrypted_update(now, &blob_id, &recipient, &ciphertext).into(),
                    blob: Some(id),
                };
                push_live(shard, &recipient, frame);
            }
        }
        (
            Pending::Store {
                reply,
                request_message_id,
                recipient,
                key,
                ..
            },
            Err(error),
        ) => {
            shard
                .state
                .borrow_mut()
                .mailboxes
                .remove_key(&recipient, key);
            storage_failed(shard, reply, &request_message_id, "blob store", &error);
        }
        (
            Pending::DeviceSync {
                reply,
                request_message_id,
                identity,
                key,
            },
            Ok(_),
        ) => features::device_sync_committed(shard, reply, &request_message_id, identity, key),
        (
            Pending::DeviceSync {
                reply,
                request_message_id,
                identity,
                key,
            },
            Err(error),
        ) => {
            shard
                .state
                .borrow_mut()
                .device_sync
                .remove_key(&identity, key);
            storage_failed(
                shard,
                reply,
                &request_message_id,
                "device-sync store",
                &error,
            );
        }
        (
            Pending::Proof {
                reply,
                request_message_id,
                record,
            },
            Ok(_),
        ) => features::proof_committed(shard, reply, &request_message_id, record),
        (
            Pending::Proof {
                reply,
                request_message_id,
                ..
            },
            Err(error),
        ) => {
            storage_failed(
                shard,
                reply,
                &request_message_id,
                "recovery proof store",
                &error,
            );
        }
        (Pending::PurgePart { gather, part }, result) => {
            let part = if let Err(error) = result {
                tracing::warn!(shard = shard.index, %error, "purge step failed");
                Part::Failed
            } else {
                part
            };
            dispatch::route_post(
                shard,
                gather.shard,
                MeshMessage::GatherPart { gather, part },
            );
        }
        (Pending::OffloadRead { reply, entries }, Ok(Some(data))) => {
            offload::candidates_read(shard, reply, entries, data)
        }
        (Pending::OffloadRead { reply, .. }, _) => {
            tracing::warn!(shard = shard.index, "offload candidates read failed");
            let _ = reply.try_send(Vec::new());
        }
        (
            Pending::Offloaded {
                recipient,
                key,
                hint,
                reply,
            },
            result,
        ) => {
            if let Err(error) = &result {
                tracing::warn!(shard = shard.index, %error, "offload commit failed");
            }
            offload::offloaded(shard, recipient, key, hint, reply, result.is_ok())
        }
        (
            Pending::Offer {
                recipient,
                key,
                id,
                data,
                reply,
            },
            result,
        ) => {
            if let Err(error) = &result {
                tracing::warn!(shard = shard.index, %error, "offloaded blob store failed");
            }
            offload::offer_stored(shard, recipient, key, id, data, reply, result.is_ok())
        }
        (Pending::Delete, Err(error)) => {
            tracing::warn!(shard = shard.index, %error, "blob delete failed")
        }
        (Pending::Delete, Ok(_)) => {}
        (Pending::Backlog { session, entries }, Ok(Some(data))) => {
            backlog_loaded(shard, session, entries, data, now)
        }
        (Pending::Backlog { session, .. }, _) => {
            tracing::warn!(shard = shard.index, "backlog read failed");
            if let Some(handle) = shard.state.borrow().sessions.get(&session) {
                handle
                    .out
                    .borrow_mut()
                    .request_close(CloseReason::InternalError);
            }
        }
    }
    shard.publish_blob_count();
}

/// A store whose commit failed: `storage_unavailable`, never an ack (§6.1).
fn storage_failed(
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
    send_reply(shard, reply, frame);
}

/// Pushes a committed blob to every live session of its recipient (§4.7).
pub fn push_live(shard: &Rc<Shard>, recipient: &Id64, frame: OutFrame) {
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

/// Sends a reply to its session, here or on another shard.
pub fn send_reply(shard: &Rc<Shard>, reply: ReplyTo, frame: Vec<u8>) {
    if reply.shard == shard.index {
        deliver_reply(shard, reply, frame);
    } else {
        shard
            .mesh
            .post(reply.shard, MeshMessage::Reply { reply, frame });
    }
}

/// Fills a reply slot of a session on this shard (gone sessions are skipped).
pub fn deliver_reply(shard: &Shard, reply: ReplyTo, frame: Vec<u8>) {
    let waited = shard
        .state
        .borrow()
        .sessions
        .get(&reply.session)
        .and_then(|h| h.out.borrow_mut().fill(reply.slot, frame));
    if let Some(waited) = waited {
        shard.metrics().observe_duration(waited);
    }
}

/// Routes a notification to the shard that owns the sender's sessions (§7.3).
pub fn notify(shard: &Rc<Shard>, sender: Id64, blob_id: BlobId, status: Notification) {
    let owner = shard.owner_of(&sender);
    if owner == shard.index {
        notify_local(shard, &sender, &blob_id, status);
    } else {
        shard.mesh.post(
            owner,
            MeshMessage::Notify {
                sender,
                blob_id,
                status,
            },
        );
    }
}

/// Queues a notification on every session of `sender` on this shard.
pub fn notify_local(shard: &Shard, sender: &Id64, blob_id: &BlobId, status: Notification) {
    let state = shard.state.borrow();
    let Some(ids) = state.sessions_by_routing.get(sender) else {
        return;
    };
    let frame = encode::notification(unix_now(), &blob_id.to_string(), status);
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
    let now = unix_now();
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
    submit_unrefusable(shard, ops, Pending::Delete);
}

/// Deletes expired blobs (§10.6) and their sender-map entries.
pub fn expire(shard: &Shard) {
    features::expire(shard);
    let now = unix_now();
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

/// Takes the connect-time snapshot for a new session (§4.6): the session must be
/// registered for live push before this runs.
pub fn start_backlog(shard: &Shard, handle: &SessionHandle) {
    let now = unix_now();
    let entries = shard.state.borrow().mailboxes.snapshot(
        &handle.routing_id,
        None,
        now,
        shard.config.blob_ttl_secs,
    );
    let max_key = entries.iter().map(|e| e.key).max();
    handle
        .out
        .borrow_mut()
        .open_backlog(VecDeque::from(entries), max_key);
}

/// Reads the next backlog chunk once the previous one is written; switches the
/// session to live pushes once it has caught up with every committed blob.
pub fn pump_backlog(shard: &Rc<Shard>, handle: &SessionHandle) {
    let now = unix_now();
    let ttl = shard.config.blob_ttl_secs;
    let chunk: Vec<Entry> = {
        let mut out = handle.out.borrow_mut();
        if !out.backlog_drained() {
            return;
        }
        let Backlog::Loading {
            todo,
            max_key,
            reading,
        } = &mut out.backlog
        else {
            return;
        };
        if *reading {
            return;
        }
        if todo.is_empty() {
            let newer =
                shard
                    .state
                    .borrow()
                    .mailboxes
                    .snapshot(&handle.routing_id, *max_key, now, ttl);
            if newer.is_empty() {
                out.finish_backlog();
                return;
            }
            *max_key = newer.iter().map(|e| e.key).max().or(*max_key);
            todo.extend(newer);
        }
        let take = todo.len().min(BACKLOG_CHUNK_BLOBS);
        *reading = true;
        todo.drain(..take).collect()
    };
    let token = next_token(shard);
    let keys = chunk.iter().map(|e| e.key).collect();
    shard.state.borrow_mut().pending.insert(
        token,
        Pending::Backlog {
            session: handle.id,
            entries: chunk,
        },
    );
    shard.storage.submit(Job::Read { token, keys });
}

fn backlog_loaded(
    shard: &Rc<Shard>,
    session: u64,
    entries: Vec<Entry>,
    data: Vec<Option<Vec<u8>>>,
    now: u64,
) {
    let Some(handle) = shard.state.borrow().sessions.get(&session).cloned() else {
        return;
    };
    let ttl = shard.config.blob_ttl_secs;
    let frames: Vec<OutFrame> = {
        let state = shard.state.borrow();
        entries
            .iter()
            .zip(data)
            .filter_map(|(entry, data)| {
                let data = data?;
                // An item deleted or expired after the snapshot is skipped (§4.6).
                if !state
                    .mailboxes
                    .is_deliverable(&handle.routing_id, entry.key, now, ttl)
                {
                    return None;
                }
                let bytes =
                    encode::encrypted_update(now, &entry.id.to_string(), &handle.routing_id, &data);
                Some(OutFrame {
                    bytes: bytes.into(),
                    blob: Some(entry.id),
                })
            })
            .collect()
    };
    {
        let mut out = handle.out.borrow_mut();
        if let Backlog::Loading { reading, .. } = &mut out.backlog {
            *reading = false;
        }
        out.append_backlog(frames);
    }
    pump_backlog(shard, &handle);
}
