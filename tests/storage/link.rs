//! The shard's side of the writer thread (`StorageLink::Thread`): jobs submitted
//! during a gather window reach the writer as one batch, in submission order; no
//! more than `WRITER_QUEUE_DEPTH` refusable jobs are outstanding, and a completion
//! makes room again; unrefusable jobs are never refused; `stop` hands `Stop` over
//! behind everything submitted.
//!
//! The writer's channel is held by the test (no writer thread), so what the shard
//! hands over can be read directly. Nothing here depends on timing: a hand-over is
//! awaited, never expected within a time.

use glommio::LocalExecutorBuilder;
use vauchi_relay::limits::WRITER_QUEUE_DEPTH;
use vauchi_relay::shard::storage_link::{StorageLink, WriterQueue};
use vauchi_relay::storage::writer::{Completion, Job};

fn read(token: u64) -> Job {
    Job::Read {
        token,
        keys: vec![token],
    }
}

/// The tokens of a handed-over job, batches flattened; `0` stands for `Stop`.
fn tokens(job: Job, out: &mut Vec<u64>) {
    match job {
        Job::Read { token, .. } | Job::Commit { token, .. } => out.push(token),
        Job::Stop => out.push(0),
        Job::Batch(jobs) => jobs.into_iter().for_each(|job| tokens(job, out)),
    }
}

/// Runs `body` on a glommio executor with a link whose writer channel the test holds.
fn with_link<T, F>(body: impl FnOnce(StorageLink, flume::Receiver<Job>) -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: std::future::Future<Output = T>,
{
    LocalExecutorBuilder::default()
        .io_memory(vauchi_relay::limits::EXECUTOR_IO_MEMORY_BYTES)
        .spawn(move || async move {
            let (jobs_tx, jobs_rx) = flume::bounded(WRITER_QUEUE_DEPTH);
            // Completions are not looked at here (see `a_gone_writer_…`).
            let (done_tx, _done_rx) = flume::unbounded();
            body(
                StorageLink::Thread(WriterQueue::new(jobs_tx, done_tx)),
                jobs_rx,
            )
            .await
        })
        .expect("executor")
        .join()
        .expect("executor ends")
}

#[test]
fn jobs_of_one_gather_window_are_handed_over_as_one_batch_in_order() {
    let handed = with_link(|link, jobs_rx| async move {
        for token in 1..=5 {
            link.try_submit(read(token))
                .map_err(|_| "refused")
                .expect("room");
        }
        assert!(
            jobs_rx.is_empty(),
            "nothing is handed over before the window"
        );
        let first = jobs_rx.recv_async().await.expect("a batch");
        link.submit(read(6));
        let second = jobs_rx.recv_async().await.expect("a second hand-over");
        (first, second)
    });
    let (first, second) = handed;
    assert!(
        matches!(first, Job::Batch(ref jobs) if jobs.len() == 5),
        "{first:?}"
    );
    let mut order = Vec::new();
    tokens(first, &mut order);
    tokens(second, &mut order);
    assert_eq!(order, vec![1, 2, 3, 4, 5, 6]);
}

/// Submits refusable jobs up to the limit (all taken); whether one more is refused.
fn fill_to_limit(link: &StorageLink) -> bool {
    for token in 1..=WRITER_QUEUE_DEPTH as u64 {
        assert!(link.try_submit(read(token)).is_ok(), "job {token} refused");
    }
    link.try_submit(read(u64::MAX)).is_err()
}

#[test]
fn unrefusable_jobs_go_past_the_limit_and_count_against_it() {
    let outcome = with_link(|link, jobs_rx| async move {
        // The writer's end stays open (a dropped one refuses everything).
        let _writer = jobs_rx;
        let refused = fill_to_limit(&link);
        // Unrefusable jobs still go (deletions must never be lost).
        link.submit(read(WRITER_QUEUE_DEPTH as u64 + 1));
        link.completed();
        let after_completion = link.try_submit(read(WRITER_QUEUE_DEPTH as u64 + 2)).is_ok();
        (refused, after_completion)
    });
    assert_eq!(
        outcome,
        (true, false),
        "the unrefusable job took the freed place"
    );
}

#[test]
fn a_completion_frees_a_place_for_a_refusable_job() {
    let outcome = with_link(|link, jobs_rx| async move {
        // The writer's end stays open (a dropped one refuses everything).
        let _writer = jobs_rx;
        let refused = fill_to_limit(&link);
        link.completed();
        let after_completion = link.try_submit(read(u64::MAX - 1)).is_ok();
        (refused, after_completion)
    });
    assert_eq!(outcome, (true, true));
}

#[test]
fn stop_is_handed_over_behind_everything_submitted() {
    let order = with_link(|link, jobs_rx| async move {
        link.submit(read(1));
        link.try_submit(read(2))
            .map_err(|_| "refused")
            .expect("room");
        link.stop().await;
        let mut order = Vec::new();
        for job in jobs_rx.drain() {
            tokens(job, &mut order);
        }
        order
    });
    assert_eq!(order, vec![1, 2, 0]);
}

#[test]
fn a_gone_writer_fails_every_job_it_did_not_take_and_refuses_new_ones() {
    let (completions, refused) = LocalExecutorBuilder::default()
        .io_memory(vauchi_relay::limits::EXECUTOR_IO_MEMORY_BYTES)
        .spawn(|| async {
            let (jobs_tx, jobs_rx) = flume::bounded(WRITER_QUEUE_DEPTH);
            let (done_tx, done_rx) = flume::unbounded();
            let link = StorageLink::Thread(WriterQueue::new(jobs_tx, done_tx));
            link.submit(read(1));
            link.try_submit(Job::Commit {
                token: 2,
                ops: Vec::new(),
            })
            .map_err(|_| "refused")
            .expect("room");
            // The writer thread ends (a panic, say) before taking them.
            drop(jobs_rx);
            let first = done_rx.recv_async().await.expect("a completion");
            let second = done_rx.recv_async().await.expect("a completion");
            let refused = link.try_submit(read(3)).is_err();
            (vec![first, second], refused)
        })
        .expect("executor")
        .join()
        .expect("executor ends");
    let answers: Vec<_> = completions
        .iter()
        .map(|completion| match completion {
            Completion::Read { token, result } => (*token, result.is_err()),
            Completion::Committed { token, result } => (*token, result.is_err()),
        })
        .collect();
    assert_eq!(
        answers,
        vec![(1, true), (2, true)],
        "both failed, none acked"
    );
    assert!(
        refused,
        "a refusable job is refused once the writer is gone"
    );
}
