//! Federation end to end (§11): the acceptor and initiator against raw peers, relay
//! to relay, peer faults, and links over TLS.
//!
//! One test binary per area (linking each of 46 files against the crate took most
//! of a fresh `cargo test --release`); each module is one former test file.

#[path = "../common/mod.rs"]
mod common;
#[path = "../fedwire/mod.rs"]
mod fedwire;
#[path = "../wire/mod.rs"]
mod wire;

mod faults;
mod gossip;
mod links;
mod mtls;
mod tls;
