//! Every fixed bound and timeout of the relay, with the reason for its value.
//! Configurable limits live in `config`; these are the ones PROTOCOL.md fixes or
//! leaves to the implementation.
//!
//! Not here, since they bound nothing the relay could choose otherwise: facts of a
//! wire format (RFC 6455 header and control-frame sizes in `wsframe`, the Noise
//! opening in `protocol::decode` and message sizes in `noise`), the integer range both storage backends hold
//! (`storage::STORED_INTEGER_MAX`), estimates that only presize a buffer (the
//! `*_JSON_BYTES` of `protocol::encode` and `federation::messages`), and settings
//! that limit no resource (where `protocol::unique` switches to a hash set, how
//! often resharding logs its progress).

use std::time::Duration;

// --- Main listener: admission (§2.2) ---

/// §2.2: refusals in progress beyond which over-limit connections are closed
/// without a response.
pub const REFUSALS_IN_PROGRESS_MAX: u64 = 1024;
/// §2.10: the per-address connection counts are split over this many locks, so
/// that shards accepting at once rarely contend (each lock guards a map bounded by
/// the open connections).
pub const ADDRESS_COUNT_STRIPES: usize = 64;
/// §2.9: the most of a PROXY protocol header held in memory (a v2 header's fixed
/// part and its longest address part; a v1 header is at most 107 bytes). A v2
/// header's TLVs, up to 65,535 bytes with the addresses, are skipped unbuffered.
pub const PROXY_HEADER_BUFFERED_BYTES_MAX: usize = 16 + 216;
/// After a failed accept (out of descriptors, say), the accept loop waits this long
/// before it tries again, instead of spinning on the error.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(10);

// --- Noise transport (§15.1) ---

/// §15.1: a Noise session's reassembly buffer holds at most one frame of the
/// session's limit (RELAY_MAX_MESSAGE_SIZE + 4, §2.6) plus this much: the
/// plaintext of the one transport message that completed it (65535 bytes less
/// the 16-byte tag). A length prefix over the limit closes the session with 1009
/// as soon as its 4 bytes are in, before any of the frame is kept.
pub const NOISE_REASSEMBLY_EXTRA_BYTES: usize = 65_535 - 16;

// --- Main listener: HTTP request heads (§2.3) and the first message (§4.2) ---

/// §2.3: largest request head (request line plus headers, blank line included);
/// past it the reply is `431`.
pub const HEAD_BYTES_MAX: usize = 8192;
/// §2.3: most header fields in a request head; past it the reply is `431`.
pub const HEAD_FIELDS_MAX: usize = 64;
/// Bytes read per call while a request head arrives (a stack buffer). The head
/// buffer holds at most `HEAD_BYTES_MAX` plus one such read before the `431`.
pub const HEAD_READ_CHUNK_BYTES: usize = 2048;
/// Bytes read per call on the accepting shard while the first message (the
/// Handshake) arrives (a stack buffer); the frame reader bounds what it buffers by
/// the message size limit.
pub const HANDSHAKE_READ_CHUNK_BYTES: usize = 4096;

// --- Client sessions: reading, writing, back-pressure (§2.6, §2.7, §4.8, §4.9) ---

/// §4.9: a session's outbound queue holds at most this many messages...
pub const OUTBOUND_QUEUE_MESSAGES_MAX: usize = 1024;
/// ...or this many times (`RELAY_MAX_MESSAGE_SIZE` + 4) bytes, whichever comes first.
pub const OUTBOUND_QUEUE_BYTES_FACTOR: usize = 4;

/// Requests of one session whose replies are not yet written. Past this the session
/// stops reading (TCP back-pressure), which bounds per-session memory while still
/// allowing deep pipelines (a load test keeps 32 in flight).
pub const PIPELINED_REQUESTS_MAX: usize = 1024;

/// Frames are coalesced into one write of up to this many bytes: one syscall for
/// many small messages, without holding large buffers on idle sessions.
pub const WRITE_COALESCE_BYTES: usize = 64 * 1024;

/// Unwritten bytes of a session (framed replies, pushes and Pongs) at which it stops
/// reading until the socket takes them. Pongs answer Pings as they are read (§2.6)
/// and bypass the §4.9 queue, so without this a client that sends Pings and never
/// reads would make the relay hold its Pongs without limit. One coalesced write.
pub const UNWRITTEN_BYTES_MAX: usize = WRITE_COALESCE_BYTES;

