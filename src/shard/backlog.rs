//! Connect-time delivery (§4.6): the snapshot of a new session's stored blobs, read
//! from the store in chunks of `BACKLOG_CHUNK_BLOBS`, the next chunk only once the
//! previous one is written (the socket paces it), then a catch-up snapshot until
//! the session has every committed blob and switches to live pushes.
//!
//! Invariant: the session is registered for live pushes before its snapshot is
//! taken, and stays in `Backlog::Loading` (no live push) until the catch-up finds
//! nothing new, so nothing committed is missed and nothing is sent twice.

use std::collections::VecDeque;

use crate::keyed::mailbox::Entry;
use crate::limits::BACKLOG_CHUNK_BLOBS;
use crate::protocol::CloseReason;
use crate::protocol::encode;

use super::Shard;
use super::pending::{BacklogRead, Pending, ReadData};
use super::session::outbound::{Backlog, OutFrame, SessionHandle};

/// Takes the connect-time snapshot for a new session: the session must be
/// registered for live push before this runs.
pub fn start(shard: &Shard, handle: &SessionHandle) {
    let now = shard.now();
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

/// Reads the next chunk once the previous one is written; switches the session to
/// live pushes once it has caught up with every committed blob.
pub fn pump(shard: &Shard, handle: &SessionHandle) {
    let now = shard.now();
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
    let keys = chunk.iter().map(|e| e.key).collect();
    let work = BacklogRead {
        session: handle.id,
        entries: chunk,
    };
    shard.submit_read(keys, Pending::Backlog(work));
}

/// A chunk's data has been read: its blobs go into the session's backlog slot;
/// a failed read closes the session with 1011 (the blobs stay stored).
pub fn chunk_read(shard: &Shard, work: BacklogRead, data: Option<ReadData>) {
    let handle = shard.state.borrow().sessions.get(&work.session).cloned();
    let Some(data) = data else {
        tracing::warn!(shard = shard.index, "backlog read failed");
        if let Some(handle) = handle {
            let mut out = handle.out.borrow_mut();
            out.request_close(CloseReason::InternalError);
        }
        return;
    };
    let Some(handle) = handle else { return };
    let now = shard.now();
    let ttl = shard.config.blob_ttl_secs;
    let frames: Vec<OutFrame> = {
        let state = shard.state.borrow();
        work.entries
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
    pump(shard, &handle);
}
