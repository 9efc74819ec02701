//! Starting the shards (§1.4, §13.4): one glommio executor per shard, pinned to the
//! CPUs of the process's affinity mask when asked, each with its writer thread,
//! mesh inbox, cleanup timer and its own listener on the shared main port.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::{Config, StorageBackend};
use crate::limits;
use crate::session::device_sync::DeviceSyncIndex;
use crate::session::hints::HintIndex;
use crate::session::mailbox::Mailboxes;
use crate::session::nonce::NonceCache;
use crate::session::sender_map::SenderMap;
use crate::storage::writer::{self, Completion, Job};
use crate::storage::{BlobMeta, DeviceSyncRecord, HintRecord, RecoveryProofRecord, Store};

use super::deadline::Deadlines;
use super::mesh::{Mesh, MeshMessage};
use super::storage_link::{StorageLink, WriterQueue};
use super::{Shard, Shared, State, accept, dispatch, owner};

/// What each shard starts from.
pub struct ShardInit {
    pub store: Box<dyn Store>,
    pub index: Vec<BlobMeta>,
    pub device_sync: Vec<DeviceSyncRecord>,
    pub proofs: Vec<RecoveryProofRecord>,
    /// Every stored forwarding hint, in key order, expired ones included.
    pub hints: Vec<HintRecord>,
}

impl ShardInit {
    /// The largest storage key in use (blobs, device-sync messages and hints share
    /// one counter), 0 if none: the shard assigns new keys above it.
    pub fn highest_key(&self) -> u64 {
        self.index
            .iter()
            .map(|m| m.key)
            .chain(self.device_sync.iter().map(|r| r.key))
            .chain(self.hints.iter().map(|r| r.key))
            .max()
            .unwrap_or(0)
    }
}

/// The running relay: executor threads and the bound address.
pub struct Running {
    pub local_addr: SocketAddr,
    pub shared: Arc<Shared>,
    control: Vec<flume::Sender<MeshMessage>>,
    federation: Option<crate::federation::node::Federation>,
    /// Held, not joined: the process ends when the shards report `Finished`.
    _executors: Vec<glommio::ExecutorJoinHandle<()>>,
    finished: Option<Finished>,
}

/// Reports from the shards as they end (§14.1).
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

    /// The shards' end reports, to wait on from another thread.
    pub fn take_finished(&mut self) -> Option<Finished> {
        self.finished.take()
    }
}

/// The CPUs this process may run on, from `/proc/self/status` (`Cpus_allowed_list`),
/// which reflects taskset and cgroup cpusets, unlike the online CPU list.
pub fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("")
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let mut bounds = part.splitn(2, '-').map(|n| n.trim().parse::<usize>());
        match (bounds.next(), bounds.next()) {
            (Some(Ok(low)), Some(Ok(high))) if low <= high => cpus.extend(low..=high),
            (Some(Ok(cpu)), None) => cpus.push(cpu),
            _ => {}
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    cpus
}

