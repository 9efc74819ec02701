//! The per-shard writer thread: drains queued jobs and commits every queued write in
//! one transaction (group commit), never waiting for more work once some is queued,
//! so no write is held back; completions go back to the shard over a flume channel.
//!
//! Invariants: completions are sent in job order; a `Committed` completion carries
//! the result of the one transaction that held the job's ops, so no job is acked
//! after a failed commit and a failed commit is never retried; a `Read` runs after
//! every commit queued before it.

use std::collections::VecDeque;

use super::{StorageError, Store, WriteOp};
use crate::limits::{GROUP_DATA_BYTES_MAX, GROUP_OPS_MAX};

/// Work for the writer thread. `token` is the shard's, echoed in the completion.
#[derive(Debug)]
pub enum Job {
    Commit {
        token: u64,
        ops: Vec<WriteOp>,
    },
    /// Runs after every commit queued before it.
    Read {
        token: u64,
        keys: Vec<u64>,
    },
    /// Shutdown: everything queued before it has committed; the thread ends.
    Stop,
    /// Several jobs handed over at once, carried out in order as if queued one by
    /// one: a shard sends the jobs of one event-loop pass together, so the thread is
    /// woken once for them instead of once per job.
    Batch(Vec<Job>),
}

#[derive(Debug)]
pub enum Completion {
    Committed {
        token: u64,
        result: Result<(), StorageError>,
    },
    Read {
        token: u64,
        result: Result<Vec<Option<Vec<u8>>>, StorageError>,
    },
}

/// Starts the writer thread for one shard. It ends when `jobs` is disconnected and
/// drained, after committing everything queued. If `done` is disconnected, queued
/// work is still committed; only the completions are dropped. `alive` is held for
/// the thread's life and dropped when it ends, however it ends (a panic too), so
/// that the shard learns it can no longer count on the jobs it handed over.
pub fn spawn_writer(
    name: String,
    store: Box<dyn Store>,
    jobs: flume::Receiver<Job>,
    done: flume::Sender<Completion>,
    alive: flume::Sender<()>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(move || {
        let _alive = alive;
        run(store, &jobs, &done)
    })
}

/// Carries out one job at once on the caller's thread, for a backend whose writes
/// cost no I/O (the memory backend): same results as the writer thread, without a
/// thread hop per request. Each completion goes to `sink`, a batch's in job order.
pub fn run_inline(store: &mut dyn Store, job: Job, sink: &mut dyn FnMut(Completion)) {
    match job {
        Job::Stop => {}
        Job::Batch(jobs) => {
            for job in jobs {
                run_inline(store, job, sink);
            }
        }
        Job::Read { token, keys } => sink(Completion::Read {
            token,
            result: store.read_blob_data(&keys),
        }),
        Job::Commit { token, ops } => {
            let result = store.commit(&ops);
            if let Err(error) = &result {
                tracing::warn!(ops = ops.len(), "storage commit failed: {error}");
            }
            sink(Completion::Committed { token, result });
        }
    }
}

/// The commit jobs of one transaction, in queue order.
#[derive(Default)]
struct Group {
    tokens: Vec<u64>,
    ops: Vec<WriteOp>,
    data_bytes: usize,
}

impl Group {
    fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether a job with `ops` may join: the first job always may.
    fn fits(&self, ops: &[WriteOp]) -> bool {
        self.is_empty()
            || (self.ops.len() + ops.len() <= GROUP_OPS_MAX
                && self.data_bytes + data_bytes(ops) <= GROUP_DATA_BYTES_MAX)
    }

    fn add(&mut self, token: u64, mut ops: Vec<WriteOp>) {
        self.tokens.push(token);
        self.data_bytes += data_bytes(&ops);
        self.ops.append(&mut ops);
    }

    /// Commits the group in one transaction and sends every job the same result.
    fn commit(&mut self, store: &mut dyn Store, done: &flume::Sender<Completion>) {
        let result = store.commit(&self.ops);
        if let Err(error) = &result {
            tracing::warn!(
                jobs = self.tokens.len(),
                ops = self.ops.len(),
                "storage commit failed: {error}"
            );
        }
        for token in self.tokens.drain(..) {
            // A disconnected `done` means the shard is gone; the work is committed
            // all the same, so the send error is deliberately ignored.
            let _ = done.send(Completion::Committed {
                token,
                result: result.clone(),
            });
        }
        self.ops.clear();
        // One oversized job must not pin its allocation for the thread's lifetime.
        self.ops.shrink_to(GROUP_OPS_MAX);
        self.data_bytes = 0;
    }
}

fn data_bytes(ops: &[WriteOp]) -> usize {
    ops.iter()
        .map(|op| match op {
            WriteOp::InsertBlob(record) => record.data.len(),
            WriteOp::InsertDeviceSync(record) => record.payload.len(),
            WriteOp::UpsertProof(record) => record.proof_data.len(),
            WriteOp::InsertHint(record) => record.relay_url.len(),
            WriteOp::DeleteBlob { .. }
            | WriteOp::DeleteDeviceSync { .. }
            | WriteOp::DeleteProof { .. }
            | WriteOp::DeleteHint { .. } => 0,
        })
        .sum()
}

fn run(mut store: Box<dyn Store>, jobs: &flume::Receiver<Job>, done: &flume::Sender<Completion>) {
    let mut group = Group::default();
    // Jobs taken off the channel, in order, batches already flattened. It holds no
    // more than the jobs the shard has outstanding (bounded by its limit).
    let mut queued: VecDeque<Job> = VecDeque::new();
    loop {
        if queued.is_empty() {
            // `recv` fails only once `jobs` is disconnected and drained.
            match jobs.recv() {
                Ok(job) => enqueue(&mut queued, job),
                Err(flume::RecvError::Disconnected) => return,
            }
        }
        // Take only what is already queued: waiting for more would hold back the
        // writes in hand.
        while let Ok(job) = jobs.try_recv() {
            enqueue(&mut queued, job);
        }
        while let Some(job) = queued.pop_front() {
            match job {
                Job::Commit { token, ops } => {
                    if !group.fits(&ops) {
                        group.commit(store.as_mut(), done);
                    }
                    group.add(token, ops);
                }
                // A read sees every commit queued before it.
                Job::Read { token, keys } => {
                    if !group.is_empty() {
                        group.commit(store.as_mut(), done);
                    }
                    let result = store.read_blob_data(&keys);
                    let _ = done.send(Completion::Read { token, result });
                }
                Job::Stop => {
                    if !group.is_empty() {
                        group.commit(store.as_mut(), done);
                    }
                    return;
                }
                Job::Batch(_) => unreachable!("batches are flattened by enqueue"),
            }
        }
        if !group.is_empty() {
            group.commit(store.as_mut(), done);
        }
    }
}

/// Queues `job` behind the others, a batch as its jobs in order (nested too).
fn enqueue(queued: &mut VecDeque<Job>, job: Job) {
    match job {
        Job::Batch(jobs) => {
            for job in jobs {
                enqueue(queued, job);
            }
        }
        job => queued.push_back(job),
    }
}
