//! Every storage completion to its handler: the token names the waiting work
//! (`pending.rs`), one call per kind. The twin of `dispatch.rs`.
//!
//! A commit's handler gets `Ok(())` only for a committed transaction; a read's gets
//! the data, or `None` when the read failed.

use std::rc::Rc;

use crate::storage::StorageError;
use crate::storage::writer::Completion;

use super::pending::{Pending, ReadData};
use super::{Shard, backlog, features, offload, owner};

/// Handles one completion from this shard's store.
pub fn handle(shard: &Rc<Shard>, completion: Completion) {
    let (token, result) = match completion {
        Completion::Committed { token, result } => (token, result.map(|()| None)),
        Completion::Read { token, result } => (token, result.map(Some)),
    };
    let Some(pending) = shard.state.borrow_mut().pending.remove(&token) else {
        return;
    };
    match pending {
        Pending::Store(work) => owner::store_committed(shard, work, committed(result)),
        Pending::Delete => owner::deleted(shard, committed(result)),
        Pending::Backlog(work) => backlog::chunk_read(shard, work, read(result)),
        Pending::DeviceSync(work) => {
            features::device_sync_committed(shard, work, committed(result))
        }
        Pending::Proof(work) => features::proof_committed(shard, work, committed(result)),
        Pending::CandidatesRead(work) => offload::candidates_read(shard, work, read(result)),
        Pending::HintSwap(work) => offload::hint_swapped(shard, work, committed(result)),
        Pending::Offer(work) => offload::offer_committed(shard, work, committed(result)),
        Pending::PurgeStep(work) => features::purge_step_committed(shard, work, committed(result)),
    }
    shard.publish_blob_count();
}

fn committed(result: Result<Option<ReadData>, StorageError>) -> Result<(), StorageError> {
    result.map(|_| ())
}

fn read(result: Result<Option<ReadData>, StorageError>) -> Option<ReadData> {
    result.ok().flatten()
}
