//! The federation mTLS listener (PROTOCOL.md §15.3), on the federation executor:
//! admission against `RELAY_MAX_CONNECTIONS` (§2.2), then, under the handshake
//! timer, TLS with a client certificate verified against `RELAY_FEDERATION_TLS_CA`
//! (a connection without one fails the handshake), the request head, and the
//! upgrade at `/federation` (anything else `404`); then the §11.4 acceptor, with
//! the peer's certificate to check the relay id it claims against.
//!
//! No PROXY protocol here (§2.9), and no per-address limit (§2.10 is the main
//! port's): peers are few, and each is authenticated before it reads anything.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};

use crate::http::{self, HeadParse, Route};
use crate::limits;
use crate::metrics::Refusal;
use crate::process::ConnectionSlot;
use crate::transport::tls::TlsServer;
use crate::transport::{self, Transport};

use super::link;
use super::node::{Node, within};

/// Accepts mTLS connections for the life of the executor; once shutdown has
/// begun, new connections are closed at once.
pub async fn listen(node: Rc<Node>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "federation mTLS accept failed");
                glommio::timer::sleep(limits::ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        if node.stopping.get() {
            continue;
        }
        let _ = stream.set_nodelay(true);
        let Some(slot) = node.shared.admit(node.config.max_connections) else {
            // Over the connection limit: closed without a TLS handshake.
            node.metrics().inc_refused(Refusal::Global);
            node.metrics().connection_errors_total.inc();
            continue;
        };
        glommio::spawn_local(serve(Rc::clone(&node), stream, slot)).detach();
    }
}

/// An upgraded, authenticated connection: the transport, the bytes read past the
/// request head, and the peer's certificate.
struct Upgraded {
    transport: Transport,
    remainder: Vec<u8>,
    identity: Vec<u8>,
}

async fn serve(node: Rc<Node>, tcp: TcpStream, slot: ConnectionSlot) {
    let timer = Duration::from_secs(node.config.handshake_timeout_secs);
    let Some(upgraded) = within(timer, open(&node, tcp)).await.flatten() else {
        node.metrics().connection_errors_total.inc();
        return;
    };
    node.metrics().connections_total.inc();
    let Upgraded {
        transport,
        remainder,
        identity,
    } = upgraded;
    link::accept_mtls(node, transport, remainder, slot, identity).await;
}

/// TLS with a verified client certificate, the head, and the `101`; `None` once
/// the connection has been answered (a `404` or another refusal) or has failed.
async fn open(node: &Node, tcp: TcpStream) -> Option<Upgraded> {
    let certs = node.shared.federation_tls.as_ref()?;
    let mut tls = TlsServer::new(tcp, certs.config()).ok()?;
    tls.handshake().await.ok()?;
    // The verifier requires a certificate: a completed handshake has one.
    let identity = tls.peer_certificate()?.to_vec();
    let mut stream = Transport::Tls(Box::new(tls));
    let (parsed, buf) = transport::read_head(&mut stream).await?;
    let reply = match parsed {
        HeadParse::Complete { head_len, request } => {
            let draining = node.shared.draining.load(Ordering::Relaxed);
            match http::route_mtls(&request, draining) {
                Route::FederationUpgrade { response } => {
                    stream.send(&response).await.ok()?;
                    return Some(Upgraded {
                        transport: stream,
                        remainder: buf[head_len..].to_vec(),
                        identity,
                    });
                }
                Route::Reply(bytes) => bytes,
                // route_mtls answers nothing else.
                Route::ClientUpgrade { .. } | Route::Health { .. } => http::bad_request(),
            }
        }
        HeadParse::TooLarge => http::head_too_large(),
        HeadParse::Bad | HeadParse::Partial => http::bad_request(),
    };
    let _ = stream.send(&reply).await;
    stream.shutdown().await;
    None
}
