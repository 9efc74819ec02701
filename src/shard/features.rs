//! Device sync (§5.6, §5.7), recovery proofs (§5.8-§5.10) and the purge steps
//! (§5.11) on the shards that own their keys: device-sync messages by identity,
//! proofs by key_hash, blobs by routing_id (§10.2). Replies are sent only after
//! commit.

use std::rc::Rc;

use crate::keyed::mailbox::Quota;
use crate::limits::RECOVERY_PROOF_LIFETIME_SECS;
use crate::mesh::{
    AckDeviceSync, GatherPart, GatherTo, MeshMessage, Part, PurgeDeviceSync, PurgeProof,
    PushOrdered, QueryProofs, RegisterDevice, ReplyFrames, ReplyTo, StoreDeviceSync, StoreProof,
    UnregisterDevice,
};
use crate::protocol::{ErrorCode, Id64, encode};
use crate::storage::{DeviceSyncRecord, RecoveryProofRecord, StorageError, WriteOp};

use super::Shard;
use super::owner::storage_failed;
use super::pending::{DeviceSyncCommit, Pending, ProofCommit, PurgeStep};

fn quota(shard: &Shard) -> Quota {
    Quota {
        max_blobs: shard.config.max_blobs_per_user,
        max_bytes: shard.config.max_storage_per_user,
    }
}

/// Stores a DeviceSyncMessage under the device-sync quota (§5.6, §9).
pub fn store_device_sync(shard: &Rc<Shard>, m: StoreDeviceSync) {
    let now = shard.now();
    let ttl = shard.config.blob_ttl_secs;
    let identity = m.identity;
    let fits = shard.state.borrow().device_sync.fits_quota(
        &identity,
        m.payload.len(),
        quota(shard),
        now,
        ttl,
    );
    if !fits {
        let frame = shard.error_frame(ErrorCode::QuotaExceeded, Some(&m.request_message_id), None);
        shard.send_reply(m.reply, frame);
        return;
    }
    let key = shard.state.borrow_mut().next_key();
    let record = DeviceSyncRecord {
        key,
        id: crate::protocol::ids::random_uuid(),
        identity,
        target: m.target,
        sender_device_id: m.sender_device_id,
        payload: m.payload,
        version: m.version,
        created_at_secs: now,
    };
    shard.state.borrow_mut().device_sync.reserve(record.clone());
    let work = DeviceSyncCommit {
        reply: m.reply,
        request_message_id: m.request_message_id,
        identity,
        key,
    };
    let ops = vec![WriteOp::InsertDeviceSync(record)];
    if let Err(Pending::DeviceSync(work)) = shard.submit_refusable(ops, Pending::DeviceSync(work)) {
        let mut state = shard.state.borrow_mut();
        state.device_sync.remove_key(&identity, key);
        drop(state);
        shard.refuse_overloaded(work.reply, &work.request_message_id);
    }
}

