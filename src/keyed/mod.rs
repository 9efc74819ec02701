//! Per-key state that needs no runtime and no clock of its own: token buckets
//! (§8), the per-recipient blob index (§7, §9), the sender map (§7.3), the
//! forwarding-hint index (§5.13), and the authenticated handshake's checks and
//! nonce cache (§4.3).

pub mod auth;
pub mod device_sync;
pub mod hints;
pub mod mailbox;
pub mod nonce;
pub mod ratelimit;
pub mod sender_map;
