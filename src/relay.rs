//! Startup in the order of §13.4: configuration (already parsed by `main`), the
//! data directory and its lock, relay_id, the shards' stores and indexes, then the
//! executors and the main listener.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, MetricsAddr, SqliteSynchronous, StorageBackend};
use crate::metrics;
use crate::shard::runtime::{self, Running, ShardInit};
use crate::storage::Store;
use crate::storage::memory::MemoryStore;
use crate::storage::reshard;
use crate::storage::sqlite::{self, SqliteStore};

/// Holds the exclusive lock on `RELAY_DATA_DIR` (§10.3) while alive.
pub struct DataDirLock {
    _file: File,
}

/// Creates the data directory (mode 0700) and takes its lock, or says who holds it.
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create RELAY_DATA_DIR={}: {e}", dir.display()))?;
    let path = dir.join("relay.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(_) => Err(format!(
            "RELAY_DATA_DIR={} is locked by another relay process; stop it or choose another directory",
            dir.display()
        )),
    }
}

/// The relay id of §13.3.
pub fn load_relay_id(config: &Config) -> String {
    if let Some(id) = &config.federation_relay_id {
        return id.clone();
    }
    let path = config.data_dir.join("relay_id");
    if let Ok(text) = fs::read_to_string(&path) {
        let text = text.trim();
        if !text.is_empty() {
            return text.to_owned();
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    let written = File::create(&path).and_then(|mut f| f.write_all(format!("{id}\n").as_bytes()));
    if let Err(error) = written {
        tracing::warn!(%error, "cannot write the relay_id file; using a generated id for this run");
    }
    id
}

/// The shard count in effect: `RELAY_SHARDS`, or the CPUs the process may use.
pub fn shard_count(config: &Config) -> usize {
    config
        .shards
        .unwrap_or_else(|| runtime::allowed_cpus().len().max(1))
}

/// Opens every shard's store and reads its index.
fn open_stores(config: &Config, shards: usize) -> Result<Vec<ShardInit>, String> {
    let mut inits = Vec::with_capacity(shards);
    for index in 0..shards {
        let mut store: Box<dyn Store> = match config.storage_backend {
            StorageBackend::Memory => Box::new(MemoryStore::new()),
            StorageBackend::Sqlite => Box::new(open_sqlite(
                &config.data_dir,
                index,
                shards,
                config.sqlite_synchronous,
            )?),
        };
        let index_metas = store
            .load_blob_index()
            .map_err(|e| format!("cannot read shard {index}: {e}"))?;
        let device_sync = store
            .load_device_sync()
            .map_err(|e| format!("cannot read shard {index}: {e}"))?;
        let proofs = store
            .load_proofs()
            .map_err(|e| format!("cannot read shard {index}: {e}"))?;
        let hints = store
            .load_hints()
            .map_err(|e| format!("cannot read shard {index}: {e}"))?;
        inits.push(ShardInit {
            store,
            index: index_metas,
            device_sync,
            proofs,
            hints,
        });
    }
    Ok(inits)
}

fn open_sqlite(
    dir: &Path,
    index: usize,
    shards: usize,
    synchronous: SqliteSynchronous,
) -> Result<SqliteStore, String> {
    let path = dir.join(sqlite::shard_file_name(index));
    let mut store = SqliteStore::open(&path, synchronous)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let recorded = store.meta_get("shard_count").map_err(|e| e.to_string())?;
    match recorded.as_deref().map(str::parse::<usize>) {
        None => store
            .meta_set("shard_count", &shards.to_string())
            .map_err(|e| e.to_string())?,
        Some(Ok(count)) if count == shards => {}
        Some(_) => {
            // `reshard::prepare` has run: every file records `shards` unless the
            // directory was changed behind the relay's back.
            return Err(format!(
                "RELAY_DATA_DIR={}: {} records another shard count than its shard-0 file",
                dir.display(),
                sqlite::shard_file_name(index)
            ));
        }
    }
    Ok(store)
}

/// Runs startup steps 2-4 of §13.4 and returns the running relay.
pub fn start(config: Config) -> Result<(Running, DataDirLock), String> {
    let lock = lock_data_dir(&config.data_dir)?;
    let relay_id = load_relay_id(&config);
    let shards = shard_count(&config);
    if config.storage_backend == StorageBackend::Sqlite {
        // Step 3 of §13.4: a directory written with another shard count (or left
        // half-way through such a move) is brought to `shards` before any store is
        // opened for serving.
        reshard::prepare(&config.data_dir, shards, config.sqlite_synchronous)
            .map_err(|e| format!("RELAY_DATA_DIR={}: {e}", config.data_dir.display()))?;
    }
    let inits = open_stores(&config, shards)?;
    let metrics_addr = config.metrics_addr.clone();
    let metrics_token = config.metrics_token.clone();
    let running = runtime::start(Arc::new(config), relay_id.clone(), inits)?;
    let shared = &running.shared;
    let (metrics, global) = (
        Arc::clone(&shared.metrics),
        Arc::clone(&shared.global_metrics),
    );
    let bound = match &metrics_addr {
        MetricsAddr::Socket(addr) => metrics::spawn_listener(*addr, metrics_token, metrics, global),
        MetricsAddr::Localhost(port) => {
            metrics::spawn_listener(("localhost", *port), metrics_token, metrics, global)
        }
    };
    let (metrics_local, _) =
        bound.map_err(|e| format!("cannot bind RELAY_METRICS_ADDR={metrics_addr}: {e}"))?;
    tracing::info!(relay_id = %relay_id, shards, "relay started");
    tracing::info!("metrics on {metrics_local}");
    Ok((running, lock))
}
