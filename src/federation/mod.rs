//! Relay-to-relay federation (PROTOCOL.md §11): a dedicated executor that owns the
//! peer links and offloads the oldest blobs to peers when storage fills.
//!
//! - [`messages`]: the federation payloads, decoded and encoded (§11.2).
//! - [`registry`]: the peers by relay_id, their links and capacity (§11.3).
//! - [`link`]: initiator, acceptor and the established link loop (§11.4-§11.6).
//! - [`checked`]: the link's byte stream, checked for non-minimal frame lengths.
//! - [`dial`]: opening an outbound link: TCP, TLS for `wss://` peers, the upgrade.
//! - [`mtls`]: the federation mTLS listener (§15.3).
//! - [`offload`]: the offload manager (§11.7).
//! - [`gossip`]: peer advertisements and the discovered peers (§15.2).
//! - [`node`]: the executor's shared state: links, pending offers, the mesh.
//! - [`executor`]: starting the executor, its commands and its drain (§14.1).

pub mod checked;
pub mod dial;
pub mod executor;
pub mod gossip;
pub mod link;
pub mod messages;
pub mod mtls;
pub mod node;
pub mod offload;
pub mod registry;
