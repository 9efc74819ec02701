//! Starting the shards (§1.4, §13.4): one glommio executor per shard, pinned to the
//! CPUs of the process's affinity mask when asked, each with its writer thread,
//! mesh inbox, cleanup timer and its own listener on the shared main port.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::{Config, StorageBackend};
use crate::keyed::device_sync::DeviceSyncIndex;
use crate::keyed::hints::HintIndex;
use crate::keyed::mailbox::Mailboxes;
use crate::limits;
use crate::mesh::{Mesh, MeshMessage, ToFederation};
use crate::process::{Clock, Shared};
use crate::storage::writer::{self, Completion, Job};
use crate::storage::{BlobMeta, DeviceSyncRecord, HintRecord, RecoveryProofRecord, Store};

use super::deadline::Deadlines;
use super::storage_link::{StorageLink, WriterQueue};
use super::{Shard, State, accept, completions, dispatch, features, owner};

/// What each shard starts from: its store and what was read from it.
pub struct ShardInit {
    pub store: Box<dyn Store>,
    pub indices: ShardIndex,
}

/// A shard's indices as read from its store at startup.
pub struct ShardIndex {
    pub blobs: Vec<BlobMeta>,
    pub device_sync: Vec<DeviceSyncRecord>,
    pub proofs: Vec<RecoveryProofRecord>,
    /// Every stored forwarding hint, in key order, expired ones included.
    pub hints: Vec<HintRecord>,
}

