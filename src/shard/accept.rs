//! Accepting on the main port (§2.2-§2.5, §4.2): admission against the connection
//! limit, the HTTP request head, plain replies, the upgrade, the first WebSocket
//! message under the handshake timer, and the hand-off of the session to the shard
//! that owns its routing_id (the transport taken apart: GLOMMIO-NOTES). With TLS
//! built in (§2.8) the TLS handshake comes first, under the same timer.

use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_lite::io::AsyncReadExt;
use glommio::net::{TcpListener, TcpStream};

use crate::config::ProxyProtocol;
use crate::http::{self, HeadParse, HealthFacts, Route, RouteContext};
use crate::limits;
use crate::metrics::Refusal;
use crate::protocol::CloseReason;
use crate::protocol::decode::Handshake;
use crate::wsframe::{self, MessageReader, Step};

use crate::mesh::{HandedSession, InboundLink, MeshMessage, ToFederation};
use crate::noise::Channel;
use crate::process::ConnectionSlot;
use crate::transport::proxy_header::Versions;
use crate::transport::tls::TlsServer;
use crate::transport::{self, Transport};

use super::Shard;
use super::deadline::Deadline;
use super::first_message::{Outcome, first_message};
use super::session::socket;

/// Accepts connections for the life of the shard.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    let refusals = Rc::new(Cell::new(0u64));
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(shard = shard.index, %error, "accept failed");
                glommio::timer::sleep(limits::ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let deadline = shard
            .deadlines
            .at(Instant::now() + Duration::from_secs(shard.config.handshake_timeout_secs));
        let shard = Rc::clone(&shard);
        if let Some(slot) = shard.shared.admit(shard.config.max_connections) {
            let refusals = Rc::clone(&refusals);
            glommio::spawn_local(serve(shard, stream, slot, deadline, refusals)).detach();
        } else {
            shard.metrics().inc_refused(Refusal::Global);
            let reply = http::overloaded();
            refuse(shard, stream, deadline, &refusals, reply, HeaderRead::No);
        }
    }
}

/// Whether a refused connection's PROXY header (§2.9), if it must send one, has
/// been read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HeaderRead {
    Yes,
    No,
}

/// Answers a connection refused at admission (§2.2 step 2, §2.10) with `reply`
/// after reading its head (behind its PROXY header, inside TLS if built in), or
/// closes it at once while `REFUSALS_IN_PROGRESS_MAX` refusals are under way. It
/// holds no slot. The handshake timer bounds the reply: a peer that reads nothing
/// cannot keep a refusal in progress.
fn refuse(
    shard: Rc<Shard>,
    mut tcp: TcpStream,
    deadline: Deadline,
    refusals: &Rc<Cell<u64>>,
    reply: Vec<u8>,
    header: HeaderRead,
) {
    shard.metrics().connection_errors_total.inc();
    if refusals.get() >= limits::REFUSALS_IN_PROGRESS_MAX {
        return;
    }
    refusals.set(refusals.get() + 1);
    let refusals = Rc::clone(refusals);
    glommio::spawn_local(async move {
        let answer = async {
            if header == HeaderRead::No && shard.config.proxy_protocol != ProxyProtocol::Off {
                client_address(&shard, &mut tcp).await?;
            }
            let mut stream = open(&shard, tcp).await?;
            let _ = transport::read_head(&mut stream).await;
            let _ = stream.send(&reply).await;
            stream.shutdown().await;
            Some(())
        };
        futures_lite::future::or(answer, async {
            deadline.await;
            None
        })
        .await;
        refusals.set(refusals.get() - 1);
    })
    .detach();
}

/// The connection's client address (§2.9): the source that a trusted load
/// balancer's PROXY header names, else the TCP peer's. `None`: a trusted source
/// sent something other than a header of the configured version, or went away.
async fn client_address(shard: &Shard, tcp: &mut TcpStream) -> Option<IpAddr> {
    let peer = tcp.peer_addr().ok()?.ip().to_canonical();
    if !shard.config.proxy_trusts(peer) {
        return Some(peer);
    }
    let versions = match shard.config.proxy_protocol {
        ProxyProtocol::V1 => Versions::V1,
        ProxyProtocol::V2 => Versions::V2,
        // proxy_trusts is false when the protocol is off.
        ProxyProtocol::Any | ProxyProtocol::Off => Versions::Any,
    };
    let source = transport::read_proxy_header(tcp, versions).await.ok()?;
    Some(source.map_or(peer, |source| source.to_canonical()))
}

/// The connection's transport: the TCP stream itself, or a TLS session whose
/// handshake has completed (§2.8); `None` if that handshake failed.
async fn open(shard: &Shard, tcp: TcpStream) -> Option<Transport> {
    let Some(certs) = &shard.shared.main_tls else {
        return Some(Transport::Plain(tcp));
    };
    let mut tls = TlsServer::new(tcp, certs.config()).ok()?;
    tls.handshake().await.ok()?;
    Some(Transport::Tls(Box::new(tls)))
}

