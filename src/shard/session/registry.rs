//! A session's registration on its owner shard (§4.6, §4.10): what opening one
//! sets up (reply queue, rate buckets, connect-time delivery, forwarding hints,
//! device-sync registration) and what closing one removes: only its own entries.

use std::rc::Rc;

use crate::keyed::ratelimit::TokenBucket;
use crate::limits;
use crate::mesh::{MeshMessage, RegisterDevice, UnregisterDevice};
use crate::protocol::CloseReason;
use crate::protocol::decode::Handshake;
use crate::protocol::encode;

use super::super::{Buckets, Shard, backlog, offload};
use super::outbound::{Outbound, SessionHandle};

/// Registers a new session for a routing_id this shard owns: its reply queue with
/// the HandshakeAck first, its buckets, then connect-time delivery, forwarding
/// hints and device-sync registration, in the order of §4.6. A Noise session's
/// HandshakeAck lists `"noise_nk"` too (§15.1).
pub fn open(shard: &Rc<Shard>, handshake: &Handshake, noise: bool) -> Rc<SessionHandle> {
    let handle = insert(shard, handshake);
    let routing_id = handle.routing_id;
    let ack = if noise {
        encode::noise_handshake_ack(shard.now())
    } else {
        encode::handshake_ack(shard.now())
    };
    handle.out.borrow_mut().reply_now(ack);
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

/// The session's entries in the shard's state: by id, by routing_id, and its
/// routing_id's buckets (new and full, or shared with its other sessions, §8).
fn insert(shard: &Shard, handshake: &Handshake) -> Rc<SessionHandle> {
    let routing_id = handshake.routing_id();
    let config = &shard.config;
    let bound_bytes = limits::OUTBOUND_QUEUE_BYTES_FACTOR * (config.max_message_size + 4);
    let now_mono = shard.monotonic_secs();
    let mut state = shard.state.borrow_mut();
    let id = state.next_session();
    let out = Outbound::new(limits::OUTBOUND_QUEUE_MESSAGES_MAX, bound_bytes);
    let handle = Rc::new(SessionHandle {
        id,
        routing_id,
        client_id: handshake.client_id,
        device_id: handshake.device_id,
        suppress_presence: handshake.suppress_presence,
        out: std::cell::RefCell::new(out),
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
}

/// Removes only this session's registration (§4.10).
pub fn close(shard: &Rc<Shard>, handle: &SessionHandle) {
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