/// Bytes read from a socket per read call (a stack buffer).
pub const READ_CHUNK_BYTES: usize = 16 * 1024;

/// §2.7: after sending Close, wait this long for the peer's Close.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Bytes read per call while a connection refused before its Handshake, or a
/// federation link whose peer broke the framing, waits for the peer's Close: small,
/// since the buffer lives in the waiting task and the peer has nothing more to send
/// but that Close.
pub const CLOSE_WAIT_READ_BYTES: usize = 1024;

/// Resolution of the per-shard deadlines (handshake, idle, close wait): a timer
/// fires at most this late. Far below every timeout it serves (≥ 1 s).
pub const DEADLINE_TICK: Duration = Duration::from_millis(50);

/// §4.6: blobs read per storage round trip during connect-time delivery, so a
/// large mailbox is read and sent in pieces rather than held whole.
pub const BACKLOG_CHUNK_BLOBS: usize = 512;

// --- Authenticated handshake (§4.3) ---

/// §4.3 step 2: the signing time is within 60 s of now.
pub const AUTH_WINDOW_SECS: u64 = 60;
/// §4.3 step 4: how long a (public key, nonce) pair stays used up.
pub const NONCE_RETENTION_SECS: u64 = 120;
/// §4.3: the nonce replay cache holds at most this many pairs relay-wide, split
/// evenly over the shards; while full, authenticated handshakes get 1013.
pub const NONCE_CACHE_ENTRIES_MAX: usize = 1_000_000;

// --- Message fields (§5) ---

/// §5.6: `sender_device_id` of DeviceSyncMessage, at most this many bytes.
pub const SENDER_DEVICE_ID_BYTES_MAX: usize = 256;
/// §5.8: a recovery proof lives 90 days, fixed (not configurable).
pub const RECOVERY_PROOF_LIFETIME_SECS: u64 = 7_776_000;
/// §5.9: `key_hashes` of RecoveryProofQuery, at most this many entries, so that one
/// query cannot force an arbitrarily large response.
pub const RECOVERY_QUERY_KEY_HASHES_MAX: usize = 100;
/// §5.12: `sender_id` of AccountRevoked, at most this many bytes.
pub const SENDER_ID_BYTES_MAX: usize = 256;
/// §5.12: `signature` of AccountRevoked, at most this many bytes.
pub const REVOCATION_SIGNATURE_BYTES_MAX: usize = 1024;

// --- Delivery (§7.3) ---

/// §7.3: the sender map holds at most this many entries relay-wide, split evenly.
pub const SENDER_MAP_ENTRIES_MAX: usize = 1_000_000;

// --- Shards: executors and the mesh (§10.2) ---

/// Depth of each shard's mesh inbox. Deep enough for 100 connections x 32
/// pipelined requests per shard pair without `overloaded`; bounded so a stalled
/// shard cannot make its peers grow without limit.
pub const MESH_QUEUE_DEPTH: usize = 16 * 1024;
/// Mesh messages handled before the inbox task yields to the other tasks.
pub const MESH_BATCH_MAX: usize = 256;

/// glommio registers this much io memory per executor. Sockets never use it
/// (GLOMMIO-NOTES), so it is kept small: 16 shards fit an 8 MiB memlock limit.
pub const EXECUTOR_IO_MEMORY_BYTES: usize = 128 * 1024;

/// How long an executor runs tasks before it polls the kernel for I/O again.
/// glommio's default (100 ms) lets a busy shard, whose tasks keep waking one
/// another, leave socket readiness unread for that long: tens of milliseconds of
/// ack latency under load. A short interval keeps I/O polled about every 500 µs.
pub const PREEMPT_INTERVAL: Duration = Duration::from_micros(500);

/// While shutting down, how often a shard checks whether connections remain.
pub const SHUTDOWN_POLL: Duration = Duration::from_millis(10);

// --- Process: what it needs from the kernel (§2.1) ---

/// glommio cannot create an executor below this soft memlock limit; startup
/// refuses to go on below it.
pub const MEMLOCK_MIN_BYTES: u64 = 512 * 1024;
/// Descriptors the relay needs besides client connections: listeners, database
/// files, eventfds and rings of every shard. Startup warns when the open-file limit
/// is below `RELAY_MAX_CONNECTIONS` plus this.
pub const FILES_RESERVED: u64 = 64;

