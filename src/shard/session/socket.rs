//! A client session's socket loop on the shard that owns its routing_id: one task
//! that moves bytes between the socket and the session's [`Connection`] (reads,
//! writes and its one timer polled together) and tells it the time. What the bytes
//! mean, and when to read, write or end, is the connection's.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncWrite};

use crate::limits;
use crate::noise::Channel;
use crate::process::ConnectionSlot;
use crate::protocol::decode::Handshake;
use crate::transport::Transport;

use super::super::Shard;
use super::super::deadline::Deadline;
use super::connection::{Connection, Flow};
use super::outbound::SessionHandle;
use super::registry;

/// Registers a session for a routing_id this shard owns and runs it to the end.
/// `noise`: the session's Noise state (§15.1), with any plaintext read past the
/// Handshake; `remainder`: the bytes read past the Handshake's WebSocket message.
pub async fn run(
    shard: Rc<Shard>,
    mut stream: Transport,
    remainder: Vec<u8>,
    noise: Option<Box<Channel>>,
    handshake: Box<Handshake>,
    slot: ConnectionSlot,
) {
    use std::sync::atomic::Ordering::Relaxed;
    shard.shared.sessions_open.fetch_add(1, Relaxed);
    shard.metrics().connections_active.inc();
    let handle = registry::open(&shard, &handshake, noise.is_some());
    let idle = Duration::from_secs(shard.config.idle_timeout_secs);
    // The socket's timer is on the system clock (`deadline.rs`), so its
    // connection reads the same clock.
    let now = Instant::now();
    let mut connection = Connection::new(shard.config.max_message_size, idle, now);
    if let Some(channel) = noise {
        connection = connection.with_noise(channel);
    }
    let mut timer = shard.deadlines.at(connection.deadline());
    // Requests pipelined behind the Handshake arrived with it: process them now,
    // not at the next socket event (§4.8).
    connection.received(&shard, &handle, &remainder, now);
    let mut io = Io {
        stream: &mut stream,
        timer: &mut timer,
    };
    std::future::poll_fn(|cx| drive(&shard, &handle, &mut connection, &mut io, cx)).await;
    registry::close(&shard, &handle);
    shard.shared.sessions_open.fetch_sub(1, Relaxed);
    shard.metrics().connections_active.dec();
    stream.shutdown().await;
    drop(slot);
}

/// The connection's socket and its timer.
struct Io<'a> {
    stream: &'a mut Transport,
    timer: &'a mut Deadline,
}

/// One pass of the session: timer, output, writes, reads; `Ready` when it is over.
fn drive(
    shard: &Rc<Shard>,
    handle: &Rc<SessionHandle>,
    conn: &mut Connection,
    io: &mut Io<'_>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    loop {
        let now = Instant::now();
        if io.timer.at() != conn.deadline() {
            io.timer.reset(conn.deadline());
        }
        let mut progress = false;
        if Pin::new(&mut *io.timer).poll(cx).is_ready() {
            if conn.timer_fired(handle, now) {
                return Poll::Ready(());
            }
            progress = true;
        }
        progress |= conn.prepare_output(shard, handle, now);
        while !conn.unwritten().is_empty() {
            match Pin::new(&mut *io.stream).poll_write(cx, conn.unwritten()) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(n)) => progress |= conn.wrote(shard, handle, n),
                Poll::Pending => break,
            }
        }
        // A TLS write may keep its last records until flushed (plain: a no-op).
        if conn.unwritten().is_empty()
            && let Poll::Ready(Err(_)) = Pin::new(&mut *io.stream).poll_flush(cx)
        {
            return Poll::Ready(());
        }
        match conn.after_write(handle, now) {
            Flow::Again => continue,
            Flow::End => return Poll::Ready(()),
            Flow::Read => {}
        }
        if conn.may_read(handle) {
            let mut buf = [0u8; limits::READ_CHUNK_BYTES];
            match Pin::new(&mut *io.stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(n)) => {
                    conn.received(shard, handle, &buf[..n], now);
                    progress = true;
                }
                Poll::Pending => {}
            }
        }
        if !progress {
            handle.out.borrow_mut().set_waker(cx.waker());
            return Poll::Pending;
        }
    }
}
