//! One table of storage behaviours run against both backends (PROTOCOL.md §10.1:
//! they must behave identically), plus the sqlite-only properties: durability
//! across reopen, the meta table, the file layout and honest errors.

use crate::common::TempDir;
use vauchi_relay::config::SqliteSynchronous;
use vauchi_relay::protocol::Id64;
use vauchi_relay::storage::memory::MemoryStore;
use vauchi_relay::storage::sqlite::{SqliteStore, shard_file_name};
use vauchi_relay::storage::{BlobMeta, BlobRecord, HintRecord, Store, WriteOp};

fn record(key: u64, recipient: u8, data: &[u8]) -> BlobRecord {
    BlobRecord {
        key,
        id: uuid::Uuid::from_u128(0x1000 + u128::from(key)),
        recipient: Id64([recipient; 32]),
        data: data.to_vec(),
        created_at_secs: 1_700_000_000 + key,
        hop_count: (key % 3) as u8,
        seq: 10 * key,
    }
}

fn meta_of(record: &BlobRecord) -> BlobMeta {
    BlobMeta {
        key: record.key,
        id: record.id,
        recipient: record.recipient,
        created_at_secs: record.created_at_secs,
        hop_count: record.hop_count,
        seq: record.seq,
        data_len: record.data.len() as u32,
    }
}

fn insert(record: BlobRecord) -> WriteOp {
    WriteOp::InsertBlob(record)
}

fn delete(key: u64) -> WriteOp {
    WriteOp::DeleteBlob { key }
}

fn keys_of(store: &mut dyn Store) -> Vec<u64> {
    store
        .load_blob_index()
        .expect("load index")
        .iter()
        .map(|meta| meta.key)
        .collect()
}

// ---- the shared table -------------------------------------------------------------

fn insert_then_read(store: &mut dyn Store) {
    store
        .commit(&[
            insert(record(1, 7, b"one")),
            insert(record(2, 8, b"two")),
            insert(record(3, 7, b"three")),
        ])
        .expect("commit");
    let data = store.read_blob_data(&[3, 99, 1]).expect("read");
    assert_eq!(
        data,
        vec![Some(b"three".to_vec()), None, Some(b"one".to_vec())]
    );
}

fn read_of_no_keys_is_empty(store: &mut dyn Store) {
    assert_eq!(
        store.read_blob_data(&[]).expect("read"),
        Vec::<Option<Vec<u8>>>::new()
    );
}

fn empty_data_is_stored_as_empty(store: &mut dyn Store) {
    store.commit(&[insert(record(4, 1, b""))]).expect("commit");
    assert_eq!(
        store.read_blob_data(&[4]).expect("read"),
        vec![Some(Vec::new())]
    );
    assert_eq!(store.load_blob_index().expect("index")[0].data_len, 0);
}

fn delete_removes(store: &mut dyn Store) {
    store
        .commit(&[insert(record(1, 7, b"a")), insert(record(2, 7, b"b"))])
        .expect("commit");
    store.commit(&[delete(1)]).expect("delete");
    assert_eq!(
        store.read_blob_data(&[1, 2]).expect("read"),
        vec![None, Some(b"b".to_vec())]
    );
    assert_eq!(keys_of(store), vec![2]);
}

fn delete_of_missing_key_is_fine(store: &mut dyn Store) {
    store.commit(&[delete(42)]).expect("delete of nothing");
    store
        .commit(&[insert(record(1, 7, b"a")), delete(1), delete(1)])
        .expect("double delete");
    assert_eq!(keys_of(store), Vec::<u64>::new());
}

fn empty_commit_is_fine(store: &mut dyn Store) {
    store.commit(&[]).expect("empty commit");
    assert_eq!(keys_of(store), Vec::<u64>::new());
}

