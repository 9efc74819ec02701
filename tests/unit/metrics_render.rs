//! The `/metrics` text of PROTOCOL.md §12.2: every metric present with its type and
//! labels even when zero, per-shard and summed values, the histogram, and the
//! Prometheus text format 0.0.4 rules that promtool enforces (checked by a validator
//! written here, itself tested against broken inputs).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use vauchi_relay::metrics::{
    Global, Limiter, OffloadReceivedResult, OffloadSentResult, PeerState, Refusal, RejectCode,
    ShardMetrics, TlsListener, render,
};
use vauchi_relay::protocol::codes::ErrorCode;

/// Every metric of §12.2 with its type and the label set of its samples.
const SPEC: &[(&str, &str, &[&str])] = &[
    ("relay_connections_total", "counter", &[]),
    ("relay_connections_active", "gauge", &["shard"]),
    ("relay_connection_errors_total", "counter", &[]),
    ("relay_messages_received_total", "counter", &[]),
    ("relay_messages_sent_total", "counter", &[]),
    ("relay_messages_rejected_total", "counter", &["code"]),
    ("relay_message_duration_seconds", "histogram", &[]),
    ("relay_blobs_stored", "gauge", &["shard"]),
    ("relay_blobs_created_total", "counter", &["shard"]),
    ("relay_blobs_delivered_total", "counter", &["shard"]),
    ("relay_blobs_expired_total", "counter", &["shard"]),
    ("relay_recovery_proofs_active", "gauge", &["shard"]),
    ("relay_recovery_vouchers_total", "counter", &[]),
    ("relay_rate_limited_total", "counter", &["limiter"]),
    ("relay_storage_used_bytes", "gauge", &["shard"]),
    ("relay_shards", "gauge", &[]),
    ("relay_draining", "gauge", &[]),
    ("relay_federation_peers", "gauge", &["state"]),
    ("relay_offload_sent_total", "counter", &["result"]),
    ("relay_offload_received_total", "counter", &["result"]),
    ("relay_federation_ignored_total", "counter", &[]),
    ("relay_connections_refused_total", "counter", &["reason"]),
    ("relay_tls_reload_failures_total", "counter", &[]),
    ("relay_noise_sessions_total", "counter", &[]),
    ("relay_federation_discovered_peers", "gauge", &[]),
];

/// Families whose samples exist only where they apply: the certificate expiry of
/// a listener with TLS (§12.2: absent without TLS).
const WHERE_APPLICABLE: &[(&str, &str, &[&str])] = &[(
    "relay_tls_certificate_expiry_timestamp_seconds",
    "gauge",
    &["listener"],
)];

const CODES: &[&str] = &[
    "malformed_frame",
    "unsupported_frame",
    "unsupported_version",
    "unknown_type",
    "unexpected_message",
    "invalid_field",
    "not_permitted",
    "rate_limited",
    "quota_exceeded",
    "storage_unavailable",
    "overloaded",
    "failed",
];

// ---------------------------------------------------------------------------
// The validator: the text format 0.0.4 rules promtool checks.
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: family name -> (type, samples in order).
#[derive(Debug, Default)]
struct Exposition {
    types: HashMap<String, String>,
    samples: HashMap<String, Vec<Sample>>,
}

impl Exposition {
    /// The value of the one sample with this name and exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let found: Vec<&Sample> = self
            .samples
            .values()
            .flatten()
            .filter(|s| s.name == name && s.labels == wanted)
            .collect();
        assert_eq!(found.len(), 1, "series {name}{labels:?}");
        found[0].value
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `{a="x",b="y"}` (the text after the metric name, up to the value).
/// Returns the labels and the rest of the line.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let Some(mut rest) = text.strip_prefix('{') else {
        return Ok((labels, text));
    };
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !is_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("invalid escape {other:?}")),
                },
                Some((_, '\n')) => return Err("raw newline in label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("repeated label {name}"));
        }
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| format!("invalid value {text:?}")),
    }
}