/// One admitted connection, from its client address to its session, link or reply.
async fn serve(
    shard: Rc<Shard>,
    mut tcp: TcpStream,
    mut slot: ConnectionSlot,
    mut deadline: Deadline,
    refusals: Rc<Cell<u64>>,
) {
    let proxied = shard.config.proxy_protocol != ProxyProtocol::Off;
    if proxied || shard.shared.addresses.is_some() {
        let client = futures_lite::future::or(client_address(&shard, &mut tcp), async {
            (&mut deadline).await;
            None
        })
        .await;
        let Some(client) = client else {
            // No valid PROXY header in time (§2.9): closed without a response.
            shard.metrics().connection_errors_total.inc();
            return;
        };
        if !slot.admit_address(client) {
            // Refused connections hold no slot (§2.2 step 2).
            drop(slot);
            shard.metrics().inc_refused(Refusal::PerIp);
            let reply = http::too_many_connections();
            refuse(shard, tcp, deadline, &refusals, reply, HeaderRead::Yes);
            return;
        }
    }
    let upgraded = Cell::new(false);
    let opened = futures_lite::future::or(async { Some(open(&shard, tcp).await) }, async {
        (&mut deadline).await;
        None
    })
    .await;
    let Some(Some(mut stream)) = opened else {
        // The TLS handshake failed or did not finish in time: TCP closes.
        shard.metrics().connection_errors_total.inc();
        return;
    };
    // Outlives the handshake timer, so that the close wait reads on from where the
    // first message's reading stopped.
    let mut reader = MessageReader::continuous(shard.config.max_message_size + 4);
    let pre = pre_session(&shard, &mut stream, &upgraded, &mut reader);
    let outcome = futures_lite::future::or(pre, async {
        deadline.await;
        if upgraded.get() {
            Outcome::Close(
                CloseReason::HandshakeTimeout.code(),
                CloseReason::HandshakeTimeout.reason(),
            )
        } else {
            Outcome::TimedOut
        }
    })
    .await;
    let metrics = shard.metrics();
    if upgraded.get() {
        // The upgraded connection leaves this shard: as a session (which counts
        // itself) or closed.
        metrics.connections_active.dec();
    }
    if matches!(outcome, Outcome::Close(..) | Outcome::TimedOut) {
        metrics.connection_errors_total.inc();
    }
    match outcome {
        Outcome::Done | Outcome::TimedOut => {}
        Outcome::Close(code, reason) => {
            let close = wsframe::close_frame(code, reason);
            close_and_wait(&shard, &mut stream, &close, Some(&mut reader)).await;
        }
        Outcome::EchoClose(code) => {
            let close = wsframe::close_frame(code, "");
            close_and_wait(&shard, &mut stream, &close, None).await;
        }
        Outcome::Session {
            handshake,
            remainder,
            noise,
        } => {
            hand_off(shard, stream, slot, handshake, remainder, noise).await;
            return;
        }
        Outcome::Federation { remainder } => {
            hand_to_federation(&shard, stream, slot, remainder);
            return;
        }
    }
    stream.shutdown().await;
    drop(slot);
}

/// Writes our Close and then, with `reader` (None: the peer's Close is already in),
/// waits for the peer's Close (§2.7), so that the caller closes TCP as soon as it
/// has arrived. The close wait bounds both: a peer that reads nothing cannot hold
/// the connection, and its slot, by never taking our Close.
async fn close_and_wait(
    shard: &Shard,
    stream: &mut Transport,
    close: &[u8],
    reader: Option<&mut MessageReader>,
) {
    let exchange = async {
        if stream.send(close).await.is_err() {
            return;
        }
        if let Some(reader) = reader {
            wait_for_close(stream, reader).await;
        }
    };
    futures_lite::future::or(
        exchange,
        shard.deadlines.at(Instant::now() + limits::CLOSE_WAIT),
    )
    .await;
}

/// Reads the peer's frames on from where `reader` stopped until its Close (or EOF):
/// data messages are dropped and Pings go unanswered, since nothing follows our
/// Close. Once the reader has failed, before or during the wait, the frames are
/// walked without it from the failed frame's header, which still tells its length.
async fn wait_for_close(stream: &mut Transport, reader: &mut MessageReader) {
    let mut chunk = [0u8; limits::CLOSE_WAIT_READ_BYTES];
    while !reader.failed() {
        loop {
            match reader.poll() {
                Step::NeedMore | Step::Fail { .. } => break,
                Step::Write(_) | Step::Message { .. } => {}
                Step::PeerClose { .. } => return,
            }
        }
        if reader.failed() {
            break;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => reader.feed(&chunk[..n]),
        }
    }
    let mut scan = reader.take_close_scan();
    while !scan.seen() {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => scan.feed(&chunk[..n]),
        };
    }
}