fn duplicate_of_stored_key_leaves_nothing(store: &mut dyn Store) {
    store
        .commit(&[insert(record(1, 7, b"first"))])
        .expect("commit");
    let result = store.commit(&[
        insert(record(2, 7, b"x")),
        delete(3),
        insert(record(1, 9, b"dup")),
    ]);
    assert!(
        result.is_err(),
        "inserting a stored key must fail the batch"
    );
    assert_eq!(keys_of(store), vec![1]);
    assert_eq!(
        store.read_blob_data(&[1, 2]).expect("read"),
        vec![Some(b"first".to_vec()), None]
    );
    // The store keeps working after a failed batch.
    store
        .commit(&[insert(record(2, 7, b"x"))])
        .expect("commit after failure");
    assert_eq!(keys_of(store), vec![1, 2]);
}

fn duplicate_within_one_batch_leaves_nothing(store: &mut dyn Store) {
    let result = store.commit(&[insert(record(5, 1, b"a")), insert(record(5, 1, b"b"))]);
    assert!(
        result.is_err(),
        "a key inserted twice in one batch must fail it"
    );
    assert_eq!(keys_of(store), Vec::<u64>::new());
}

fn failed_batch_keeps_deletes_undone(store: &mut dyn Store) {
    store
        .commit(&[insert(record(1, 7, b"a")), insert(record(2, 7, b"b"))])
        .expect("commit");
    let result = store.commit(&[delete(2), insert(record(1, 7, b"dup"))]);
    assert!(result.is_err());
    assert_eq!(keys_of(store), vec![1, 2]);
}

fn delete_then_reinsert_in_one_batch(store: &mut dyn Store) {
    store
        .commit(&[insert(record(1, 7, b"old"))])
        .expect("commit");
    store
        .commit(&[delete(1), insert(record(1, 8, b"new"))])
        .expect("delete then insert of one key");
    assert_eq!(
        store.read_blob_data(&[1]).expect("read"),
        vec![Some(b"new".to_vec())]
    );
    assert_eq!(
        store.load_blob_index().expect("index")[0].recipient,
        Id64([8; 32])
    );
}

fn index_is_ordered_by_key_with_every_field(store: &mut dyn Store) {
    let records = [
        record(50, 3, b"fifty"),
        record(2, 1, b"2"),
        record(9, 3, &[0xAB; 300]),
    ];
    for record in &records {
        store.commit(&[insert(record.clone())]).expect("commit");
    }
    let mut expected: Vec<BlobMeta> = records.iter().map(meta_of).collect();
    expected.sort_by_key(|meta| meta.key);
    assert_eq!(store.load_blob_index().expect("index"), expected);
}

fn extreme_values_round_trip(store: &mut dyn Store) {
    let record = BlobRecord {
        key: i64::MAX as u64,
        id: uuid::Uuid::from_u128(u128::MAX),
        recipient: Id64([0xFF; 32]),
        data: vec![0; 70_000],
        created_at_secs: i64::MAX as u64,
        hop_count: u8::MAX,
        seq: i64::MAX as u64,
    };
    store.commit(&[insert(record.clone())]).expect("commit");
    assert_eq!(
        store.load_blob_index().expect("index"),
        vec![meta_of(&record)]
    );
    assert_eq!(
        store.read_blob_data(&[record.key]).expect("read"),
        vec![Some(record.data)]
    );
}

fn values_beyond_i64_are_refused(store: &mut dyn Store) {
    // SQLite integers are signed 64-bit, so both backends refuse larger values
    // rather than the memory backend silently accepting what sqlite cannot hold.
    let too_big = i64::MAX as u64 + 1;
    let changes: [fn(&mut BlobRecord, u64); 3] = [
        |r, v| r.key = v,
        |r, v| r.created_at_secs = v,
        |r, v| r.seq = v,
    ];
    for change in changes {
        let mut bad = record(1, 1, b"x");
        change(&mut bad, too_big);
        let result = store.commit(&[insert(record(2, 1, b"ok")), insert(bad)]);
        assert!(result.is_err());
        assert_eq!(keys_of(store), Vec::<u64>::new());
    }
}

// ---- forwarding hints (§10.4, §11.7 step 4) ------------------------------------------

