//! The acceptor (PROTOCOL.md §11.4 items 1-3) for a `/federation` connection a
//! shard upgraded and handed over, or one the mTLS listener upgraded (§15.3): it
//! reads the initiator's PeerHandshake, refuses or accepts it with a
//! PeerHandshakeAck, registers the inbound link and runs it. Over mTLS the relay id
//! claimed must be one the peer's verified certificate names.
//!
//! Invariant: the bytes read past the upgrade (`remainder`) are the start of the
//! link's stream; they are checked for framing like the rest.

use std::rc::Rc;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::Role;

use crate::mesh::InboundLink;
use crate::process::{ConnectionSlot, unix_now};
use crate::transport::{Transport, x509};

use super::super::checked::Checked;
use super::super::messages::{self, FedMessage};
use super::super::node::{LinkOut, Node, within};
use super::super::registry::LinkId;
use super::established;
use super::receive::LinkSide;
use super::wire::{close, close_broken, next_data, send, socket_config, violation_close};

type Socket = WebSocketStream<Checked<Transport>>;

/// The acceptor (§11.4 items 1-3) for a connection a shard upgraded.
pub async fn accept(node: Rc<Node>, inbound: InboundLink) {
    let InboundLink {
        transport,
        remainder,
        slot,
    } = inbound;
    let transport = Transport::from_parts(transport);
    serve(node, transport, remainder, slot, None).await;
}

/// The acceptor for a connection the mTLS listener upgraded (§15.3); `identity`
/// is the peer's verified certificate (DER).
pub async fn accept_mtls(
    node: Rc<Node>,
    transport: Transport,
    remainder: Vec<u8>,
    slot: ConnectionSlot,
    identity: Vec<u8>,
) {
    serve(node, transport, remainder, slot, Some(identity)).await;
}

async fn serve(
    node: Rc<Node>,
    transport: Transport,
    remainder: Vec<u8>,
    slot: ConnectionSlot,
    identity: Option<Vec<u8>>,
) {
    let Some(mut ws) = adopt(&node, transport, remainder).await else {
        return;
    };
    let Some(relay_id) = hello(&node, &mut ws, identity.as_deref()).await else {
        return;
    };
    if node.stopping.get() {
        close(&mut ws, 1001, "server shutting down").await;
        return;
    }
    let Some((link, out)) = attach(&node, &mut ws, &relay_id).await else {
        return;
    };
    node.publish_peers();
    if !send(&mut ws, handshake_ack(&node, true)).await {
        node.close_link(link);
        return;
    }
    tracing::info!(relay_id = %relay_id, "inbound federation link up");
    established::run(&node, ws, link, &relay_id, LinkSide::Inbound, out).await;
    tracing::info!(relay_id = %relay_id, "inbound federation link down");
    drop(slot);
}

/// Takes over the socket, with the bytes already read after the upgrade; `None`
/// (closed with 1002) if those break the framing.
async fn adopt(node: &Node, transport: Transport, remainder: Vec<u8>) -> Option<Socket> {
    let mut stream = Checked::frames(transport);
    let early_ok = stream.check_early(&remainder);
    let config = Some(socket_config(node));
    let mut ws = if remainder.is_empty() {
        WebSocketStream::from_raw_socket(stream, Role::Server, config).await
    } else {
        WebSocketStream::from_partially_read(stream, remainder, Role::Server, config).await
    };
    if !early_ok {
        node.metrics().connection_errors_total.inc();
        close_broken(&mut ws, 1002, "protocol error").await;
        return None;
    }
    Some(ws)
}

/// Reads the initiator's PeerHandshake: its relay_id if it may link, otherwise
/// `None`, the connection closed (a refusal answered first, §11.4 item 3). Over
/// mTLS, `identity` is the peer's certificate, which must name the relay id.
async fn hello(node: &Node, ws: &mut Socket, identity: Option<&[u8]>) -> Option<String> {
    let first = within(node.peer_timeout(), next_data(ws)).await.flatten();
    let hello = match first {
        Some(Ok(Message::Binary(bytes))) => messages::decode(&bytes).ok(),
        Some(Err(error)) => {
            node.metrics().connection_errors_total.inc();
            let (code, reason) = violation_close(&error).unwrap_or((1008, "handshake required"));
            close_broken(ws, code, reason).await;
            return None;
        }
        _ => None,
    };
    let Some(FedMessage::PeerHandshake {
        relay_id, version, ..
    }) = hello
    else {
        node.metrics().connection_errors_total.inc();
        close(ws, 1008, "handshake required").await;
        return None;
    };
    // Over mTLS the peer is known by its certificate's spelling of the name: one
    // certificate, one peer (§11.3 replacement holds whatever case it claims in).
    let bound = identity.map(|cert| x509::bound_relay_id(cert, &relay_id));
    let mismatch = matches!(bound, Some(None));
    let refused = refusal(node, &relay_id, version).or(mismatch.then_some("identity mismatch"));
    if mismatch {
        tracing::warn!(
            relay_id = %relay_id,
            "federation peer's certificate does not name the relay id it claims"
        );
    }
    if let Some(reason) = refused {
        node.metrics().connection_errors_total.inc();
        let _ = send(ws, handshake_ack(node, false)).await;
        close(ws, 1008, reason).await;
        return None;
    }
    Some(bound.flatten().unwrap_or(relay_id))
}

/// Why a PeerHandshake is refused, if it is.
fn refusal(node: &Node, relay_id: &str, version: u8) -> Option<&'static str> {
    if version != 1 {
        Some("unsupported version")
    } else if relay_id.is_empty() {
        Some("handshake required")
    } else if relay_id == node.relay_id {
        Some("self link")
    } else {
        None
    }
}

/// Registers the link as the peer's inbound one, replacing (closing) an older
/// one; `None`, refused and closed, when the registry is full.
async fn attach(
    node: &Node,
    ws: &mut Socket,
    relay_id: &str,
) -> Option<(LinkId, flume::Receiver<LinkOut>)> {
    let (link, out) = node.open_link(relay_id);
    let replaced = node.registry.borrow_mut().attach_inbound(relay_id, link);
    // Its PeerHandshake was its last message (§15.2 last_seen_secs).
    node.registry.borrow_mut().seen(relay_id, unix_now());
    match replaced {
        Ok(Some(old)) => {
            node.send_soon(old, LinkOut::Close(1000, "replaced"));
        }
        Ok(None) => {}
        Err(_) => {
            node.close_link(link);
            let _ = send(ws, handshake_ack(node, false)).await;
            close(ws, 1000, "too many peers").await;
            return None;
        }
    }
    Some((link, out))
}

/// Our PeerHandshakeAck; a refusal reports no capacity.
fn handshake_ack(node: &Node, accepted: bool) -> Vec<u8> {
    let (used, max) = if accepted {
        (node.used_bytes(), node.config.max_storage_bytes)
    } else {
        (0, 0)
    };
    let ack = FedMessage::PeerHandshakeAck {
        relay_id: node.relay_id.clone(),
        version: 1,
        accepted,
        capacity_used_bytes: used,
        capacity_max_bytes: max,
    };
    messages::encode(&ack, unix_now())
}
