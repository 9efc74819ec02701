//! How a shard reaches its store: through the writer thread (sqlite: group commit
//! off the event loop) or inline (memory: a write is a map insert, so a thread hop
//! per request would cost more than the write). Either way the result arrives as a
//! `Completion` on the shard's completion channel, so callers see one behaviour.

use std::cell::RefCell;

use crate::storage::Store;
use crate::storage::writer::{self, Completion, Job};

pub enum StorageLink {
    Thread(flume::Sender<Job>),
    Inline {
        store: RefCell<Box<dyn Store>>,
        done: flume::Sender<Completion>,
    },
}

impl StorageLink {
    /// Queues a job, or gives it back when the writer's queue is full.
    pub fn try_submit(&self, job: Job) -> Result<(), Job> {
        match self {
            StorageLink::Thread(jobs) => jobs.try_send(job).map_err(|e| e.into_inner()),
            StorageLink::Inline { store, done } => {
                if let Some(completion) = writer::run_inline(store.borrow_mut().as_mut(), job) {
                    // The receiver lives as long as the shard.
                    let _ = done.send(completion);
                }
                Ok(())
            }
        }
    }

    /// Shutdown: the writer thread commits everything queued, then ends.
    pub async fn stop(&self) {
        if let StorageLink::Thread(jobs) = self {
            let _ = jobs.send_async(Job::Stop).await;
        }
    }

    /// Queues a job that must not be refused, waiting for room without blocking the
    /// event loop.
    pub fn submit(&self, job: Job) {
        if let Err(job) = self.try_submit(job)
            && let StorageLink::Thread(jobs) = self
        {
            let jobs = jobs.clone();
            glommio::spawn_local(async move {
                let _ = jobs.send_async(job).await;
            })
            .detach();
        }
    }
}