/// The family a sample name belongs to, given the declared types.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base).map(String::as_str) == Some("histogram")
        {
            return base;
        }
    }
    name
}

fn validate(text: &str) -> Result<Exposition, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the text must end with a newline".into());
    }
    let mut exposition = Exposition::default();
    let mut helps: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<String> = HashSet::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let keyword = parts.next().unwrap_or_default();
            if keyword != "HELP" && keyword != "TYPE" {
                continue;
            }
            let name = parts.next().ok_or("comment without a name")?.to_owned();
            let rest = parts.next().unwrap_or_default();
            if !is_metric_name(&name) {
                return Err(format!("invalid metric name {name:?}"));
            }
            if exposition.samples.contains_key(&name) || finished.contains(&name) {
                return Err(format!("{keyword} for {name} after its samples"));
            }
            if current.as_deref() != Some(&name) {
                if let Some(previous) = current.take() {
                    finished.insert(previous);
                }
                current = Some(name.clone());
            }
            if keyword == "HELP" {
                if !helps.insert(name.clone()) {
                    return Err(format!("second HELP for {name}"));
                }
                let mut chars = rest.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                        return Err(format!("invalid escape in HELP of {name}"));
                    }
                }
            } else {
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&rest) {
                    return Err(format!("invalid type {rest:?} for {name}"));
                }
                if exposition
                    .types
                    .insert(name.clone(), rest.to_owned())
                    .is_some()
                {
                    return Err(format!("second TYPE for {name}"));
                }
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or(format!("sample without value: {line:?}"))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(format!("invalid metric name {name:?}"));
        }
        let (labels, rest) = parse_labels(&line[name_end..])?;
        let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
        let value_text = rest.split(' ').next().unwrap_or_default();
        let value = parse_value(value_text)?;
        let family = family_of(name, &exposition.types).to_owned();
        let kind = exposition
            .types
            .get(&family)
            .ok_or(format!("sample {name} before its TYPE"))?
            .clone();
        if !helps.contains(&family) {
            return Err(format!("no HELP for {family}"));
        }
        if current.as_deref() != Some(&family) || finished.contains(&family) {
            return Err(format!("samples of {family} are not grouped together"));
        }
        if kind == "counter" && !family.ends_with("_total") {
            return Err(format!("counter {family} does not end in _total"));
        }
        if kind == "counter" && value < 0.0 {
            return Err(format!("counter {family} is negative"));
        }
        if labels.contains_key("le") != name.ends_with("_bucket") {
            return Err(format!("le label misplaced on {name}"));
        }
        let key = format!("{name}{labels:?}");
        if !series.insert(key.clone()) {
            return Err(format!("duplicate series {key}"));
        }
        exposition.samples.entry(family).or_default().push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    for (family, kind) in &exposition.types {
        if kind == "histogram" {
            check_histogram(family, &exposition.samples[family])?;
        }
    }
    Ok(exposition)
}

/// One histogram series: (le, cumulative count) buckets, `_sum`, `_count`.
type HistogramSeries = (Vec<(f64, f64)>, Option<f64>, Option<f64>);

