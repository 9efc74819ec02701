//! A client session's socket loop on the shard that owns its routing_id: one task
//! polling reads, writes and timers together, registering the session first and
//! removing only its own registration at the end (§4.10). Each data message goes
//! to the request pipeline (`requests.rs`); replies and pushes come out of the
//! session's [`Outbound`](super::outbound::Outbound).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use crate::keyed::ratelimit::TokenBucket;
use crate::limits;
use crate::mesh::{MeshMessage, RegisterDevice, UnregisterDevice};
use crate::process::ConnectionSlot;
use crate::protocol::CloseReason;
use crate::protocol::decode::Handshake;
use crate::protocol::encode;
use crate::storage::BlobId;
use crate::wsframe::{self, CloseScan, MessageReader, Step};

use super::super::deadline::Deadline;
use super::super::{Buckets, Shard, backlog, offload, owner};
use super::outbound::{Outbound, SessionHandle};
use super::requests;

/// Where the session is in its life (§4.1, §4.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// The client sent Close: finish the replies, then echo `code`.
    ClientClosed {
        code: u16,
    },
    /// We sent Close: wait for the peer's Close or EOF, up to the close wait.
    Closing,
    Done,
}

struct Connection {
    stream: TcpStream,
    reader: MessageReader,
    /// Once the reader has failed after our Close (1002, 1009): the peer's frames,
    /// walked from the failed one's header to its Close (§2.7).
    close_scan: Option<CloseScan>,
    out: Vec<u8>,
    out_pos: usize,
    /// Blobs in `out` whose write may trigger `Delivered` once it completes.
    out_blobs: Vec<BlobId>,
    phase: Phase,
    last_inbound: Instant,
    timer: Deadline,
}

/// Registers a session for a routing_id this shard owns and runs it to the end.
pub async fn run(
    shard: Rc<Shard>,
    stream: TcpStream,
    remainder: Vec<u8>,
    handshake: Box<Handshake>,
    slot: ConnectionSlot,
) {
    shard
        .shared
        .sessions_open
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    shard.metrics().connections_active.inc();
    let handle = register(&shard, &handshake);
    let mut reader = MessageReader::continuous(shard.config.max_message_size + 4);
    reader.feed(&remainder);
    let idle = Duration::from_secs(shard.config.idle_timeout_secs);
    let now = Instant::now();
    let mut connection = Connection {
        stream,
        reader,
        close_scan: None,
        out: Vec::new(),
        out_pos: 0,
        out_blobs: Vec::new(),
        phase: Phase::Open,
        last_inbound: now,
        timer: shard.deadlines.at(now + idle),
    };
    // Requests pipelined behind the Handshake arrived with it: process them now,
    // not at the next socket event (§4.8).
    handle_input(&shard, &handle, &mut connection);
    std::future::poll_fn(|cx| drive(&shard, &handle, &mut connection, cx)).await;
    unregister(&shard, &handle);
    shard
        .shared
        .sessions_open
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    shard.metrics().connections_active.dec();
    let _ = connection.stream.shutdown(std::net::Shutdown::Both).await;
    drop(slot);
}

fn register(shard: &Rc<Shard>, handshake: &Handshake) -> Rc<SessionHandle> {
    let routing_id = handshake.routing_id();
    let config = &shard.config;
    let bound_bytes = limits::OUTBOUND_QUEUE_BYTES_FACTOR * (config.max_message_size + 4);
    let now_mono = shard.monotonic_secs();
    let handle = {
        let mut state = shard.state.borrow_mut();
        let id = state.next_session();
        let handle = Rc::new(SessionHandle {
            id,
            routing_id,
            client_id: handshake.client_id,
            device_id: handshake.device_id,
            suppress_presence: handshake.suppress_presence,
            out: std::cell::RefCell::new(Outbound::new(
                limits::OUTBOUND_QUEUE_MESSAGES_MAX,
                bound_bytes,
            )),
        });
        state.sessions.insert(id, Rc::clone(&handle));
        state
            .sessions_by_routing
            .entry(routing_id)
            .or_default()
            .push(id);
        state
            .buckets
            .entry(routing_id)
            .or_insert_with(|| Buckets {
                general: TokenBucket::new(config.rate_limit, now_mono),
                recovery: TokenBucket::new(config.recovery_rate_limit, now_mono),
                sessions: 0,
            })
            .sessions += 1;
        handle
    };
    handle
        .out
        .borrow_mut()
        .reply_now(encode::handshake_ack(shard.now()));
    if shard.shutdown.is_fired() {
        handle.out.borrow_mut().begin_drain();
    }
    // Registered above, before the snapshot, so nothing committed later is missed
    // and nothing is sent twice (§4.6).
    backlog::start(shard, &handle);
    backlog::pump(shard, &handle);
    // Forwarding hints follow the blobs (§4.6 item 2): a slot of their own, after
    // the connect-time delivery slot.
    if let Some(frame) = offload::hints_frame(shard, &routing_id) {
        let mut out = handle.out.borrow_mut();
        let slot = out.open_slot();
        out.fill(slot, frame);
    }
    // Device-sync items follow the blobs (§4.6 item 3); their owner may be another
    // shard, which registers the session and answers with a snapshot.
    if let Some(device) = handle.device_id {
        let slot = handle.out.borrow_mut().open_slot();
        let session = handle.reference(shard.index);
        let message = MeshMessage::RegisterDevice(RegisterDevice {
            identity: handle.client_id,
            device,
            session,
            slot,
        });
        if shard
            .route(shard.owner_of(&handle.client_id), message)
            .is_err()
        {
            handle
                .out
                .borrow_mut()
                .request_close(CloseReason::Overloaded);
        }
    }
    handle
}

