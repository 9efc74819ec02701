//! The metrics of PROTOCOL.md §12, in three parts: the per-shard counters, the
//! process-wide gauges and their label values (`counters.rs`), the Prometheus text
//! rendering that merges them at scrape time (`text.rs`), and the
//! `RELAY_METRICS_ADDR` listener (`listener.rs`).

mod counters;
mod listener;
mod text;

pub use counters::{
    Counter, DurationHistogram, Gauge, Global, Limiter, OffloadReceivedResult, OffloadSentResult,
    PeerState, Refusal, RejectCode, ShardMetrics, TlsListener,
};
pub use listener::spawn_listener;
pub use text::render;
