//! Federation links (PROTOCOL.md §11.1, §11.3-§11.6): the initiator with its
//! reconnect backoff, the acceptor's handshake, and the one loop both run once
//! established: keepalive pings, the idle timeout, capacity reports, drain
//! messages, and offers (acceptor) or their acks (initiator), in order.
//!
//! The link code is generic over the byte stream: plain TCP for the acceptor and
//! `ws://` peers, TLS over TCP for `wss://` peers (opened in [`super::dial`]).
//!
//! Links never carry `Error` messages: anything malformed is ignored and counted.
//! Logs name relay ids and peer URLs, never routing ids or data (§11.8).

use std::os::fd::FromRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::error::ProtocolError;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_lite::{AsyncRead, AsyncWrite, StreamExt};
use glommio::net::TcpStream;

use crate::limits::{
    FEDERATION_BACKOFF_JITTER, FEDERATION_BACKOFF_MAX, FEDERATION_BACKOFF_MIN,
    FEDERATION_READ_BUFFER_BYTES, FEDERATION_SEND_TIMEOUT, FEDERATION_STOP_POLL,
    FEDERATION_WRITE_BUFFER_FACTOR,
};
use crate::mesh::{AcceptOffload, InboundLink, MeshMessage};
use crate::process::unix_now;
use crate::protocol::Id64;

use super::checked::{self, Checked};
use super::dial::{self, DialError, PeerAddr};
use super::messages::{self, FedMessage};
use super::node::{AckOutcome, LinkOut, Node, within};
use super::registry::{Capacity, LinkId, Refusal};

/// Which side dialled (§11.3): offers travel only on outbound links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkSide {
    Outbound,
    Inbound,
}

fn socket_config(node: &Node) -> WebSocketConfig {
    let limit = node.message_size_limit();
    WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
        .read_buffer_size(FEDERATION_READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(limit.saturating_mul(FEDERATION_WRITE_BUFFER_FACTOR))
}

/// Sleeps `total`, returning early (false) once shutdown has begun.
async fn sleep_unless_stopping(node: &Node, total: Duration) -> bool {
    let end = Instant::now() + total;
    while Instant::now() < end {
        if node.stopping.get() {
            return false;
        }
        glommio::timer::sleep(FEDERATION_STOP_POLL.min(end - Instant::now())).await;
    }
    !node.stopping.get()
}

/// ±20 % jitter (§11.5).
fn jittered(base: Duration) -> Duration {
    let spread = base.as_secs_f64() * FEDERATION_BACKOFF_JITTER;
    let offset = (fastrand_unit() * 2.0 - 1.0) * spread;
    Duration::from_secs_f64((base.as_secs_f64() + offset).max(0.0))
}

/// A uniform number in [0, 1) from a random UUID (no extra dependency).
fn fastrand_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u64_pair().0 >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// Sends our Close, bounded like any write to the peer.
async fn send_close<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    code: u16,
    reason: &'static str,
) {
    let frame = CloseFrame {
        code: code.into(),
        reason: reason.into(),
    };
    let _ = within(FEDERATION_SEND_TIMEOUT, ws.close(Some(frame))).await;
}

async fn close<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    code: u16,
    reason: &'static str,
) {
    send_close(ws, code, reason).await;
    // Wait briefly for the peer's Close (§2.7).
    read_to_end(ws).await;
}

/// Our Close after a read error that is the peer's fault: the library has ended its
/// stream, so the peer's Close is looked for on the raw stream (§2.7), up to the
/// close wait.
async fn close_broken<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<Checked<S>>,
    code: u16,
    reason: &'static str,
) {
    send_close(ws, code, reason).await;
    let _ = within(crate::limits::CLOSE_WAIT, ws.get_mut().wait_for_close()).await;
}