/// Starts every shard and binds the main port. Shard 0 binds first so that a port
/// of 0 resolves to one real port, which the other shards then share.
pub fn start(
    config: Arc<Config>,
    relay_id: String,
    inits: Vec<ShardInit>,
) -> Result<Running, String> {
    let shards = inits.len();
    let shared = Arc::new(Shared::new(shards));
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| flume::bounded(limits::MESH_QUEUE_DEPTH))
        .unzip();
    let cpus = if config.cpu_pin {
        allowed_cpus()
    } else {
        Vec::new()
    };
    let mut address = config.listen_addr;
    let mut handles = Vec::with_capacity(shards);
    let (finished_tx, finished) = std::sync::mpsc::channel();
    // The federation executor starts first so every shard can hand it links; it
    // waits for work, and reaches the shards only through their queues.
    let federation = if config.federation_enabled {
        Some(crate::federation::node::start(
            Arc::clone(&config),
            Arc::clone(&shared),
            relay_id,
            senders.clone(),
            finished_tx.clone(),
        )?)
    } else {
        None
    };
    let federation_commands = federation.as_ref().map(|f| f.commands.clone());
    for (index, (init, inbox)) in inits.into_iter().zip(receivers).enumerate() {
        let pinned = if config.cpu_pin {
            cpus.get(index % cpus.len().max(1)).copied()
        } else {
            None
        };
        let (bound_tx, bound_rx) = flume::bounded::<Result<SocketAddr, String>>(1);
        // The init moves into whichever spawn attempt runs, so a failed pinned
        // attempt leaves it here for the unpinned one.
        let init = Arc::new(std::sync::Mutex::new(Some(init)));
        let spawn = |placement: Placement| {
            let context = ShardContext {
                index,
                config: Arc::clone(&config),
                shared: Arc::clone(&shared),
                senders: senders.clone(),
                inbox: inbox.clone(),
                address,
                bound: bound_tx.clone(),
                finished: finished_tx.clone(),
                federation: federation_commands.clone(),
            };
            let init = Arc::clone(&init);
            LocalExecutorBuilder::new(placement)
                .name(&format!("shard-{index}"))
                .io_memory(limits::EXECUTOR_IO_MEMORY_BYTES)
                .spawn(move || async move {
                    let taken = init.lock().ok().and_then(|mut slot| slot.take());
                    if let Some(init) = taken {
                        run_shard(context, init).await;
                    }
                })
        };
        let attempt = match pinned {
            Some(cpu) => spawn(Placement::Fixed(cpu)).or_else(|error| {
                tracing::warn!(shard = index, cpu, %error, "pinning failed; running unpinned");
                spawn(Placement::Unbound)
            }),
            None => spawn(Placement::Unbound),
        };
        let handle = attempt.map_err(|error| format!("could not start shard {index}: {error}"))?;
        handles.push(handle);
        match bound_rx.recv() {
            Ok(Ok(bound)) => address = bound,
            Ok(Err(message)) => return Err(message),
            Err(_) => return Err(format!("shard {index} stopped while starting")),
        }
    }
    if let Some(federation) = &federation {
        federation.begin();
    }
    let reporters = shards + usize::from(federation.is_some());
    Ok(Running {
        local_addr: address,
        shared,
        control: senders,
        federation,
        _executors: handles,
        finished: Some(Finished {
            reports: finished,
            reporters,
        }),
    })
}

struct ShardContext {
    index: usize,
    config: Arc<Config>,
    shared: Arc<Shared>,
    senders: Vec<flume::Sender<MeshMessage>>,
    inbox: flume::Receiver<MeshMessage>,
    address: SocketAddr,
    bound: flume::Sender<Result<SocketAddr, String>>,
    finished: std::sync::mpsc::Sender<Option<WriterThread>>,
    federation: Option<flume::Sender<crate::federation::node::Command>>,
}

/// The writer thread of a shard: joined after the executor has ended, since the
/// thread stops only once every task holding its queue has been dropped.
pub type WriterThread = std::thread::JoinHandle<()>;

