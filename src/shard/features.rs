//! Device sync (§5.6, §5.7), recovery proofs (§5.8-§5.10) and purge (§5.11) on the
//! shards that own their keys: device-sync messages by identity, proofs by
//! key_hash, blobs by routing_id (§10.2). Replies are sent only after commit.

use std::rc::Rc;

use crate::limits::RECOVERY_PROOF_LIFETIME_SECS;
use crate::protocol::{ErrorCode, Id64, encode};
use crate::session::mailbox::Quota;
use crate::storage::{DeviceSyncRecord, RecoveryProofRecord, WriteOp};

use super::dispatch;
use super::mesh::{GatherTo, MeshMessage, Part, ReplyTo, SessionRef};
use super::owner::{self, Pending};
use super::{Shard, unix_now};

fn quota(shard: &Shard) -> Quota {
    Quota {
        max_blobs: shard.config.max_blobs_per_user,
        max_bytes: shard.config.max_storage_per_user,
    }
}

/// Stores a DeviceSyncMessage under the device-sync quota (§5.6, §9).
#[allow(clippy::too_many_arguments)] // The message's own fields.
pub fn store_device_sync(
    shard: &Rc<Shard>,
    reply: ReplyTo,
    request_message_id: String,
    identity: Id64,
    target: Id64,
    sender_device_id: String,
    payload: Vec<u8>,
    version: u64,
) {
    let now = unix_now();
    let ttl = shard.config.blob_ttl_secs;
    if !shard.state.borrow().device_sync.fits_quota(
        &identity,
        payload.len(),
        quota(shard),
        now,
        ttl,
    ) {
        let frame = shard.error_frame(ErrorCode::QuotaExceeded, Some(&request_message_id), None);
        owner::send_reply(shard, reply, frame);
        return;
    }
    let key = owner::next_key(shard);
    let record = DeviceSyncRecord {
        key,
        id: crate::protocol::ids::random_uuid(),
        identity,
        target,
        sender_device_id,
        payload,
        version,
        created_at_secs: now,
    };
    shard.state.borrow_mut().device_sync.reserve(record.clone());
    let pending = Pending::DeviceSync {
        reply,
        request_message_id,
        identity,
        key,
    };
    if let Err(Pending::DeviceSync {
        request_message_id, ..
    }) = owner::submit_refusable(shard, vec![WriteOp::InsertDeviceSync(record)], pending)
    {
        shard
            .state
            .borrow_mut()
            .device_sync
            .remove_key(&identity, key);
        owner::refuse_overloaded(shard, reply, &request_message_id);
    }
}

/// The commit of a device-sync insert: reply, then push live (§4.7).
pub fn device_sync_committed(
    shard: &Rc<Shard>,
    reply: ReplyTo,
    request_message_id: &str,
    identity: Id64,
    key: u64,
) {
    let now = unix_now();
    owner::send_reply(
        shard,
        reply,
        encode::stored_ack(now, request_message_id, None),
    );
    let (frame, sessions) = {
        let mut state = shard.state.borrow_mut();
        let Some(record) = state.device_sync.commit(&identity, key) else {
            return;
        };
        let frame = device_sync_frame(record, now);
        let target = record.target;
        let sessions = state
            .device_sessions
            .get(&(identity, target))
            .cloned()
            .unwrap_or_default();
        (frame, sessions)
    };
    for session in sessions {
        let message = MeshMessage::PushOrdered {
            session: session.session,
            frame: frame.clone(),
        };
        dispatch::route_post(shard, session.shard, message);
    }
}

fn device_sync_frame(record: &DeviceSyncRecord, now: u64) -> Vec<u8> {
    encode::device_sync_message(
        now,
        &record.id.to_string(),
        &record.identity,
        &record.target,
        &record.sender_device_id,
        &record.payload,
        record.version,
    )
}