/// Reads until the peer ends the connection, up to the close wait (§2.7); the
/// library answers a Close received meanwhile.
async fn read_to_end<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) {
    let _ = within(crate::limits::CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Writes one message; false if the link failed or the peer stopped reading.
async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    frame: Vec<u8>,
) -> bool {
    send_message(ws, Message::Binary(frame.into())).await
}

async fn send_message<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    message: Message,
) -> bool {
    matches!(
        within(FEDERATION_SEND_TIMEOUT, ws.send(message)).await,
        Some(Ok(()))
    )
}

/// The next data message, skipping control frames. `None` at the end or on error.
async fn next_data<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> Option<Result<Message, WsError>> {
    loop {
        match ws.next().await? {
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            other => return Some(other),
        }
    }
}

/// The close for a read error that is the peer's fault (§11.1): 1009 for a frame
/// or message over the limit, 1002 for any other RFC 6455 violation; `None` when
/// the connection itself failed.
fn violation_close(error: &WsError) -> Option<(u16, &'static str)> {
    match error {
        WsError::Capacity(_) => Some((1009, "message too big")),
        // The peer closed TCP without a Close: the link is gone, nothing to send.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        // Invalid UTF-8 in a text frame breaks RFC 6455 too; §11.1 has no 1007.
        WsError::Protocol(_) | WsError::Utf8(_) => Some((1002, "protocol error")),
        error if checked::is_length_violation(error) => Some((1002, "protocol error")),
        _ => None,
    }
}

/// How an outbound attempt ended.
enum Attempt {
    /// A link ran and ended (backoff resets).
    Linked,
    Failed,
    /// The peer is this relay: wait the maximum backoff (§11.3).
    SelfLink,
}

/// One link task per configured peer (§11.5): connect, handshake, run, reconnect
/// with jittered exponential backoff, until shutdown.
pub async fn initiate(node: Rc<Node>, url: String) {
    let mut backoff = FEDERATION_BACKOFF_MIN;
    while !node.stopping.get() {
        let wait = match attempt(&node, &url).await {
            Attempt::Linked => {
                backoff = FEDERATION_BACKOFF_MIN;
                FEDERATION_BACKOFF_MIN
            }
            Attempt::Failed => {
                let wait = backoff;
                backoff = (backoff * 2).min(FEDERATION_BACKOFF_MAX);
                wait
            }
            Attempt::SelfLink => FEDERATION_BACKOFF_MAX,
        };
        if !sleep_unless_stopping(&node, jittered(wait)).await {
            return;
        }
    }
}

/// One outbound attempt (§11.5): `RELAY_FEDERATION_PEER_TIMEOUT` covers TCP, TLS
/// (`wss://`) and the upgrade; then the handshake and, if accepted, the link.
async fn attempt(node: &Rc<Node>, url: &str) -> Attempt {
    let Some(peer) = PeerAddr::parse(url) else {
        tracing::debug!(peer = %url, "federation peer URL has no usable host and port");
        return Attempt::Failed;
    };
    let timeout = node.peer_timeout();
    let target = format!("{url}/federation");
    let config = socket_config(node);
    if peer.tls {
        // Loaded at start whenever a wss:// peer is configured.
        let Some(tls) = node.tls.as_ref() else {
            return Attempt::Failed;
        };
        match within(timeout, dial::open_tls(&peer, tls, &target, config)).await {
            Some(Ok(ws)) => handshake(node, url, ws).await,
            failed => dial_failed(url, failed.and_then(Result::err)),
        }
    } else {
        match within(timeout, dial::open_plain(&peer, &target, config)).await {
            Some(Ok(ws)) => handshake(node, url, ws).await,
            failed => dial_failed(url, failed.and_then(Result::err)),
        }
    }
}