fn hint(key: u64, routing: u8) -> HintRecord {
    HintRecord {
        key,
        blob_id: uuid::Uuid::from_u128(0x2000 + u128::from(key)),
        routing_id: Id64([routing; 32]),
        relay_url: format!("ws://relay-{key}.example:8080"),
        created_at_secs: 1_700_000_000 + key,
        expires_at_secs: 1_700_000_000 + key + 7_776_000,
    }
}

fn insert_hint(record: HintRecord) -> WriteOp {
    WriteOp::InsertHint(record)
}

fn delete_hint(key: u64) -> WriteOp {
    WriteOp::DeleteHint { key }
}

fn hint_keys_of(store: &mut dyn Store) -> Vec<u64> {
    store
        .load_hints()
        .expect("load hints")
        .iter()
        .map(|hint| hint.key)
        .collect()
}

fn hints_come_back_in_key_order_with_every_field(store: &mut dyn Store) {
    assert_eq!(store.load_hints().expect("hints"), Vec::<HintRecord>::new());
    store
        .commit(&[insert_hint(hint(50, 3)), insert_hint(hint(2, 1))])
        .expect("commit");
    store.commit(&[insert_hint(hint(9, 3))]).expect("commit");
    assert_eq!(
        store.load_hints().expect("hints"),
        vec![hint(2, 1), hint(9, 3), hint(50, 3)]
    );
}

fn hint_delete_removes_and_a_missing_key_is_fine(store: &mut dyn Store) {
    store
        .commit(&[insert_hint(hint(1, 7)), insert_hint(hint(2, 7))])
        .expect("commit");
    store
        .commit(&[delete_hint(1), delete_hint(1), delete_hint(42)])
        .expect("delete, twice, and of nothing");
    assert_eq!(hint_keys_of(store), vec![2]);
    store
        .commit(&[delete_hint(u64::MAX)])
        .expect("delete of a key beyond i64");
    assert_eq!(hint_keys_of(store), vec![2]);
}

fn hints_and_blobs_do_not_touch_each_other(store: &mut dyn Store) {
    // Separate tables: deleting blob 1 leaves hint 1 and the reverse.
    store
        .commit(&[insert(record(1, 7, b"a")), insert_hint(hint(1, 7))])
        .expect("commit");
    store.commit(&[delete(1)]).expect("delete blob");
    assert_eq!(hint_keys_of(store), vec![1]);
    store
        .commit(&[insert(record(1, 7, b"a")), delete_hint(1)])
        .expect("commit");
    assert_eq!(keys_of(store), vec![1]);
    assert_eq!(hint_keys_of(store), Vec::<u64>::new());
}

fn offload_deletes_the_blob_and_inserts_its_hint_together(store: &mut dyn Store) {
    store
        .commit(&[insert(record(1, 7, b"a")), insert(record(2, 7, b"b"))])
        .expect("commit");
    store
        .commit(&[delete(1), insert_hint(hint(3, 7))])
        .expect("offload commit");
    assert_eq!(keys_of(store), vec![2]);
    assert_eq!(store.load_hints().expect("hints"), vec![hint(3, 7)]);
}

fn failed_offload_writes_neither(store: &mut dyn Store) {
    store
        .commit(&[insert(record(1, 7, b"a")), insert_hint(hint(3, 7))])
        .expect("commit");
    // A duplicate hint key fails the batch: the blob stays, no second hint.
    let result = store.commit(&[delete(1), insert_hint(hint(4, 7)), insert_hint(hint(3, 8))]);
    assert!(result.is_err(), "a stored hint key must fail the batch");
    assert_eq!(keys_of(store), vec![1]);
    assert_eq!(store.load_hints().expect("hints"), vec![hint(3, 7)]);
    // So does a hint value neither backend can hold.
    let mut bad = hint(5, 7);
    bad.expires_at_secs = i64::MAX as u64 + 1;
    let result = store.commit(&[delete(1), insert_hint(bad)]);
    assert!(result.is_err(), "an out-of-range hint must fail the batch");
    assert_eq!(keys_of(store), vec![1]);
    assert_eq!(hint_keys_of(store), vec![3]);
    // The store keeps working.
    store
        .commit(&[delete(1), insert_hint(hint(5, 7))])
        .expect("commit after failure");
    assert_eq!(keys_of(store), Vec::<u64>::new());
    assert_eq!(hint_keys_of(store), vec![3, 5]);
}