/// Bytes of kernel randomness each thread fetches at once for `random_uuid`: the
/// pool is refilled once per 256 ids (16 bytes each), not once per id.
pub const RANDOM_POOL_BYTES: usize = 4096;

// --- Storage: the writer threads and group commit (§10.3) ---

/// At most this many refusable jobs outstanding at a shard's writer thread (gathered,
/// queued or being committed); more are answered `overloaded`.
pub const WRITER_QUEUE_DEPTH: usize = 16 * 1024;

/// Hand-overs a shard's writer may have in hand at once: the first job goes at
/// once, later ones wait (gathered) only while this many are unanswered. Two keep
/// the writer's next batch queued while it commits one, so under load it does not
/// wait for the shard between transactions (it merges what is queued into one).
pub const WRITER_HAND_OVERS_MAX: usize = 2;

/// At most this many ops in one group transaction (a single larger job still commits
/// whole, alone). Past ~1000 rows per transaction SQLite's per-row cost stops falling
/// (GLOMMIO-NOTES), while every job in a group waits for the whole group's commit:
/// 4096 keeps full throughput and bounds that wait to a few milliseconds.
pub const GROUP_OPS_MAX: usize = 4096;
/// At most this many bytes of blob data in one group transaction (a single larger job
/// still commits whole, alone). Bounds the memory a group holds and the WAL growth of
/// one commit when blobs are large, where the op limit alone would allow gigabytes.
pub const GROUP_DATA_BYTES_MAX: usize = 8 * 1024 * 1024;

// --- Storage: changing the shard count (§10.5) ---

/// Rows read from a source per batch: large enough that per-batch commits (one per
/// target, each an fsync) are a small share of the copy, small enough to stay cheap
/// in memory.
pub const RESHARD_BATCH_ROWS_MAX: usize = 4096;
/// Bytes of row content per batch; a batch always holds at least one row, so the
/// peak is this plus one row (at most `RELAY_MAX_MESSAGE_SIZE`).
pub const RESHARD_BATCH_BYTES_MAX: usize = 16 << 20;
/// Shard-like file names considered in the data directory: more means a directory
/// the relay did not write (RELAY_SHARDS is at most 1024; each shard has a staging
/// file and their journals).
pub const RESHARD_SHARD_FILES_MAX: usize = 16 * 1024;

// --- Federation: links (§11.1, §11.5) ---

/// §11.1: a federation message or frame may be this much larger than a client's
/// (`RELAY_MAX_MESSAGE_SIZE` + 4 bytes), room for an `OffloadBlob`'s envelope and
/// fields around the largest blob; larger closes the link with 1009.
pub const FEDERATION_MESSAGE_EXTRA_BYTES: usize = 65_536;
/// Frames waiting to be written on one federation link (offers, acks, reports).
pub const FEDERATION_LINK_QUEUE_DEPTH: usize = 64;
/// A `wss://` link gathers the TLS records rustls hands over at once into one
/// send of up to this many bytes (`federation::dial::GatherWrites`).
pub const FEDERATION_TLS_GATHER_BYTES: usize = 64 * 1024;
/// The same for a TLS connection on the main port (`transport::tls`): one coalesced
/// write's records go out in one send.
pub const TLS_GATHER_BYTES: usize = WRITE_COALESCE_BYTES + 1024;
/// The largest gathering buffer a TLS session keeps between writes; a larger one
/// (a backlog's burst) is freed after its send, so idle sessions stay small.
pub const TLS_SCRATCH_KEPT_BYTES_MAX: usize = 4096;
/// The read buffer of each link's WebSocket (tungstenite's default is 128 KiB);
/// a larger message is read in several reads, within the federation size limit.
pub const FEDERATION_READ_BUFFER_BYTES: usize = 16 * 1024;
/// A link's WebSocket write buffer holds at most this many federation size limits
/// of bytes (tungstenite's `max_write_buffer_size`; it fills only while writes to
/// the socket fail); past it a send fails instead of buffering more.
pub const FEDERATION_WRITE_BUFFER_FACTOR: usize = 4;
/// A write to a peer that makes no progress for this long ends the link, so a
/// peer that stops reading cannot hold the offload manager or the drain.
pub const FEDERATION_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// §11.5: the reconnect backoff starts at 1 s (and is reset to it by a successful
/// handshake)...
pub const FEDERATION_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// ...and doubles after each failed attempt up to 60 s; a link to this relay's
/// own `relay_id` waits this maximum (§11.3).
pub const FEDERATION_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// §11.5: each backoff wait is randomised by up to this fraction either way (±20 %).
pub const FEDERATION_BACKOFF_JITTER: f64 = 0.2;

