//! The group-commit writer thread: queued commits share one transaction within the
//! group limits, completions come back in job order and only after the commit,
//! a failed transaction fails every job in it, reads follow earlier commits, and the
//! thread ends once its job channel is disconnected and drained.
//!
//! Determinism: jobs are queued before `spawn_writer` runs, so the writer finds them
//! all waiting; no test sleeps.

use std::sync::{Arc, Mutex};

use vauchi_relay::limits::{GROUP_DATA_BYTES_MAX, GROUP_OPS_MAX};
use vauchi_relay::protocol::Id64;
use vauchi_relay::storage::memory::MemoryStore;
use vauchi_relay::storage::writer::{Completion, Job, spawn_writer};
use vauchi_relay::storage::{
    BlobMeta, BlobRecord, DeviceSyncRecord, HintRecord, RecoveryProofRecord, StorageError, Store,
    WriteOp,
};

/// What the test store saw: the op count of every commit call, in order.
#[derive(Default)]
struct Log {
    commit_sizes: Vec<usize>,
}

/// A fault-injecting store for tests: wraps a `MemoryStore`, records every commit,
/// and fails the commit calls whose (0-based) number is listed in `fail_calls`.
struct TestStore {
    inner: MemoryStore,
    log: Arc<Mutex<Log>>,
    fail_calls: Vec<usize>,
}

impl Store for TestStore {
    fn load_blob_index(&mut self) -> Result<Vec<BlobMeta>, StorageError> {
        self.inner.load_blob_index()
    }
    fn load_device_sync(&mut self) -> Result<Vec<DeviceSyncRecord>, StorageError> {
        self.inner.load_device_sync()
    }
    fn load_proofs(&mut self) -> Result<Vec<RecoveryProofRecord>, StorageError> {
        self.inner.load_proofs()
    }
    fn load_hints(&mut self) -> Result<Vec<HintRecord>, StorageError> {
        self.inner.load_hints()
    }
    fn commit(&mut self, ops: &[WriteOp]) -> Result<(), StorageError> {
        let call = {
            let mut log = self.log.lock().expect("log lock");
            log.commit_sizes.push(ops.len());
            log.commit_sizes.len() - 1
        };
        if self.fail_calls.contains(&call) {
            return Err(StorageError::Unavailable("injected disk full".to_string()));
        }
        self.inner.commit(ops)
    }
    fn read_blob_data(&mut self, keys: &[u64]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        self.inner.read_blob_data(keys)
    }
}

fn test_store(fail_calls: &[usize]) -> (Box<dyn Store>, Arc<Mutex<Log>>) {
    let log = Arc::new(Mutex::new(Log::default()));
    let store = TestStore {
        inner: MemoryStore::new(),
        log: Arc::clone(&log),
        fail_calls: fail_calls.to_vec(),
    };
    (Box::new(store), log)
}

fn insert(key: u64, data_bytes: usize) -> WriteOp {
    WriteOp::InsertBlob(BlobRecord {
        key,
        id: uuid::Uuid::from_u128(u128::from(key)),
        recipient: Id64([1; 32]),
        data: vec![7; data_bytes],
        created_at_secs: 1_700_000_000,
        hop_count: 0,
        seq: key,
    })
}

fn commit(token: u64, ops: Vec<WriteOp>) -> Job {
    Job::Commit { token, ops }
}

/// Completions as (kind, token, ok) triples, for compact comparisons.
fn summary(completions: &[Completion]) -> Vec<(&'static str, u64, bool)> {
    completions
        .iter()
        .map(|completion| match completion {
            Completion::Committed { token, result } => ("commit", *token, result.is_ok()),
            Completion::Read { token, result } => ("read", *token, result.is_ok()),
        })
        .collect()
}

