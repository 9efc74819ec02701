//! Every mesh message to its handler, and the two ways to send one: `route` (a
//! request that may be refused with `overloaded`) and `route_post` (a message that
//! must not be lost). Work for a key this shard owns is handled in place, through
//! the same handlers, so local and cross-shard requests behave identically.

use std::rc::Rc;

use super::mesh::MeshMessage;
use super::{Shard, accept, features, gather, offload, owner};

/// Sends a request to the owner shard, handling it here when this shard owns it.
/// Gives the message back when the owner's queue is full.
#[allow(clippy::result_large_err)] // See `Mesh::try_send`.
pub fn route(shard: &Rc<Shard>, owner: usize, message: MeshMessage) -> Result<(), MeshMessage> {
    if owner == shard.index {
        handle(shard, message);
        Ok(())
    } else {
        shard.mesh.try_send(owner, message)
    }
}

/// Sends a message that must arrive (a reply, a notification, a registration).
pub fn route_post(shard: &Rc<Shard>, owner: usize, message: MeshMessage) {
    if owner == shard.index {
        handle(shard, message);
    } else {
        shard.mesh.post(owner, message);
    }
}

/// Handles one message addressed to this shard.
pub fn handle(shard: &Rc<Shard>, message: MeshMessage) {
    match message {
        MeshMessage::Session {
            fd,
            remainder,
            handshake,
            slot,
        } => accept::adopt(shard, fd, remainder, handshake, slot),
        MeshMessage::NonceCheck {
            key,
            nonce,
            now,
            verdict,
        } => {
            let result = shard.state.borrow_mut().nonces.check(key, nonce, now);
            let _ = verdict.try_send(result);
        }
        MeshMessage::Store {
            reply,
            request_message_id,
            recipient,
            ciphertext,
            sender,
        } => owner::store(
            shard,
            reply,
            request_message_id,
            recipient,
            ciphertext,
            sender,
        ),
        MeshMessage::Reply { reply, frame } => owner::deliver_reply(shard, reply, frame),
        MeshMessage::ReplyFrames { reply, frames } => {
            let state = shard.state.borrow();
            let handle = state.sessions.get(&reply.session);
            if let Some(waited) =
                handle.and_then(|h| h.out.borrow_mut().fill_many(reply.slot, frames))
            {
                shard.metrics().observe_duration(waited);
            }
        }
        MeshMessage::PushOrdered { session, frame } => {
            if let Some(handle) = shard.state.borrow().sessions.get(&session) {
                handle.out.borrow_mut().push_ordered(frame);
            }
        }
        MeshMessage::Notify {
            sender,
            blob_id,
            status,
        } => owner::notify_local(shard, &sender, &blob_id, status),
        MeshMessage::StoreDeviceSync {
            reply,
            request_message_id,
            identity,
            target,
            sender_device_id,
            payload,
            version,
        } => features::store_device_sync(
            shard,
            reply,
            request_message_id,
            identity,
            target,
            sender_device_id,
            payload,
            version,
        ),
        MeshMessage::AckDeviceSync {
            identity,
            target,
            id,
        } => features::ack_device_sync(shard, identity, target, id),
        MeshMessage::RegisterDevice {
            identity,
            device,
            session,
            slot,
        } => features::register_device(shard, identity, device, session, slot),
        MeshMessage::UnregisterDevice {
            identity,
            device,
            session,
        } => features::unregister_device(shard, identity, device, session),
        MeshMessage::StoreProof {
            reply,
            request_message_id,
            key_hash,
            proof_data,
        } => features::store_proof(shard, reply, request_message_id, key_hash, proof_data),
        MeshMessage::QueryProofs { gather, key_hashes } => {
            features::query_proofs(shard, gather, key_hashes)
        }
        MeshMessage::PurgeDeviceSync { gather, identity } => {
            features::purge_device_sync(shard, gather, identity)
        }
        MeshMessage::PurgeProof { gather, key_hash } => {
            features::purge_proof(shard, gather, key_hash)
        }
        MeshMessage::GatherPart { gather, part } => gather::receive(shard, gather.id, part),
        MeshMessage::OffloadCandidates {
            limit,
            exclude,
            reply,
        } => offload::candidates(shard, limit, &exclude, reply),
        MeshMessage::OffloadCommit {
            recipient,
            key,
            id,
            relay_url,
            reply,
        } => offload::commit(shard, recipient, key, id, relay_url, reply),
        MeshMessage::AcceptOffload {
            recipient,
            data,
            created_at_secs,
            hop_count,
            reply,
        } => offload::accept(shard, recipient, data, created_at_secs, hop_count, reply),
        MeshMessage::Shutdown => {
            shard.shutdown.fire();
            shard.shared.global_metrics.set_draining(true);
            for handle in shard.state.borrow().sessions.values() {
                handle.out.borrow_mut().begin_drain();
            }
        }
    }
}