/// Logs why a link could not be opened (`None`: the timeout ran out). A TLS
/// failure (untrusted certificate, name mismatch) is logged at info: it will not
/// go away by retrying, unlike a peer that is down.
fn dial_failed(url: &str, error: Option<DialError>) -> Attempt {
    match error {
        Some(error @ DialError::Tls(_)) => {
            tracing::info!(peer = %url, %error, "federation connect failed");
        }
        Some(error) => tracing::debug!(peer = %url, %error, "federation connect failed"),
        None => tracing::debug!(peer = %url, "federation connect timed out"),
    }
    Attempt::Failed
}

/// The initiator's handshake on an opened link, then the link until it ends.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    node: &Rc<Node>,
    url: &str,
    mut ws: WebSocketStream<Checked<S>>,
) -> Attempt {
    let timeout = node.peer_timeout();
    let hello = FedMessage::PeerHandshake {
        relay_id: node.relay_id.clone(),
        version: 1,
        listen_addr: node.config.listen_addr.to_string(),
    };
    if !send(&mut ws, messages::encode(&hello, unix_now())).await {
        return Attempt::Failed;
    }
    let answer = within(timeout, next_data(&mut ws)).await.flatten();
    let ack = match answer {
        Some(Ok(Message::Binary(bytes))) => messages::decode(&bytes).ok(),
        Some(Err(error)) => {
            if let Some((code, reason)) = violation_close(&error) {
                tracing::info!(peer = %url, "federation peer broke WebSocket framing");
                close_broken(&mut ws, code, reason).await;
                return Attempt::Failed;
            }
            None
        }
        _ => None,
    };
    let (relay_id, capacity) = match ack {
        Some(FedMessage::PeerHandshakeAck { relay_id, .. }) if relay_id == node.relay_id => {
            tracing::warn!(peer = %url, "federation peer is this relay (self link)");
            close(&mut ws, 1008, "self link").await;
            return Attempt::SelfLink;
        }
        Some(FedMessage::PeerHandshakeAck {
            relay_id,
            version: 1,
            accepted: true,
            capacity_used_bytes,
            capacity_max_bytes,
        }) if !relay_id.is_empty() => (
            relay_id,
            Capacity {
                used: capacity_used_bytes,
                max: capacity_max_bytes,
                blob_count: 0,
            },
        ),
        _ => {
            tracing::info!(peer = %url, "federation handshake refused or invalid");
            close(&mut ws, 1008, "handshake required").await;
            return Attempt::Failed;
        }
    };
    if node.stopping.get() {
        // Shutdown began during the handshake: this link is not opened (§14.1).
        close(&mut ws, 1001, "server shutting down").await;
        return Attempt::Linked;
    }
    let (link, out) = node.open_link(&relay_id);
    let attached = node
        .registry
        .borrow_mut()
        .attach_outbound(&relay_id, url, link, capacity);
    if let Err(refusal) = attached {
        node.close_link(link);
        let reason = match refusal {
            Refusal::DuplicateLink => "duplicate link",
            Refusal::TooManyPeers => "too many peers",
        };
        tracing::info!(peer = %url, relay_id = %relay_id, reason, "outbound link closed");
        close(&mut ws, 1000, reason).await;
        return Attempt::Failed;
    }
    node.publish_peers();
    tracing::info!(peer = %url, relay_id = %relay_id, "outbound federation link up");
    // §11.5: a CapacityReport at once.
    if !send(&mut ws, node.capacity_report()).await {
        node.close_link(link);
        return Attempt::Linked;
    }
    run(node, ws, link, &relay_id, LinkSide::Outbound, out).await;
    tracing::info!(peer = %url, relay_id = %relay_id, "outbound federation link down");
    Attempt::Linked
}

