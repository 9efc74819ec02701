//! End-to-end tests under hostile load and faults: admission and slow clients,
//! attacks in volume, a full mesh queue, a failing disk.
//!
//! One test binary per area (linking each of 46 files against the crate took most
//! of a fresh `cargo test --release`); each module is one former test file.

#[path = "../common/mod.rs"]
mod common;
#[path = "../wire/mod.rs"]
mod wire;

mod admission;
mod attacks;
mod mesh_overload;
mod noise;
mod storage_failure;
