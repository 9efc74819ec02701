//! Criterion micro-benchmarks of the relay's hot paths: request decoding, reply
//! encoding, the WebSocket reader and writer, `shard_of`, and one group-commit
//! batch on each storage backend. `cargo bench --bench micro` (about two minutes).
//!
//! Inputs are fixed (a seeded generator), so runs compare like with like; each
//! bench checks its result once before timing, so a broken input fails loudly
//! instead of measuring an error path.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vauchi_relay::config::SqliteSynchronous;
use vauchi_relay::protocol::decode::{
    Request, ValidRequest, decode_envelope, decode_request, validate,
};
use vauchi_relay::protocol::{Id64, encode, shard_of};
use vauchi_relay::storage::memory::MemoryStore;
use vauchi_relay::storage::sqlite::SqliteStore;
use vauchi_relay::storage::{BlobId, BlobRecord, Store, WriteOp};
use vauchi_relay::wsframe::{FirstMessageReader, Step, write_binary_frame};

/// The ciphertext size of a typical contact-card update.
const CIPHERTEXT_BYTES: usize = 200;
/// Messages in the buffer the WebSocket reader is fed at once (a full socket read).
const FRAMES_PER_READ: usize = 32;
/// Records in one storage commit (one group-commit batch).
const BATCH_RECORDS: usize = 1000;
/// The reader's message bound; anything above the frame size measures the same.
const MESSAGE_BYTES_MAX: usize = 1 << 20;
const NOW_SECS: u64 = 1_760_000_000;

/// splitmix64: a fixed, dependency-free source of bench inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn id(&mut self) -> Id64 {
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        Id64(bytes)
    }
}

/// A client EncryptedUpdate as the wire carries it: 4-byte length prefix, JSON.
fn encrypted_update_request(rng: &mut Rng, recipient: &Id64) -> Vec<u8> {
    let ciphertext: Vec<String> = rng
        .bytes(CIPHERTEXT_BYTES)
        .iter()
        .map(u8::to_string)
        .collect();
    let json = format!(
        "{{\"version\":1,\"message_id\":\"0b6c3e0e-6f1d-4a39-9d43-5b1f6a2f4c11\",\
         \"timestamp\":{NOW_SECS},\"payload\":{{\"type\":\"EncryptedUpdate\",\
         \"recipient_id\":\"{recipient}\",\"ciphertext\":[{}]}}}}",
        ciphertext.join(",")
    );
    let mut message = (json.len() as u32).to_be_bytes().to_vec();
    message.extend_from_slice(json.as_bytes());
    message
}

/// Appends one masked, final binary frame, as a client sends it (RFC 6455 §5.3).
fn push_client_frame(out: &mut Vec<u8>, payload: &[u8], mask: [u8; 4]) {
    out.push(0x82);
    match payload.len() {
        len if len <= 125 => out.push(0x80 | len as u8),
        len if len <= usize::from(u16::MAX) => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(
        payload
            .iter()
            .zip(mask.iter().cycle())
            .map(|(byte, key)| byte ^ key),
    );
}

/// Decodes, shapes and validates one request, as `shard/client.rs` does per message.
fn decode_and_validate(message: &[u8]) -> ValidRequest {
    let envelope = decode_envelope(message).expect("envelope decodes");
    let request = decode_request(&envelope).expect("request has the right shape");
    validate(request).expect("request is valid")
}

fn protocol(c: &mut Criterion) {
    let mut rng = Rng(1);
    let recipient = rng.id();
    let message = encrypted_update_request(&mut rng, &recipient);
    match decode_and_validate(&message) {
        ValidRequest::EncryptedUpdate {
            recipient_id,
            ciphertext,
        } => assert!(recipient_id == recipient && ciphertext.len() == CIPHERTEXT_BYTES),
        other => panic!("decoded as {other:?}"),
    }
    let envelope = decode_envelope(&message).expect("envelope decodes");
    assert!(matches!(
        decode_request(&envelope),
        Ok(Request::EncryptedUpdate { .. })
    ));

    let mut group = c.benchmark_group("protocol");
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_validate_encrypted_update_200b", |b| {
        b.iter(|| decode_and_validate(black_box(&message)))
    });
    group.bench_function("decode_envelope_200b", |b| {
        b.iter(|| decode_envelope(black_box(&message)).map(|e| e.timestamp))
    });

    let ciphertext = rng.bytes(CIPHERTEXT_BYTES);
    let blob_id = BlobId::from_u128(u128::from(rng.next())).to_string();
    group.bench_function("encode_encrypted_update_200b", |b| {
        b.iter(|| {
            encode::encrypted_update(
                black_box(NOW_SECS),
                black_box(&blob_id),
                black_box(&recipient),
                black_box(&ciphertext),
            )
        })
    });
    group.bench_function("encode_stored_ack", |b| {
        b.iter(|| {
            encode::stored_ack(
                black_box(NOW_SECS),
                black_box("0b6c3e0e-6f1d-4a39-9d43-5b1f6a2f4c11"),
                Some(black_box(&blob_id)),
            )
        })
    });
    group.bench_function("shard_of_2", |b| {
        b.iter(|| shard_of(black_box(&recipient), black_box(2)))
    });
    group.finish();
}