impl ShardIndex {
    /// The largest storage key in use (blobs, device-sync messages and hints share
    /// one counter), 0 if none: the shard assigns new keys above it.
    pub fn highest_key(&self) -> u64 {
        self.blobs
            .iter()
            .map(|m| m.key)
            .chain(self.device_sync.iter().map(|r| r.key))
            .chain(self.hints.iter().map(|r| r.key))
            .max()
            .unwrap_or(0)
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

/// What the shards are started with, besides their inits: the process-wide state,
/// the mesh (a sender into every shard, and each shard's inbox), where federation
/// links go, and where each shard reports its end (§14.1).
pub struct ShardsStart {
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    pub senders: Vec<flume::Sender<MeshMessage>>,
    pub inboxes: Vec<flume::Receiver<MeshMessage>>,
    pub federation: Option<flume::Sender<ToFederation>>,
    pub finished: std::sync::mpsc::Sender<Option<WriterThread>>,
}

/// The running shards: their executors and the bound main port.
pub struct Shards {
    pub local_addr: SocketAddr,
    /// Held, not joined: the process ends when the shards report their end.
    pub executors: Vec<glommio::ExecutorJoinHandle<()>>,
}

/// Starts every shard and binds the main port. Shard 0 binds first so that a port
/// of 0 resolves to one real port, which the other shards then share.
pub fn start(start: ShardsStart, inits: Vec<ShardInit>) -> Result<Shards, String> {
    let config = &start.config;
    let cpus = if config.cpu_pin {
        allowed_cpus()
    } else {
        Vec::new()
    };
    let mut address = config.listen_addr;
    let mut executors = Vec::with_capacity(inits.len());
    for (index, (init, inbox)) in inits.into_iter().zip(&start.inboxes).enumerate() {
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
                config: Arc::clone(config),
                shared: Arc::clone(&start.shared),
                senders: start.senders.clone(),
                inbox: inbox.clone(),
                address,
                bound: bound_tx.clone(),
                finished: start.finished.clone(),
                federation: start.federation.clone(),
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
        executors.push(handle);
        match bound_rx.recv() {
            Ok(Ok(bound)) => address = bound,
            Ok(Err(message)) => return Err(message),
            Err(_) => return Err(format!("shard {index} stopped while starting")),
        }
    }
    Ok(Shards {
        local_addr: address,
        executors,
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
    federation: Option<flume::Sender<ToFederation>>,
}

/// The writer thread of a shard: joined after the executor has ended, since the
/// thread stops only once every task holding its queue has been dropped.
pub type WriterThread = std::thread::JoinHandle<()>;

/// A store driven inline (memory) and the channel its completions arrive on.
pub fn inline_storage(store: Box<dyn Store>) -> (StorageLink, flume::Receiver<Completion>) {
    // Completions never outnumber the jobs submitted and not yet answered, so the
    // channel needs no bound of its own (see `run_shard`).
    let (done, completions) = flume::unbounded();
    let link = StorageLink::Inline {
        store: RefCell::new(store),
        done,
    };
    (link, completions)
}

/// The parts of one shard that do not depend on its executor.
pub struct ShardParts {
    pub index: usize,
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    pub senders: Vec<flume::Sender<MeshMessage>>,
    pub storage: StorageLink,
    pub clock: Clock,
    pub federation: Option<flume::Sender<ToFederation>>,
}

/// Builds a shard from its parts and its store's indices, with the mesh handled
/// by `dispatch::handle`. Nothing here needs a running executor, so a test can
/// drive a shard's rules by hand.
pub fn assemble(parts: ShardParts, init: ShardIndex) -> Rc<Shard> {
    let shards = parts.senders.len();
    let highest_key = init.highest_key();
    let state = State::new(
        Mailboxes::rebuild(init.blobs),
        DeviceSyncIndex::rebuild(init.device_sync),
        init.proofs,
        HintIndex::rebuild(init.hints),
        highest_key,
        shards,
    );
    let shard = Rc::new(Shard {
        index: parts.index,
        config: parts.config,
        shared: parts.shared,
        mesh: Rc::new(Mesh::new(parts.senders)),
        storage: parts.storage,
        state: RefCell::new(state),
        clock: parts.clock,
        deadlines: Rc::new(Deadlines::default()),
        shutdown: Default::default(),
        federation: parts.federation,
        dispatch: dispatch::handle,
    });
    shard.publish_blob_count();
    shard
}

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
    let ShardInit { store, indices } = init;
    let (storage, done_rx, writer) = match open_storage(&config, index, store) {
        Ok(opened) => opened,
        Err(message) => {
            let _ = bound.send(Err(message));
            return;
        }
    };
    let parts = ShardParts {
        index,
        config,
        shared,
        senders,
        storage,
        clock: Clock::system(),
        federation,
    };
    let shard = assemble(parts, indices);
    let local = listener.local_addr().unwrap_or(address);
    let _ = bound.send(Ok(local));

    glommio::spawn_local(completion_loop(Rc::clone(&shard), done_rx)).detach();
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

/// The shard's way to its store: inline (memory), or its writer thread (sqlite),
/// which is returned to be joined at the end.
#[allow(clippy::type_complexity)] // The three parts are taken apart at once.
fn open_storage(
    config: &Config,
    index: usize,
    store: Box<dyn Store>,
) -> Result<
    (
        StorageLink,
        flume::Receiver<Completion>,
        Option<WriterThread>,
    ),
    String,
> {
    if config.storage_backend == StorageBackend::Memory {
        let (link, done_rx) = inline_storage(store);
        return Ok((link, done_rx, None));
    }
    // Completions never outnumber the jobs outstanding at the writer (refusable ones
    // bounded by WRITER_QUEUE_DEPTH) plus the unrefusable ones, so this channel
    // needs no bound of its own; a bound could stall the writer thread.
    let (done_tx, done_rx) = flume::unbounded::<Completion>();
    let (jobs_tx, jobs_rx) = flume::bounded::<Job>(limits::WRITER_QUEUE_DEPTH);
    let failed = done_tx.clone();
    let (alive_tx, alive_rx) = flume::bounded::<()>(1);
    let handle = writer::spawn_writer(format!("store-{index}"), store, jobs_rx, done_tx, alive_tx)
        .map_err(|error| format!("cannot start the storage thread of shard {index}: {error}"))?;
    let queue = WriterQueue::new(jobs_tx, failed);
    queue.watch(alive_rx);
    let link = StorageLink::Thread(queue);
    Ok((link, done_rx, Some(handle)))
}

/// Applies one store completion: the writer's count of outstanding jobs, then its
/// handler.
pub fn complete(shard: &Rc<Shard>, completion: Completion) {
    shard.storage.completed();
    completions::handle(shard, completion);
}

/// Applies store completions, in batches.
async fn completion_loop(shard: Rc<Shard>, done: flume::Receiver<Completion>) {
    while let Ok(completion) = done.recv_async().await {
        complete(&shard, completion);
        for completion in done.try_iter().take(limits::MESH_BATCH_MAX) {
            complete(&shard, completion);
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

/// Expiry (§10.6) of everything this shard owns: device-sync messages, hints and
/// proofs, then blobs.
pub fn expire(shard: &Shard) {
    features::expire(shard);
    owner::expire(shard);
}

/// Expiry cleanup every `RELAY_CLEANUP_INTERVAL` (§10.6), first run at startup.
async fn cleanup_loop(shard: Rc<Shard>) {
    let interval = Duration::from_secs(shard.config.cleanup_interval_secs);
    loop {
        expire(&shard);
        glommio::timer::sleep(interval).await;
    }
}
