//! The shard's side of the writer thread (`StorageLink::Thread`): a job submitted
//! while the writer has fewer than `WRITER_HAND_OVERS_MAX` hand-overs in hand goes
//! over at once; jobs submitted meanwhile go over as one batch, in submission
//! order, when one of those is wholly answered (group commit that never waits in
//! vain); no more than `WRITER_QUEUE_DEPTH`
//! refusable jobs are outstanding, and a completion makes room again; unrefusable
//! jobs are never refused; `stop` hands `Stop` over at once behind everything
//! submitted; a writer that ended has every job it did not answer failed.
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
fn jobs_go_over_at_once_until_two_hand_overs_are_in_hand_then_together() {
    let handed = with_link(|link, jobs_rx| async move {
        let submit = |token| {
            link.try_submit(read(token))
                .map_err(|_| "refused")
                .expect("room")
        };
        // No wait, no timer: the writer had nothing in hand, then one hand-over.
        submit(1);
        let first = jobs_rx.try_recv().expect("handed over at once");
        submit(2);
        let second = jobs_rx.try_recv().expect("the second hand-over, at once");
        // Two in hand: the next ones are gathered.
        for token in 3..=5 {
            submit(token);
        }
        link.submit(read(6));
        let while_in_hand = jobs_rx.is_empty();
        // The writer answers job 1: the four gathered meanwhile go as one batch.
        link.completed();
        let third = jobs_rx.try_recv().expect("handed over on the completion");
        // Job 2's and 3..=6's hand-overs are in hand: 7 waits.
        submit(7);
        let still_in_hand = jobs_rx.is_empty();
        // Answering 2 leaves one hand-over in hand: 7 goes.
        link.completed();
        let fourth = jobs_rx.try_recv().expect("the last one");
        (first, second, while_in_hand, third, still_in_hand, fourth)
    });
    let (first, second, while_in_hand, third, still_in_hand, fourth) = handed;
    assert!(
        while_in_hand,
        "nothing goes over while two hand-overs are in hand"
    );
    assert!(still_in_hand, "nor later");
    assert!(
        matches!(third, Job::Batch(ref jobs) if jobs.len() == 4),
        "{third:?}"
    );
    let mut order = Vec::new();
    for job in [first, second, third, fourth] {
        tokens(job, &mut order);
    }
    assert_eq!(order, vec![1, 2, 3, 4, 5, 6, 7]);
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
fn stop_goes_over_at_once_behind_everything_submitted() {
    let order = with_link(|link, jobs_rx| async move {
        link.submit(read(1));
        link.try_submit(read(2))
            .map_err(|_| "refused")
            .expect("room");
        // Job 1 is in hand and never answered here: Stop does not wait for it.
        link.stop().await;
        let mut order = Vec::new();
        for job in jobs_rx.drain() {
            tokens(job, &mut order);
        }
        order
    });
    assert_eq!(order, vec![1, 2, 0]);
}

/// The answers a link gave: (token, failed), in order.
fn answers(completions: &[Completion]) -> Vec<(u64, bool)> {
    completions
        .iter()
        .map(|completion| match completion {
            Completion::Read { token, result } => (*token, result.is_err()),
            Completion::Committed { token, result } => (*token, result.is_err()),
        })
        .collect()
}

#[test]
fn a_gone_writer_fails_every_job_it_did_not_answer_and_refuses_new_ones() {
    for before_anything in [false, true] {
        let (completions, refused) = LocalExecutorBuilder::default()
            .io_memory(vauchi_relay::limits::EXECUTOR_IO_MEMORY_BYTES)
            .spawn(move || async move {
                let (jobs_tx, jobs_rx) = flume::bounded(WRITER_QUEUE_DEPTH);
                let (done_tx, done_rx) = flume::unbounded();
                let (alive_tx, alive_rx) = flume::bounded::<()>(1);
                let queue = WriterQueue::new(jobs_tx, done_tx);
                queue.watch(alive_rx);
                let link = StorageLink::Thread(queue);
                if before_anything {
                    // The thread ended before the first job.
                    drop(jobs_rx);
                    drop(alive_tx);
                    link.submit(read(1));
                    link.submit(Job::Commit {
                        token: 2,
                        ops: Vec::new(),
                    });
                } else {
                    // Job 1 goes over and job 2 is gathered behind it; then the
                    // thread ends (a panic, say) without answering either.
                    link.submit(read(1));
                    link.try_submit(Job::Commit {
                        token: 2,
                        ops: Vec::new(),
                    })
                    .map_err(|_| "refused")
                    .expect("room");
                    drop(jobs_rx);
                    drop(alive_tx);
                }
                let first = done_rx.recv_async().await.expect("a completion");
                let second = done_rx.recv_async().await.expect("a completion");
                let refused = link.try_submit(read(3)).is_err();
                (vec![first, second], refused)
            })
            .expect("executor")
            .join()
            .expect("executor ends");
        assert_eq!(
            answers(&completions),
            vec![(1, true), (2, true)],
            "before anything: {before_anything}; both failed, none acked"
        );
        assert!(
            refused,
            "a refusable job is refused once the writer is gone"
        );
    }
}