/// The acceptor (§11.4 items 1-3) for a connection a shard upgraded.
pub async fn accept(node: Rc<Node>, inbound: InboundLink) {
    let InboundLink {
        fd,
        remainder,
        slot,
    } = inbound;
    // SAFETY: the accepting shard duplicated this fd and gave up all use of it when
    // it sent it here; this task now owns it.
    let mut stream = Checked::frames(unsafe { TcpStream::from_raw_fd(fd) });
    let early_ok = stream.check_early(&remainder);
    let config = Some(socket_config(&node));
    let mut ws = if remainder.is_empty() {
        WebSocketStream::from_raw_socket(stream, Role::Server, config).await
    } else {
        WebSocketStream::from_partially_read(stream, remainder, Role::Server, config).await
    };
    if !early_ok {
        node.metrics().connection_errors_total.inc();
        close_broken(&mut ws, 1002, "protocol error").await;
        return;
    }
    let first = within(node.peer_timeout(), next_data(&mut ws))
        .await
        .flatten();
    let hello = match first {
        Some(Ok(Message::Binary(bytes))) => messages::decode(&bytes).ok(),
        Some(Err(error)) => {
            node.metrics().connection_errors_total.inc();
            let (code, reason) = violation_close(&error).unwrap_or((1008, "handshake required"));
            close_broken(&mut ws, code, reason).await;
            return;
        }
        _ => None,
    };
    let Some(FedMessage::PeerHandshake {
        relay_id, version, ..
    }) = hello
    else {
        node.metrics().connection_errors_total.inc();
        close(&mut ws, 1008, "handshake required").await;
        return;
    };
    let refusal = if version != 1 {
        Some("unsupported version")
    } else if relay_id.is_empty() {
        Some("handshake required")
    } else if relay_id == node.relay_id {
        Some("self link")
    } else {
        None
    };
    let refuse = |node: &Node| {
        messages::encode(
            &FedMessage::PeerHandshakeAck {
                relay_id: node.relay_id.clone(),
                version: 1,
                accepted: false,
                capacity_used_bytes: 0,
                capacity_max_bytes: 0,
            },
            unix_now(),
        )
    };
    if let Some(reason) = refusal {
        node.metrics().connection_errors_total.inc();
        let _ = send(&mut ws, refuse(&node)).await;
        close(&mut ws, 1008, reason).await;
        return;
    }
    if node.stopping.get() {
        close(&mut ws, 1001, "server shutting down").await;
        return;
    }
    let (link, out) = node.open_link(&relay_id);
    let replaced = node.registry.borrow_mut().attach_inbound(&relay_id, link);
    match replaced {
        Ok(Some(old)) => {
            node.send_soon(old, LinkOut::Close(1000, "replaced"));
        }
        Ok(None) => {}
        Err(_) => {
            node.close_link(link);
            let _ = send(&mut ws, refuse(&node)).await;
            close(&mut ws, 1000, "too many peers").await;
            return;
        }
    }
    node.publish_peers();
    let ack = FedMessage::PeerHandshakeAck {
        relay_id: node.relay_id.clone(),
        version: 1,
        accepted: true,
        capacity_used_bytes: node.used_bytes(),
        capacity_max_bytes: node.config.max_storage_bytes,
    };
    if !send(&mut ws, messages::encode(&ack, unix_now())).await {
        node.close_link(link);
        return;
    }
    tracing::info!(relay_id = %relay_id, "inbound federation link up");
    run(&node, ws, link, &relay_id, LinkSide::Inbound, out).await;
    tracing::info!(relay_id = %relay_id, "inbound federation link down");
    drop(slot);
}