// --- Federation: the executor, the registry and offloading (§11.3, §11.4, §11.7) ---

/// Inbound links waiting to be adopted by the federation executor.
pub const FEDERATION_COMMAND_QUEUE_DEPTH: usize = 256;
/// How often federation waits that must notice shutdown look again.
pub const FEDERATION_STOP_POLL: Duration = Duration::from_millis(50);
/// Peers remembered at most from inbound links (configured peers come on top).
pub const FEDERATION_PEERS_MAX: usize = 1024;
/// §11.7: blobs remembered per peer as refused for a reason other than capacity.
pub const FEDERATION_REFUSED_BLOBS_MAX: usize = 4096;
/// §11.4 item 4: offers from peers remembered to answer a repeated offer without
/// storing twice.
pub const FEDERATION_RECEIVED_OFFERS_MAX: usize = 65_536;
/// §15.2: peers remembered from gossip (the one advertised least recently is
/// forgotten first).
pub const FEDERATION_DISCOVERED_PEERS_MAX: usize = 1024;
/// §15.2: an advertised URL longer than this is skipped, so that the discovered
/// peers hold at most `FEDERATION_DISCOVERED_PEERS_MAX` × this many bytes of URLs.
pub const FEDERATION_GOSSIP_URL_BYTES_MAX: usize = 2048;
/// §15.2: how often the gossip task looks whether an advertisement is due and
/// forgets expired discoveries (so the gauge falls when they expire).
pub const FEDERATION_GOSSIP_TICK: Duration = Duration::from_secs(1);
/// §11.7 step 2: blobs offered per batch.
pub const OFFLOAD_BATCH_BLOBS_MAX: usize = 10;
/// Blobs remembered as too large for the federation size limit, so they are not
/// picked as candidates again.
pub const OFFLOAD_TOO_LARGE_BLOBS_MAX: usize = 4096;

// --- Metrics listener (§12.1) ---

/// A connection to the metrics listener is served for at most this long, so one
/// client cannot keep the single serving thread to itself.
pub const METRICS_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for any one read or write; an idle keep-alive connection is closed
/// after this, which lets the next scraper in quickly.
pub const METRICS_IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Requests served on one keep-alive connection before it is closed.
pub const METRICS_REQUESTS_PER_CONNECTION_MAX: usize = 100;
/// Bytes read per call from a metrics connection (a stack buffer); a request head
/// is still bounded by `HEAD_BYTES_MAX`.
pub const METRICS_READ_CHUNK_BYTES: usize = 4096;
/// Bytes read and discarded after an error reply before closing, so the reply is
/// not lost to a reset caused by unread input.
pub const METRICS_LINGER_BYTES_MAX: usize = 64 * 1024;
/// After a failed accept (out of descriptors, say), the metrics thread waits this
/// long before it tries again, instead of spinning on the error.
pub const METRICS_ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

// --- How the bounds relate ---

const _: () = assert!(OUTBOUND_QUEUE_MESSAGES_MAX >= 1);
const _: () = assert!(
    PIPELINED_REQUESTS_MAX >= 32,
    "load tests pipeline 32 requests"
);
const _: () = assert!(
    MESH_QUEUE_DEPTH >= 100 * 32,
    "100 connections x 32 pipelined requests per shard pair"
);
const _: () = assert!(
    DEADLINE_TICK.as_millis() < 1000,
    "the shortest timeout a deadline serves is 1 s"
);
const _: () = assert!(RANDOM_POOL_BYTES >= 16, "the pool holds at least one UUID");
const _: () = assert!(FEDERATION_BACKOFF_MIN.as_millis() <= FEDERATION_BACKOFF_MAX.as_millis());
const _: () = assert!(
    FEDERATION_RECEIVED_OFFERS_MAX >= OFFLOAD_BATCH_BLOBS_MAX,
    "a whole batch of offers is remembered"
);
const _: () = assert!(
    METRICS_IO_TIMEOUT.as_millis() < METRICS_CONNECTION_TIMEOUT.as_millis(),
    "one read or write leaves time for the rest of the connection"
);
