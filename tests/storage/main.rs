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

use vauchi_relay::storage::Store;
use vauchi_relay::storage::writer::{Completion, Job};

/// A writer thread named `name` for `store`, whose alive token nobody watches.
fn spawn_writer(
    name: &str,
    store: Box<dyn Store>,
    jobs: flume::Receiver<Job>,
    done: flume::Sender<Completion>,
) -> std::thread::JoinHandle<()> {
    let (alive, _) = flume::bounded(1);
    vauchi_relay::storage::writer::spawn_writer(name.to_owned(), store, jobs, done, alive)
        .expect("spawn the writer thread")
}