/// How an established link ends.
enum End {
    /// We close it with this code and reason.
    Close(u16, &'static str),
    /// We close it with this code and reason after the peer broke the framing.
    Broken(u16, &'static str),
    /// The peer sent its Close.
    PeerClosed,
    /// The connection failed or vanished.
    Gone,
}

/// What woke the link loop.
enum Event {
    Received(Option<Result<Message, WsError>>),
    Queued(Option<LinkOut>),
    Tick,
}

/// An established link, until it closes (§11.6 keepalive and idle timeout).
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    node: &Rc<Node>,
    mut ws: WebSocketStream<Checked<S>>,
    link: LinkId,
    relay_id: &str,
    role: LinkSide,
    out: flume::Receiver<LinkOut>,
) {
    let timeout = node.peer_timeout();
    let ping_every = Duration::from_secs((node.config.federation_peer_timeout_secs / 2).max(1));
    let mut last_received = Instant::now();
    let mut next_ping = Instant::now() + ping_every;
    let end = 'link: loop {
        let idle_at = last_received + timeout * 2;
        let wake = next_ping.min(idle_at);
        let event = futures_lite::future::or(
            futures_lite::future::or(async { Event::Received(ws.next().await) }, async {
                Event::Queued(out.recv_async().await.ok())
            }),
            async {
                glommio::timer::sleep(wake.saturating_duration_since(Instant::now())).await;
                Event::Tick
            },
        )
        .await;
        match event {
            Event::Received(None) => break End::Gone,
            Event::Received(Some(Err(error))) => match violation_close(&error) {
                Some((code, reason)) => break End::Broken(code, reason),
                None => break End::Gone,
            },
            Event::Received(Some(Ok(message))) => {
                last_received = Instant::now();
                match message {
                    Message::Binary(bytes) => {
                        let replies = handle(node, link, relay_id, role, &bytes).await;
                        for reply in replies {
                            if !send(&mut ws, reply).await {
                                break 'link End::Gone;
                            }
                        }
                    }
                    Message::Text(_) => node.metrics().federation_ignored_total.inc(),
                    Message::Close(_) => break End::PeerClosed,
                    _ => {}
                }
            }
            Event::Queued(Some(LinkOut::Frame(frame))) => {
                if !send(&mut ws, frame).await {
                    break End::Gone;
                }
            }
            Event::Queued(Some(LinkOut::Close(code, reason))) => break End::Close(code, reason),
            Event::Queued(None) => break End::Gone,
            Event::Tick => {
                let now = Instant::now();
                if now >= idle_at {
                    break End::Close(1000, "idle timeout");
                }
                if now >= next_ping {
                    if !send_message(&mut ws, Message::Ping(Vec::new().into())).await {
                        break End::Gone;
                    }
                    next_ping = now + ping_every;
                }
            }
        }
    };
    // The link leaves the registry before the close wait, so nothing more is
    // queued on it; drain counts it until it has closed.
    node.close_link(link);
    node.closing.set(node.closing.get() + 1);
    match end {
        End::Close(code, reason) => close(&mut ws, code, reason).await,
        End::Broken(code, reason) => close_broken(&mut ws, code, reason).await,
        End::PeerClosed => read_to_end(&mut ws).await,
        End::Gone => {}
    }
    node.closing.set(node.closing.get() - 1);
}

