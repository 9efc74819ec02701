//! The loop of an established link, the same for both sides (PROTOCOL.md §11.6):
//! it reads the peer's messages and answers them in order, writes what the
//! executor queued for it, pings when quiet and closes after the idle timeout.
//!
//! Invariant: a link is out of the registry before its close wait, and counted
//! in `Node::closing` until it has closed (see `run`).

use std::rc::Rc;
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_lite::{AsyncRead, AsyncWrite, StreamExt};

use super::super::checked::Checked;
use super::super::node::{LinkOut, Node};
use super::super::registry::LinkId;
use super::receive::{self, LinkSide};
use super::wire::{close, close_broken, read_to_end, send, send_message, violation_close};

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
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    node: &Rc<Node>,
    mut ws: WebSocketStream<Checked<S>>,
    link: LinkId,
    relay_id: &str,
    side: LinkSide,
    out: flume::Receiver<LinkOut>,
) {
    let end = serve(node, &mut ws, link, relay_id, side, &out).await;
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

/// The link's events until one ends it: messages read, frames queued, timer ticks.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    node: &Rc<Node>,
    ws: &mut WebSocketStream<Checked<S>>,
    link: LinkId,
    relay_id: &str,
    side: LinkSide,
    out: &flume::Receiver<LinkOut>,
) -> End {
    let timeout = node.peer_timeout();
    let ping_every = Duration::from_secs((node.config.federation_peer_timeout_secs / 2).max(1));
    let mut last_received = Instant::now();
    let mut next_ping = Instant::now() + ping_every;
    loop {
        let idle_at = last_received + timeout * 2;
        let wake = next_ping.min(idle_at);
        match next_event(ws, out, wake).await {
            Event::Received(None) => return End::Gone,
            Event::Received(Some(Err(error))) => match violation_close(&error) {
                Some((code, reason)) => return End::Broken(code, reason),
                None => return End::Gone,
            },
            Event::Received(Some(Ok(message))) => {
                last_received = Instant::now();
                match message {
                    Message::Binary(bytes) => {
                        let replies = receive::handle(node, link, relay_id, side, &bytes).await;
                        if !send_all(ws, replies).await {
                            return End::Gone;
                        }
                    }
                    Message::Text(_) => node.metrics().federation_ignored_total.inc(),
                    Message::Close(_) => return End::PeerClosed,
                    _ => {}
                }
            }
            Event::Queued(Some(LinkOut::Frame(frame))) => {
                if !send(ws, frame).await {
                    return End::Gone;
                }
            }
            Event::Queued(Some(LinkOut::Close(code, reason))) => return End::Close(code, reason),
            Event::Queued(None) => return End::Gone,
            Event::Tick => {
                let now = Instant::now();
                if now >= idle_at {
                    return End::Close(1000, "idle timeout");
                }
                if now >= next_ping {
                    if !send_message(ws, Message::Ping(Vec::new().into())).await {
                        return End::Gone;
                    }
                    next_ping = now + ping_every;
                }
            }
        }
    }
}

/// Waits for the peer's next message, a queued frame, or `wake`, whichever is first.
async fn next_event<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<Checked<S>>,
    out: &flume::Receiver<LinkOut>,
    wake: Instant,
) -> Event {
    futures_lite::future::or(
        futures_lite::future::or(async { Event::Received(ws.next().await) }, async {
            Event::Queued(out.recv_async().await.ok())
        }),
        async {
            glommio::timer::sleep(wake.saturating_duration_since(Instant::now())).await;
            Event::Tick
        },
    )
    .await
}

/// Writes the answers to one message, in order; false once a write fails.
async fn send_all<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<Checked<S>>,
    frames: Vec<Vec<u8>>,
) -> bool {
    for frame in frames {
        if !send(ws, frame).await {
            return false;
        }
    }
    true
}