/// DeviceSyncAck (§5.7): deletes the matching message; no reply.
pub fn ack_device_sync(shard: &Rc<Shard>, identity: Id64, target: Id64, id: uuid::Uuid) {
    let key = shard
        .state
        .borrow_mut()
        .device_sync
        .remove_acked(&identity, &target, &id);
    if let Some(key) = key {
        owner::submit_unrefusable(
            shard,
            vec![WriteOp::DeleteDeviceSync { key }],
            Pending::Delete,
        );
    }
}

/// Registers a session for live device-sync pushes and answers with its pending
/// messages, atomically, so nothing is missed or sent twice (§4.6).
pub fn register_device(
    shard: &Rc<Shard>,
    identity: Id64,
    device: Id64,
    session: SessionRef,
    slot: u64,
) {
    let now = unix_now();
    let frames = {
        let mut state = shard.state.borrow_mut();
        state
            .device_sessions
            .entry((identity, device))
            .or_default()
            .push(session);
        let pending =
            state
                .device_sync
                .pending_for(&identity, &device, now, shard.config.blob_ttl_secs);
        pending
            .iter()
            .map(|record| device_sync_frame(record, now))
            .collect()
    };
    let reply = ReplyTo {
        shard: session.shard,
        session: session.session,
        slot,
    };
    dispatch::route_post(
        shard,
        session.shard,
        MeshMessage::ReplyFrames { reply, frames },
    );
}

pub fn unregister_device(shard: &Rc<Shard>, identity: Id64, device: Id64, session: SessionRef) {
    let mut state = shard.state.borrow_mut();
    if let Some(sessions) = state.device_sessions.get_mut(&(identity, device)) {
        sessions.retain(|s| *s != session);
        if sessions.is_empty() {
            state.device_sessions.remove(&(identity, device));
        }
    }
}

/// RecoveryProofStore (§5.8): inserts or replaces, 90 days.
pub fn store_proof(
    shard: &Rc<Shard>,
    reply: ReplyTo,
    request_message_id: String,
    key_hash: Id64,
    proof_data: Vec<u8>,
) {
    let now = unix_now();
    let record = RecoveryProofRecord {
        key_hash,
        proof_data,
        created_at_secs: now,
        expires_at_secs: now + RECOVERY_PROOF_LIFETIME_SECS,
    };
    let pending = Pending::Proof {
        reply,
        request_message_id,
        record: record.clone(),
    };
    if let Err(Pending::Proof {
        request_message_id, ..
    }) = owner::submit_refusable(shard, vec![WriteOp::UpsertProof(record)], pending)
    {
        owner::refuse_overloaded(shard, reply, &request_message_id);
    }
}

/// The commit of a proof: visible to queries from now on.
pub fn proof_committed(
    shard: &Rc<Shard>,
    reply: ReplyTo,
    request_message_id: &str,
    record: RecoveryProofRecord,
) {
    shard
        .state
        .borrow_mut()
        .proofs
        .insert(record.key_hash, record);
    shard.metrics().recovery_vouchers_total.inc();
    publish_proof_count(shard);
    owner::send_reply(
        shard,
        reply,
        encode::stored_ack(unix_now(), request_message_id, None),
    );
}

fn publish_proof_count(shard: &Shard) {
    let count = shard.state.borrow().proofs.len() as u64;
    shard.metrics().recovery_proofs_active.set(count);
}

/// This shard's part of a RecoveryProofQuery: its unexpired proofs.
pub fn query_proofs(shard: &Rc<Shard>, gather: GatherTo, key_hashes: Vec<Id64>) {
    let now = unix_now();
    let found = {
        let state = shard.state.borrow();
        key_hashes
            .iter()
            .filter_map(|hash| state.proofs.get(hash))
            .filter(|proof| proof.expires_at_secs > now)
            .map(|proof| (proof.key_hash, proof.proof_data.clone()))
            .collect()
    };
    dispatch::route_post(
        shard,
        gather.shard,
        MeshMessage::GatherPart {
            gather,
            part: Part::Proofs(found),
        },
    );
}