fn hint_inserted_twice_in_one_batch_leaves_nothing(store: &mut dyn Store) {
    let result = store.commit(&[insert_hint(hint(5, 1)), insert_hint(hint(5, 2))]);
    assert!(result.is_err());
    assert_eq!(hint_keys_of(store), Vec::<u64>::new());
}

fn hint_delete_then_reinsert_in_one_batch(store: &mut dyn Store) {
    store.commit(&[insert_hint(hint(1, 7))]).expect("commit");
    store
        .commit(&[delete_hint(1), insert_hint(hint(1, 8))])
        .expect("delete then insert of one hint key");
    assert_eq!(store.load_hints().expect("hints"), vec![hint(1, 8)]);
}

fn hint_extreme_values_round_trip(store: &mut dyn Store) {
    let record = HintRecord {
        key: i64::MAX as u64,
        blob_id: uuid::Uuid::from_u128(u128::MAX),
        routing_id: Id64([0xFF; 32]),
        relay_url: String::new(),
        created_at_secs: i64::MAX as u64,
        expires_at_secs: i64::MAX as u64,
    };
    let long = HintRecord {
        key: 0,
        relay_url: format!("wss://{}.example/ünïcode", "a".repeat(5000)),
        created_at_secs: 0,
        expires_at_secs: 0,
        ..record.clone()
    };
    store
        .commit(&[insert_hint(record.clone()), insert_hint(long.clone())])
        .expect("commit");
    assert_eq!(store.load_hints().expect("hints"), vec![long, record]);
}

fn hint_values_beyond_i64_are_refused(store: &mut dyn Store) {
    let too_big = i64::MAX as u64 + 1;
    let changes: [fn(&mut HintRecord, u64); 3] = [
        |r, v| r.key = v,
        |r, v| r.created_at_secs = v,
        |r, v| r.expires_at_secs = v,
    ];
    for change in changes {
        let mut bad = hint(1, 1);
        change(&mut bad, too_big);
        let result = store.commit(&[insert_hint(hint(2, 1)), insert_hint(bad)]);
        assert!(result.is_err());
        assert_eq!(hint_keys_of(store), Vec::<u64>::new());
    }
}