/// Queues `jobs`, disconnects the job channel, runs the writer to its end and
/// returns every completion it sent.
fn run_queued(store: Box<dyn Store>, jobs: Vec<Job>) -> Vec<Completion> {
    let (job_tx, job_rx) = flume::unbounded();
    let (done_tx, done_rx) = flume::unbounded();
    for job in jobs {
        job_tx.send(job).expect("queue job");
    }
    drop(job_tx);
    let writer = crate::spawn_writer("test-writer", store, job_rx, done_tx);
    writer.join().expect("writer thread");
    done_rx.drain().collect()
}

#[test]
fn queued_commits_share_one_transaction_and_complete_in_order() {
    let (store, log) = test_store(&[]);
    let jobs = (0..10)
        .map(|i| commit(100 + i, vec![insert(i, 10), insert(1000 + i, 10)]))
        .collect();
    let completions = run_queued(store, jobs);
    let expected: Vec<_> = (0..10).map(|i| ("commit", 100 + i, true)).collect();
    assert_eq!(summary(&completions), expected);
    assert_eq!(log.lock().expect("log").commit_sizes, vec![20]);
}

#[test]
fn group_is_bounded_by_op_count() {
    let (store, log) = test_store(&[]);
    let jobs = (0..GROUP_OPS_MAX as u64 + 1)
        .map(|i| commit(i, vec![insert(i, 1)]))
        .collect();
    let completions = run_queued(store, jobs);
    assert_eq!(completions.len(), GROUP_OPS_MAX + 1);
    assert!(summary(&completions).iter().all(|(_, _, ok)| *ok));
    assert_eq!(
        log.lock().expect("log").commit_sizes,
        vec![GROUP_OPS_MAX, 1]
    );
}

#[test]
fn group_is_bounded_by_data_bytes() {
    let (store, log) = test_store(&[]);
    let third = GROUP_DATA_BYTES_MAX / 3 + 1;
    let jobs = (0..4).map(|i| commit(i, vec![insert(i, third)])).collect();
    let completions = run_queued(store, jobs);
    assert_eq!(summary(&completions).len(), 4);
    // Two thirds-plus fit; a third would exceed the limit, so it starts a new group.
    assert_eq!(log.lock().expect("log").commit_sizes, vec![2, 2]);
}

#[test]
fn a_job_larger_than_the_group_limit_still_commits_whole() {
    let (store, log) = test_store(&[]);
    let big = (0..GROUP_OPS_MAX as u64 + 10)
        .map(|i| insert(i, 1))
        .collect();
    let completions = run_queued(
        store,
        vec![commit(1, vec![insert(1_000_000, 1)]), commit(2, big)],
    );
    assert_eq!(
        summary(&completions),
        vec![("commit", 1, true), ("commit", 2, true)]
    );
    assert_eq!(
        log.lock().expect("log").commit_sizes,
        vec![1, GROUP_OPS_MAX + 10]
    );
}