/// Purge step 1 (§5.11) on the session's own shard: every blob of `routing_id`.
pub fn purge_blobs(shard: &Rc<Shard>, gather: GatherTo, routing_id: Id64) {
    let now = unix_now();
    let ttl = shard.config.blob_ttl_secs;
    let entries = shard.state.borrow_mut().mailboxes.remove_all(&routing_id);
    {
        let mut state = shard.state.borrow_mut();
        for entry in &entries {
            // Dropped without notifications (§5.11).
            state.sender_map.remove(&entry.id);
        }
    }
    shard.publish_blob_count();
    let counted = entries
        .iter()
        .filter(|e| e.committed && !e.is_expired(now, ttl))
        .count() as u64;
    // Step 2: the forwarding hints go in the same commit, uncounted.
    let hint_keys = shard.state.borrow_mut().hints.remove_routing(&routing_id);
    let ops = entries
        .iter()
        .map(|e| WriteOp::DeleteBlob { key: e.key })
        .chain(hint_keys.into_iter().map(|key| WriteOp::DeleteHint { key }))
        .collect();
    finish_part(shard, gather, ops, Part::BlobsDeleted(counted));
}

/// Purge step 3: every device-sync message of the identity, for all devices.
pub fn purge_device_sync(shard: &Rc<Shard>, gather: GatherTo, identity: Id64) {
    let now = unix_now();
    let ttl = shard.config.blob_ttl_secs;
    let (keys, counted) = {
        let mut state = shard.state.borrow_mut();
        let live = state.device_sync.count_deliverable(&identity, now, ttl);
        (state.device_sync.remove_identity(&identity), live)
    };
    let ops = keys
        .into_iter()
        .map(|key| WriteOp::DeleteDeviceSync { key })
        .collect();
    finish_part(shard, gather, ops, Part::DeviceSyncDeleted(counted));
}

/// Purge step 4: the proof for one hash (0 or 1).
pub fn purge_proof(shard: &Rc<Shard>, gather: GatherTo, key_hash: Id64) {
    let now = unix_now();
    let removed = shard.state.borrow_mut().proofs.remove(&key_hash);
    publish_proof_count(shard);
    let counted = removed.as_ref().is_some_and(|p| p.expires_at_secs > now) as u64;
    let ops = if removed.is_some() {
        vec![WriteOp::DeleteProof { key_hash }]
    } else {
        Vec::new()
    };
    finish_part(shard, gather, ops, Part::ProofsDeleted(counted));
}

/// Commits a purge step's deletions, then reports its part (at once if none).
fn finish_part(shard: &Rc<Shard>, gather: GatherTo, ops: Vec<WriteOp>, part: Part) {
    if ops.is_empty() {
        dispatch::route_post(
            shard,
            gather.shard,
            MeshMessage::GatherPart { gather, part },
        );
    } else {
        owner::submit_unrefusable(shard, ops, Pending::PurgePart { gather, part });
    }
}

/// Expiry of device-sync messages and recovery proofs (§10.6).
pub fn expire(shard: &Shard) {
    let now = unix_now();
    let mut ops: Vec<WriteOp> = {
        let mut state = shard.state.borrow_mut();
        state
            .device_sync
            .take_expired(now, shard.config.blob_ttl_secs)
            .into_iter()
            .map(|key| WriteOp::DeleteDeviceSync { key })
            .collect()
    };
    ops.extend(
        shard
            .state
            .borrow_mut()
            .hints
            .take_expired(now)
            .into_iter()
            .map(|key| WriteOp::DeleteHint { key }),
    );
    shard.state.borrow_mut().proofs.retain(|key_hash, proof| {
        let keep = proof.expires_at_secs > now;
        if !keep {
            ops.push(WriteOp::DeleteProof {
                key_hash: *key_hash,
            });
        }
        keep
    });
    publish_proof_count(shard);
    if !ops.is_empty() {
        owner::submit_unrefusable(shard, ops, Pending::Delete);
    }
}
