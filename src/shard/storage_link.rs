//! How a shard reaches its store: through the writer thread (sqlite: group commit
//! off the event loop) or inline (memory: a write is a map insert, so a thread hop
//! per request would cost more than the write). Either way the result arrives as a
//! `Completion` on the shard's completion channel, so callers see one behaviour.
//!
//! Group commit that never waits in vain (issue 12): a job submitted while the
//! writer has fewer than `WRITER_HAND_OVERS_MAX` hand-overs in hand goes over at
//! once, so a lone write is committed without delay; jobs submitted while it has
//! that many are gathered and go over together when one of them is wholly
//! answered. Under load the writer so always finds its next batch queued (and
//! merges what is queued into one transaction) and is woken about once per
//! transaction, not once per job (it shares its shard's CPU, and waking it per job
//! cost more than the writes).
//!
//! Invariants: jobs reach the writer in submission order; no more than
//! `WRITER_QUEUE_DEPTH` refusable jobs are outstanding (gathered here, handed over,
//! or being committed); only `Stop` ends the thread, after everything before it,
//! and it goes over at once; every job but `Stop` gets exactly one completion, an
//! error if the thread is gone (it ended without answering: its jobs are failed,
//! never acked).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
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

/// A job handed over whose completion has not come back: enough to fail it.
#[derive(Debug, Clone, Copy)]
enum Unanswered {
    Commit(u64),
    Read(u64),
}

impl Unanswered {
    /// The error that answers the job once the writer is gone (never an ack).
    fn failure(self) -> Completion {
        let gone = || StorageError::Unavailable("the writer thread is gone".into());
        match self {
            Unanswered::Commit(token) => Completion::Committed {
                token,
                result: Err(gone()),
            },
            Unanswered::Read(token) => Completion::Read {
                token,
                result: Err(gone()),
            },
        }
    }
}

/// The shard's side of its writer thread.
pub struct WriterQueue {
    jobs: flume::Sender<Job>,
    /// The shard's completion channel: jobs the writer can no longer take (it is
    /// gone) are failed through it, so every submitted job gets an answer.
    done: flume::Sender<Completion>,
    /// Jobs waiting for the writer's hand-over in progress to complete.
    gathered: RefCell<Vec<Job>>,
    /// Jobs handed over and not yet answered, in order (completions come back in
    /// job order), each marked if it is the last of its hand-over.
    in_hand: RefCell<VecDeque<(Unanswered, bool)>>,
    /// Hand-overs not yet wholly answered (at most `WRITER_HAND_OVERS_MAX`, so that
    /// the writer finds the next batch queued when it finishes one).
    hand_overs: Cell<usize>,
    /// Whether a send is waiting for room in the channel (at most one, so batches
    /// cannot overtake each other).
    sending: Cell<bool>,
    /// Jobs submitted whose completion has not come back (`Stop` has none).
    outstanding: Cell<usize>,
    /// The writer thread has ended: nothing more is handed over.
    gone: Cell<bool>,
}

impl WriterQueue {
    pub fn new(jobs: flume::Sender<Job>, done: flume::Sender<Completion>) -> Rc<Self> {
        Rc::new(WriterQueue {
            jobs,
            done,
            gathered: RefCell::new(Vec::new()),
            in_hand: RefCell::new(VecDeque::new()),
            hand_overs: Cell::new(0),
            sending: Cell::new(false),
            outstanding: Cell::new(0),
            gone: Cell::new(false),
        })
    }

    /// Watches the writer thread's `alive` token (see `writer::spawn_writer`): once
    /// the thread has ended, every job it had not answered and every job gathered
    /// is failed, and nothing more is handed over.
    pub fn watch(self: &Rc<Self>, alive: flume::Receiver<()>) {
        let queue = Rc::clone(self);
        glommio::spawn_local(async move {
            // Nothing is ever sent: this returns when the thread drops its end.
            let _ = alive.recv_async().await;
            queue.writer_gone();
        })
        .detach();
    }

    fn gather(self: &Rc<Self>, job: Job) {
        let stop = matches!(job, Job::Stop);
        if !stop {
            self.outstanding.set(self.outstanding.get() + 1);
        }
        self.gathered.borrow_mut().push(job);
        if self.gone.get() {
            let gathered = std::mem::take(&mut *self.gathered.borrow_mut());
            self.fail(&gathered);
        } else if stop || self.hand_overs.get() < limits::WRITER_HAND_OVERS_MAX {
            self.hand_over();
        }
    }