/// Removes only this session's registration (§4.10).
fn unregister(shard: &Rc<Shard>, handle: &SessionHandle) {
    if let Some(device) = handle.device_id {
        let session = handle.reference(shard.index);
        let message = MeshMessage::UnregisterDevice(UnregisterDevice {
            identity: handle.client_id,
            device,
            session,
        });
        shard.post(shard.owner_of(&handle.client_id), message);
    }
    let now_mono = shard.monotonic_secs();
    let mut state = shard.state.borrow_mut();
    state.sessions.remove(&handle.id);
    if let Some(ids) = state.sessions_by_routing.get_mut(&handle.routing_id) {
        ids.retain(|id| *id != handle.id);
        if ids.is_empty() {
            state.sessions_by_routing.remove(&handle.routing_id);
        }
    }
    if let Some(buckets) = state.buckets.get_mut(&handle.routing_id) {
        buckets.sessions -= 1;
        if buckets.sessions == 0
            && buckets.general.is_full(now_mono)
            && buckets.recovery.is_full(now_mono)
        {
            state.buckets.remove(&handle.routing_id);
        }
    }
}

/// One pass of the session's state machine; `Ready` when the session is over.
fn drive(
    shard: &Rc<Shard>,
    handle: &Rc<SessionHandle>,
    conn: &mut Connection,
    cx: &mut Context<'_>,
) -> Poll<()> {
    loop {
        let mut progress = false;
        let now = Instant::now();

        // Timers: the idle timer while Open (§2.6); the close wait otherwise.
        if Pin::new(&mut conn.timer).poll(cx).is_ready() {
            match conn.phase {
                Phase::Open => {
                    let deadline =
                        conn.last_inbound + Duration::from_secs(shard.config.idle_timeout_secs);
                    if now >= deadline {
                        handle
                            .out
                            .borrow_mut()
                            .request_close(CloseReason::IdleTimeout);
                    } else {
                        conn.timer.reset(deadline);
                    }
                }
                Phase::ClientClosed { .. } | Phase::Closing | Phase::Done => return Poll::Ready(()),
            }
            progress = true;
        }

        // A close the shard asked for (overflow, shutdown, idle, internal error).
        let close = handle.out.borrow().close;
        if let (Some(reason), Phase::Open | Phase::ClientClosed { .. }) = (close, conn.phase) {
            start_close(conn, reason.code(), reason.reason());
            progress = true;
        }

        if matches!(conn.phase, Phase::Open | Phase::ClientClosed { .. }) {
            fill_output(shard, handle, conn);
        }

        // Write what is queued.
        while conn.out_pos < conn.out.len() {
            match Pin::new(&mut conn.stream).poll_write(cx, &conn.out[conn.out_pos..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(n)) => {
                    conn.out_pos += n;
                    progress = true;
                }
                Poll::Pending => break,
            }
        }
        if conn.out_pos == conn.out.len() && !conn.out.is_empty() {
            conn.out.clear();
            conn.out_pos = 0;
            if conn.out.capacity() > limits::WRITE_COALESCE_BYTES {
                conn.out = Vec::new();
            }
            shard
                .metrics()
                .blobs_delivered_total
                .add(conn.out_blobs.len() as u64);
            for blob in std::mem::take(&mut conn.out_blobs) {
                owner::blob_written(shard, handle, &blob);
            }
            progress = true;
        }
        let written = conn.out.is_empty();

        // The end of a client-initiated close: every reply written, then the echo.
        if let Phase::ClientClosed { code } = conn.phase {
            let idle = {
                let out = handle.out.borrow();
                out.slots_in_use() == 0
            };
            if idle && written {
                conn.out.extend_from_slice(&wsframe::close_frame(code, ""));
                conn.phase = Phase::Done;
                continue;
            }
        }
        if conn.phase == Phase::Done && written {
            return Poll::Ready(());
        }
        // Shutdown (§14.1): once every reply due is written, close with 1001.
        let draining = handle.out.borrow().draining;
        if draining && conn.phase == Phase::Open && written && handle.out.borrow().is_idle() {
            let reason = CloseReason::ShuttingDown;
            start_close(conn, reason.code(), reason.reason());
            continue;
        }

        // Read while the session may take requests (§4.9 back-pressure, §4.8 window)
        // and the socket takes what is already written for it (Pongs included).
        let may_read = match conn.phase {
            Phase::Open => {
                let out = handle.out.borrow();
                !out.draining
                    && !out.is_over_bound()
                    && out.slots_in_use() < limits::PIPELINED_REQUESTS_MAX
                    && conn.out.len() - conn.out_pos < limits::UNWRITTEN_BYTES_MAX
            }
            Phase::Closing => true,
            _ => false,
        };
        if may_read {
            match read_some(conn, cx) {
                Poll::Ready(Some(())) => {
                    progress = true;
                    handle_input(shard, handle, conn);
                }
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => {}
            }
        }

        if !progress {
            handle.out.borrow_mut().set_waker(cx.waker());
            return Poll::Pending;
        }
    }
}

