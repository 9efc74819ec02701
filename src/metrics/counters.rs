//! The counters of PROTOCOL.md §12: plain per-shard counters, each written only by
//! its shard's thread with Relaxed atomics and merged at scrape time, a few
//! process-wide gauges, and their label values. The text and the listener read them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::protocol::codes::ErrorCode;

/// A monotonic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A gauge that never goes below zero: a stray decrement saturates rather than
/// wrapping to 2^64 in the scrape.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn dec(&self) {
        self.sub(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn sub(&self, n: u64) {
        // The closure always returns Some, so fetch_update cannot fail.
        let _ = self
            .0
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n)));
    }
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// The `code` label of `relay_messages_rejected_total`: each §6.1 Error code (the
/// list is `ErrorCode::ALL`, in its order), then `failed` for a `Failed` ack.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RejectCode {
    /// An Error message sent with this code.
    Error(ErrorCode),
    /// A `Failed` ack.
    Failed,
}

impl RejectCode {
    /// Every code, in label order; `ALL[c.index()] == c`.
    pub const ALL: [RejectCode; ErrorCode::ALL.len() + 1] = {
        let mut all = [RejectCode::Failed; ErrorCode::ALL.len() + 1];
        let mut index = 0;
        while index < ErrorCode::ALL.len() {
            all[index] = RejectCode::Error(ErrorCode::ALL[index]);
            index += 1;
        }
        all
    };

    /// Its position in label order: an Error code's own, then `failed` last.
    pub const fn index(self) -> usize {
        match self {
            RejectCode::Error(code) => code as usize,
            RejectCode::Failed => ErrorCode::ALL.len(),
        }
    }

    /// The label value: the wire code (`ErrorCode::as_str`), or `failed`.
    pub fn as_str(self) -> &'static str {
        REJECT_LABELS[self.index()]
    }
}

impl From<ErrorCode> for RejectCode {
    fn from(code: ErrorCode) -> RejectCode {
        RejectCode::Error(code)
    }
}

/// The `limiter` label of `relay_rate_limited_total` (§8).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Limiter {
    General,
    Recovery,
}

/// The `reason` label of `relay_connections_refused_total` (§2.2, §2.10).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Refusal {
    Global,
    PerIp,
}

/// The `listener` label of `relay_tls_certificate_expiry_timestamp_seconds`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TlsListener {
    Main,
    Federation,
}

/// The `result` label of `relay_offload_sent_total`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OffloadSentResult {
    Accepted,
    Refused,
    Timeout,
}

/// The `result` label of `relay_offload_received_total`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OffloadReceivedResult {
    Accepted,
    Refused,
}

/// The `state` label of `relay_federation_peers`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PeerState {
    Connected,
    Draining,
    Disconnected,
}

// Label values, indexed by their enum's discriminant (`RejectCode::index` for the
// rejections: the wire codes from `ErrorCode`, then `failed`).
pub(super) const REJECT_LABELS: [&str; RejectCode::ALL.len()] = {
    let mut labels = ["failed"; RejectCode::ALL.len()];
    let mut index = 0;
    while index < ErrorCode::ALL.len() {
        labels[index] = ErrorCode::ALL[index].as_str();
        index += 1;
    }
    labels
};
pub(super) const LIMITERS: [&str; 2] = ["general", "recovery"];
pub(super) const OFFLOAD_SENT: [&str; 3] = ["accepted", "refused", "timeout"];
pub(super) const OFFLOAD_RECEIVED: [&str; 2] = ["accepted", "refused"];
pub(super) const PEER_STATES: [&str; 3] = ["connected", "draining", "disconnected"];
pub(super) const REFUSALS: [&str; 2] = ["global", "per_ip"];
pub(super) const TLS_LISTENERS: [&str; 2] = ["main", "federation"];

/// Upper bounds of `relay_message_duration_seconds` (§12.2), in microseconds and as
/// `le` label text.
pub(super) const DURATION_BUCKETS: [(u64, &str); 11] = [
    (5_000, "0.005"),
    (10_000, "0.01"),
    (25_000, "0.025"),
    (50_000, "0.05"),
    (100_000, "0.1"),
    (250_000, "0.25"),
    (500_000, "0.5"),
    (1_000_000, "1"),
    (2_500_000, "2.5"),
    (5_000_000, "5"),
    (10_000_000, "10"),
];

/// The request-duration histogram: per-bucket (not cumulative) counts, the last slot
/// for durations above 10 s, and the sum in microseconds. The count is the sum of
/// the slots, so `_count` always equals the `+Inf` bucket in a scrape.
#[derive(Debug, Default)]
pub struct DurationHistogram {
    pub(super) slots: [AtomicU64; DURATION_BUCKETS.len() + 1],
    pub(super) sum_micros: AtomicU64,
}

