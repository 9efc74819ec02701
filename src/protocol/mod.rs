//! Bytes <-> typed messages for the client protocol (PROTOCOL.md §3, §5, §6).
//! Pure functions: no I/O, no storage, no clock (`now` is passed in).

pub mod codes;
pub mod decode;
pub mod encode;
pub mod ids;
pub(crate) mod json_writer;
pub(crate) mod raw;
pub(crate) mod unique;

pub use codes::{CloseReason, ErrorCode};
pub use ids::{Id64, shard_of};
