//! Storage faults injected through the `Store` trait (issue #8, item 3): a write
//! that fails is never acknowledged. A store that fails on demand drives the
//! group-commit writer (and the inline path the memory backend uses): every job of
//! a failed transaction gets an error completion and none gets `Ok`, the failed
//! transaction is not retried, nothing of it is stored, and once the failure
//! clears later jobs commit. The shard turns exactly these completions into
//! `Stored` or `storage_unavailable` (`src/shard/owner.rs`, `on_completion`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use vauchi_relay::protocol::Id64;
use vauchi_relay::storage::memory::MemoryStore;
use vauchi_relay::storage::writer::{Completion, Job, run_inline};
use vauchi_relay::storage::{
    BlobMeta, BlobRecord, DeviceSyncRecord, HintRecord, RecoveryProofRecord, StorageError, Store,
    WriteOp,
};

/// One commit call as the store saw it.
#[derive(Debug, Clone)]
struct CommitSeen {
    keys: Vec<u64>,
    failed: bool,
}

/// A `MemoryStore` (shared, so the test can look inside afterwards) whose commits
/// fail while `fail` is set. Every commit call is reported on `seen` as it starts;
/// with a `gate`, the call then waits for the test to release it, and without one
/// it takes `COMMIT_LATENCY`, as a disk would, so that jobs queue up meanwhile.
struct FaultyStore {
    inner: Arc<Mutex<MemoryStore>>,
    fail: Arc<AtomicBool>,
    seen: flume::Sender<CommitSeen>,
    gate: Option<flume::Receiver<()>>,
}

/// How long an ungated commit takes: a fast disk's sync.
const COMMIT_LATENCY: std::time::Duration = std::time::Duration::from_micros(200);

impl Store for FaultyStore {
    fn load_blob_index(&mut self) -> Result<Vec<BlobMeta>, StorageError> {
        self.inner.lock().unwrap().load_blob_index()
    }
    fn load_device_sync(&mut self) -> Result<Vec<DeviceSyncRecord>, StorageError> {
        self.inner.lock().unwrap().load_device_sync()
    }
    fn load_proofs(&mut self) -> Result<Vec<RecoveryProofRecord>, StorageError> {
        self.inner.lock().unwrap().load_proofs()
    }
    fn load_hints(&mut self) -> Result<Vec<HintRecord>, StorageError> {
        self.inner.lock().unwrap().load_hints()
    }
    fn commit(&mut self, ops: &[WriteOp]) -> Result<(), StorageError> {
        let failed = self.fail.load(Ordering::SeqCst);
        let keys = ops
            .iter()
            .map(|op| match op {
                WriteOp::InsertBlob(record) => record.key,
                other => panic!("this test only inserts blobs: {other:?}"),
            })
            .collect();
        let _ = self.seen.send(CommitSeen { keys, failed });
        match &self.gate {
            Some(gate) => gate.recv().expect("the test releases every commit"),
            None => std::thread::sleep(COMMIT_LATENCY),
        }
        if failed {
            return Err(StorageError::Unavailable("injected I/O error".to_string()));
        }
        self.inner.lock().unwrap().commit(ops)
    }
    fn read_blob_data(&mut self, keys: &[u64]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        self.inner.lock().unwrap().read_blob_data(keys)
    }
}

/// The test's handles on a `FaultyStore`.
struct Faults {
    inner: Arc<Mutex<MemoryStore>>,
    fail: Arc<AtomicBool>,
    seen: flume::Receiver<CommitSeen>,
    release: Option<flume::Sender<()>>,
}

impl Faults {
    fn set_failing(&self, failing: bool) {
        self.fail.store(failing, Ordering::SeqCst);
    }

    /// Every key the store holds, from its index.
    fn stored_keys(&self) -> BTreeSet<u64> {
        let mut inner = self.inner.lock().unwrap();
        inner
            .load_blob_index()
            .unwrap()
            .iter()
            .map(|meta| meta.key)
            .collect()
    }
}

