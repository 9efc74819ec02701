//! The initiator (PROTOCOL.md §11.3, §11.5): one task per configured peer that
//! dials it, sends our PeerHandshake, checks the ack, registers the outbound link
//! and runs it, and reconnects with jittered exponential backoff until shutdown.
//!
//! Logs name relay ids and peer URLs, never routing ids or data (§11.8).

use std::rc::Rc;
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use futures_lite::{AsyncRead, AsyncWrite};

use crate::limits::{
    FEDERATION_BACKOFF_JITTER, FEDERATION_BACKOFF_MAX, FEDERATION_BACKOFF_MIN, FEDERATION_STOP_POLL,
};
use crate::process::unix_now;
use crate::transport::x509;

use super::super::checked::Checked;
use super::super::dial::{self, DialError, PeerAddr};
use super::super::messages::{self, FedMessage};
use super::super::node::{LinkOut, Node, within};
use super::super::registry::{Capacity, LinkId, Refusal};
use super::established;
use super::receive::LinkSide;
use super::wire::{close, close_broken, next_data, send, socket_config, violation_close};

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
        // With mTLS, the certificates in use now (SIGHUP replaces them, §15.3);
        // otherwise the system roots, loaded at start for any wss:// peer.
        let mtls = node.shared.federation_tls.as_ref();
        let tls = match mtls {
            Some(certs) => certs.client_config(),
            None => node.tls.clone(),
        };
        let Some(tls) = tls else {
            return Attempt::Failed;
        };
        match within(timeout, dial::open_tls(&peer, &tls, &target, config)).await {
            Some(Ok((ws, certificate))) => {
                let identity = mtls.is_some().then_some(certificate);
                handshake(node, url, ws, identity).await
            }
            failed => dial_failed(url, failed.and_then(Result::err)),
        }
    } else {
        match within(timeout, dial::open_plain(&peer, &target, config)).await {
            Some(Ok(ws)) => handshake(node, url, ws, None).await,
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
/// Over mTLS, `identity` is the acceptor's certificate, which must name the relay
/// id its PeerHandshakeAck claims (§15.3).
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    node: &Rc<Node>,
    url: &str,
    mut ws: WebSocketStream<Checked<S>>,
    identity: Option<Vec<u8>>,
) -> Attempt {
    let hello = FedMessage::PeerHandshake {
        relay_id: node.relay_id.clone(),
        version: 1,
        listen_addr: node.config.listen_addr.to_string(),
    };
    if !send(&mut ws, messages::encode(&hello, unix_now())).await {
        return Attempt::Failed;
    }
    let (relay_id, capacity) = match accepted(node, url, &mut ws, identity.as_deref()).await {
        Ok(peer) => peer,
        Err(ended) => return ended,
    };
    // Over mTLS the peer is known by its certificate's spelling of the name.
    let relay_id = match identity.map(|cert| x509::bound_relay_id(&cert, &relay_id)) {
        None => relay_id,
        Some(Some(bound)) => bound,
        Some(None) => {
            tracing::warn!(
                peer = %url,
                relay_id = %relay_id,
                "federation peer's certificate does not name the relay id it claims"
            );
            close(&mut ws, 1008, "identity mismatch").await;
            return Attempt::Failed;
        }
    };
    if node.stopping.get() {
        // Shutdown began during the handshake: this link is not opened (§14.1).
        close(&mut ws, 1001, "server shutting down").await;
        return Attempt::Linked;
    }
    let Some((link, out)) = attach(node, url, &mut ws, &relay_id, capacity).await else {
        return Attempt::Failed;
    };
    node.publish_peers();
    tracing::info!(peer = %url, relay_id = %relay_id, "outbound federation link up");
    // §11.5: a CapacityReport at once.
    if !send(&mut ws, node.capacity_report()).await {
        node.close_link(link);
        return Attempt::Linked;
    }
    established::run(node, ws, link, &relay_id, LinkSide::Outbound, out).await;
    tracing::info!(peer = %url, relay_id = %relay_id, "outbound federation link down");
    Attempt::Linked
}

/// Reads the peer's PeerHandshakeAck: its relay_id and capacity if it accepted
/// us, otherwise how the attempt ended, the connection closed. `identity`: the
/// acceptor's certificate, over mTLS.
async fn accepted<S: AsyncRead + AsyncWrite + Unpin>(
    node: &Node,
    url: &str,
    ws: &mut WebSocketStream<Checked<S>>,
    identity: Option<&[u8]>,
) -> Result<(String, Capacity), Attempt> {
    let answer = within(node.peer_timeout(), next_data(ws)).await.flatten();
    let ack = match answer {
        Some(Ok(Message::Binary(bytes))) => messages::decode(&bytes).ok(),
        Some(Err(error)) => {
            if let Some((code, reason)) = violation_close(&error) {
                tracing::info!(peer = %url, "federation peer broke WebSocket framing");
                close_broken(ws, code, reason).await;
                return Err(Attempt::Failed);
            }
            None
        }
        _ => None,
    };
    match ack {
        // Over mTLS only a certificate that names our id makes it a self link; any
        // other claim of it is an identity mismatch, checked by the caller.
        Some(FedMessage::PeerHandshakeAck { relay_id, .. })
            if relay_id == node.relay_id
                && identity.is_none_or(|cert| x509::names_relay(cert, &relay_id)) =>
        {
            tracing::warn!(peer = %url, "federation peer is this relay (self link)");
            close(ws, 1008, "self link").await;
            Err(Attempt::SelfLink)
        }
        Some(FedMessage::PeerHandshakeAck {
            relay_id,
            version: 1,
            accepted: true,
            capacity_used_bytes,
            capacity_max_bytes,
        }) if !relay_id.is_empty() => Ok((
            relay_id,
            Capacity {
                used: capacity_used_bytes,
                max: capacity_max_bytes,
                blob_count: 0,
            },
        )),
        _ => {
            tracing::info!(peer = %url, "federation handshake refused or invalid");
            close(ws, 1008, "handshake required").await;
            Err(Attempt::Failed)
        }
    }
}

/// Registers the link as the peer's outbound one; if the registry refuses it, the
/// connection is closed with the reason (1000) and `None` returned.
async fn attach<S: AsyncRead + AsyncWrite + Unpin>(
    node: &Node,
    url: &str,
    ws: &mut WebSocketStream<Checked<S>>,
    relay_id: &str,
    capacity: Capacity,
) -> Option<(LinkId, flume::Receiver<LinkOut>)> {
    let (link, out) = node.open_link(relay_id);
    let attached = node
        .registry
        .borrow_mut()
        .attach_outbound(relay_id, url, link, capacity);
    let Err(refusal) = attached else {
        // Its PeerHandshakeAck was its last message (§15.2 last_seen_secs).
        node.registry.borrow_mut().seen(relay_id, unix_now());
        // A configured peer is not one known only from gossip (§15.2), even if
        // it was advertised before this link came up.
        node.discovered.borrow_mut().forget(relay_id);
        node.publish_discovered();
        return Some((link, out));
    };
    node.close_link(link);
    let reason = match refusal {
        Refusal::DuplicateLink => "duplicate link",
        Refusal::TooManyPeers => "too many peers",
    };
    tracing::info!(peer = %url, relay_id = %relay_id, reason, "outbound link closed");
    close(ws, 1000, reason).await;
    None
}
