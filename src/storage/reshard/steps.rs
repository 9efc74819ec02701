//! What every step of a move shares: its error, its options (batch size and the
//! injected crash), the count of durable steps taken, and the failure messages,
//! which name files and tables, never ids.

use std::path::Path;

use crate::limits::RESHARD_BATCH_ROWS_MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReshardError {
    /// A file or SQLite failure; the message names files and tables, never ids.
    Failed(String),
    /// `Options::stop_after_steps` was reached (tests simulate a crash with it).
    Interrupted,
}

impl std::fmt::Display for ReshardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReshardError::Failed(why) => write!(f, "resharding failed: {why}"),
            ReshardError::Interrupted => write!(f, "resharding interrupted"),
        }
    }
}

impl std::error::Error for ReshardError {}

/// Tuning and fault injection for `prepare_with`.
#[derive(Debug, Clone)]
pub struct Options {
    pub batch_rows_max: usize,
    /// Stop with `Interrupted` right after this many durable steps (commits, the
    /// commit file, file removals and renames), as a crash there would.
    pub stop_after_steps: Option<u64>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            batch_rows_max: RESHARD_BATCH_ROWS_MAX,
            stop_after_steps: None,
        }
    }
}

/// Counts durable steps and stops at the injected limit.
pub(super) struct Steps {
    taken: u64,
    limit: Option<u64>,
}

impl Steps {
    pub(super) fn new(limit: Option<u64>) -> Steps {
        Steps { taken: 0, limit }
    }

    pub(super) fn step(&mut self) -> Result<(), ReshardError> {
        self.taken += 1;
        if self.limit.is_some_and(|limit| self.taken >= limit) {
            return Err(ReshardError::Interrupted);
        }
        Ok(())
    }
}

pub(super) fn failed(path: &Path, error: impl std::fmt::Display) -> ReshardError {
    ReshardError::Failed(format!("{}: {error}", path.display()))
}

/// rusqlite's messages name the failure, table or column, never a bound value.
pub(super) fn failed_sql(path: &Path, error: rusqlite::Error) -> ReshardError {
    failed(path, error)
}

pub(super) fn failed_io(what: &str, path: &Path, error: std::io::Error) -> ReshardError {
    ReshardError::Failed(format!("{what} {}: {error}", path.display()))
}
