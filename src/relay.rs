//! Startup in the order of §13.4: configuration (already parsed by `main`), the
//! data directory and its lock, relay_id, the shards' stores and indexes, the
//! federation executor, the shards and the main listener, then federation's
//! peers; and shutdown (§14.1), which tells both and waits for their reports.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, MetricsAddr, SqliteSynchronous, StorageBackend};
use crate::federation::executor::Federation;
use crate::mesh::{self, MeshMessage};
use crate::metrics::{self, TlsListener};
use crate::process::Shared;
use crate::shard::runtime::{self, ShardIndex, ShardInit, ShardsStart, WriterThread};
use crate::storage::Store;
use crate::storage::memory::MemoryStore;
use crate::storage::reshard;
use crate::storage::sqlite::{self, SqliteStore};
use crate::transport::certs::{CertFiles, ServerCerts};

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
        let blobs = store
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
        let indices = ShardIndex {
            blobs,
            device_sync,
            proofs,
            hints,
        };
        inits.push(ShardInit { store, indices });
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
    // Files named by the configuration are part of it (§13.4 step 1).
    let main_tls = main_certs(&config)?;
    // Loaded even with federation disabled, so that a bad file stops startup
    // (§15.3); in effect only with federation enabled.
    let federation_tls = federation_certs(&config)?.filter(|_| config.federation_mtls());
    let lock = lock_data_dir(&config.data_dir)?;
    let relay_id = load_relay_id(&config);
    // §15.1: the static key exists before any listener binds.
    let noise_key = match &config.noise_static_key {
        Some(key) => key.clone(),
        None => crate::noise::key::load_or_create(&config.data_dir)?,
    };
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
    let pubkey = noise_key.public_base64url();
    let keys = Keys {
        main_tls,
        federation_tls,
        noise: noise_key,
    };
    let running = start_executors(Arc::new(config), relay_id.clone(), inits, keys)?;
    let shared = &running.shared;
    let (metrics, global) = (
        Arc::clone(&shared.metrics),
        Arc::clone(&shared.global_metrics),
    );
    let bound = match &metrics_addr {
        MetricsAddr::Socket(addr) => {
            metrics::spawn_listener(*addr, metrics_token, pubkey, metrics, global)
        }
        MetricsAddr::Localhost(port) => {
            metrics::spawn_listener(("localhost", *port), metrics_token, pubkey, metrics, global)
        }
    };
    let (metrics_local, _) =
        bound.map_err(|e| format!("cannot bind RELAY_METRICS_ADDR={metrics_addr}: {e}"))?;
    tracing::info!(relay_id = %relay_id, shards, "relay started");
    tracing::info!("metrics on {metrics_local}");
    Ok((running, lock))
}

/// Starts the executors: the federation executor first, so that every shard can
/// hand it links (it waits for work, and reaches the shards only through their
/// queues), then the shards, then federation's dialing (§13.4 step 5).
fn start_executors(
    config: Arc<Config>,
    relay_id: String,
    inits: Vec<ShardInit>,
    keys: Keys,
) -> Result<Running, String> {
    let shards = inits.len();
    let shared = Shared::new(shards)
        .with_tls(keys.main_tls, keys.federation_tls)
        .with_noise_key(keys.noise)
        .with_address_limit(config.max_connections_per_ip, config.ipv6_prefix_len);
    for (listener, certs) in shared.certificates() {
        let global = &shared.global_metrics;
        global.set_certificate_expiry(listener, certs.not_after());
    }
    let shared = Arc::new(shared);
    let (senders, inboxes) = mesh::channels(shards);
    let (finished_tx, reports) = std::sync::mpsc::channel();
    let federation = if config.federation_enabled {
        Some(crate::federation::executor::start(
            Arc::clone(&config),
            Arc::clone(&shared),
            relay_id,
            senders.clone(),
            finished_tx.clone(),
        )?)
    } else {
        None
    };
    let start = ShardsStart {
        config,
        shared: Arc::clone(&shared),
        senders: senders.clone(),
        inboxes,
        federation: federation.as_ref().map(|f| f.commands.clone()),
        finished: finished_tx,
    };
    let started = runtime::start(start, inits)?;
    if let Some(federation) = &federation {
        federation.begin();
    }
    let reporters = shards + usize::from(federation.is_some());
    Ok(Running {
        local_addr: started.local_addr,
        shared,
        control: senders,
        federation,
        _executors: started.executors,
        finished: Some(Finished { reports, reporters }),
    })
}