/// Runs one shard; when it ends, reports its writer thread (sqlite) to be joined.
async fn run_shard(context: ShardContext, init: ShardInit) {
    let ShardContext {
        index,
        config,
        shared,
        senders,
        inbox,
        address,
        bound,
        finished,
        federation,
    } = context;
    let listener = match TcpListener::bind(address) {
        Ok(listener) => listener,
        Err(error) => {
            let _ = bound.send(Err(format!(
                "cannot bind RELAY_LISTEN_ADDR={address}: {error}"
            )));
            return;
        }
    };
    let next_key = init.highest_key();
    // Completions never outnumber the jobs outstanding at the writer (refusable ones
    // bounded by WRITER_QUEUE_DEPTH) plus the unrefusable ones, so this
    // channel needs no bound of its own; a bound could stall the writer thread.
    let (done_tx, done_rx) = flume::unbounded::<Completion>();
    let (storage, writer) = match config.storage_backend {
        StorageBackend::Memory => (
            StorageLink::Inline {
                store: RefCell::new(init.store),
                done: done_tx,
            },
            None,
        ),
        StorageBackend::Sqlite => {
            let (jobs_tx, jobs_rx) = flume::bounded::<Job>(limits::WRITER_QUEUE_DEPTH);
            let failed = done_tx.clone();
            match writer::spawn_writer(format!("store-{index}"), init.store, jobs_rx, done_tx) {
                Ok(handle) => (
                    StorageLink::Thread(WriterQueue::new(jobs_tx, failed)),
                    Some(handle),
                ),
                Err(error) => {
                    let message =
                        format!("cannot start the storage thread of shard {index}: {error}");
                    let _ = bound.send(Err(message));
                    return;
                }
            }
        }
    };
    let shards = senders.len();
    let state = State {
        mailboxes: Mailboxes::rebuild(init.index),
        sender_map: SenderMap::new((limits::SENDER_MAP_ENTRIES_MAX / shards).max(1)),
        device_sync: DeviceSyncIndex::rebuild(init.device_sync),
        device_sessions: HashMap::default(),
        proofs: init.proofs.into_iter().map(|p| (p.key_hash, p)).collect(),
        hints: HintIndex::rebuild(init.hints),
        gathers: HashMap::default(),
        next_gather: 0,
        nonces: NonceCache::new((limits::NONCE_CACHE_ENTRIES_MAX / shards).max(1)),
        buckets: HashMap::default(),
        sessions: HashMap::default(),
        sessions_by_routing: HashMap::default(),
        pending: HashMap::default(),
        next_key,
        next_token: 0,
        next_session: 0,
    };
    let shard = Rc::new(Shard {
        index,
        config,
        shared,
        mesh: Rc::new(Mesh::new(senders)),
        storage,
        state: RefCell::new(state),
        clock_origin: Instant::now(),
        deadlines: Rc::new(Deadlines::default()),
        shutdown: Default::default(),
        federation,
    });
    shard.publish_blob_count();
    let local = listener.local_addr().unwrap_or(address);
    let _ = bound.send(Ok(local));

    glommio::spawn_local(completions(Rc::clone(&shard), done_rx)).detach();
    glommio::spawn_local(inbox_loop(Rc::clone(&shard), inbox)).detach();
    glommio::spawn_local(cleanup_loop(Rc::clone(&shard))).detach();
    glommio::spawn_local(Rc::clone(&shard.deadlines).run()).detach();
    // Probes are still answered while draining (/ready says 503, upgrades get 503),
    // so the listener stays open until the shard ends.
    let acceptor = glommio::spawn_local(accept::accept_loop(Rc::clone(&shard), listener));
    shard.shutdown.wait().await;
    // Sessions drain and close; the shard keeps serving the mesh until no session
    // is left on any shard, so the replies it owes others still go out.
    let busy = |shared: &Shared| {
        use std::sync::atomic::Ordering::Relaxed;
        shared.sessions_open.load(Relaxed) > 0 || shared.federation_running.load(Relaxed)
    };
    while busy(&shard.shared) {
        glommio::timer::sleep(limits::SHUTDOWN_POLL).await;
    }
    drop(acceptor);
    shard.storage.stop().await;
    // Reported from here rather than by the executor's end: glommio's teardown can
    // wait on an accept still queued in the kernel.
    let _ = finished.send(writer);
}

/// Applies writer completions, in batches.
async fn completions(shard: Rc<Shard>, done: flume::Receiver<Completion>) {
    let apply = |completion| {
        shard.storage.completed();
        owner::on_completion(&shard, completion);
    };
    while let Ok(completion) = done.recv_async().await {
        apply(completion);
        for completion in done.try_iter().take(limits::MESH_BATCH_MAX) {
            apply(completion);
        }
        glommio::yield_if_needed().await;
    }
}

/// Handles cross-shard messages for this shard.
async fn inbox_loop(shard: Rc<Shard>, inbox: flume::Receiver<MeshMessage>) {
    while let Ok(message) = inbox.recv_async().await {
        dispatch::handle(&shard, message);
        for message in inbox.try_iter().take(limits::MESH_BATCH_MAX) {
            dispatch::handle(&shard, message);
        }
        glommio::yield_if_needed().await;
    }
}

/// Expiry cleanup every `RELAY_CLEANUP_INTERVAL` (§10.6), first run at startup.
async fn cleanup_loop(shard: Rc<Shard>) {
    let interval = Duration::from_secs(shard.config.cleanup_interval_secs);
    loop {
        owner::expire(&shard);
        glommio::timer::sleep(interval).await;
    }
}
