//! Sans-I/O tests of each parser, codec and index: the configuration, HTTP heads
//! and routes, WebSocket frames, the client and federation codecs, metrics
//! rendering, the per-key indices, the federation registry and peer URLs.
//!
//! One test binary per area (linking each of 46 files against the crate took most
//! of a fresh `cargo test --release`); each module is one former test file.

#[path = "../common/mod.rs"]
mod common;
#[path = "../federation_examples/mod.rs"]
mod federation_examples;
#[path = "../wire/mod.rs"]
mod wire;

mod addresses;
mod config_parse;
mod federation_dial;
mod federation_messages;
mod federation_registry;
mod http_head;
mod http_health;
mod http_route;
mod metrics_listener;
mod metrics_render;
mod noise;
mod protocol_codes;
mod protocol_decode;
mod protocol_encode;
mod protocol_ids;
mod proxy_header;
mod session_hints;
mod session_state;
mod shard_rules;
mod structure;
mod tls_certs;
mod wsframe_allocation;
mod wsframe_interop;
mod wsframe_reader;
