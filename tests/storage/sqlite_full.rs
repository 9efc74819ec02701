//! The sqlite store is honest about a full disk: a commit that cannot be written
//! returns `StorageError::Unavailable`, applies nothing, and once space returns the
//! same store commits again. The "full disk" is a file-size rlimit (writes past it
//! fail with EFBIG), which needs no root and no special filesystem. The limit is
//! process-wide, so this file holds exactly one test.

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod file_size_limit {
    /// `struct rlimit` on 64-bit Linux: `rlim_t` is a u64.
    #[repr(C)]
    struct Rlimit {
        current: u64,
        max: u64,
    }

    const RLIMIT_FSIZE: i32 = 1;
    const SIGXFSZ: i32 = 25;
    const SIG_IGN: usize = 1;

    unsafe extern "C" {
        fn getrlimit(resource: i32, limit: *mut Rlimit) -> i32;
        fn setrlimit(resource: i32, limit: *const Rlimit) -> i32;
        fn signal(signal: i32, handler: usize) -> usize;
    }

    /// Makes writes past `bytes` fail with EFBIG instead of killing the process, and
    /// returns the previous soft limit.
    pub fn set(bytes: u64) -> u64 {
        let mut limit = Rlimit { current: 0, max: 0 };
        // SAFETY: plain libc calls with valid pointers to a correctly laid out struct.
        unsafe {
            signal(SIGXFSZ, SIG_IGN);
            assert_eq!(getrlimit(RLIMIT_FSIZE, &mut limit), 0);
            let previous = limit.current;
            limit.current = bytes.min(limit.max);
            assert_eq!(setrlimit(RLIMIT_FSIZE, &limit), 0);
            previous
        }
    }
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[test]
fn full_disk_fails_the_commit_and_the_store_recovers() {
    use vauchi_relay::config::SqliteSynchronous;
    use vauchi_relay::protocol::Id64;
    use vauchi_relay::storage::sqlite::{SqliteStore, shard_file_name};
    use vauchi_relay::storage::{BlobRecord, StorageError, Store, WriteOp};

    fn insert(key: u64, data_bytes: usize) -> WriteOp {
        WriteOp::InsertBlob(BlobRecord {
            key,
            id: uuid::Uuid::from_u128(u128::from(key)),
            recipient: Id64([3; 32]),
            data: vec![0x5A; data_bytes],
            created_at_secs: 1_700_000_000,
            hop_count: 0,
            seq: key,
        })
    }

    let dir = std::env::temp_dir().join(format!("vauchi-full-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(shard_file_name(0));
    let mut store = SqliteStore::open(&path, SqliteSynchronous::Full).expect("open");
    store.commit(&[insert(1, 100)]).expect("first commit");
    let big: Vec<WriteOp> = (10..74).map(|key| insert(key, 16 * 1024)).collect();

    let previous = file_size_limit::set(256 * 1024);
    let first = store.commit(&big);
    let second = store.commit(&big);
    let small_still_fits = store.commit(&[insert(2, 100)]);
    file_size_limit::set(previous);

    assert!(
        matches!(first, Err(StorageError::Unavailable(_))),
        "got {first:?}"
    );
    assert!(
        matches!(second, Err(StorageError::Unavailable(_))),
        "got {second:?}"
    );
    small_still_fits.expect("a small commit fits under the limit");
    let keys: Vec<u64> = store
        .load_blob_index()
        .expect("index")
        .iter()
        .map(|meta| meta.key)
        .collect();
    assert_eq!(keys, vec![1, 2], "a failed commit must apply nothing");

    store.commit(&big).expect("commit once space returns");
    assert_eq!(store.load_blob_index().expect("index").len(), 66);
    drop(store);
    let mut reopened = SqliteStore::open(&path, SqliteSynchronous::Normal).expect("reopen");
    assert_eq!(reopened.load_blob_index().expect("index").len(), 66);
    assert_eq!(
        reopened.read_blob_data(&[73]).expect("read"),
        vec![Some(vec![0x5A; 16 * 1024])]
    );
    drop(reopened);
    let _ = std::fs::remove_dir_all(&dir);
}