impl DurationHistogram {
    pub fn observe(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let slot = DURATION_BUCKETS
            .iter()
            .position(|(bound, _)| micros <= *bound)
            .unwrap_or(DURATION_BUCKETS.len());
        self.slots[slot].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(micros, Relaxed);
    }
}

/// One shard's metrics. Only the shard's own thread writes them; the scraper reads.
/// Aligned to two cache lines so neighbouring shards never share one.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardMetrics {
    pub connections_total: Counter,
    pub connections_active: Gauge,
    pub connection_errors_total: Counter,
    pub messages_received_total: Counter,
    pub messages_sent_total: Counter,
    pub(super) messages_rejected_total: [Counter; RejectCode::ALL.len()],
    pub message_duration: DurationHistogram,
    pub blobs_stored: Gauge,
    pub blobs_created_total: Counter,
    pub blobs_delivered_total: Counter,
    pub blobs_expired_total: Counter,
    pub recovery_proofs_active: Gauge,
    pub recovery_vouchers_total: Counter,
    pub(super) rate_limited_total: [Counter; LIMITERS.len()],
    pub storage_used_bytes: Gauge,
    pub(super) offload_sent_total: [Counter; OFFLOAD_SENT.len()],
    pub(super) offload_received_total: [Counter; OFFLOAD_RECEIVED.len()],
    pub federation_ignored_total: Counter,
    pub(super) connections_refused_total: [Counter; REFUSALS.len()],
    /// Client sessions that completed a Noise NK opening (§15.1).
    pub noise_sessions_total: Counter,
}

impl ShardMetrics {
    pub fn new() -> ShardMetrics {
        ShardMetrics::default()
    }

    /// One Error sent (its code) or one `Failed` ack ([`RejectCode::Failed`]).
    pub fn inc_rejected(&self, code: RejectCode) {
        self.messages_rejected_total[code.index()].inc();
    }

    /// One request handled: from full receipt to its reply being queued.
    pub fn observe_duration(&self, duration: Duration) {
        self.message_duration.observe(duration);
    }

    /// One `rate_limited` refusal by this bucket.
    pub fn inc_rate_limited(&self, limiter: Limiter) {
        self.rate_limited_total[limiter as usize].inc();
    }

    /// One connection refused at admission, for this reason.
    pub fn inc_refused(&self, reason: Refusal) {
        self.connections_refused_total[reason as usize].inc();
    }

    pub fn inc_offload_sent(&self, result: OffloadSentResult) {
        self.offload_sent_total[result as usize].inc();
    }

    pub fn inc_offload_received(&self, result: OffloadReceivedResult) {
        self.offload_received_total[result as usize].inc();
    }
}

/// Process-wide gauges that belong to no shard.
#[derive(Debug)]
pub struct Global {
    pub(super) shards: u32,
    pub(super) draining: AtomicU64,
    pub(super) federation_peers: [AtomicU64; PEER_STATES.len()],
    pub(super) tls_reload_failures: AtomicU64,
    pub(super) federation_discovered_peers: AtomicU64,
    /// `notAfter` in unix seconds per TLS listener; `ABSENT` without TLS there.
    pub(super) certificate_expiry: [AtomicI64; TLS_LISTENERS.len()],
}

/// No certificate on that listener: the series is left out.
pub(super) const ABSENT: i64 = i64::MIN;

impl Global {
    pub fn new(shards: u32) -> Global {
        Global {
            shards,
            draining: AtomicU64::new(0),
            federation_peers: Default::default(),
            tls_reload_failures: AtomicU64::new(0),
            federation_discovered_peers: AtomicU64::new(0),
            certificate_expiry: [AtomicI64::new(ABSENT), AtomicI64::new(ABSENT)],
        }
    }

    /// One SIGHUP reload that kept the old certificate (§2.8).
    pub fn inc_tls_reload_failures(&self) {
        self.tls_reload_failures.fetch_add(1, Relaxed);
    }

    /// The `notAfter` of the certificate a listener now uses.
    pub fn set_certificate_expiry(&self, listener: TlsListener, not_after: i64) {
        self.certificate_expiry[listener as usize].store(not_after.max(ABSENT + 1), Relaxed);
    }

    /// `relay_draining`: true from the moment shutdown begins (§14.1).
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(u64::from(draining), Relaxed);
    }

    /// `relay_federation_discovered_peers`: peers known only from gossip (§15.2).
    pub fn set_discovered_peers(&self, count: u64) {
        self.federation_discovered_peers.store(count, Relaxed);
    }

    /// `relay_federation_peers{state}`: the number of known peers in this state.
    pub fn set_federation_peers(&self, state: PeerState, count: u64) {
        self.federation_peers[state as usize].store(count, Relaxed);
    }
}
