//! Federation links (PROTOCOL.md §11.1, §11.3-§11.6): the initiator with its
//! reconnect backoff, the acceptor's handshake, and the one loop both run once
//! established: keepalive pings, the idle timeout, capacity reports, drain
//! messages, and offers (acceptor) or their acks (initiator), in order.
//!
//! - `initiator`: dial a configured peer, our PeerHandshake, reconnect backoff.
//! - `acceptor`: a connection a shard upgraded, the peer's PeerHandshake.
//! - `established`: the link loop: reading, queued writes, pings, idle timeout.
//! - `receive`: each federation message received, to its handler.
//! - `wire`: the socket: limits, bounded writes, reads, closes.
//!
//! The link code is generic over the byte stream: plain TCP for the acceptor and
//! `ws://` peers, TLS over TCP for `wss://` peers (opened in [`super::dial`]).
//!
//! Links never carry `Error` messages: anything malformed is ignored and counted.
//! Logs name relay ids and peer URLs, never routing ids or data (§11.8).

mod acceptor;
mod established;
mod initiator;
mod receive;
mod wire;

pub use acceptor::{accept, accept_mtls};
pub use initiator::initiate;