async fn pre_session(
    shard: &Shard,
    stream: &mut Transport,
    upgraded: &Cell<bool>,
    reader: &mut MessageReader,
) -> Outcome {
    let Some((parsed, buf)) = transport::read_head(stream).await else {
        return Outcome::Done;
    };
    let (head_len, request) = match parsed {
        HeadParse::Complete { head_len, request } => (head_len, request),
        HeadParse::TooLarge => {
            shard.metrics().connection_errors_total.inc();
            return reply(stream, &http::head_too_large()).await;
        }
        HeadParse::Bad | HeadParse::Partial => {
            shard.metrics().connection_errors_total.inc();
            return reply(stream, &http::bad_request()).await;
        }
    };
    let shared = &shard.shared;
    let context = RouteContext {
        federation_enabled: shard.federation.is_some(),
        federation_mtls: shared.federation_tls.is_some(),
        draining: shared.draining.load(Ordering::Relaxed),
    };
    match http::route(&request, context) {
        Route::Reply(bytes) => {
            if request.is_upgrade {
                // A refused upgrade (bad version or key, draining, federation off).
                shard.metrics().connection_errors_total.inc();
            }
            reply(stream, &bytes).await
        }
        Route::Health { path, head_only } => {
            let facts = HealthFacts {
                draining: context.draining,
                uptime_seconds: shared.started.elapsed().as_secs(),
                blob_count: shared.blob_count(),
                shards: shard.shards() as u32,
            };
            reply(stream, &http::health_response(path, head_only, facts)).await
        }
        Route::FederationUpgrade { response } => {
            if stream.send(&response).await.is_err() {
                return Outcome::Done;
            }
            shard.metrics().connections_total.inc();
            Outcome::Federation {
                remainder: buf[head_len..].to_vec(),
            }
        }
        Route::ClientUpgrade { response } => {
            if stream.send(&response).await.is_err() {
                return Outcome::Done;
            }
            upgraded.set(true);
            shard.metrics().connections_total.inc();
            shard.metrics().connections_active.inc();
            reader.feed(&buf[head_len..]);
            first_message(shard, stream, reader).await
        }
    }
}

async fn reply(stream: &mut Transport, bytes: &[u8]) -> Outcome {
    let _ = stream.send(bytes).await;
    Outcome::Done
}

/// Runs the session here, or moves the socket to the owner shard (§10.2), with
/// the bytes read past the Handshake and, on a Noise session, its cipher state.
async fn hand_off(
    shard: Rc<Shard>,
    stream: Transport,
    slot: ConnectionSlot,
    handshake: Box<Handshake>,
    remainder: Vec<u8>,
    noise: Option<Box<Channel>>,
) {
    let owner = shard.owner_of(&handshake.routing_id());
    if owner == shard.index {
        socket::run(shard, stream, remainder, noise, handshake, slot).await;
        return;
    }
    let Ok(transport) = stream.into_parts() else {
        return;
    };
    let message = MeshMessage::Session(HandedSession {
        transport,
        remainder,
        noise,
        handshake,
        slot,
    });
    if let Err(MeshMessage::Session(HandedSession {
        transport,
        remainder,
        ..
    })) = shard.mesh.try_send(owner, message)
    {
        // The owner's queue is full: the session cannot be admitted (§2.2 item 4).
        let mut stream = Transport::from_parts(transport);
        let reason = CloseReason::Overloaded;
        let close = wsframe::close_frame(reason.code(), reason.reason());
        let mut reader = MessageReader::continuous(shard.config.max_message_size + 4);
        reader.feed(&remainder);
        close_and_wait(&shard, &mut stream, &close, Some(&mut reader)).await;
        stream.shutdown().await;
    }
}

/// Gives an upgraded `/federation` connection to the federation executor (§11.4);
/// the upgrade part of the handshake timer is over, the peer timeout takes over.
fn hand_to_federation(shard: &Shard, stream: Transport, slot: ConnectionSlot, remainder: Vec<u8>) {
    let Some(federation) = &shard.federation else {
        return;
    };
    let Ok(transport) = stream.into_parts() else {
        return;
    };
    let command = ToFederation::Inbound(InboundLink {
        transport,
        remainder,
        slot,
    });
    // Too many links waiting to be adopted: the refused command drops, closing the
    // connection (the peer retries).
    let _ = federation.try_send(command);
}

/// Starts a session handed over by another shard.
pub fn adopt(shard: &Rc<Shard>, m: HandedSession) {
    let stream = Transport::from_parts(m.transport);
    let session = socket::run(
        Rc::clone(shard),
        stream,
        m.remainder,
        m.noise,
        m.handshake,
        m.slot,
    );
    glommio::spawn_local(session).detach();
}
