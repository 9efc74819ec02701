//! How a shard reaches its store: through the writer thread (sqlite: group commit
//! off the event loop) or inline (memory: a write is a map insert, so a thread hop
//! per request would cost more than the write). Either way the result arrives as a
//! `Completion` on the shard's completion channel, so callers see one behaviour.
//!
//! Jobs for the writer thread are gathered for `WRITER_GATHER_WINDOW` after the first
//! one and handed over together: waking the thread every few jobs (it shares its
//! shard's CPU) cost more than the writes themselves.
//! Invariants: jobs reach the writer in submission order; no more than
//! `WRITER_QUEUE_DEPTH` refusable jobs are outstanding (queued here, in the channel
//! or being committed); only `Stop` ends the thread, after everything before it;
//! every job but `Stop` gets exactly one completion, an error if the thread is gone.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::limits;
use crate::storage::writer::{self, Completion, Job};
use crate::storage::{StorageError, Store};

pub enum StorageLink {
    Thread(Rc<WriterQueue>),
    Inline {
        store: RefCell<Box<dyn Store>>,
        done: flume::Sender<Completion>,
    },
}

/// The shard's side of its writer thread.
pub struct WriterQueue {
    jobs: flume::Sender<Job>,
    /// The shard's completion channel: jobs the writer can no longer take (it is
    /// gone) are failed through it, so every submitted job gets an answer.
    done: flume::Sender<Completion>,
    /// Jobs of the current event-loop pass, not yet handed over.
    gathered: RefCell<Vec<Job>>,
    /// Whether a hand-over task is queued or running (there is at most one, so
    /// batches cannot overtake each other).
    handing_over: Cell<bool>,
    /// Jobs submitted whose completion has not come back (`Stop` has none).
    outstanding: Cell<usize>,
}

impl WriterQueue {
    pub fn new(jobs: flume::Sender<Job>, done: flume::Sender<Completion>) -> Rc<Self> {
        Rc::new(WriterQueue {
            jobs,
            done,
            gathered: RefCell::new(Vec::new()),
            handing_over: Cell::new(false),
            outstanding: Cell::new(0),
        })
    }

    fn gather(self: &Rc<Self>, job: Job) {
        if !matches!(job, Job::Stop) {
            self.outstanding.set(self.outstanding.get() + 1);
        }
        self.gathered.borrow_mut().push(job);
        if !self.handing_over.replace(true) {
            glommio::spawn_local(Rc::clone(self).hand_over()).detach();
        }
    }

    /// Sends what was gathered, one batch per `WRITER_GATHER_WINDOW`, until nothing
    /// is left.
    async fn hand_over(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(limits::WRITER_GATHER_WINDOW).await;
            let jobs = std::mem::take(&mut *self.gathered.borrow_mut());
            if jobs.is_empty() {
                break;
            }
            // The channel holds at most one batch per outstanding job, so it is full
            // only when unrefusable jobs went past the limit; they wait for room.
            if let Err(flume::SendError(job)) = self.jobs.send_async(Job::Batch(jobs)).await {
                // The writer is gone: nothing more can be committed. Every job not
                // taken is answered with an error (never an ack).
                self.fail(job);
                let rest = std::mem::take(&mut *self.gathered.borrow_mut());
                self.fail(Job::Batch(rest));
                break;
            }
        }
        self.handing_over.set(false);
    }

    /// Answers `job` (a batch job by job) with a storage error.
    fn fail(&self, job: Job) {
        let gone = || StorageError::Unavailable("the writer thread is gone".into());
        let completion = match job {
            Job::Commit { token, .. } => Completion::Committed {
                token,
                result: Err(gone()),
            },
            Job::Read { token, .. } => Completion::Read {
                token,
                result: Err(gone()),
            },
            Job::Stop => return,
            Job::Batch(jobs) => return jobs.into_iter().for_each(|job| self.fail(job)),
        };
        // The receiver lives as long as the shard.
        let _ = self.done.send(completion);
    }
}

impl StorageLink {
    /// Queues a job, or gives it back when the writer already has
    /// `WRITER_QUEUE_DEPTH` jobs outstanding.
    pub fn try_submit(&self, job: Job) -> Result<(), Job> {
        match self {
            StorageLink::Thread(queue) => {
                if queue.outstanding.get() >= limits::WRITER_QUEUE_DEPTH
                    || queue.jobs.is_disconnected()
                {
                    return Err(job);
                }
                queue.gather(job);
                Ok(())
            }
            StorageLink::Inline { store, done } => {
                // The receiver lives as long as the shard.
                writer::run_inline(store.borrow_mut().as_mut(), job, &mut |completion| {
                    let _ = done.send(completion);
                });
                Ok(())
            }
        }
    }

    /// Queues a job that must not be refused (it may go past the limit).
    pub fn submit(&self, job: Job) {
        match self {
            StorageLink::Thread(queue) => queue.gather(job),
            StorageLink::Inline { .. } => {
                let _ = self.try_submit(job);
            }
        }
    }

    /// A completion came back from the writer thread.
    pub fn completed(&self) {
        if let StorageLink::Thread(queue) = self {
            queue
                .outstanding
                .set(queue.outstanding.get().saturating_sub(1));
        }
    }

    /// Shutdown: the writer thread commits everything submitted, then ends. Returns
    /// once `Stop` is in the writer's channel.
    pub async fn stop(&self) {
        if let StorageLink::Thread(queue) = self {
            queue.gather(Job::Stop);
            while queue.handing_over.get() {
                glommio::timer::sleep(limits::SHUTDOWN_POLL).await;
            }
        }
    }
}
