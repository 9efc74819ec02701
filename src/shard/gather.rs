//! A request answered from several shards, as its session's shard keeps it while
//! the parts come in: a RecoveryProofQuery (hashes owned by many shards, §5.9) or
//! a PurgeRequest (blobs, device sync and a proof, each on its owner, §5.11). No
//! runtime here: `fanout.rs` opens gathers, sends the parts' requests and answers.

use std::collections::HashMap;

use crate::mesh::{Part, ReplyTo};
use crate::protocol::{Id64, encode};

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

impl Gather {
    /// Takes one part; true once every part has arrived.
    pub fn add(&mut self, part: Part) -> bool {
        match (&mut self.kind, part) {
            (_, Part::Failed) => self.failed = true,
            (GatherKind::Query { found, .. }, Part::Proofs(proofs)) => found.extend(proofs),
            (GatherKind::Purge { blobs, .. }, Part::BlobsDeleted(n)) => *blobs += n,
            (GatherKind::Purge { device_sync, .. }, Part::DeviceSyncDeleted(n)) => {
                *device_sync += n
            }
            (GatherKind::Purge { proofs, .. }, Part::ProofsDeleted(n)) => *proofs += n,
            _ => {}
        }
        self.remaining -= 1;
        self.remaining == 0
    }

    /// The response once every part succeeded (`None` when one failed: the reply
    /// is `storage_unavailable`).
    pub fn response(self, now: u64) -> Option<Vec<u8>> {
        if self.failed {
            return None;
        }
        let message_id = &self.request_message_id;
        Some(match self.kind {
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
        })
    }
}
