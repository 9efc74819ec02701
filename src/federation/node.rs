//! The federation executor (PROTOCOL.md §11): one glommio executor, apart from the
//! shards, that owns the peer registry, every federation link, the capacity
//! reports and the offload manager. It reaches the shards through their mesh
//! queues (waiting for room is fine here: shards never wait on it) and receives
//! inbound links from whichever shard accepted them.
//!
//! Invariant: nothing here deletes a blob; the owner shard does, in the
//! transaction that writes the hint, and only after the peer's `OffloadAck`
//! accepted it (§11.7 step 4).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_rustls::rustls::ClientConfig;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::Config;
use crate::limits;
use crate::mesh::{MeshMessage, ToFederation};
use crate::metrics::{PeerState, ShardMetrics};
use crate::process::{Shared, unix_now};

use super::dial;
use super::link::{self, LinkOut};
use super::messages::{self, FedMessage};
use super::offload;
use super::registry::{BoundedSet, LinkId, Registry};

/// `fut`, or `None` after `limit`.
pub(crate) async fn within<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}

/// One open link as the executor knows it.
pub struct LinkEntry {
    pub relay_id: String,
    pub out: flume::Sender<LinkOut>,
    /// Our DrainNotice has been answered (or the link never needs one).
    pub drain_acked: bool,
}

/// The state of the federation executor (single-threaded).
pub struct Node {
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    pub relay_id: String,
    pub shards: Vec<flume::Sender<MeshMessage>>,
    pub registry: RefCell<Registry>,
    pub links: RefCell<HashMap<u64, LinkEntry>>,
    next_link: Cell<u64>,
    /// Offloads waiting for their `OffloadAck`, by our blob id.
    pub pending_acks: RefCell<HashMap<String, (u64, flume::Sender<link::AckOutcome>)>>,
    /// (source relay_id, source blob_id) of offers accepted here.
    pub received: RefCell<BoundedSet<(String, String)>>,
    /// Shutdown has begun: no reconnects, no offloads.
    pub stopping: Cell<bool>,
    /// Accepted offloads whose blob-to-hint commit is still on its shard.
    pub committing: Cell<u64>,
    /// Established links that have left the registry and are closing (our Close,
    /// the wait for the peer's): drain waits for them too, so that the executor
    /// does not end, and drop them, mid-close.
    pub closing: Cell<u64>,
    /// TLS for `wss://` peers (§11.5); loaded once, and only if one is configured.
    pub tls: Option<Arc<ClientConfig>>,
}

impl Node {
    /// Metrics that are not per shard are kept on shard 0's set (merged anyway).
    pub fn metrics(&self) -> &ShardMetrics {
        &self.shared.metrics[0]
    }

    /// Used bytes (§11.2): the data of every stored blob, summed over the shards.
    pub fn used_bytes(&self) -> u64 {
        self.shared
            .metrics
            .iter()
            .map(|m| m.storage_used_bytes.get())
            .sum()
    }

    pub fn capacity_report(&self) -> Vec<u8> {
        messages::encode(
            &FedMessage::CapacityReport {
                used_bytes: self.used_bytes(),
                max_bytes: self.config.max_storage_bytes,
                blob_count: self.shared.blob_count(),
            },
            unix_now(),
        )
    }

    /// The largest federation message (§11.1).
    pub fn message_size_limit(&self) -> usize {
        self.config.max_message_size + limits::FEDERATION_MESSAGE_EXTRA_BYTES + 4
    }

    pub fn peer_timeout(&self) -> Duration {
        Duration::from_secs(self.config.federation_peer_timeout_secs)
    }

    /// A new link id and its outgoing queue.
    pub fn open_link(&self, relay_id: &str) -> (LinkId, flume::Receiver<LinkOut>) {
        let id = self.next_link.get() + 1;
        self.next_link.set(id);
        let (out, receiver) = flume::bounded(limits::FEDERATION_LINK_QUEUE_DEPTH);
        self.links.borrow_mut().insert(
            id,
            LinkEntry {
                relay_id: relay_id.to_owned(),
                out,
                drain_acked: !self.stopping.get(),
            },
        );
        (LinkId(id), receiver)
    }

    /// A link ended: forget it, and fail the offloads that waited on it.
    pub fn close_link(&self, link: LinkId) {
        if let Some(entry) = self.links.borrow_mut().remove(&link.0) {
            self.registry.borrow_mut().detach(&entry.relay_id, link);
        }
        self.pending_acks
            .borrow_mut()
            .retain(|_, (waiting_on, _)| *waiting_on != link.0);
        self.publish_peers();
    }

    /// Queues a frame on a link without waiting; a full queue drops it (capacity
    /// reports are periodic, so the next one replaces it).
    pub fn send_soon(&self, link: LinkId, message: LinkOut) -> bool {
        self.links
            .borrow()
            .get(&link.0)
            .is_some_and(|e| e.out.try_send(message).is_ok())
    }

    pub fn publish_peers(&self) {
        let registry = self.registry.borrow();
        let mut counts = registry.counts();
        // Configured peers never reached yet are known too, as disconnected.
        let reached: std::collections::HashSet<&str> = registry.urls().collect();
        counts.disconnected += self
            .config
            .federation_peers
            .iter()
            .filter(|url| !reached.contains(url.as_str()))
            .count() as u64;
        let global = &self.shared.global_metrics;
        global.set_federation_peers(PeerState::Connected, counts.connected);
        global.set_federation_peers(PeerState::Draining, counts.draining);
        global.set_federation_peers(PeerState::Disconnected, counts.disconnected);
    }
}

/// The running federation executor, as the main thread holds it.
pub struct Federation {
    pub commands: flume::Sender<ToFederation>,
    _executor: glommio::ExecutorJoinHandle<()>,
}