/// One data message on an established link; returns the frames to send back.
async fn handle(
    node: &Rc<Node>,
    link: LinkId,
    relay_id: &str,
    role: LinkSide,
    bytes: &[u8],
) -> Vec<Vec<u8>> {
    let message = match messages::decode(bytes) {
        Ok(message) => message,
        Err(_) => {
            node.metrics().federation_ignored_total.inc();
            return Vec::new();
        }
    };
    match (message, role) {
        (
            FedMessage::OffloadBlob {
                blob_id,
                routing_id,
                data,
                created_at_secs,
                integrity_hash,
                hop_count,
            },
            LinkSide::Inbound,
        ) => {
            let offer = Offer {
                source: relay_id,
                blob_id: &blob_id,
                routing_id: &routing_id,
                data,
                created_at_secs,
                integrity_hash: &integrity_hash,
                hop_count,
            };
            let reason = receive_offer(node, offer).await;
            let accepted = reason.is_none();
            let result = if accepted {
                crate::metrics::OffloadReceivedResult::Accepted
            } else {
                crate::metrics::OffloadReceivedResult::Refused
            };
            node.metrics().inc_offload_received(result);
            let ack = FedMessage::OffloadAck {
                blob_id,
                accepted,
                reason: reason.map(str::to_owned),
            };
            vec![messages::encode(&ack, unix_now())]
        }
        (
            FedMessage::OffloadAck {
                blob_id,
                accepted,
                reason,
            },
            LinkSide::Outbound,
        ) => {
            // Only the link the offer went out on may answer it: a late ack from a
            // peer the blob was offered to earlier must not settle a later offer.
            let waiting = {
                let mut pending = node.pending_acks.borrow_mut();
                match pending.get(&blob_id) {
                    Some((on, _)) if *on == link.0 => pending.remove(&blob_id),
                    _ => None,
                }
            };
            if let Some((_, answer)) = waiting {
                let outcome = if accepted {
                    AckOutcome::Accepted
                } else {
                    AckOutcome::Refused(reason.unwrap_or_default())
                };
                let _ = answer.try_send(outcome);
            }
            Vec::new()
        }
        (
            FedMessage::CapacityReport {
                used_bytes,
                max_bytes,
                blob_count,
            },
            _,
        ) => {
            let capacity = Capacity {
                used: used_bytes,
                max: max_bytes,
                blob_count,
            };
            node.registry
                .borrow_mut()
                .report_capacity(relay_id, capacity);
            Vec::new()
        }
        (FedMessage::DrainNotice { .. }, _) => {
            tracing::info!(relay_id = %relay_id, "federation peer is draining");
            node.registry.borrow_mut().mark_draining(relay_id);
            node.publish_peers();
            vec![messages::encode(&FedMessage::DrainAck, unix_now())]
        }
        (FedMessage::DrainAck, _) => {
            if let Some(entry) = node.links.borrow_mut().get_mut(&link.0) {
                entry.drain_acked = true;
            }
            Vec::new()
        }
        // Anything else is ignored (§11.4 item 5, §11.5): handshakes repeated, an
        // OffloadBlob on an outbound link, OffloadRequest.
        _ => Vec::new(),
    }
}

/// An OffloadBlob as received.
struct Offer<'a> {
    source: &'a str,
    blob_id: &'a str,
    routing_id: &'a str,
    data: Vec<u8>,
    created_at_secs: u64,
    integrity_hash: &'a str,
    hop_count: u8,
}

/// The acceptor's checks in the order of §11.4 item 4, then the store. Returns the
/// refusal reason, or `None` once the blob has committed (or was already held).
async fn receive_offer(node: &Node, offer: Offer<'_>) -> Option<&'static str> {
    if offer.hop_count >= 1 {
        return Some("hop_count too high");
    }
    if !messages::integrity_hash(&offer.data).eq_ignore_ascii_case(offer.integrity_hash) {
        return Some("integrity check failed");
    }
    let Some(recipient) = Id64::parse(offer.routing_id) else {
        return Some("invalid routing_id");
    };
    let now = unix_now();
    if offer
        .created_at_secs
        .saturating_add(node.config.blob_ttl_secs)
        <= now
    {
        return Some("expired");
    }
    let key = (offer.source.to_owned(), offer.blob_id.to_owned());
    if node.received.borrow().contains(&key) {
        return None;
    }
    if node
        .shared
        .draining
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Some("draining");
    }
    let limit = node.config.federation_offload_refuse * node.config.max_storage_bytes as f64;
    if (node.used_bytes() + offer.data.len() as u64) as f64 > limit {
        return Some("at capacity");
    }
    let (reply, answer) = flume::bounded(1);
    let owner = crate::protocol::shard_of(&recipient, node.shards.len());
    let message = MeshMessage::AcceptOffload(AcceptOffload {
        recipient,
        data: offer.data,
        created_at_secs: offer.created_at_secs,
        hop_count: offer.hop_count + 1,
        reply,
    });
    if node.shards[owner].send_async(message).await.is_err() {
        return Some("storage unavailable");
    }
    match answer.recv_async().await {
        Ok(true) => {
            node.received.borrow_mut().insert(key);
            None
        }
        _ => Some("storage unavailable"),
    }
}