fn websocket(c: &mut Criterion) {
    let mut rng = Rng(2);
    let recipient = rng.id();
    let messages: Vec<Vec<u8>> = (0..FRAMES_PER_READ)
        .map(|_| encrypted_update_request(&mut rng, &recipient))
        .collect();
    let mut read = Vec::new();
    for message in &messages {
        let mask = (rng.next() as u32).to_be_bytes();
        push_client_frame(&mut read, message, mask);
    }
    let read_all = |read: &[u8]| -> usize {
        let mut reader = FirstMessageReader::continuous(MESSAGE_BYTES_MAX);
        reader.feed(read);
        let mut payload_bytes = 0;
        for _ in 0..FRAMES_PER_READ {
            match reader.poll() {
                Step::Message { payload, .. } => payload_bytes += payload.len(),
                other => panic!("reader answered {other:?}"),
            }
        }
        payload_bytes
    };
    let total: usize = messages.iter().map(Vec::len).sum();
    assert_eq!(read_all(&read), total);

    let mut group = c.benchmark_group("wsframe");
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(FRAMES_PER_READ as u64));
    group.bench_function("read_32_masked_frames", |b| {
        b.iter(|| read_all(black_box(&read)))
    });

    let reply = encode::encrypted_update(NOW_SECS, "blob", &recipient, &rng.bytes(200));
    let mut out = Vec::with_capacity(reply.len() + 16);
    group.throughput(Throughput::Elements(1));
    group.bench_function("write_binary_frame_encrypted_update", |b| {
        b.iter(|| {
            out.clear();
            write_binary_frame(&mut out, black_box(&reply));
            out.len()
        })
    });
    group.finish();
}

/// One batch of `BATCH_RECORDS` fresh blobs with keys from `next_key` on.
fn insert_batch(rng: &mut Rng, recipients: &[Id64], next_key: &mut u64) -> Vec<WriteOp> {
    (0..BATCH_RECORDS)
        .map(|_| {
            *next_key += 1;
            WriteOp::InsertBlob(BlobRecord {
                key: *next_key,
                id: BlobId::from_u128(u128::from(rng.next()) << 64 | u128::from(rng.next())),
                recipient: recipients[rng.next() as usize % recipients.len()],
                data: rng.bytes(CIPHERTEXT_BYTES),
                created_at_secs: NOW_SECS,
                hop_count: 0,
                seq: *next_key,
            })
        })
        .collect()
}

/// Times only the commit of each batch. The batch is deleted again afterwards
/// (untimed), so every sample sees the same table size.
fn bench_commit(c: &mut Criterion, name: &str, store: &mut dyn Store) {
    let mut rng = Rng(3);
    let recipients: Vec<Id64> = (0..100).map(|_| rng.id()).collect();
    let mut next_key = 0;
    let mut group = c.benchmark_group("storage");
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_secs(1));
    group.sample_size(20);
    group.throughput(Throughput::Elements(BATCH_RECORDS as u64));
    group.bench_function(name, |b| {
        b.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                let batch = insert_batch(&mut rng, &recipients, &mut next_key);
                let start = Instant::now();
                store.commit(black_box(&batch)).expect("commit");
                elapsed += start.elapsed();
                let deletes: Vec<WriteOp> = batch
                    .iter()
                    .map(|op| match op {
                        WriteOp::InsertBlob(record) => WriteOp::DeleteBlob { key: record.key },
                        _ => unreachable!("insert_batch makes inserts only"),
                    })
                    .collect();
                store.commit(&deletes).expect("delete batch");
            }
            elapsed
        })
    });
    group.finish();
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("vauchi-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create bench temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn storage(c: &mut Criterion) {
    let dir = TempDir::new("micro");
    let mut sqlite = SqliteStore::open(&dir.0.join("shard-0.db"), SqliteSynchronous::Normal)
        .expect("open sqlite store");
    bench_commit(c, "sqlite_commit_1000x200b", &mut sqlite);
    drop(sqlite);
    bench_commit(c, "memory_commit_1000x200b", &mut MemoryStore::new());
}

criterion_group!(benches, protocol, websocket, storage);
criterion_main!(benches);
