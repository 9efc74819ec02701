//! The data directory's side of resharding: which shard and staging files are
//! present, the commit file (step 3) and the swap that puts the staging files in
//! place (step 4). Every removal and rename counts as one durable step.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::steps::{ReshardError, Steps, failed, failed_io};
use crate::config::SqliteSynchronous;
use crate::limits::RESHARD_SHARD_FILES_MAX;
use crate::storage::sqlite::{SqliteStore, shard_file_name};

/// The file that commits a move: its presence means the staging files are the data.
const COMMIT_FILE: &str = "reshard.commit";
const COMMIT_FILE_TEMP: &str = "reshard.commit.tmp";

/// The shard files present: sources `shard-<i>.db` (sorted) and staging files
/// `shard-<j>.db.reshard-<n>` with their journals, as (path, n).
pub(super) struct Files {
    pub(super) sources: Vec<usize>,
    pub(super) staging: Vec<(PathBuf, usize)>,
}

pub(super) fn scan(dir: &Path) -> Result<Files, ReshardError> {
    let entries = fs::read_dir(dir).map_err(|e| failed_io("cannot list", dir, e))?;
    let mut files = Files {
        sources: Vec::new(),
        staging: Vec::new(),
    };
    for entry in entries {
        let entry = entry.map_err(|e| failed_io("cannot list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == COMMIT_FILE_TEMP {
            // A commit file that was never renamed into place commits nothing.
            fs::remove_file(entry.path()).map_err(|e| failed_io("cannot remove", dir, e))?;
            continue;
        }
        let Some(rest) = name.strip_prefix("shard-") else {
            continue;
        };
        if let Some((index, target)) = rest.split_once(".db.reshard-") {
            let target = target
                .strip_suffix("-wal")
                .or_else(|| target.strip_suffix("-shm"))
                .unwrap_or(target);
            if let (Some(_), Some(target)) = (decimal(index), decimal(target)) {
                files.staging.push((entry.path(), target));
            }
        } else if let Some(index) = rest.strip_suffix(".db").and_then(decimal) {
            files.sources.push(index);
        }
        if files.sources.len() + files.staging.len() > RESHARD_SHARD_FILES_MAX {
            return Err(ReshardError::Failed(format!(
                "{} holds more than {RESHARD_SHARD_FILES_MAX} shard files",
                dir.display()
            )));
        }
    }
    files.sources.sort_unstable();
    Ok(files)
}

/// A canonical decimal number (no sign, no leading zeros but "0").
fn decimal(text: &str) -> Option<usize> {
    let value = text.parse::<usize>().ok()?;
    (value.to_string() == text).then_some(value)
}

/// The shard count recorded in the first source file, if any.
pub(super) fn recorded_count(
    dir: &Path,
    first: usize,
    synchronous: SqliteSynchronous,
) -> Result<Option<usize>, ReshardError> {
    let path = dir.join(shard_file_name(first));
    let mut store = SqliteStore::open(&path, synchronous).map_err(|e| failed(&path, e))?;
    let value = store
        .meta_get("shard_count")
        .map_err(|e| failed(&path, e))?;
    match value.map(|v| v.parse::<usize>()) {
        None => Ok(None),
        Some(Ok(count)) if count > 0 => Ok(Some(count)),
        Some(_) => Err(ReshardError::Failed(format!(
            "{}: the recorded shard_count is not a positive number",
            path.display()
        ))),
    }
}

/// Removes staging files, all of them or those of a move to another count than
/// `keep`.
pub(super) fn remove_staging(
    staging: &[(PathBuf, usize)],
    keep: Option<usize>,
    steps: &mut Steps,
) -> Result<(), ReshardError> {
    for (path, target) in staging {
        if Some(*target) != keep {
            remove_if_present(path)?;
            steps.step()?;
        }
    }
    Ok(())
}

pub(super) fn staging_path(dir: &Path, index: usize, shards: usize) -> PathBuf {
    dir.join(format!("{}.reshard-{shards}", shard_file_name(index)))
}

pub(super) fn read_commit_file(dir: &Path) -> Result<Option<usize>, ReshardError> {
    let path = dir.join(COMMIT_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(shards) if shards > 0 => Ok(Some(shards)),
            _ => Err(ReshardError::Failed(format!(
                "{} does not hold a shard count",
                path.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(failed_io("cannot read", &path, e)),
    }
}

/// Writes the commit file atomically and durably (temp file, fsync, rename, fsync
/// of the directory).
pub(super) fn write_commit_file(dir: &Path, shards: usize) -> Result<(), ReshardError> {
    let temp = dir.join(COMMIT_FILE_TEMP);
    let written = File::create(&temp).and_then(|mut file| {
        file.write_all(format!("{shards}\n").as_bytes())?;
        file.sync_all()
    });
    written.map_err(|e| failed_io("cannot write", &temp, e))?;
    let path = dir.join(COMMIT_FILE);
    fs::rename(&temp, &path).map_err(|e| failed_io("cannot rename", &path, e))?;
    sync_dir(dir)
}

/// Step 4: replaces the old layout by the committed staging files. Idempotent: a
/// staging file still present has not been renamed yet; one absent already has.
pub(super) fn swap(dir: &Path, shards: usize, steps: &mut Steps) -> Result<(), ReshardError> {
    for index in scan(dir)?.sources.into_iter().filter(|&i| i >= shards) {
        for path in with_journals(&dir.join(shard_file_name(index)))
            .into_iter()
            .rev()
        {
            remove_if_present(&path)?;
            steps.step()?;
        }
    }
    for index in 0..shards {
        let staging = staging_path(dir, index, shards);
        if !staging.exists() {
            continue;
        }
        let live = dir.join(shard_file_name(index));
        // The old journals must go first: SQLite would apply an old -wal to the
        // new file.
        for journal in with_journals(&live).into_iter().skip(1) {
            remove_if_present(&journal)?;
            steps.step()?;
        }
        for journal in with_journals(&staging).into_iter().skip(1) {
            remove_if_present(&journal)?;
        }
        fs::rename(&staging, &live).map_err(|e| failed_io("cannot rename", &staging, e))?;
        steps.step()?;
    }
    sync_dir(dir)?;
    remove_if_present(&dir.join(COMMIT_FILE))?;
    sync_dir(dir)?;
    // Staging files of another count are now leftovers.
    remove_staging(&scan(dir)?.staging, None, steps)
}

/// A database path followed by its `-wal` and `-shm` companions.
fn with_journals(path: &Path) -> [PathBuf; 3] {
    let text = path.as_os_str().to_owned();
    let mut wal = text.clone();
    wal.push("-wal");
    let mut shm = text;
    shm.push("-shm");
    [path.to_path_buf(), PathBuf::from(wal), PathBuf::from(shm)]
}

fn remove_if_present(path: &Path) -> Result<(), ReshardError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(failed_io("cannot remove", path, e)),
    }
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), ReshardError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| failed_io("cannot sync", dir, e))
}
