//! The federation executor (PROTOCOL.md §11): one glommio executor, apart from the
//! shards, started and stopped by `relay.rs`. It runs the link tasks (dialed and
//! accepted: shards hand it the connections they upgraded), the capacity reports
//! and the offload manager, and on shutdown drains its links (§14.1).

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use std::net::SocketAddr;

use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::Config;
use crate::limits;
use crate::mesh::{MeshMessage, ToFederation};
use crate::process::{Shared, unix_now};

use super::dial;
use super::gossip;
use super::link;
use super::messages::{self, FedMessage};
use super::mtls;
use super::node::{LinkOut, Node};
use super::offload;
use super::registry::LinkId;

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
    // The trust store is read here, on the main thread, not on the executor. With
    // mTLS, peers are verified against its CA instead (§15.3).
    let mtls = shared.federation_tls.is_some();
    let tls = (!mtls
        && config
            .federation_peers
            .iter()
            .any(|url| url.starts_with("wss://")))
    .then(dial::client_config);
    let mtls_addr = config.federation_mtls_addr().filter(|_| mtls);
    shared.federation_running.store(true, Ordering::Relaxed);
    let running = Arc::clone(&shared);
    let shared_running = Arc::clone(&shared);
    // The peer gauges hold the configured peers (as disconnected) before the relay
    // says it is listening, not from whenever the executor gets to run.
    // So does the mTLS listener's bind (its address, or why it failed).
    let (published, first_publish) =
        std::sync::mpsc::channel::<Result<Option<SocketAddr>, String>>();
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("federation")
        .io_memory(limits::EXECUTOR_IO_MEMORY_BYTES)
        .spawn(move || async move {
            let node = Rc::new(Node::new(config, shared, relay_id, shards, tls));
            let bound = match mtls_addr.map(bind_exclusive).transpose() {
                Ok(listener) => listener,
                Err(error) => {
                    let addr = mtls_addr.map(|a| a.to_string()).unwrap_or_default();
                    let why = format!("cannot bind RELAY_FEDERATION_MTLS_ADDR={addr}: {error}");
                    let _ = published.send(Err(why));
                    running.federation_running.store(false, Ordering::Relaxed);
                    return;
                }
            };
            let local = bound.as_ref().and_then(|l| l.local_addr().ok());
            if let Some(listener) = bound {
                glommio::spawn_local(mtls::listen(Rc::clone(&node), listener)).detach();
            }
            node.publish_peers();
            let _ = published.send(Ok(local));
            run(node, inbox).await;
            running.federation_running.store(false, Ordering::Relaxed);
            let _ = finished.send(None);
        })
        .map_err(|error| format!("could not start the federation executor: {error}"))?;
    // An executor that fails before publishing drops the sender: no wait for ever,
    // and the start fails.
    match first_publish.recv() {
        Ok(Ok(local)) => {
            if let Some(local) = local {
                tracing::info!("federation mTLS on {local}");
            }
        }
        Ok(Err(why)) => return Err(why),
        Err(_) => {
            shared_running
                .federation_running
                .store(false, Ordering::Relaxed);
            return Err("the federation executor stopped while starting".to_owned());
        }
    }
    Ok(Federation {
        commands,
        _executor: executor,
    })
}

/// Binds the mTLS listener without SO_REUSEPORT (which glommio's `bind` sets for
/// the shards' shared main port): an address another socket holds, this relay's
/// main listener included, fails the bind instead of splitting its connections.
fn bind_exclusive(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let listener = std::net::TcpListener::bind(addr)?;
    // SAFETY: the fd is a bound, listening TCP socket that nothing else owns.
    Ok(unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) })
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
                if node.config.gossip_enabled {
                    glommio::spawn_local(gossip::run(Rc::clone(&node))).detach();
                }
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
