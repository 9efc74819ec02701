//! Per-key state that needs no runtime and no clock of its own: token buckets
//! (§8), the per-recipient blob index (§7, §9) and the sender map (§7.3).

pub mod mailbox;
pub mod ratelimit;
pub mod sender_map;
