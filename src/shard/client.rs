//! A client session on the shard that owns its routing_id: the I/O loop over the
//! socket (one task, polling reads, writes and timers together) and the handling of
//! each data message in the order of §3.6. Replies leave in request order through
//! the session's [`Outbound`](super::outbound::Outbound) slots.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use crate::limits;
use crate::metrics::Limiter;
use crate::protocol::decode::{self, Handshake, Request, ShapeError, ValidRequest, ValueError};
use crate::protocol::encode;
use crate::protocol::{CloseReason, ErrorCode, Id64};
use crate::storage::BlobId;
use crate::wsframe::{self, CloseScan, MessageReader, Step};

use super::deadline::Deadline;
use super::gather::{self, GatherKind};
use super::mesh::{MeshMessage, Part, ReplyTo};
use super::outbound::{Outbound, SessionHandle};
use super::{Buckets, Shard, dispatch, features, owner, unix_now};
use crate::session::ratelimit::TokenBucket;

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
    slot: super::accept::ConnectionSlot,
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
        state.next_session += 1;
        let id = state.next_session;
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
        .reply_now(encode::handshake_ack(unix_now()));
    if shard.shutdown.is_fired() {
        handle.out.borrow_mut().begin_drain();
    }
    // Registered above, before the snapshot, so nothing committed later is missed
    // and nothing is sent twice (§4.6).
    owner::start_backlog(shard, &handle);
    owner::pump_backlog(shard, &handle);
    // Forwarding hints follow the blobs (§4.6 item 2): a slot of their own, after
    // the connect-time delivery slot.
    if let Some(frame) = super::offload::hints_frame(shard, &routing_id) {
        let mut out = handle.out.borrow_mut();
        let slot = out.open_slot();
        out.fill(slot, frame);
    }
    // Device-sync items follow the blobs (§4.6 item 3); their owner may be another
    // shard, which registers the session and answers with a snapshot.
    if let Some(device) = handle.device_id {
        let slot = handle.out.borrow_mut().open_slot();
        let session = handle.reference(shard.index);
        let message = MeshMessage::RegisterDevice {
            identity: handle.client_id,
            device,
            session,
            slot,
        };
        if dispatch::route(shard, shard.owner_of(&handle.client_id), message).is_err() {
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
        let message = MeshMessage::UnregisterDevice {
            identity: handle.client_id,
            device,
            session,
        };
        dispatch::route_post(shard, shard.owner_of(&handle.client_id), message);
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
    owner::pump_backlog(shard, handle);
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
                    handle_message(shard, handle, binary, payload);
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

/// Takes a general-bucket token (§8); `Err(retry_after_secs)` when empty.
fn take_token(shard: &Shard, handle: &SessionHandle, recovery: bool) -> Result<(), u64> {
    let now = shard.monotonic_secs();
    let mut state = shard.state.borrow_mut();
    let Some(buckets) = state.buckets.get_mut(&handle.routing_id) else {
        return Ok(());
    };
    let (bucket, limiter) = if recovery {
        (&mut buckets.recovery, Limiter::Recovery)
    } else {
        (&mut buckets.general, Limiter::General)
    };
    let taken = bucket.take(now);
    if taken.is_err() {
        shard.metrics().inc_rate_limited(limiter);
    }
    taken
}

/// One data message on an open session, in the order of §3.6.
fn handle_message(shard: &Rc<Shard>, handle: &Rc<SessionHandle>, binary: bool, payload: Vec<u8>) {
    let received = Instant::now();
    let reply = |frame: Vec<u8>| {
        let waited = handle.out.borrow_mut().reply_now(frame);
        shard
            .metrics()
            .observe_duration(waited.unwrap_or_else(|| received.elapsed()));
    };
    // Step 2: text frames.
    if !binary {
        match take_token(shard, handle, false) {
            Err(retry) => reply(shard.error_frame(ErrorCode::RateLimited, None, Some(retry))),
            Ok(()) => reply(shard.error_frame(ErrorCode::UnsupportedFrame, None, None)),
        }
        return;
    }
    // Step 3: frame and envelope.
    let envelope = decode::decode_envelope(&payload);
    // Step 4: the general token.
    if let Err(retry) = take_token(shard, handle, false) {
        let message_id = match &envelope {
            Ok(envelope) => Some(envelope.message_id.as_str()),
            Err(malformed) => malformed.message_id.as_deref(),
        };
        reply(shard.error_frame(ErrorCode::RateLimited, message_id, Some(retry)));
        return;
    }
    // Step 5.
    let Ok(envelope) = envelope else {
        reply(shard.error_frame(ErrorCode::MalformedFrame, None, None));
        return;
    };
    let message_id = envelope.message_id.as_str();
    let refuse = |code: ErrorCode| reply(shard.error_frame(code, Some(message_id), None));
    // Step 6.
    if envelope.version != 1 {
        return refuse(ErrorCode::UnsupportedVersion);
    }
    // Steps 7 and 8.
    let request = match decode::decode_request(&envelope) {
        Ok(request) => request,
        Err(ShapeError::UnknownType) => return refuse(ErrorCode::UnknownType),
        Err(ShapeError::UnexpectedMessage) => return refuse(ErrorCode::UnexpectedMessage),
        Err(ShapeError::InvalidField) => return refuse(ErrorCode::InvalidField),
    };
    // Step 9.
    if request.takes_recovery_token()
        && let Err(retry) = take_token(shard, handle, true)
    {
        reply(shard.error_frame(ErrorCode::RateLimited, Some(message_id), Some(retry)));
        return;
    }
    // AccountRevoked stores its recipient_id as received (§5.12).
    let revoked_recipient = match &request {
        Request::AccountRevoked { recipient_id, .. } => Some(recipient_id.clone()),
        _ => None,
    };
    // Step 10.
    let request = match decode::validate(request) {
        Ok(request) => request,
        Err(ValueError::InvalidField) => return refuse(ErrorCode::InvalidField),
        Err(ValueError::FailedAck) => return reply(shard.failed_ack(message_id)),
    };
    // Step 11.
    if let ValidRequest::AccountRevoked {
        sender_id,
        recipient_id,
        timestamp,
        signature,
    } = &request
    {
        let frame = encode::account_revoked_blob(
            envelope.version,
            message_id,
            envelope.timestamp,
            sender_id,
            revoked_recipient.as_deref().unwrap_or_default(),
            *timestamp,
            signature,
        );
        return store_blob(shard, handle, message_id, *recipient_id, frame, None);
    }
    execute(shard, handle, message_id, request, received);
}

fn execute(
    shard: &Rc<Shard>,
    handle: &Rc<SessionHandle>,
    message_id: &str,
    request: ValidRequest,
    received: Instant,
) {
    let observe = || shard.metrics().observe_duration(received.elapsed());
    let refuse = |code: ErrorCode| {
        handle
            .out
            .borrow_mut()
            .reply_now(shard.error_frame(code, Some(message_id), None));
        observe();
    };
    match request {
        ValidRequest::EncryptedUpdate {
            recipient_id,
            ciphertext,
        } => store_blob(
            shard,
            handle,
            message_id,
            recipient_id,
            ciphertext,
            Some(handle.routing_id),
        ),
        ValidRequest::AccountRevoked { .. } => {} // Stored by `handle_message`.
        ValidRequest::Acknowledgment { blob_id, status } => {
            owner::ack(shard, handle, &blob_id, status);
            observe();
        }
        ValidRequest::DeviceSyncMessage {
            identity_id,
            target_device_id,
            sender_device_id,
            encrypted_payload,
            version,
        } => {
            if identity_id != handle.client_id {
                return refuse(ErrorCode::NotPermitted);
            }
            let message = |reply| MeshMessage::StoreDeviceSync {
                reply,
                request_message_id: message_id.to_owned(),
                identity: identity_id,
                target: target_device_id,
                sender_device_id,
                payload: encrypted_payload,
                version,
            };
            request_reply(
                shard,
                handle,
                message_id,
                shard.owner_of(&identity_id),
                message,
            );
        }
        ValidRequest::DeviceSyncAck {
            message_id: stored_id,
            ..
        } => {
            let Some(device) = handle.device_id else {
                return refuse(ErrorCode::NotPermitted);
            };
            // An id that is not a UUID names no stored message: no effect (§5.7).
            let Ok(id) = uuid::Uuid::parse_str(&stored_id) else {
                return observe();
            };
            let message = MeshMessage::AckDeviceSync {
                identity: handle.client_id,
                target: device,
                id,
            };
            if dispatch::route(shard, shard.owner_of(&handle.client_id), message).is_err() {
                let frame = shard.error_frame(ErrorCode::Overloaded, Some(message_id), Some(1));
                handle.out.borrow_mut().reply_now(frame);
            }
            observe();
        }
        ValidRequest::RecoveryProofStore {
            key_hash,
            proof_data,
        } => {
            let message = |reply| MeshMessage::StoreProof {
                reply,
                request_message_id: message_id.to_owned(),
                key_hash,
                proof_data,
            };
            request_reply(
                shard,
                handle,
                message_id,
                shard.owner_of(&key_hash),
                message,
            );
        }
        ValidRequest::RecoveryProofQuery { key_hashes } => {
            query_proofs(shard, handle, message_id, key_hashes)
        }
        ValidRequest::PurgeRequest {
            include_device_sync,
            include_recovery_proofs,
            recovery_key_hash,
        } => {
            let proof = recovery_key_hash.filter(|_| include_recovery_proofs);
            purge(shard, handle, message_id, include_device_sync, proof);
        }
    }
}

/// Sends a request whose owner answers into a new reply slot; `overloaded` when
/// the owner's queue is full (§5.2).
fn request_reply(
    shard: &Rc<Shard>,
    handle: &SessionHandle,
    message_id: &str,
    owner: usize,
    message: impl FnOnce(ReplyTo) -> MeshMessage,
) {
    let slot = handle.out.borrow_mut().open_slot();
    let reply = ReplyTo {
        shard: shard.index,
        session: handle.id,
        slot,
    };
    if dispatch::route(shard, owner, message(reply)).is_err() {
        let frame = shard.error_frame(ErrorCode::Overloaded, Some(message_id), Some(1));
        handle.out.borrow_mut().fill(slot, frame);
    }
}

fn store_blob(
    shard: &Rc<Shard>,
    handle: &SessionHandle,
    message_id: &str,
    recipient: Id64,
    data: Vec<u8>,
    sender: Option<Id64>,
) {
    let message = |reply| MeshMessage::Store {
        reply,
        request_message_id: message_id.to_owned(),
        recipient,
        ciphertext: data,
        sender,
    };
    request_reply(
        shard,
        handle,
        message_id,
        shard.owner_of(&recipient),
        message,
    );
}

/// RecoveryProofQuery (§5.9): one part per shard that owns a queried hash.
fn query_proofs(
    shard: &Rc<Shard>,
    handle: &SessionHandle,
    message_id: &str,
    key_hashes: Vec<Id64>,
) {
    let slot = handle.out.borrow_mut().open_slot();
    let reply = ReplyTo {
        shard: shard.index,
        session: handle.id,
        slot,
    };
    let mut by_owner: Vec<Vec<Id64>> = vec![Vec::new(); shard.shards()];
    for hash in &key_hashes {
        by_owner[shard.owner_of(hash)].push(*hash);
    }
    let owners: Vec<usize> = (0..by_owner.len())
        .filter(|o| !by_owner[*o].is_empty())
        .collect();
    let kind = GatherKind::Query {
        order: key_hashes,
        found: Default::default(),
    };
    // The part count is fixed up front; an empty query is answered at once.
    let gather = gather::open(
        shard,
        reply,
        message_id.to_owned(),
        owners.len().max(1),
        kind,
    );
    if owners.is_empty() {
        gather::receive(shard, gather.id, Part::Proofs(Vec::new()));
        return;
    }
    for owner in owners {
        let message = MeshMessage::QueryProofs {
            gather,
            key_hashes: std::mem::take(&mut by_owner[owner]),
        };
        if dispatch::route(shard, owner, message).is_err() {
            gather::receive(shard, gather.id, Part::Failed);
        }
    }
}

/// PurgeRequest (§5.11): each step on its owner; the reply once all finished.
fn purge(
    shard: &Rc<Shard>,
    handle: &SessionHandle,
    message_id: &str,
    device_sync: bool,
    proof: Option<Id64>,
) {
    let slot = handle.out.borrow_mut().open_slot();
    let reply = ReplyTo {
        shard: shard.index,
        session: handle.id,
        slot,
    };
    let parts = 1 + usize::from(device_sync) + usize::from(proof.is_some());
    let kind = GatherKind::Purge {
        blobs: 0,
        device_sync: 0,
        proofs: 0,
    };
    let gather = gather::open(shard, reply, message_id.to_owned(), parts, kind);
    features::purge_blobs(shard, gather, handle.routing_id);
    if device_sync {
        let message = MeshMessage::PurgeDeviceSync {
            gather,
            identity: handle.client_id,
        };
        dispatch::route_post(shard, shard.owner_of(&handle.client_id), message);
    }
    if let Some(key_hash) = proof {
        dispatch::route_post(
            shard,
            shard.owner_of(&key_hash),
            MeshMessage::PurgeProof { gather, key_hash },
        );
    }
}