fn arm(conn: &mut Connection, deadline: Instant) {
    conn.timer.reset(deadline);
}

/// Sends our Close (at most one per connection, §2.7) and starts the close wait.
fn start_close(conn: &mut Connection, code: u16, reason: &str) {
    // Frames already in the buffer are whole; the Close goes after them.
    conn.out
        .extend_from_slice(&wsframe::close_frame(code, reason));
    // A client that closed first has sent its Close already: once ours is written the
    // closing handshake is complete, and TCP closes at once (§2.7).
    conn.phase = match conn.phase {
        Phase::ClientClosed { .. } => Phase::Done,
        _ => Phase::Closing,
    };
    arm(conn, Instant::now() + limits::CLOSE_WAIT);
}

/// Moves queued frames into the write buffer, coalescing up to a bound.
fn fill_output(shard: &Rc<Shard>, handle: &Rc<SessionHandle>, conn: &mut Connection) {
    loop {
        if conn.out.len() >= limits::WRITE_COALESCE_BYTES {
            break;
        }
        let next = handle.out.borrow_mut().next_frame();
        let Some(frame) = next else { break };
        wsframe::write_binary_frame(&mut conn.out, &frame.bytes);
        shard.metrics().messages_sent_total.inc();
        if let Some(blob) = frame.blob {
            conn.out_blobs.push(blob);
        }
    }
    backlog::pump(shard, handle);
}

/// Reads once into the reader. `None` at EOF or on error.
fn read_some(conn: &mut Connection, cx: &mut Context<'_>) -> Poll<Option<()>> {
    let mut buf = [0u8; limits::READ_CHUNK_BYTES];
    match Pin::new(&mut conn.stream).poll_read(cx, &mut buf) {
        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(None),
        Poll::Ready(Ok(n)) => {
            match conn.close_scan.as_mut() {
                Some(scan) => {
                    if scan.feed(&buf[..n]) {
                        conn.phase = Phase::Done;
                    }
                }
                None => conn.reader.feed(&buf[..n]),
            }
            Poll::Ready(Some(()))
        }
        Poll::Pending => Poll::Pending,
    }
}

/// Processes every complete frame the reader holds.
fn handle_input(shard: &Rc<Shard>, handle: &Rc<SessionHandle>, conn: &mut Connection) {
    if conn.close_scan.is_some() {
        // The reader has failed; the scan reads the peer's frames now.
        return;
    }
    let consumed = conn.reader.consumed();
    loop {
        let step = conn.reader.poll();
        // Every whole frame restarts the idle timer (§2.6), the fragments of an
        // unfinished message included.
        if !matches!(step, Step::NeedMore) || conn.reader.consumed() != consumed {
            conn.last_inbound = Instant::now();
        }
        match step {
            Step::NeedMore => return,
            Step::Write(pong) => {
                if conn.phase == Phase::Open || matches!(conn.phase, Phase::ClientClosed { .. }) {
                    conn.out.extend_from_slice(&pong);
                }
            }
            Step::Message {
                binary, payload, ..
            } => {
                shard.metrics().messages_received_total.inc();
                if conn.phase == Phase::Open {
                    requests::handle_message(shard, handle, binary, payload);
                }
            }
            Step::PeerClose { code } => {
                match conn.phase {
                    Phase::Open => {
                        // Replies still due get the close wait to be written (§4.10).
                        conn.phase = Phase::ClientClosed { code };
                        arm(conn, Instant::now() + limits::CLOSE_WAIT);
                    }
                    Phase::Closing => conn.phase = Phase::Done,
                    _ => {}
                }
                return;
            }
            Step::Fail { code, reason } => {
                if conn.phase == Phase::Open {
                    start_close(conn, code, reason);
                }
                if conn.phase == Phase::Closing {
                    // The frames go on from the failed one's header, whose length
                    // is known: wait for the peer's Close behind it, not for its
                    // next bytes, which may still be the refused frame's payload.
                    let scan = conn.reader.take_close_scan();
                    if scan.seen() {
                        conn.phase = Phase::Done;
                    }
                    conn.close_scan = Some(scan);
                } else {
                    conn.phase = Phase::Done;
                }
                return;
            }
        }
    }
}