/// The commit of a device-sync insert: reply, then push live (§4.7); or, if it
/// failed, `storage_unavailable` and the reservation undone.
pub fn device_sync_committed(
    shard: &Rc<Shard>,
    work: DeviceSyncCommit,
    result: Result<(), StorageError>,
) {
    let identity = work.identity;
    if let Err(error) = result {
        let mut state = shard.state.borrow_mut();
        state.device_sync.remove_key(&identity, work.key);
        drop(state);
        let what = "device-sync store";
        storage_failed(shard, work.reply, &work.request_message_id, what, &error);
        return;
    }
    let now = shard.now();
    let ack = encode::stored_ack(now, &work.request_message_id, None);
    shard.send_reply(work.reply, ack);
    let (frame, sessions) = {
        let mut state = shard.state.borrow_mut();
        let Some(record) = state.device_sync.commit(&identity, work.key) else {
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
        let message = PushOrdered {
            session: session.session,
            frame: frame.clone(),
        };
        shard.post(session.shard, MeshMessage::PushOrdered(message));
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
pub fn ack_device_sync(shard: &Shard, m: AckDeviceSync) {
    let key = shard
        .state
        .borrow_mut()
        .device_sync
        .remove_acked(&m.identity, &m.target, &m.id);
    if let Some(key) = key {
        let ops = vec![WriteOp::DeleteDeviceSync { key }];
        shard.submit_unrefusable(ops, Pending::Delete);
    }
}

/// Registers a session for live device-sync pushes and answers with its pending
/// messages, atomically, so nothing is missed or sent twice (§4.6).
pub fn register_device(shard: &Rc<Shard>, m: RegisterDevice) {
    let now = shard.now();
    let frames = {
        let mut state = shard.state.borrow_mut();
        state
            .device_sessions
            .entry((m.identity, m.device))
            .or_default()
            .push(m.session);
        let ttl = shard.config.blob_ttl_secs;
        let pending = state
            .device_sync
            .pending_for(&m.identity, &m.device, now, ttl);
        pending
            .iter()
            .map(|record| device_sync_frame(record, now))
            .collect()
    };
    let reply = ReplyTo {
        shard: m.session.shard,
        session: m.session.session,
        slot: m.slot,
    };
    let message = MeshMessage::ReplyFrames(ReplyFrames { reply, frames });
    shard.post(m.session.shard, message);
}

pub fn unregister_device(shard: &Shard, m: UnregisterDevice) {
    let mut state = shard.state.borrow_mut();
    let key = (m.identity, m.device);
    if let Some(sessions) = state.device_sessions.get_mut(&key) {
        sessions.retain(|s| *s != m.session);
        if sessions.is_empty() {
            state.device_sessions.remove(&key);
        }
    }
}

/// RecoveryProofStore (§5.8): inserts or replaces, 90 days.
pub fn store_proof(shard: &Rc<Shard>, m: StoreProof) {
    let now = shard.now();
    let record = RecoveryProofRecord {
        key_hash: m.key_hash,
        proof_data: m.proof_data,
        created_at_secs: now,
        expires_at_secs: now + RECOVERY_PROOF_LIFETIME_SECS,
    };
    let work = ProofCommit {
        reply: m.reply,
        request_message_id: m.request_message_id,
        record: record.clone(),
    };
    let ops = vec![WriteOp::UpsertProof(record)];
    if let Err(Pending::Proof(work)) = shard.submit_refusable(ops, Pending::Proof(work)) {
        shard.refuse_overloaded(work.reply, &work.request_message_id);
    }
}

/// The commit of a proof: visible to queries from now on, then the ack.
pub fn proof_committed(shard: &Rc<Shard>, work: ProofCommit, result: Result<(), StorageError>) {
    if let Err(error) = result {
        let what = "recovery proof store";
        storage_failed(shard, work.reply, &work.request_message_id, what, &error);
        return;
    }
    let record = work.record;
    shard
        .state
        .borrow_mut()
        .proofs
        .insert(record.key_hash, record);
    shard.metrics().recovery_vouchers_total.inc();
    publish_proof_count(shard);
    let ack = encode::stored_ack(shard.now(), &work.request_message_id, None);
    shard.send_reply(work.reply, ack);
}

fn publish_proof_count(shard: &Shard) {
    let count = shard.state.borrow().proofs.len() as u64;
    shard.metrics().recovery_proofs_active.set(count);
}

/// This shard's part of a RecoveryProofQuery: its unexpired proofs.
pub fn query_proofs(shard: &Rc<Shard>, m: QueryProofs) {
    let now = shard.now();
    let found = {
        let state = shard.state.borrow();
        m.key_hashes
            .iter()
            .filter_map(|hash| state.proofs.get(hash))
            .filter(|proof| proof.expires_at_secs > now)
            .map(|proof| (proof.key_hash, proof.proof_data.clone()))
            .collect()
    };
    report_part(shard, m.gather, Part::Proofs(found));
}

/// Purge step 1 (§5.11) on the session's own shard: every blob of `routing_id`.
pub fn purge_blobs(shard: &Rc<Shard>, gather: GatherTo, routing_id: Id64) {
    let now = shard.now();
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
    finish_step(shard, gather, ops, Part::BlobsDeleted(counted));
}

/// Purge step 3: every device-sync message of the identity, for all devices.
pub fn purge_device_sync(shard: &Rc<Shard>, m: PurgeDeviceSync) {
    let now = shard.now();
    let ttl = shard.config.blob_ttl_secs;
    let (keys, counted) = {
        let mut state = shard.state.borrow_mut();
        let live = state.device_sync.count_deliverable(&m.identity, now, ttl);
        (state.device_sync.remove_identity(&m.identity), live)
    };
    let ops = keys
        .into_iter()
        .map(|key| WriteOp::DeleteDeviceSync { key })
        .collect();
    finish_step(shard, m.gather, ops, Part::DeviceSyncDeleted(counted));
}

/// Purge step 4: the proof for one hash (0 or 1).
pub fn purge_proof(shard: &Rc<Shard>, m: PurgeProof) {
    let now = shard.now();
    let removed = shard.state.borrow_mut().proofs.remove(&m.key_hash);
    publish_proof_count(shard);
    let counted = removed.as_ref().is_some_and(|p| p.expires_at_secs > now) as u64;
    let ops = if removed.is_some() {
        vec![WriteOp::DeleteProof {
            key_hash: m.key_hash,
        }]
    } else {
        Vec::new()
    };
    finish_step(shard, m.gather, ops, Part::ProofsDeleted(counted));
}

/// Commits a purge step's deletions, then reports its part (at once if none).
fn finish_step(shard: &Rc<Shard>, gather: GatherTo, ops: Vec<WriteOp>, part: Part) {
    if ops.is_empty() {
        report_part(shard, gather, part);
    } else {
        shard.submit_unrefusable(ops, Pending::PurgeStep(PurgeStep { gather, part }));
    }
}

/// A purge step's deletions finished: its part, or `Failed`, goes to the gather.
pub fn purge_step_committed(shard: &Rc<Shard>, work: PurgeStep, result: Result<(), StorageError>) {
    let part = match result {
        Ok(()) => work.part,
        Err(error) => {
            tracing::warn!(shard = shard.index, %error, "purge step failed");
            Part::Failed
        }
    };
    report_part(shard, work.gather, part);
}

fn report_part(shard: &Rc<Shard>, gather: GatherTo, part: Part) {
    let message = MeshMessage::GatherPart(GatherPart { gather, part });
    shard.post(gather.shard, message);
}

/// Expiry of device-sync messages, hints and recovery proofs (§10.6).
pub fn expire(shard: &Shard) {
    let now = shard.now();
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
        shard.submit_unrefusable(ops, Pending::Delete);
    }
}