fn faulty_store(gated: bool) -> (Box<dyn Store>, Faults) {
    let inner = Arc::new(Mutex::new(MemoryStore::new()));
    let fail = Arc::new(AtomicBool::new(false));
    let (seen_tx, seen) = flume::unbounded();
    let (release, gate) = if gated {
        let (tx, rx) = flume::unbounded();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let store = FaultyStore {
        inner: Arc::clone(&inner),
        fail: Arc::clone(&fail),
        seen: seen_tx,
        gate,
    };
    let faults = Faults {
        inner,
        fail,
        seen,
        release,
    };
    (Box::new(store), faults)
}

fn insert(key: u64) -> WriteOp {
    WriteOp::InsertBlob(BlobRecord {
        key,
        id: uuid::Uuid::from_u128(u128::from(key)),
        recipient: Id64([9; 32]),
        data: key.to_be_bytes().to_vec(),
        created_at_secs: 1_767_225_600,
        hop_count: 0,
        seq: key,
    })
}

/// A commit job whose token is its first key.
fn job(keys: &[u64]) -> Job {
    Job::Commit {
        token: keys[0],
        ops: keys.iter().copied().map(insert).collect(),
    }
}

/// The next completion: (token, whether it is `Ok`).
fn next_commit(done: &flume::Receiver<Completion>) -> (u64, bool) {
    match done.recv().expect("a completion") {
        Completion::Committed { token, result } => (token, result.is_ok()),
        other => panic!("expected a commit completion, got {other:?}"),
    }
}

#[test]
fn every_job_in_a_failed_transaction_is_failed_and_later_jobs_commit() {
    let (store, faults) = faulty_store(true);
    let release = faults.release.clone().unwrap();
    let (jobs, jobs_rx) = flume::unbounded();
    let (done_tx, done) = flume::unbounded();
    let writer = crate::spawn_writer("faults", store, jobs_rx, done_tx);

    // Job 0 commits; while it is inside its commit, jobs 1-50 queue up, so the
    // writer takes them as one group, and the disk starts failing.
    jobs.send(job(&[0])).unwrap();
    let first = faults.seen.recv().unwrap();
    assert_eq!((first.keys, first.failed), (vec![0], false));
    for key in 1..=50 {
        jobs.send(job(&[key])).unwrap();
    }
    faults.set_failing(true);
    release.send(()).unwrap();
    assert_eq!(next_commit(&done), (0, true));

    // The 50 jobs share one transaction, which fails. Jobs 51-80 queue up behind
    // it, and the failure clears.
    let failing = faults.seen.recv().unwrap();
    assert_eq!(
        failing.keys,
        (1..=50).collect::<Vec<_>>(),
        "one transaction"
    );
    assert!(failing.failed);
    for key in 51..=80 {
        jobs.send(job(&[key])).unwrap();
    }
    faults.set_failing(false);
    release.send(()).unwrap();
    for key in 1..=50 {
        assert_eq!(next_commit(&done), (key, false), "job {key} is not acked");
    }

    // The jobs after the failure commit, in one transaction of their own: the
    // failed one is not retried.
    let after = faults.seen.recv().unwrap();
    assert_eq!(after.keys, (51..=80).collect::<Vec<_>>());
    assert!(!after.failed);
    release.send(()).unwrap();
    for key in 51..=80 {
        assert_eq!(next_commit(&done), (key, true), "job {key}");
    }
    drop(jobs);
    writer.join().unwrap();
    assert!(faults.seen.try_recv().is_err(), "no other commit call");
    assert!(done.try_recv().is_err(), "no other completion");

    // Exactly the acknowledged writes are stored.
    let expected: BTreeSet<u64> = std::iter::once(0).chain(51..=80).collect();
    assert_eq!(faults.stored_keys(), expected);
    let data = faults
        .inner
        .lock()
        .unwrap()
        .read_blob_data(&[1, 25, 50])
        .unwrap();
    assert_eq!(data, vec![None, None, None]);
}

/// The concurrent test's phases, alternately healthy and failing, and the jobs
/// queued in each.
const PHASES: u64 = 30;
const JOBS_PER_PHASE: u64 = 100;

#[test]
fn under_concurrent_faults_a_job_is_acked_exactly_when_its_transaction_committed() {
    // A producer queues jobs of one to three writes in phases, flipping the failure
    // switch between them while the writer may still be committing, so groups form
    // and fail however the threads interleave.
    let (store, faults) = faulty_store(false);
    let (jobs, jobs_rx) = flume::unbounded();
    let (done_tx, done) = flume::unbounded();
    let writer = crate::spawn_writer("faults", store, jobs_rx, done_tx);
    let fail = Arc::clone(&faults.fail);
    let producer = std::thread::spawn(move || {
        let mut next_key = 1;
        let mut job_keys = BTreeMap::new();
        for phase in 0..PHASES {
            fail.store(phase % 2 == 1, Ordering::SeqCst);
            for i in 0..JOBS_PER_PHASE {
                let keys: Vec<u64> = (next_key..next_key + 1 + i % 3).collect();
                next_key += keys.len() as u64;
                jobs.send(job(&keys)).unwrap();
                job_keys.insert(keys[0], keys);
                std::thread::yield_now();
            }
            while !jobs.is_empty() {
                std::thread::yield_now();
            }
        }
        // Both outcomes surely happen: one failing job, then one committing job,
        // each alone once the writer has caught up.
        for failing in [true, false] {
            while !jobs.is_empty() {
                std::thread::yield_now();
            }
            fail.store(failing, Ordering::SeqCst);
            let keys = vec![next_key];
            next_key += 1;
            jobs.send(job(&keys)).unwrap();
            job_keys.insert(keys[0], keys);
        }
        job_keys
    });
    let job_keys = producer.join().unwrap();
    writer.join().unwrap();

    // Every commit call, and the transaction each key went into.
    let calls: Vec<CommitSeen> = faults.seen.drain().collect();
    let mut call_of = BTreeMap::new();
    for (index, call) in calls.iter().enumerate() {
        for key in &call.keys {
            assert!(
                call_of.insert(*key, index).is_none(),
                "key {key} was in two commit calls: a failed commit was retried"
            );
        }
    }
    let completions: Vec<(u64, bool)> = done
        .drain()
        .map(|c| match c {
            Completion::Committed { token, result } => (token, result.is_ok()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let tokens: Vec<u64> = completions.iter().map(|(token, _)| *token).collect();
    assert_eq!(
        tokens,
        job_keys.keys().copied().collect::<Vec<_>>(),
        "one completion per job, in job order"
    );
    let mut acked = BTreeSet::new();
    for (token, ok) in &completions {
        let keys = &job_keys[token];
        let call = &calls[call_of[&keys[0]]];
        assert!(
            keys.iter().all(|key| call.keys.contains(key)),
            "job {token} was split across transactions"
        );
        assert_eq!(
            *ok,
            !call.failed,
            "job {token}: its transaction {}, its completion {}",
            if call.failed { "failed" } else { "committed" },
            if *ok { "Ok" } else { "an error" }
        );
        if *ok {
            acked.extend(keys.iter().copied());
        }
    }
    let failed_jobs = completions.iter().filter(|(_, ok)| !ok).count();
    let failed_calls = calls.iter().filter(|c| c.failed).count();
    // How the threads interleaved; the deterministic test above is the one that
    // forces a failed transaction of many jobs.
    eprintln!(
        "{} jobs in {} transactions: {failed_jobs} jobs failed in {failed_calls} transactions",
        completions.len(),
        calls.len()
    );
    assert!(failed_jobs > 0 && failed_jobs < completions.len());
    // What is stored is exactly what was acknowledged.
    assert_eq!(faults.stored_keys(), acked);
}

/// The one completion `run_inline` gives for a single job.
fn inline(store: &mut dyn Store, job: Job) -> Option<Completion> {
    let mut completions = Vec::new();
    run_inline(store, job, &mut |completion| completions.push(completion));
    assert!(completions.len() <= 1, "{completions:?}");
    completions.pop()
}

#[test]
fn the_inline_path_fails_the_job_and_commits_once_the_fault_clears() {
    // The memory backend runs jobs inline on the shard (`StorageLink::Inline`).
    let (mut store, faults) = faulty_store(false);
    faults.set_failing(true);
    let failed = inline(store.as_mut(), job(&[1, 2]));
    assert!(
        matches!(
            failed,
            Some(Completion::Committed {
                token: 1,
                result: Err(_)
            })
        ),
        "{failed:?}"
    );
    faults.set_failing(false);
    let committed = inline(store.as_mut(), job(&[3]));
    assert!(
        matches!(
            committed,
            Some(Completion::Committed {
                token: 3,
                result: Ok(())
            })
        ),
        "{committed:?}"
    );
    assert_eq!(faults.stored_keys(), BTreeSet::from([3]));
}