type Case = (&'static str, fn(&mut dyn Store));

const CASES: &[Case] = &[
    ("insert_then_read", insert_then_read),
    ("read_of_no_keys_is_empty", read_of_no_keys_is_empty),
    (
        "empty_data_is_stored_as_empty",
        empty_data_is_stored_as_empty,
    ),
    ("delete_removes", delete_removes),
    (
        "delete_of_missing_key_is_fine",
        delete_of_missing_key_is_fine,
    ),
    ("empty_commit_is_fine", empty_commit_is_fine),
    (
        "duplicate_of_stored_key_leaves_nothing",
        duplicate_of_stored_key_leaves_nothing,
    ),
    (
        "duplicate_within_one_batch_leaves_nothing",
        duplicate_within_one_batch_leaves_nothing,
    ),
    (
        "failed_batch_keeps_deletes_undone",
        failed_batch_keeps_deletes_undone,
    ),
    (
        "delete_then_reinsert_in_one_batch",
        delete_then_reinsert_in_one_batch,
    ),
    (
        "index_is_ordered_by_key_with_every_field",
        index_is_ordered_by_key_with_every_field,
    ),
    ("extreme_values_round_trip", extreme_values_round_trip),
    (
        "values_beyond_i64_are_refused",
        values_beyond_i64_are_refused,
    ),
    (
        "hints_come_back_in_key_order_with_every_field",
        hints_come_back_in_key_order_with_every_field,
    ),
    (
        "hint_delete_removes_and_a_missing_key_is_fine",
        hint_delete_removes_and_a_missing_key_is_fine,
    ),
    (
        "hints_and_blobs_do_not_touch_each_other",
        hints_and_blobs_do_not_touch_each_other,
    ),
    (
        "offload_deletes_the_blob_and_inserts_its_hint_together",
        offload_deletes_the_blob_and_inserts_its_hint_together,
    ),
    (
        "failed_offload_writes_neither",
        failed_offload_writes_neither,
    ),
    (
        "hint_inserted_twice_in_one_batch_leaves_nothing",
        hint_inserted_twice_in_one_batch_leaves_nothing,
    ),
    (
        "hint_delete_then_reinsert_in_one_batch",
        hint_delete_then_reinsert_in_one_batch,
    ),
    (
        "hint_extreme_values_round_trip",
        hint_extreme_values_round_trip,
    ),
    (
        "hint_values_beyond_i64_are_refused",
        hint_values_beyond_i64_are_refused,
    ),
];

#[test]
fn memory_backend_passes_the_table() {
    for (name, case) in CASES {
        eprintln!("memory: {name}");
        case(&mut MemoryStore::new());
    }
}

#[test]
fn sqlite_backend_passes_the_table() {
    for synchronous in [SqliteSynchronous::Normal, SqliteSynchronous::Full] {
        for (name, case) in CASES {
            eprintln!("sqlite {synchronous:?}: {name}");
            let dir = TempDir::new("storage");
            let mut store =
                SqliteStore::open(&dir.path().join(shard_file_name(0)), synchronous).expect("open");
            case(&mut store);
        }
    }
}

// ---- sqlite only ------------------------------------------------------------------

#[test]
fn shard_files_are_named_by_index() {
    assert_eq!(shard_file_name(0), "shard-0.db");
    assert_eq!(shard_file_name(17), "shard-17.db");
}

#[test]
fn reopened_sqlite_file_keeps_blobs_and_meta() {
    let dir = TempDir::new("storage");
    let path = dir.path().join(shard_file_name(2));
    {
        let mut store = SqliteStore::open(&path, SqliteSynchronous::Full).expect("open");
        store
            .commit(&[insert(record(1, 7, b"kept")), insert(record(2, 7, b"gone"))])
            .expect("commit");
        store.commit(&[delete(2)]).expect("delete");
        store.meta_set("shard_count", "4").expect("meta set");
    }
    let mut store = SqliteStore::open(&path, SqliteSynchronous::Normal).expect("reopen");
    assert_eq!(
        store.load_blob_index().expect("index"),
        vec![meta_of(&record(1, 7, b"kept"))]
    );
    assert_eq!(
        store.read_blob_data(&[1, 2]).expect("read"),
        vec![Some(b"kept".to_vec()), None]
    );
    assert_eq!(
        store.meta_get("shard_count").expect("meta get"),
        Some("4".to_string())
    );
}

#[test]
fn meta_get_and_set() {
    let dir = TempDir::new("storage");
    let mut store =
        SqliteStore::open(&dir.path().join("m.db"), SqliteSynchronous::Normal).expect("open");
    assert_eq!(store.meta_get("shard_count").expect("get"), None);
    store.meta_set("shard_count", "2").expect("set");
    store.meta_set("other", "x").expect("set");
    store.meta_set("shard_count", "8").expect("overwrite");
    assert_eq!(
        store.meta_get("shard_count").expect("get"),
        Some("8".to_string())
    );
    assert_eq!(store.meta_get("other").expect("get"), Some("x".to_string()));
}

#[test]
fn sqlite_file_is_wal_with_no_secondary_index_on_blobs() {
    let dir = TempDir::new("storage");
    let path = dir.path().join(shard_file_name(0));
    let mut store = SqliteStore::open(&path, SqliteSynchronous::Normal).expect("open");
    store.commit(&[insert(record(1, 7, b"a"))]).expect("commit");
    let peek = rusqlite::Connection::open(&path).expect("second connection");
    let mode: String = peek
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
    let indexes: i64 = peek
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'blobs'",
            [],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(indexes, 0);
}

#[test]
fn open_in_a_missing_directory_is_an_error() {
    let dir = TempDir::new("storage");
    let path = dir.path().join("no-such-dir").join(shard_file_name(0));
    assert!(SqliteStore::open(&path, SqliteSynchronous::Normal).is_err());
}

#[test]
fn malformed_row_is_an_error_not_a_panic() {
    let dir = TempDir::new("storage");
    let path = dir.path().join(shard_file_name(0));
    let mut store = SqliteStore::open(&path, SqliteSynchronous::Normal).expect("open");
    store.commit(&[insert(record(1, 7, b"a"))]).expect("commit");
    let peek = rusqlite::Connection::open(&path).expect("second connection");
    peek.execute("UPDATE blobs SET recipient = x'0102' WHERE key = 1", [])
        .expect("corrupt the row");
    assert!(store.load_blob_index().is_err());
}

#[test]
fn reopened_sqlite_file_keeps_hints() {
    let dir = TempDir::new("storage");
    let path = dir.path().join(shard_file_name(1));
    {
        let mut store = SqliteStore::open(&path, SqliteSynchronous::Full).expect("open");
        store
            .commit(&[insert(record(1, 7, b"offloaded")), insert_hint(hint(2, 9))])
            .expect("commit");
        store
            .commit(&[delete(1), insert_hint(hint(3, 7))])
            .expect("offload commit");
    }
    let mut store = SqliteStore::open(&path, SqliteSynchronous::Normal).expect("reopen");
    assert_eq!(
        store.load_hints().expect("hints"),
        vec![hint(2, 9), hint(3, 7)]
    );
    assert_eq!(keys_of(&mut store), Vec::<u64>::new());
}

#[test]
fn a_database_from_before_hints_gets_the_table_on_open() {
    let dir = TempDir::new("storage");
    let path = dir.path().join(shard_file_name(0));
    {
        let mut store = SqliteStore::open(&path, SqliteSynchronous::Normal).expect("open");
        store
            .commit(&[insert(record(1, 7, b"old"))])
            .expect("commit");
    }
    {
        let older = rusqlite::Connection::open(&path).expect("connection");
        older
            .execute_batch("DROP TABLE forwarding_hints")
            .expect("make it an older file");
    }
    let mut store = SqliteStore::open(&path, SqliteSynchronous::Normal).expect("reopen");
    assert_eq!(store.load_hints().expect("hints"), Vec::<HintRecord>::new());
    store
        .commit(&[delete(1), insert_hint(hint(2, 7))])
        .expect("offload commit");
    assert_eq!(store.load_hints().expect("hints"), vec![hint(2, 7)]);
}

#[test]
fn hints_table_has_no_secondary_index() {
    let dir = TempDir::new("storage");
    let path = dir.path().join(shard_file_name(0));
    let mut store = SqliteStore::open(&path, SqliteSynchronous::Normal).expect("open");
    store.commit(&[insert_hint(hint(1, 7))]).expect("commit");
    let peek = rusqlite::Connection::open(&path).expect("second connection");
    let indexes: i64 = peek
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' \
             AND tbl_name = 'forwarding_hints'",
            [],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(indexes, 0);
}

#[test]
fn malformed_hint_row_is_an_error_not_a_panic() {
    let dir = TempDir::new("storage");
    let path = dir.path().join(shard_file_name(0));
    let mut store = SqliteStore::open(&path, SqliteSynchronous::Normal).expect("open");
    store.commit(&[insert_hint(hint(1, 7))]).expect("commit");
    let peek = rusqlite::Connection::open(&path).expect("second connection");
    peek.execute(
        "UPDATE forwarding_hints SET routing_id = x'0102' WHERE key = 1",
        [],
    )
    .expect("corrupt the row");
    assert!(store.load_hints().is_err());
}