    /// Hands over everything gathered as one batch.
    fn hand_over(self: &Rc<Self>) {
        if self.sending.get() {
            // The send in progress takes what is gathered when it gets room.
            return;
        }
        let jobs = std::mem::take(&mut *self.gathered.borrow_mut());
        if jobs.is_empty() {
            return;
        }
        self.note_in_hand(&jobs);
        match self.jobs.try_send(Job::Batch(jobs)) {
            Ok(()) => {}
            // Its jobs were noted in hand: they are failed with the rest.
            Err(flume::TrySendError::Disconnected(_)) => self.writer_gone(),
            Err(flume::TrySendError::Full(job)) => {
                // The channel holds at most one batch per outstanding job, so it is
                // full only when unrefusable jobs went past the limit; they wait.
                self.sending.set(true);
                let queue = Rc::clone(self);
                glommio::spawn_local(async move {
                    let sent = queue.jobs.send_async(job).await;
                    queue.sending.set(false);
                    match sent {
                        Ok(()) => queue.hand_over(),
                        Err(flume::SendError(_)) => queue.writer_gone(),
                    }
                })
                .detach();
            }
        }
    }

    fn note_in_hand(&self, jobs: &[Job]) {
        let mut in_hand = self.in_hand.borrow_mut();
        let before = in_hand.len();
        note(&mut in_hand, jobs);
        if in_hand.len() > before {
            if let Some(last) = in_hand.back_mut() {
                last.1 = true;
            }
            self.hand_overs.set(self.hand_overs.get() + 1);
        }
    }

    /// A completion came back: its job is no longer in hand; once fewer than
    /// `WRITER_HAND_OVERS_MAX` hand-overs are, what was gathered meanwhile goes over.
    fn answered(self: &Rc<Self>) {
        self.outstanding
            .set(self.outstanding.get().saturating_sub(1));
        let ended = self
            .in_hand
            .borrow_mut()
            .pop_front()
            .is_some_and(|(_, last)| last);
        if ended {
            self.hand_overs.set(self.hand_overs.get().saturating_sub(1));
        }
        if self.hand_overs.get() < limits::WRITER_HAND_OVERS_MAX && !self.gone.get() {
            self.hand_over();
        }
    }

    /// The writer thread has ended: nothing it had not answered can still be (or be
    /// trusted to be) committed, so every such job, and every job gathered, is
    /// answered with an error (never an ack).
    fn writer_gone(&self) {
        if self.gone.replace(true) {
            return;
        }
        let unanswered: Vec<(Unanswered, bool)> = self.in_hand.borrow_mut().drain(..).collect();
        self.hand_overs.set(0);
        for (job, _) in unanswered {
            // The receiver lives as long as the shard.
            let _ = self.done.send(job.failure());
        }
        let gathered = std::mem::take(&mut *self.gathered.borrow_mut());
        self.fail(&gathered);
    }

    /// Answers `jobs` (batches job by job) with a storage error.
    fn fail(&self, jobs: &[Job]) {
        let mut unanswered = VecDeque::new();
        note(&mut unanswered, jobs);
        for (job, _) in unanswered {
            // The receiver lives as long as the shard.
            let _ = self.done.send(job.failure());
        }
    }
}

/// Notes the jobs of a hand-over (batches flattened) as unanswered, in order.
fn note(in_hand: &mut VecDeque<(Unanswered, bool)>, jobs: &[Job]) {
    for job in jobs {
        match job {
            Job::Commit { token, .. } => in_hand.push_back((Unanswered::Commit(*token), false)),
            Job::Read { token, .. } => in_hand.push_back((Unanswered::Read(*token), false)),
            Job::Stop => {}
            Job::Batch(jobs) => note(in_hand, jobs),
        }
    }
}

impl StorageLink {
    /// Queues a job, or gives it back when the writer already has
    /// `WRITER_QUEUE_DEPTH` jobs outstanding.
    pub fn try_submit(&self, job: Job) -> Result<(), Job> {
        match self {
            StorageLink::Thread(queue) => {
                if queue.outstanding.get() >= limits::WRITER_QUEUE_DEPTH
                    || queue.gone.get()
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

    /// A completion came back from the writer thread (failed ones made here too).
    pub fn completed(&self) {
        if let StorageLink::Thread(queue) = self {
            queue.answered();
        }
    }

    /// Shutdown: the writer thread commits everything submitted, then ends. Returns
    /// once `Stop` is in the writer's channel (or the writer is gone).
    pub async fn stop(&self) {
        if let StorageLink::Thread(queue) = self {
            queue.gather(Job::Stop);
            while queue.sending.get() {
                glommio::timer::sleep(limits::SHUTDOWN_POLL).await;
            }
        }
    }
}
