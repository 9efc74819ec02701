//! End-to-end tests of the client protocol against the relay binary on 127.0.0.1:
//! HTTP, the Handshake, delivery, features, session errors, metrics and the
//! monitoring files of `scripts/`, privacy, shutdown and startup.
//!
//! One test binary per area (linking each of 46 files against the crate took most
//! of a fresh `cargo test --release`); each module is one former test file.

#[path = "../common/mod.rs"]
mod common;
#[path = "../wire/mod.rs"]
mod wire;

mod delivery;
mod features;
mod handshake;
mod http;
mod metrics;
mod monitoring;
mod noise;
mod privacy;
mod proxy_protocol;
mod relay;
mod session_errors;
mod shutdown;
mod startup;
mod tls;
