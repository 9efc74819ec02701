//! vauchi-relay: a zero-knowledge, thread-per-core WebSocket relay.
//!
//! Layout, from the bottom up (a module imports only those above it):
//!
//! - [`limits`]: every fixed bound and timeout, with the reason for its value.
//! - [`config`]: every `RELAY_*` variable: parse, validate, default (PROTOCOL.md §13).
//! - [`protocol`]: bytes <-> typed messages: frame prefix, envelope, client payloads,
//!   error and close codes. No I/O, no storage, no clock.
//! - [`http`]: the main port's HTTP/1.x request head parser, routing and replies.
//! - [`wsframe`]: a sans-I/O RFC 6455 frame reader and writers.
//! - [`noise`]: the Noise NK transport (§15.1) without I/O: the static key, the
//!   responder's opening, transport messages to v1 frames and back.
//! - [`storage`]: one storage trait, the sqlite and memory backends, and the
//!   group-commit writer thread that drives them off the event loop.
//! - [`keyed`]: per-key indices and checks that need no runtime: token buckets,
//!   mailboxes (the per-recipient blob index), device sync, hints, the sender map,
//!   nonces and signatures.
//! - [`metrics`]: per-shard counters merged at scrape time, the §12 text and listener.
//! - [`addresses`]: open connections per client address (§2.10), exact across
//!   shards, memory only.
//! - [`transport`]: the byte stream under a main-port connection, plain or TLS
//!   (§2.8), which comes apart to move between executors, reloadable
//!   certificates, and the PROXY protocol header in front of it (§2.9).
//! - [`process`]: what every thread shares: atomics, the connection slot, the clock.
//! - [`mesh`]: the messages between executors (one struct each) and their channels.
//! - [`federation`]: the relay-to-relay protocol (§11): its messages, and the
//!   federation executor with peer links, capacity reports and the offload manager.
//!   It reaches shards only through [`mesh`].
//! - [`shard`]: the glommio side: executors, accept, hand-off, the owner's rules,
//!   client sessions. It reaches federation only through [`mesh`].
//! - [`relay`]: startup order (§13.4) and shutdown of both kinds of executor.
//! - [`signals`]: SIGTERM, SIGINT (§14.1) and SIGHUP (§2.8) received on one thread.
//! - [`system`]: kernel features and process limits checked at startup.

pub mod addresses;
pub mod config;
pub mod federation;
pub mod http;
pub mod keyed;
pub mod limits;
pub mod mesh;
pub mod metrics;
pub mod noise;
pub mod process;
pub mod protocol;
pub mod relay;
pub mod shard;
pub mod signals;
pub mod storage;
pub mod system;
pub mod transport;
pub mod wsframe;
