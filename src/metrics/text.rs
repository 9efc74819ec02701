//! The Prometheus text format 0.0.4 of §12.2: one table (`FAMILIES`) names every
//! metric with its type, help and where its samples come from, and `render` walks
//! it, merging the shards' counters at scrape time.

use std::fmt::{Display, Write as _};
use std::sync::atomic::Ordering::Relaxed;

use super::counters::{
    ABSENT, DURATION_BUCKETS, Global, LIMITERS, OFFLOAD_RECEIVED, OFFLOAD_SENT, PEER_STATES,
    REFUSALS, REJECT_LABELS, ShardMetrics, TLS_LISTENERS,
};

/// Where a family's samples come from.
enum Values {
    /// One sample: the sum over the shards.
    Summed(fn(&ShardMetrics) -> u64),
    /// One sample per shard, labelled `shard`.
    PerShard(fn(&ShardMetrics) -> u64),
    /// One sample per label value (by index), each summed over the shards.
    SummedBy(
        &'static str,
        &'static [&'static str],
        fn(&ShardMetrics, usize) -> u64,
    ),
    /// One process-wide sample.
    Global(fn(&Global) -> u64),
    /// One process-wide sample per label value (by index).
    GlobalBy(
        &'static str,
        &'static [&'static str],
        fn(&Global, usize) -> u64,
    ),
    /// One process-wide sample per label value that has one (by index).
    GlobalWhere(
        &'static str,
        &'static [&'static str],
        fn(&Global, usize) -> Option<i64>,
    ),
    /// `relay_message_duration_seconds`.
    Histogram,
}

/// Every metric of §12.2, in its order there: name, type, help, values.
const FAMILIES: [(&str, &str, &str, Values); 26] = [
    (
        "relay_connections_total",
        "counter",
        "Completed WebSocket upgrades (client and federation).",
        Values::Summed(|s| s.connections_total.get()),
    ),
    (
        "relay_connections_active",
        "gauge",
        "Open WebSocket connections, by the shard serving them.",
        Values::PerShard(|s| s.connections_active.get()),
    ),
    (
        "relay_connection_errors_total",
        "counter",
        "Connections ended before a session or link was established.",
        Values::Summed(|s| s.connection_errors_total.get()),
    ),
    (
        "relay_messages_received_total",
        "counter",
        "Data messages received from clients, Handshake included.",
        Values::Summed(|s| s.messages_received_total.get()),
    ),
    (
        "relay_messages_sent_total",
        "counter",
        "Protocol messages sent to clients (replies, deliveries, pushes).",
        Values::Summed(|s| s.messages_sent_total.get()),
    ),
    (
        "relay_messages_rejected_total",
        "counter",
        "Errors sent, by code, and Failed acks (code failed).",
        Values::SummedBy("code", &REJECT_LABELS, |s, i| {
            s.messages_rejected_total[i].get()
        }),
    ),
    (
        "relay_message_duration_seconds",
        "histogram",
        "From full receipt of a request to its reply being queued.",
        Values::Histogram,
    ),
    (
        "relay_blobs_stored",
        "gauge",
        "Blobs stored now.",
        Values::PerShard(|s| s.blobs_stored.get()),
    ),
    (
        "relay_blobs_created_total",
        "counter",
        "Blobs stored (EncryptedUpdate, AccountRevoked, accepted offload).",
        Values::PerShard(|s| s.blobs_created_total.get()),
    ),
    (
        "relay_blobs_delivered_total",
        "counter",
        "Blob writes to recipient sockets (connect-time and live).",
        Values::PerShard(|s| s.blobs_delivered_total.get()),
    ),
    (
        "relay_blobs_expired_total",
        "counter",
        "Blobs deleted by expiry cleanup.",
        Values::PerShard(|s| s.blobs_expired_total.get()),
    ),
    (
        "relay_recovery_proofs_active",
        "gauge",
        "Unexpired recovery proofs stored.",
        Values::PerShard(|s| s.recovery_proofs_active.get()),
    ),
    (
        "relay_recovery_vouchers_total",
        "counter",
        "RecoveryProofStore requests answered Stored.",
        Values::Summed(|s| s.recovery_vouchers_total.get()),
    ),
    (
        "relay_rate_limited_total",
        "counter",
        "rate_limited refusals, by bucket.",
        Values::SummedBy("limiter", &LIMITERS, |s, i| s.rate_limited_total[i].get()),
    ),
    (
        "relay_storage_used_bytes",
        "gauge",
        "Sum of stored blob data lengths.",
        Values::PerShard(|s| s.storage_used_bytes.get()),
    ),
    (
        "relay_shards",
        "gauge",
        "Shard count.",
        Values::Global(|g| u64::from(g.shards)),
    ),
    (
        "relay_draining",
        "gauge",
        "1 during shutdown, else 0.",
        Values::Global(|g| g.draining.load(Relaxed)),
    ),
    (
        "relay_federation_peers",
        "gauge",
        "Known federation peers, by state.",
        Values::GlobalBy("state", &PEER_STATES, |g, i| {
            g.federation_peers[i].load(Relaxed)
        }),
    ),
    (
        "relay_offload_sent_total",
        "counter",
        "Outbound offloads, by result.",
        Values::SummedBy("result", &OFFLOAD_SENT, |s, i| {
            s.offload_sent_total[i].get()
        }),
    ),
    (
        "relay_offload_received_total",
        "counter",
        "Inbound offloads, by result.",
        Values::SummedBy("result", &OFFLOAD_RECEIVED, |s, i| {
            s.offload_received_total[i].get()
        }),
    ),
    (
        "relay_federation_ignored_total",
        "counter",
        "Federation messages ignored.",
        Values::Summed(|s| s.federation_ignored_total.get()),
    ),
    (
        "relay_connections_refused_total",
        "counter",
        "Admission refusals, by reason.",
        Values::SummedBy("reason", &REFUSALS, |s, i| {
            s.connections_refused_total[i].get()
        }),
    ),
    (
        "relay_tls_reload_failures_total",
        "counter",
        "SIGHUP reloads that kept the old certificate.",
        Values::Global(|g| g.tls_reload_failures.load(Relaxed)),
    ),
    (
        "relay_tls_certificate_expiry_timestamp_seconds",
        "gauge",
        "notAfter of the certificate in use, by listener.",
        Values::GlobalWhere("listener", &TLS_LISTENERS, |g, i| {
            let at = g.certificate_expiry[i].load(Relaxed);
            (at != ABSENT).then_some(at)
        }),
    ),
    (
        "relay_noise_sessions_total",
        "counter",
        "Client sessions that completed a Noise NK handshake.",
        Values::Summed(|s| s.noise_sessions_total.get()),
    ),
    (
        "relay_federation_discovered_peers",
        "gauge",
        "Peers known only from gossip, unexpired.",
        Values::Global(|g| g.federation_discovered_peers.load(Relaxed)),
    ),
];

