//! The requests of a session that span shards (§5.9, §5.11): the session's shard
//! opens a gather, sends each owner its part of the work and answers into the
//! request's reply slot when the last part arrives, so request order is kept
//! (§4.8).

use std::rc::Rc;

use crate::mesh::{GatherTo, MeshMessage, Part, PurgeDeviceSync, PurgeProof, QueryProofs, ReplyTo};
use crate::protocol::{ErrorCode, Id64};

use super::Shard;
use super::features;
use super::gather::{Gather, GatherKind};
use super::session::outbound::SessionHandle;

/// Registers a gather expecting `parts` answers and returns its address.
fn open(
    shard: &Shard,
    reply: ReplyTo,
    request_message_id: String,
    parts: usize,
    kind: GatherKind,
) -> GatherTo {
    let mut state = shard.state.borrow_mut();
    let id = state.next_gather();
    let gather = Gather {
        reply,
        request_message_id,
        remaining: parts,
        failed: false,
        kind,
    };
    state.gathers.insert(id, gather);
    GatherTo {
        shard: shard.index,
        id,
    }
}

/// One part arrived; answers the request once every part has.
pub fn receive(shard: &Rc<Shard>, id: u64, part: Part) {
    let finished = {
        let mut state = shard.state.borrow_mut();
        let Some(gather) = state.gathers.get_mut(&id) else {
            return;
        };
        if !gather.add(part) {
            return;
        }
        state.gathers.remove(&id)
    };
    let Some(gather) = finished else { return };
    let reply = gather.reply;
    let message_id = gather.request_message_id.clone();
    let frame = gather.response(shard.now()).unwrap_or_else(|| {
        shard.error_frame(ErrorCode::StorageUnavailable, Some(&message_id), Some(1))
    });
    shard.send_reply(reply, frame);
}

/// RecoveryProofQuery (§5.9): one part per shard that owns a queried hash.
pub fn query_proofs(
    shard: &Rc<Shard>,
    handle: &SessionHandle,
    message_id: &str,
    key_hashes: Vec<Id64>,
) {
    let reply = open_reply(shard, handle);
    let mut by_owner: Vec<Vec<Id64>> = vec![Vec::new(); shard.shards()];
    for hash in &key_hashes {
        by_owner[shard.owner_of(hash)].push(*hash);
    }
    let owners: Vec<usize> = (0..by_owner.len())
        .filter(|o| !by_owner[*o].is_empty())
        .collect();
    let kind = GatherKind::Query {
        order: key_hashes,
        found: Default::default(),
    };
    // The part count is fixed up front; an empty query is answered at once.
    let parts = owners.len().max(1);
    let gather = open(shard, reply, message_id.to_owned(), parts, kind);
    if owners.is_empty() {
        receive(shard, gather.id, Part::Proofs(Vec::new()));
        return;
    }
    for owner in owners {
        let message = QueryProofs {
            gather,
            key_hashes: std::mem::take(&mut by_owner[owner]),
        };
        if shard
            .route(owner, MeshMessage::QueryProofs(message))
            .is_err()
        {
            receive(shard, gather.id, Part::Failed);
        }
    }
}

/// PurgeRequest (§5.11): each step on its owner; the reply once all finished.
pub fn purge(
    shard: &Rc<Shard>,
    handle: &SessionHandle,
    message_id: &str,
    device_sync: bool,
    proof: Option<Id64>,
) {
    let reply = open_reply(shard, handle);
    let parts = 1 + usize::from(device_sync) + usize::from(proof.is_some());
    let kind = GatherKind::Purge {
        blobs: 0,
        device_sync: 0,
        proofs: 0,
    };
    let gather = open(shard, reply, message_id.to_owned(), parts, kind);
    features::purge_blobs(shard, gather, handle.routing_id);
    if device_sync {
        let identity = handle.client_id;
        let message = PurgeDeviceSync { gather, identity };
        shard.post(
            shard.owner_of(&identity),
            MeshMessage::PurgeDeviceSync(message),
        );
    }
    if let Some(key_hash) = proof {
        let message = PurgeProof { gather, key_hash };
        shard.post(shard.owner_of(&key_hash), MeshMessage::PurgeProof(message));
    }
}

/// Opens the request's reply slot in its session.
fn open_reply(shard: &Shard, handle: &SessionHandle) -> ReplyTo {
    let slot = handle.out.borrow_mut().open_slot();
    ReplyTo {
        shard: shard.index,
        session: handle.id,
        slot,
    }
}
