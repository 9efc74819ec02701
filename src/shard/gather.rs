//! Requests answered from several shards: a RecoveryProofQuery (hashes owned by
//! many shards, §5.9) and a PurgeRequest (blobs, device sync and a proof, each on
//! its owner, §5.11). The session's shard keeps one `Gather` per request; each
//! owner answers with a `Part`; the reply goes into the request's slot when the
//! last part arrives, so request order is kept (§4.8).

use std::collections::HashMap;
use std::rc::Rc;

use crate::protocol::{ErrorCode, Id64, encode};

use super::mesh::{GatherTo, Part, ReplyTo};
use super::{Shard, owner, unix_now};

/// What is being gathered.
pub enum GatherKind {
    /// The queried hashes in query order; the proofs found so far.
    Query {
        order: Vec<Id64>,
        found: HashMap<Id64, Vec<u8>, ahash::RandomState>,
    },
    Purge {
        blobs: u64,
        device_sync: u64,
        proofs: u64,
    },
}

pub struct Gather {
    pub reply: ReplyTo,
    pub request_message_id: String,
    pub remaining: usize,
    pub failed: bool,
    pub kind: GatherKind,
}

/// Registers a gather expecting `parts` answers and returns its address.
pub fn open(
    shard: &Shard,
    reply: ReplyTo,
    request_message_id: String,
    parts: usize,
    kind: GatherKind,
) -> GatherTo {
    let mut state = shard.state.borrow_mut();
    state.next_gather += 1;
    let id = state.next_gather;
    state.gathers.insert(
        id,
        Gather {
            reply,
            request_message_id,
            remaining: parts,
            failed: false,
            kind,
        },
    );
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
        match (&mut gather.kind, part) {
            (_, Part::Failed) => gather.failed = true,
            (GatherKind::Query { found, .. }, Part::Proofs(proofs)) => found.extend(proofs),
            (GatherKind::Purge { blobs, .. }, Part::BlobsDeleted(n)) => *blobs += n,
            (GatherKind::Purge { device_sync, .. }, Part::DeviceSyncDeleted(n)) => {
                *device_sync += n
            }
            (GatherKind::Purge { proofs, .. }, Part::ProofsDeleted(n)) => *proofs += n,
            _ => {}
        }
        gather.remaining -= 1;
        if gather.remaining > 0 {
            return;
        }
        state.gathers.remove(&id)
    };
    if let Some(gather) = finished {
        answer(shard, gather);
    }
}

fn answer(shard: &Rc<Shard>, gather: Gather) {
    let now = unix_now();
    let message_id = &gather.request_message_id;
    let frame = if gather.failed {
        shard.error_frame(ErrorCode::StorageUnavailable, Some(message_id), Some(1))
    } else {
        match gather.kind {
            GatherKind::Query { order, found } => {
                // Each proof once, in the order its hash first appears (§5.10).
                let mut seen = std::collections::HashSet::with_capacity(order.len());
                let proofs: Vec<(Id64, &[u8])> = order
                    .iter()
                    .filter(|hash| seen.insert(**hash))
                    .filter_map(|hash| found.get(hash).map(|data| (*hash, data.as_slice())))
                    .collect();
                encode::recovery_proof_response(now, message_id, &proofs)
            }
            GatherKind::Purge {
                blobs,
                device_sync,
                proofs,
            } => encode::purge_response(now, message_id, blobs, device_sync, proofs),
        }
    };
    owner::send_reply(shard, gather.reply, frame);
}