impl Federation {
    /// Called once every shard has bound the main port.
    pub fn begin(&self) {
        let _ = self.commands.send(ToFederation::Start);
    }

    pub fn shutdown(&self) {
        // Blocking is fine: this is the main thread.
        let _ = self.commands.send(ToFederation::Shutdown);
    }
}

/// Starts the federation executor. `finished` gets one report when it has drained.
pub fn start(
    config: Arc<Config>,
    shared: Arc<Shared>,
    relay_id: String,
    shards: Vec<flume::Sender<MeshMessage>>,
    finished: std::sync::mpsc::Sender<Option<std::thread::JoinHandle<()>>>,
) -> Result<Federation, String> {
    let (commands, inbox) = flume::bounded(limits::FEDERATION_COMMAND_QUEUE_DEPTH);
    // The trust store is read here, on the main thread, not on the executor.
    let tls = config
        .federation_peers
        .iter()
        .any(|url| url.starts_with("wss://"))
        .then(dial::client_config);
    shared.federation_running.store(true, Ordering::Relaxed);
    let running = Arc::clone(&shared);
    let shared_running = Arc::clone(&shared);
    // The peer gauges hold the configured peers (as disconnected) before the relay
    // says it is listening, not from whenever the executor gets to run.
    let (published, first_publish) = std::sync::mpsc::channel::<()>();
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("federation")
        .io_memory(limits::EXECUTOR_IO_MEMORY_BYTES)
        .spawn(move || async move {
            let node = Rc::new(Node {
                config,
                shared,
                relay_id,
                shards,
                registry: RefCell::new(Registry::default()),
                links: RefCell::new(HashMap::new()),
                next_link: Cell::new(0),
                pending_acks: RefCell::new(HashMap::new()),
                received: RefCell::new(BoundedSet::new(limits::FEDERATION_RECEIVED_OFFERS_MAX)),
                stopping: Cell::new(false),
                committing: Cell::new(0),
                closing: Cell::new(0),
                tls,
            });
            node.publish_peers();
            let _ = published.send(());
            run(node, inbox).await;
            running.federation_running.store(false, Ordering::Relaxed);
            let _ = finished.send(None);
        })
        .map_err(|error| format!("could not start the federation executor: {error}"))?;
    // An executor that fails before publishing drops the sender: no wait for ever,
    // and the start fails.
    if first_publish.recv().is_err() {
        shared_running
            .federation_running
            .store(false, Ordering::Relaxed);
        return Err("the federation executor stopped while starting".to_owned());
    }
    Ok(Federation {
        commands,
        _executor: executor,
    })
}

async fn run(node: Rc<Node>, inbox: flume::Receiver<ToFederation>) {
    while let Ok(command) = inbox.recv_async().await {
        match command {
            ToFederation::Inbound(inbound) => {
                glommio::spawn_local(link::accept(Rc::clone(&node), inbound)).detach();
            }
            ToFederation::Start => {
                for url in node.config.federation_peers.clone() {
                    glommio::spawn_local(link::initiate(Rc::clone(&node), url)).detach();
                }
                glommio::spawn_local(capacity_reports(Rc::clone(&node))).detach();
                glommio::spawn_local(offload::manage(Rc::clone(&node))).detach();
            }
            ToFederation::Shutdown => break,
        }
    }
    drain(&node).await;
}

/// Every `RELAY_FEDERATION_CAPACITY_INTERVAL`, a CapacityReport on every link (§11.6).
async fn capacity_reports(node: Rc<Node>) {
    let interval = Duration::from_secs(node.config.federation_capacity_interval_secs);
    loop {
        glommio::timer::sleep(interval).await;
        if node.stopping.get() {
            return;
        }
        let report = node.capacity_report();
        let links: Vec<u64> = node.links.borrow().keys().copied().collect();
        for id in links {
            node.send_soon(LinkId(id), LinkOut::Frame(report.clone()));
        }
    }
}

/// Shutdown (§14.1 steps 2 and 4): DrainNotice on every link, then wait for the
/// DrainAcks and outstanding OffloadAcks (or the links' closure), bounded by the
/// peer timeout, then close every link with 1001.
async fn drain(node: &Rc<Node>) {
    node.stopping.set(true);
    let notice = messages::encode(
        &FedMessage::DrainNotice {
            drain_timeout_secs: node.config.federation_drain_timeout_secs,
        },
        unix_now(),
    );
    let links: Vec<u64> = node.links.borrow().keys().copied().collect();
    for id in &links {
        if let Some(entry) = node.links.borrow_mut().get_mut(id) {
            entry.drain_acked = false;
        }
        node.send_soon(LinkId(*id), LinkOut::Frame(notice.clone()));
    }
    let deadline = std::time::Instant::now() + node.peer_timeout();
    while std::time::Instant::now() < deadline {
        let acked = node.links.borrow().values().all(|e| e.drain_acked);
        if acked && node.pending_acks.borrow().is_empty() && node.committing.get() == 0 {
            break;
        }
        glommio::timer::sleep(limits::FEDERATION_STOP_POLL).await;
    }
    // The 1001 goes on every link still registered, again at each look (a full
    // queue refuses it; a link stops reading at the first), and the closes are
    // waited for: our Close written, the peer's received.
    let deadline = std::time::Instant::now() + limits::CLOSE_WAIT;
    loop {
        let links: Vec<u64> = node.links.borrow().keys().copied().collect();
        for id in links {
            node.send_soon(LinkId(id), LinkOut::Close(1001, "server shutting down"));
        }
        let closed = node.links.borrow().is_empty() && node.closing.get() == 0;
        if closed || std::time::Instant::now() >= deadline {
            break;
        }
        glommio::timer::sleep(limits::FEDERATION_STOP_POLL).await;
    }
}
