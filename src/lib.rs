//! vauchi-relay: a zero-knowledge, thread-per-core WebSocket relay.
//!
//! Layout (one line per module, saying what it owns):
//!
//! - [`config`]: every `RELAY_*` variable: parse, validate, default (PROTOCOL.md §13).
//! - [`limits`]: every fixed bound and timeout, with the reason for its value.
//! - [`protocol`]: bytes <-> typed messages: frame prefix, envelope, client payloads,
//!   error and close codes. No I/O, no storage, no clock.
//! - [`http`]: the main port's HTTP/1.x request head parser, routing and replies.
//! - [`wsframe`]: a sans-I/O RFC 6455 frame reader for the bytes read before a
//!   session is handed to its owner shard.
//! - [`session`]: per-key state that needs no runtime: token buckets, mailboxes
//!   (the per-recipient blob index), the sender map.
//! - [`storage`]: one storage trait, the sqlite and memory backends, and the
//!   group-commit writer thread that drives them off the event loop.
//! - [`shard`]: the glommio side: executors, accept, hand-off, the mesh (one enum of
//!   every cross-shard message), the router (`shard_of`), client sessions.
//! - [`federation`]: the relay-to-relay protocol (§11): its messages, and the
//!   federation executor with peer links, capacity reports and the offload manager.
//! - [`metrics`]: per-shard counters merged at scrape time, the §12 text and listener.
//! - [`relay`]: startup order (§13.4) and shutdown.
//! - [`signals`]: SIGTERM and SIGINT received on one thread (§14.1).
//! - [`system`]: kernel features and process limits checked at startup.

pub mod config;
pub mod federation;
pub mod http;
pub mod keyed;
pub mod limits;
pub mod mesh;
pub mod metrics;
pub mod process;
pub mod protocol;
pub mod relay;
pub mod shard;
pub mod signals;
pub mod storage;
pub mod system;
pub mod wsframe;