#[test]
fn failed_transaction_fails_every_job_in_it_and_later_jobs_succeed() {
    let (store, log) = test_store(&[0]);
    let (job_tx, job_rx) = flume::unbounded();
    let (done_tx, done_rx) = flume::unbounded();
    for i in 0..3 {
        job_tx.send(commit(i, vec![insert(i, 5)])).expect("queue");
    }
    let writer = crate::spawn_writer("test-writer", store, job_rx, done_tx);
    for i in 0..3 {
        match done_rx.recv().expect("completion") {
            Completion::Committed { token, result } => {
                assert_eq!(token, i);
                assert_eq!(
                    result,
                    Err(StorageError::Unavailable("injected disk full".to_string()))
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    job_tx.send(commit(3, vec![insert(3, 5)])).expect("queue");
    job_tx
        .send(Job::Read {
            token: 4,
            keys: vec![0, 1, 2, 3],
        })
        .expect("queue");
    drop(job_tx);
    writer.join().expect("writer thread");
    let rest: Vec<Completion> = done_rx.drain().collect();
    assert_eq!(summary(&rest), vec![("commit", 3, true), ("read", 4, true)]);
    match &rest[1] {
        Completion::Read {
            result: Ok(data), ..
        } => {
            assert_eq!(data, &vec![None, None, None, Some(vec![7; 5])]);
        }
        other => panic!("unexpected {other:?}"),
    }
    // The failed group was tried once, never retried.
    assert_eq!(log.lock().expect("log").commit_sizes, vec![3, 1]);
}

#[test]
fn reads_see_every_commit_queued_before_them() {
    let (store, log) = test_store(&[]);
    let completions = run_queued(
        store,
        vec![
            commit(1, vec![insert(1, 3)]),
            Job::Read {
                token: 2,
                keys: vec![1, 2],
            },
            commit(3, vec![insert(2, 4)]),
            commit(4, vec![WriteOp::DeleteBlob { key: 1 }]),
            Job::Read {
                token: 5,
                keys: vec![1, 2],
            },
            Job::Read {
                token: 6,
                keys: vec![],
            },
        ],
    );
    assert_eq!(
        summary(&completions),
        vec![
            ("commit", 1, true),
            ("read", 2, true),
            ("commit", 3, true),
            ("commit", 4, true),
            ("read", 5, true),
            ("read", 6, true),
        ]
    );
    let reads: Vec<_> = completions
        .iter()
        .filter_map(|completion| match completion {
            Completion::Read { result, .. } => Some(result.clone().expect("read ok")),
            Completion::Committed { .. } => None,
        })
        .collect();
    assert_eq!(
        reads,
        vec![
            vec![Some(vec![7; 3]), None],
            vec![None, Some(vec![7; 4])],
            vec![]
        ]
    );
    // A read splits the group: commits before it are committed first.
    assert_eq!(log.lock().expect("log").commit_sizes, vec![1, 2]);
}

#[test]
fn thread_is_named_and_exits_when_jobs_disconnects() {
    let (store, log) = test_store(&[]);
    let (job_tx, job_rx) = flume::unbounded::<Job>();
    let (done_tx, done_rx) = flume::unbounded();
    let writer = crate::spawn_writer("storage-7", store, job_rx, done_tx);
    assert_eq!(writer.thread().name(), Some("storage-7"));
    drop(job_tx);
    writer.join().expect("writer thread");
    assert!(done_rx.drain().next().is_none());
    assert!(log.lock().expect("log").commit_sizes.is_empty());
}

#[test]
fn queued_work_is_committed_even_when_nobody_listens_for_completions() {
    let (store, log) = test_store(&[]);
    let (job_tx, job_rx) = flume::unbounded();
    let (done_tx, done_rx) = flume::unbounded();
    drop(done_rx);
    job_tx.send(commit(1, vec![insert(1, 1)])).expect("queue");
    job_tx
        .send(Job::Read {
            token: 2,
            keys: vec![1],
        })
        .expect("queue");
    job_tx
        .send(commit(3, vec![insert(2, 1), insert(3, 1)]))
        .expect("queue");
    drop(job_tx);
    let writer = crate::spawn_writer("test-writer", store, job_rx, done_tx);
    writer.join().expect("writer thread");
    assert_eq!(log.lock().expect("log").commit_sizes, vec![1, 2]);
}

#[test]
fn writer_drives_a_sqlite_store() {
    use vauchi_relay::config::SqliteSynchronous;
    use vauchi_relay::storage::sqlite::{SqliteStore, shard_file_name};

    let dir = std::env::temp_dir().join(format!("vauchi-writer-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(shard_file_name(0));
    let store = SqliteStore::open(&path, SqliteSynchronous::Normal).expect("open");
    let completions = run_queued(
        Box::new(store),
        vec![
            commit(1, vec![insert(1, 2)]),
            commit(2, vec![insert(1, 2)]),
            commit(3, vec![insert(2, 2)]),
            Job::Read {
                token: 4,
                keys: vec![1, 2],
            },
        ],
    );
    // Jobs 1-3 share one transaction; the duplicate key in job 2 fails all of them.
    assert_eq!(
        summary(&completions),
        vec![
            ("commit", 1, false),
            ("commit", 2, false),
            ("commit", 3, false),
            ("read", 4, true)
        ]
    );
    let mut reopened = SqliteStore::open(&path, SqliteSynchronous::Normal).expect("reopen");
    assert_eq!(
        reopened.load_blob_index().expect("index"),
        Vec::<BlobMeta>::new()
    );
    drop(reopened);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_batch_is_carried_out_in_order_like_separate_jobs() {
    let (store, log) = test_store(&[]);
    let batch = Job::Batch(vec![
        commit(1, vec![insert(1, 10)]),
        Job::Read {
            token: 2,
            keys: vec![1, 3],
        },
        commit(3, vec![insert(3, 10)]),
        Job::Batch(vec![commit(4, vec![insert(4, 10)])]),
    ]);
    let completions = run_queued(store, vec![batch, commit(5, vec![insert(5, 10)])]);
    assert_eq!(
        summary(&completions),
        vec![
            ("commit", 1, true),
            ("read", 2, true),
            ("commit", 3, true),
            ("commit", 4, true),
            ("commit", 5, true),
        ]
    );
    // The read sees the commit before it and not the one after it.
    let read = completions.iter().find_map(|completion| match completion {
        Completion::Read { result, .. } => Some(result.clone().expect("read ok")),
        Completion::Committed { .. } => None,
    });
    assert_eq!(read, Some(vec![Some(vec![7; 10]), None]));
    // Commit 1 went alone (a read followed it); 3, 4 and 5 shared a transaction.
    assert_eq!(log.lock().expect("log").commit_sizes, vec![1, 3]);
}

#[test]
fn stop_inside_a_batch_commits_what_came_before_and_drops_the_rest() {
    let (store, log) = test_store(&[]);
    let batch = Job::Batch(vec![
        commit(1, vec![insert(1, 10)]),
        Job::Stop,
        commit(2, vec![insert(2, 10)]),
    ]);
    let completions = run_queued(store, vec![batch]);
    assert_eq!(summary(&completions), vec![("commit", 1, true)]);
    assert_eq!(log.lock().expect("log").commit_sizes, vec![1]);
}

#[test]
fn the_alive_token_is_dropped_when_the_thread_ends_even_by_a_panic() {
    struct Panicking;
    impl Store for Panicking {
        fn load_blob_index(&mut self) -> Result<Vec<BlobMeta>, StorageError> {
            Ok(Vec::new())
        }
        fn load_device_sync(&mut self) -> Result<Vec<DeviceSyncRecord>, StorageError> {
            Ok(Vec::new())
        }
        fn load_proofs(&mut self) -> Result<Vec<RecoveryProofRecord>, StorageError> {
            Ok(Vec::new())
        }
        fn load_hints(&mut self) -> Result<Vec<HintRecord>, StorageError> {
            Ok(Vec::new())
        }
        fn commit(&mut self, _ops: &[WriteOp]) -> Result<(), StorageError> {
            panic!("a store that fails hard (test)");
        }
        fn read_blob_data(&mut self, keys: &[u64]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
            Ok(vec![None; keys.len()])
        }
    }
    let (job_tx, job_rx) = flume::bounded(16);
    let (done_tx, done_rx) = flume::unbounded();
    let (alive_tx, alive_rx) = flume::bounded::<()>(1);
    let writer = spawn_writer(
        "panics".to_string(),
        Box::new(Panicking),
        job_rx,
        done_tx,
        alive_tx,
    )
    .expect("spawn");
    job_tx.send(commit(1, vec![insert(1, 10)])).unwrap();
    // Nothing is ever sent on it: the receive ends when the thread drops its end.
    assert!(alive_rx.recv().is_err());
    assert!(writer.join().is_err(), "the thread panicked");
    assert!(done_rx.try_recv().is_err(), "and acked nothing");
}