/// Renders every §12.2 metric in the Prometheus text format 0.0.4. Counters that have
/// no `shard` label are summed over the shards; every series appears even when zero.
pub fn render(shards: &[ShardMetrics], global: &Global) -> String {
    let mut out = String::with_capacity(4096 + shards.len() * 512);
    let sum = |get: &dyn Fn(&ShardMetrics) -> u64| shards.iter().map(get).sum::<u64>();
    for (name, kind, help, values) in &FAMILIES {
        debug_assert!(!help.contains(['\\', '\n']), "help needs no escaping");
        // Writing to a String cannot fail.
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
        match values {
            Values::Summed(get) => sample(&mut out, name, None, sum(get)),
            Values::PerShard(get) => {
                for (index, shard) in shards.iter().enumerate() {
                    sample(
                        &mut out,
                        name,
                        Some(("shard", &index.to_string())),
                        get(shard),
                    );
                }
            }
            Values::SummedBy(label, texts, get) => {
                for (index, text) in texts.iter().enumerate() {
                    let total = sum(&|s| get(s, index));
                    sample(&mut out, name, Some((label, text)), total);
                }
            }
            Values::Global(get) => sample(&mut out, name, None, get(global)),
            Values::GlobalBy(label, texts, get) => {
                for (index, text) in texts.iter().enumerate() {
                    sample(&mut out, name, Some((label, text)), get(global, index));
                }
            }
            Values::GlobalWhere(label, texts, get) => {
                for (index, text) in texts.iter().enumerate() {
                    if let Some(value) = get(global, index) {
                        sample(&mut out, name, Some((label, text)), value);
                    }
                }
            }
            Values::Histogram => render_histogram(&mut out, name, shards),
        }
    }
    out
}

fn render_histogram(out: &mut String, name: &str, shards: &[ShardMetrics]) {
    // Read each slot once so the cumulative buckets, +Inf and _count agree.
    let mut slots = [0u64; DURATION_BUCKETS.len() + 1];
    let mut sum_micros = 0u64;
    for shard in shards {
        for (total, slot) in slots.iter_mut().zip(&shard.message_duration.slots) {
            *total += slot.load(Relaxed);
        }
        sum_micros = sum_micros.saturating_add(shard.message_duration.sum_micros.load(Relaxed));
    }
    let mut cumulative = 0u64;
    for (slot, (_, le)) in slots.iter().zip(DURATION_BUCKETS) {
        cumulative += slot;
        sample(out, &format!("{name}_bucket"), Some(("le", le)), cumulative);
    }
    cumulative += slots[DURATION_BUCKETS.len()];
    sample(
        out,
        &format!("{name}_bucket"),
        Some(("le", "+Inf")),
        cumulative,
    );
    // Microseconds to seconds; f64 Display never uses exponent notation.
    let seconds = sum_micros as f64 / 1e6;
    sample(out, &format!("{name}_sum"), None, seconds);
    sample(out, &format!("{name}_count"), None, cumulative);
}

/// Writes one sample line, escaping the label value as the text format requires.
fn sample(out: &mut String, name: &str, label: Option<(&str, &str)>, value: impl Display) {
    out.push_str(name);
    if let Some((label, text)) = label {
        out.push('{');
        out.push_str(label);
        out.push_str("=\"");
        for c in text.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push_str("\"}");
    }
    // Writing to a String cannot fail.
    let _ = writeln!(out, " {value}");
}
