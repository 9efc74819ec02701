//! The storage layer through the `Store` trait: both backends, injected faults, the
//! writer thread and its link, resharding, a full disk.
//!
//! One test binary per area (linking each of 46 files against the crate took most
//! of a fresh `cargo test --release`); each module is one former test file.

#[path = "../common/mod.rs"]
mod common;

mod backends;
mod faults;
mod link;
mod reshard;
mod sqlite_full;
mod writer;
