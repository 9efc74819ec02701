//! Every mesh message to its handler: one call per kind, the message passed whole.
//! The twin of `completions.rs`, which does the same for storage completions.

use std::rc::Rc;

use crate::mesh::MeshMessage;

use super::{Shard, accept, fanout, features, offload, owner};

/// Handles one message addressed to this shard (from the mesh, or routed in place).
pub fn handle(shard: &Rc<Shard>, message: MeshMessage) {
    match message {
        MeshMessage::Session(m) => accept::adopt(shard, m),
        MeshMessage::NonceCheck(m) => owner::check_nonce(shard, m),
        MeshMessage::Store(m) => owner::store(shard, m),
        MeshMessage::Reply(m) => shard.deliver_reply(m.reply, m.frame),
        MeshMessage::ReplyFrames(m) => shard.deliver_frames(m.reply, m.frames),
        MeshMessage::PushOrdered(m) => owner::push_ordered(shard, m),
        MeshMessage::Notify(m) => owner::notify_local(shard, m),
        MeshMessage::StoreDeviceSync(m) => features::store_device_sync(shard, m),
        MeshMessage::AckDeviceSync(m) => features::ack_device_sync(shard, m),
        MeshMessage::RegisterDevice(m) => features::register_device(shard, m),
        MeshMessage::UnregisterDevice(m) => features::unregister_device(shard, m),
        MeshMessage::StoreProof(m) => features::store_proof(shard, m),
        MeshMessage::QueryProofs(m) => features::query_proofs(shard, m),
        MeshMessage::PurgeDeviceSync(m) => features::purge_device_sync(shard, m),
        MeshMessage::PurgeProof(m) => features::purge_proof(shard, m),
        MeshMessage::GatherPart(m) => fanout::receive(shard, m.gather.id, m.part),
        MeshMessage::OffloadCandidates(m) => offload::candidates(shard, m),
        MeshMessage::OffloadCommit(m) => offload::commit(shard, m),
        MeshMessage::AcceptOffload(m) => offload::accept(shard, m),
        MeshMessage::Shutdown => owner::shut_down(shard),
    }
}