/// The keys the relay answers with: the main listener's certificates (§2.8), those of
/// federation mTLS (§15.3) and
/// the static Noise key (§15.1).
struct Keys {
    main_tls: Option<ServerCerts>,
    /// Federation mTLS (§15.3), in effect only with federation enabled.
    federation_tls: Option<ServerCerts>,
    noise: crate::noise::StaticKey,
}

/// The running relay: executor threads and the bound address.
pub struct Running {
    pub local_addr: std::net::SocketAddr,
    pub shared: Arc<Shared>,
    control: Vec<flume::Sender<MeshMessage>>,
    federation: Option<Federation>,
    /// Held, not joined: the process ends when the executors report `Finished`.
    _executors: Vec<glommio::ExecutorJoinHandle<()>>,
    finished: Option<Finished>,
}

impl Running {
    /// Starts graceful shutdown (§14.1): draining at once, then every shard stops
    /// accepting, drains its sessions and ends when no connection is left.
    pub fn shutdown(&self) {
        self.shared
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(federation) = &self.federation {
            federation.shutdown();
        }
        for shard in &self.control {
            // Blocking is fine here: this is the main thread, not a shard.
            let _ = shard.send(MeshMessage::Shutdown);
        }
    }

    /// SIGHUP (§2.8, §15.3): new connections (and links dialled from now on) get
    /// the certificate files as they are now; if one does not load, that
    /// listener's certificate in use stays.
    pub fn reload(&self) {
        let global = &self.shared.global_metrics;
        let mut any = false;
        for (listener, certs) in self.shared.certificates() {
            any = true;
            let name = match listener {
                TlsListener::Main => "main",
                TlsListener::Federation => "federation mTLS",
            };
            match certs.reload() {
                Ok(()) => {
                    global.set_certificate_expiry(listener, certs.not_after());
                    tracing::info!("SIGHUP: {name} TLS certificates reloaded");
                }
                Err(message) => {
                    global.inc_tls_reload_failures();
                    tracing::error!("SIGHUP: keeping the {name} certificate in use: {message}");
                }
            }
        }
        if !any {
            tracing::info!("SIGHUP: no TLS certificates to reload");
        }
    }

    /// The executors' end reports, to wait on from another thread.
    pub fn take_finished(&mut self) -> Option<Finished> {
        self.finished.take()
    }
}

/// Reports from the executors as they end (§14.1).
pub struct Finished {
    reports: std::sync::mpsc::Receiver<Option<WriterThread>>,
    /// Shards, plus one for the federation executor when it runs.
    reporters: usize,
}

impl Finished {
    /// Waits until every shard (and the federation executor) has drained and every
    /// store has committed all it was given. Returns false if one ended without
    /// reporting (it failed).
    pub fn wait(self) -> bool {
        for _ in 0..self.reporters {
            match self.reports.recv() {
                Ok(Some(writer)) => {
                    let _ = writer.join();
                }
                Ok(None) => {}
                Err(_) => return false,
            }
        }
        true
    }
}

/// The main listener's certificates (§2.8), if TLS is built in: the files of the
/// parsed configuration (trimmed, set together, empty meaning unset).
fn main_certs(config: &Config) -> Result<Option<ServerCerts>, String> {
    let Some(files) = &config.tls else {
        return Ok(None);
    };
    ServerCerts::load(CertFiles {
        cert: files.cert.clone(),
        key: files.key.clone(),
        cert_variable: "RELAY_TLS_CERT_FILE",
        key_variable: "RELAY_TLS_KEY_FILE",
        ca: None,
    })
    .map(Some)
}

/// The federation mTLS certificates (§15.3), if the three files are configured.
fn federation_certs(config: &Config) -> Result<Option<ServerCerts>, String> {
    let Some(files) = &config.federation_tls else {
        return Ok(None);
    };
    ServerCerts::load(CertFiles {
        cert: files.cert.clone(),
        key: files.key.clone(),
        cert_variable: "RELAY_FEDERATION_TLS_CERT",
        key_variable: "RELAY_FEDERATION_TLS_KEY",
        ca: Some((files.ca.clone(), "RELAY_FEDERATION_TLS_CA")),
    })
    .map(Some)
}