/// Buckets ascending by `le`, cumulative, ending in `+Inf`; `_count` equals the
/// `+Inf` bucket; one `_sum` and one `_count`. (Grouped by the non-`le` labels.)
fn check_histogram(family: &str, samples: &[Sample]) -> Result<(), String> {
    let mut groups: BTreeMap<String, HistogramSeries> = BTreeMap::new();
    for sample in samples {
        let mut labels = sample.labels.clone();
        let le = labels.remove("le");
        let group = groups.entry(format!("{labels:?}")).or_default();
        if sample.name.ends_with("_bucket") {
            let le = le.ok_or("bucket without le")?;
            group.0.push((parse_value(&le)?, sample.value));
        } else if sample.name.ends_with("_sum") {
            group.1 = Some(sample.value);
        } else if sample.name.ends_with("_count") {
            group.2 = Some(sample.value);
        } else {
            return Err(format!(
                "plain sample {} in histogram {family}",
                sample.name
            ));
        }
    }
    for (labels, (buckets, sum, count)) in groups {
        let last = buckets
            .last()
            .ok_or(format!("{family}{labels}: no buckets"))?;
        if last.0 != f64::INFINITY {
            return Err(format!("{family}{labels}: last bucket is not +Inf"));
        }
        for pair in buckets.windows(2) {
            if pair[1].0 <= pair[0].0 {
                return Err(format!("{family}{labels}: bucket bounds not ascending"));
            }
            if pair[1].1 < pair[0].1 {
                return Err(format!("{family}{labels}: buckets not cumulative"));
            }
        }
        sum.ok_or(format!("{family}{labels}: no _sum"))?;
        if count != Some(last.1) {
            return Err(format!("{family}{labels}: _count differs from +Inf bucket"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The validator rejects what promtool rejects.
// ---------------------------------------------------------------------------

#[test]
fn the_validator_rejects_broken_expositions() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n";
    assert!(validate(good).is_ok(), "{:?}", validate(good));
    let cases: &[(&str, &str)] = &[
        ("sample before TYPE", "a_total 1\n"),
        ("no HELP", "# TYPE a_total counter\na_total 1\n"),
        (
            "two TYPE lines",
            "# HELP a_total A.\n# TYPE a_total counter\n# TYPE a_total counter\na_total 1\n",
        ),
        (
            "counter without _total",
            "# HELP a A.\n# TYPE a counter\na 1\n",
        ),
        (
            "invalid metric name",
            "# HELP 1a A.\n# TYPE 1a gauge\n1a 1\n",
        ),
        (
            "invalid label name",
            "# HELP a A.\n# TYPE a gauge\na{1x=\"v\"} 1\n",
        ),
        (
            "bad escape",
            "# HELP a A.\n# TYPE a gauge\na{x=\"\\q\"} 1\n",
        ),
        (
            "duplicate series",
            "# HELP a A.\n# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",
        ),
        (
            "interleaved families",
            "# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\na{x=\"2\"} 1\n",
        ),
        (
            "histogram not cumulative",
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n\
             h_sum 1\nh_count 1\n",
        ),
        (
            "histogram without +Inf",
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
        ),
        (
            "histogram count differs",
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",
        ),
        (
            "bad escape in HELP",
            "# HELP a A \\q.\n# TYPE a gauge\na 1\n",
        ),
        (
            "TYPE after samples",
            "# HELP a A.\n# TYPE a gauge\na 1\n# TYPE a gauge\n",
        ),
        ("no final newline", "# HELP a A.\n# TYPE a gauge\na 1"),
        ("bad value", "# HELP a A.\n# TYPE a gauge\na one\n"),
    ];
    for (what, text) in cases {
        assert!(validate(text).is_err(), "accepted: {what}");
    }
}

// ---------------------------------------------------------------------------
// The relay's own output.
// ---------------------------------------------------------------------------

fn shards(count: usize) -> Vec<ShardMetrics> {
    (0..count).map(|_| ShardMetrics::new()).collect()
}

#[test]
fn certificate_expiry_appears_per_listener_with_tls_and_refusals_by_reason() {
    let global = Global::new(2);
    let metrics = shards(2);
    global.set_certificate_expiry(TlsListener::Main, 1_900_000_000);
    global.inc_tls_reload_failures();
    metrics[0].inc_refused(Refusal::Global);
    metrics[1].inc_refused(Refusal::PerIp);
    metrics[1].inc_refused(Refusal::PerIp);
    let text = render(&metrics, &global);
    let exposition = validate(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let expiry = "relay_tls_certificate_expiry_timestamp_seconds";
    assert_eq!(exposition.value(expiry, &[("listener", "main")]), 1.9e9);
    assert_eq!(
        exposition.samples[expiry].len(),
        1,
        "no federation listener"
    );
    global.set_certificate_expiry(TlsListener::Federation, 1_800_000_000);
    let exposition = validate(&render(&metrics, &global)).unwrap();
    assert_eq!(
        exposition.value(expiry, &[("listener", "federation")]),
        1.8e9
    );
    assert_eq!(
        exposition.value("relay_tls_reload_failures_total", &[]),
        1.0
    );
    global.set_discovered_peers(7);
    let exposition = validate(&render(&metrics, &global)).unwrap();
    assert_eq!(
        exposition.value("relay_federation_discovered_peers", &[]),
        7.0
    );
    let refused = "relay_connections_refused_total";
    assert_eq!(exposition.value(refused, &[("reason", "global")]), 1.0);
    assert_eq!(exposition.value(refused, &[("reason", "per_ip")]), 2.0);
}

#[test]
fn every_metric_is_exported_with_its_type_even_when_zero() {
    let text = render(&shards(3), &Global::new(3));
    let exposition = validate(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for (name, kind, labels) in SPEC {
        assert_eq!(
            exposition.types.get(*name).map(String::as_str),
            Some(*kind),
            "{name}"
        );
        let samples = &exposition.samples[*name];
        assert!(!samples.is_empty(), "{name} has no samples");
        for sample in samples {
            let mut keys: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
            keys.retain(|k| *k != "le");
            assert_eq!(keys, *labels, "labels of {}", sample.name);
        }
    }
    for (name, kind, _) in WHERE_APPLICABLE {
        assert_eq!(
            exposition.types.get(*name).map(String::as_str),
            Some(*kind),
            "{name}"
        );
        assert!(
            exposition.samples.get(*name).is_none_or(|s| s.is_empty()),
            "{name} without TLS"
        );
    }
    assert_eq!(
        exposition.types.len(),
        SPEC.len() + WHERE_APPLICABLE.len(),
        "no extra families"
    );
    for shard in ["0", "1", "2"] {
        assert_eq!(
            exposition.value("relay_blobs_stored", &[("shard", shard)]),
            0.0
        );
    }
    for code in CODES {
        assert_eq!(
            exposition.value("relay_messages_rejected_total", &[("code", code)]),
            0.0
        );
    }
    for limiter in ["general", "recovery"] {
        assert_eq!(
            exposition.value("relay_rate_limited_total", &[("limiter", limiter)]),
            0.0
        );
    }
    for state in ["connected", "draining", "disconnected"] {
        assert_eq!(
            exposition.value("relay_federation_peers", &[("state", state)]),
            0.0
        );
    }
    for result in ["accepted", "refused", "timeout"] {
        assert_eq!(
            exposition.value("relay_offload_sent_total", &[("result", result)]),
            0.0
        );
    }
    for result in ["accepted", "refused"] {
        assert_eq!(
            exposition.value("relay_offload_received_total", &[("result", result)]),
            0.0
        );
    }
    assert_eq!(exposition.value("relay_shards", &[]), 3.0);
    assert_eq!(exposition.value("relay_draining", &[]), 0.0);
}

#[test]
fn unlabelled_counters_are_summed_and_shard_series_kept_apart() {
    let metrics = shards(2);
    metrics[0].connections_total.add(3);
    metrics[1].connections_total.inc();
    metrics[0].connection_errors_total.inc();
    metrics[1].messages_received_total.add(10);
    metrics[0].messages_sent_total.add(4);
    metrics[1].messages_sent_total.add(5);
    metrics[0].recovery_vouchers_total.inc();
    metrics[1].federation_ignored_total.add(2);
    metrics[0].connections_active.inc();
    metrics[0].connections_active.inc();
    metrics[0].connections_active.dec();
    metrics[1].connections_active.add(7);
    metrics[1].blobs_stored.set(42);
    metrics[1].blobs_created_total.add(50);
    metrics[0].blobs_delivered_total.add(6);
    metrics[1].blobs_expired_total.add(8);
    metrics[0].recovery_proofs_active.set(2);
    metrics[1].storage_used_bytes.add(1000);
    metrics[1].storage_used_bytes.sub(400);

    let text = render(&metrics, &Global::new(2));
    let e = validate(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(e.value("relay_connections_total", &[]), 4.0);
    assert_eq!(e.value("relay_connection_errors_total", &[]), 1.0);
    assert_eq!(e.value("relay_messages_received_total", &[]), 10.0);
    assert_eq!(e.value("relay_messages_sent_total", &[]), 9.0);
    assert_eq!(e.value("relay_recovery_vouchers_total", &[]), 1.0);
    assert_eq!(e.value("relay_federation_ignored_total", &[]), 2.0);
    assert_eq!(e.value("relay_connections_active", &[("shard", "0")]), 1.0);
    assert_eq!(e.value("relay_connections_active", &[("shard", "1")]), 7.0);
    assert_eq!(e.value("relay_blobs_stored", &[("shard", "0")]), 0.0);
    assert_eq!(e.value("relay_blobs_stored", &[("shard", "1")]), 42.0);
    assert_eq!(
        e.value("relay_blobs_created_total", &[("shard", "1")]),
        50.0
    );
    assert_eq!(
        e.value("relay_blobs_delivered_total", &[("shard", "0")]),
        6.0
    );
    assert_eq!(e.value("relay_blobs_expired_total", &[("shard", "1")]), 8.0);
    assert_eq!(
        e.value("relay_recovery_proofs_active", &[("shard", "0")]),
        2.0
    );
    assert_eq!(
        e.value("relay_storage_used_bytes", &[("shard", "1")]),
        600.0
    );
}

#[test]
fn a_gauge_never_wraps_below_zero() {
    let metrics = ShardMetrics::new();
    metrics.connections_active.dec();
    metrics.storage_used_bytes.add(5);
    metrics.storage_used_bytes.sub(9);
    assert_eq!(metrics.connections_active.get(), 0);
    assert_eq!(metrics.storage_used_bytes.get(), 0);
}

#[test]
fn rejections_are_counted_by_code_and_failed_acks_as_failed() {
    let metrics = shards(2);
    metrics[0].inc_rejected(RejectCode::from(ErrorCode::RateLimited));
    metrics[1].inc_rejected(ErrorCode::RateLimited.into());
    metrics[1].inc_rejected(RejectCode::Failed);
    metrics[0].inc_rejected(RejectCode::Error(ErrorCode::Overloaded));
    let e = validate(&render(&metrics, &Global::new(2))).unwrap();
    let rejected = |code| e.value("relay_messages_rejected_total", &[("code", code)]);
    assert_eq!(rejected("rate_limited"), 2.0);
    assert_eq!(rejected("failed"), 1.0);
    assert_eq!(rejected("overloaded"), 1.0);
    assert_eq!(rejected("malformed_frame"), 0.0);
    // Every wire code maps to the label of the same name.
    let error_codes = [
        ErrorCode::MalformedFrame,
        ErrorCode::UnsupportedFrame,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownType,
        ErrorCode::UnexpectedMessage,
        ErrorCode::InvalidField,
        ErrorCode::NotPermitted,
        ErrorCode::RateLimited,
        ErrorCode::QuotaExceeded,
        ErrorCode::StorageUnavailable,
        ErrorCode::Overloaded,
    ];
    for code in error_codes {
        assert_eq!(RejectCode::from(code).as_str(), code.as_str());
    }
    for (index, code) in RejectCode::ALL.into_iter().enumerate() {
        assert_eq!(code.index(), index);
        assert!(CODES.contains(&code.as_str()), "{}", code.as_str());
    }
    assert_eq!(RejectCode::ALL.len(), CODES.len());
}

#[test]
fn labelled_counters_and_the_global_gauges() {
    let metrics = shards(2);
    metrics[0].inc_rate_limited(Limiter::General);
    metrics[1].inc_rate_limited(Limiter::General);
    metrics[1].inc_rate_limited(Limiter::Recovery);
    metrics[0].inc_offload_sent(OffloadSentResult::Accepted);
    metrics[1].inc_offload_sent(OffloadSentResult::Timeout);
    metrics[1].inc_offload_sent(OffloadSentResult::Timeout);
    metrics[0].inc_offload_received(OffloadReceivedResult::Refused);
    let global = Global::new(2);
    global.set_draining(true);
    global.set_federation_peers(PeerState::Connected, 3);
    global.set_federation_peers(PeerState::Disconnected, 1);
    let e = validate(&render(&metrics, &global)).unwrap();
    assert_eq!(
        e.value("relay_rate_limited_total", &[("limiter", "general")]),
        2.0
    );
    assert_eq!(
        e.value("relay_rate_limited_total", &[("limiter", "recovery")]),
        1.0
    );
    assert_eq!(
        e.value("relay_offload_sent_total", &[("result", "accepted")]),
        1.0
    );
    assert_eq!(
        e.value("relay_offload_sent_total", &[("result", "timeout")]),
        2.0
    );
    assert_eq!(
        e.value("relay_offload_sent_total", &[("result", "refused")]),
        0.0
    );
    assert_eq!(
        e.value("relay_offload_received_total", &[("result", "refused")]),
        1.0
    );
    assert_eq!(e.value("relay_draining", &[]), 1.0);
    assert_eq!(
        e.value("relay_federation_peers", &[("state", "connected")]),
        3.0
    );
    assert_eq!(
        e.value("relay_federation_peers", &[("state", "draining")]),
        0.0
    );
    assert_eq!(
        e.value("relay_federation_peers", &[("state", "disconnected")]),
        1.0
    );
    global.set_draining(false);
    let e = validate(&render(&metrics, &global)).unwrap();
    assert_eq!(e.value("relay_draining", &[]), 0.0);
}

#[test]
fn the_duration_histogram_is_cumulative_over_the_protocol_buckets() {
    let metrics = shards(2);
    // A bound is inclusive (`le`): exactly 5 ms lands in the 0.005 bucket.
    metrics[0].observe_duration(Duration::from_millis(5));
    metrics[0].observe_duration(Duration::from_micros(5001));
    metrics[1].observe_duration(Duration::from_millis(300));
    metrics[1].observe_duration(Duration::from_secs(20));
    metrics[1].observe_duration(Duration::ZERO);
    let e = validate(&render(&metrics, &Global::new(2))).unwrap();
    let bucket = |le| e.value("relay_message_duration_seconds_bucket", &[("le", le)]);
    let expected = [
        ("0.005", 2.0),
        ("0.01", 3.0),
        ("0.025", 3.0),
        ("0.05", 3.0),
        ("0.1", 3.0),
        ("0.25", 3.0),
        ("0.5", 4.0),
        ("1", 4.0),
        ("2.5", 4.0),
        ("5", 4.0),
        ("10", 4.0),
        ("+Inf", 5.0),
    ];
    for (le, count) in expected {
        assert_eq!(bucket(le), count, "le={le}");
    }
    let buckets = e.samples["relay_message_duration_seconds"]
        .iter()
        .filter(|s| s.name.ends_with("_bucket"))
        .count();
    assert_eq!(buckets, 12, "11 protocol buckets and +Inf");
    assert_eq!(e.value("relay_message_duration_seconds_count", &[]), 5.0);
    let sum = e.value("relay_message_duration_seconds_sum", &[]);
    assert!((sum - 20.310001).abs() < 1e-9, "sum {sum}");
}

#[test]
fn help_precedes_type_and_the_text_ends_with_a_newline() {
    let text = render(&shards(1), &Global::new(1));
    let lines: Vec<&str> = text.lines().collect();
    for (name, kind, _) in SPEC {
        let help = lines
            .iter()
            .position(|l| l.starts_with(&format!("# HELP {name} ")))
            .unwrap_or_else(|| panic!("no HELP for {name}"));
        assert_eq!(lines[help + 1], format!("# TYPE {name} {kind}"));
    }
    assert!(text.ends_with('\n'));
}
