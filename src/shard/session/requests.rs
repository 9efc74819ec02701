//! The request pipeline of a client session (§3.6): every data message in the
//! order of its steps (frame kind, envelope, rate tokens, version, shape, values),
//! then carried out here or sent to the shard that owns its key. Each request gets
//! a reply slot in the session's [`Outbound`](super::outbound::Outbound), filled
//! when its work completes, so replies leave in request order (§4.8).
//!
//! `handle_message` stays one function of about 80 lines: it is the ten steps of
//! §3.6 in the spec's order, a few lines each, and split it would no longer read as
//! that list.

use std::rc::Rc;
use std::time::Instant;

use crate::mesh::{AckDeviceSync, MeshMessage, ReplyTo, StoreBlob, StoreDeviceSync, StoreProof};
use crate::metrics::Limiter;
use crate::protocol::decode::{self, Request, ShapeError, ValidRequest, ValueError};
use crate::protocol::encode;
use crate::protocol::{ErrorCode, Id64};

use super::super::{Shard, fanout, owner};
use super::outbound::SessionHandle;

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
pub fn handle_message(
    shard: &Rc<Shard>,
    handle: &Rc<SessionHandle>,
    binary: bool,
    payload: Vec<u8>,
) {
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
    let asked = Asked {
        shard,
        handle,
        message_id,
        received,
        envelope: (envelope.version, envelope.timestamp),
        revoked_recipient,
    };
    execute(&asked, request);
}

/// A request that passed §3.6, with what its handling needs to answer it.
struct Asked<'a> {
    shard: &'a Rc<Shard>,
    handle: &'a Rc<SessionHandle>,
    message_id: &'a str,
    received: Instant,
    /// The envelope's version and timestamp.
    envelope: (u64, u64),
    /// An AccountRevoked's recipient_id as received.
    revoked_recipient: Option<String>,
}

impl Asked<'_> {
    /// Records how long a request answered at once took.
    fn observe(&self) {
        let elapsed = self.received.elapsed();
        self.shard.metrics().observe_duration(elapsed);
    }

    fn refuse(&self, code: ErrorCode) {
        let frame = self.shard.error_frame(code, Some(self.message_id), None);
        self.handle.out.borrow_mut().reply_now(frame);
        self.observe();
    }

    /// Sends a request whose owner answers into a new reply slot; `overloaded`
    /// when the owner's queue is full (§5.2).
    fn request_reply(&self, owner: usize, message: impl FnOnce(ReplyTo) -> MeshMessage) {
        let slot = self.handle.out.borrow_mut().open_slot();
        let reply = ReplyTo {
            shard: self.shard.index,
            session: self.handle.id,
            slot,
        };
        if self.shard.route(owner, message(reply)).is_err() {
            let frame =
                self.shard
                    .error_frame(ErrorCode::Overloaded, Some(self.message_id), Some(1));
            self.handle.out.borrow_mut().fill(slot, frame);
        }
    }

    /// A blob for `recipient`, stored by its owner (§5.2).
    fn store_blob(&self, recipient: Id64, data: Vec<u8>, sender: Option<Id64>) {
        let message = |reply| {
            MeshMessage::Store(StoreBlob {
                reply,
                request_message_id: self.message_id.to_owned(),
                recipient,
                ciphertext: data,
                sender,
            })
        };
        self.request_reply(self.shard.owner_of(&recipient), message);
    }
}

/// Carries out a valid request: one call per kind.
fn execute(asked: &Asked<'_>, request: ValidRequest) {
    let routing_id = asked.handle.routing_id;
    match request {
        ValidRequest::EncryptedUpdate {
            recipient_id,
            ciphertext,
        } => asked.store_blob(recipient_id, ciphertext, Some(routing_id)),
        ValidRequest::AccountRevoked {
            sender_id,
            recipient_id,
            timestamp,
            signature,
        } => account_revoked(asked, &sender_id, recipient_id, timestamp, &signature),
        ValidRequest::Acknowledgment { blob_id, status } => {
            owner::ack(asked.shard, asked.handle, &blob_id, status);
            asked.observe();
        }
        ValidRequest::DeviceSyncMessage {
            identity_id,
            target_device_id,
            sender_device_id,
            encrypted_payload,
            version,
        } => {
            let message = |reply| StoreDeviceSync {
                reply,
                request_message_id: asked.message_id.to_owned(),
                identity: identity_id,
                target: target_device_id,
                sender_device_id,
                payload: encrypted_payload,
                version,
            };
            device_sync_message(asked, identity_id, message)
        }
        ValidRequest::DeviceSyncAck { message_id, .. } => device_sync_ack(asked, &message_id),
        ValidRequest::RecoveryProofStore {
            key_hash,
            proof_data,
        } => proof_store(asked, key_hash, proof_data),
        ValidRequest::RecoveryProofQuery { key_hashes } => {
            fanout::query_proofs(asked.shard, asked.handle, asked.message_id, key_hashes)
        }
        ValidRequest::PurgeRequest {
            include_device_sync,
            include_recovery_proofs,
            recovery_key_hash,
        } => {
            let proof = recovery_key_hash.filter(|_| include_recovery_proofs);
            let (shard, handle) = (asked.shard, asked.handle);
            fanout::purge(shard, handle, asked.message_id, include_device_sync, proof);
        }
    }
}

/// An AccountRevoked (§5.12) is stored as a blob for its recipient, with its
/// recipient_id as received; no sender is recorded.
fn account_revoked(
    asked: &Asked<'_>,
    sender_id: &str,
    recipient: Id64,
    timestamp: u64,
    signature: &[u8],
) {
    let (version, envelope_timestamp) = asked.envelope;
    let frame = encode::account_revoked_blob(
        version,
        asked.message_id,
        envelope_timestamp,
        sender_id,
        asked.revoked_recipient.as_deref().unwrap_or_default(),
        timestamp,
        signature,
    );
    asked.store_blob(recipient, frame, None);
}

/// DeviceSyncMessage (§5.6): only for the session's own identity; stored on the
/// identity's owner, which answers into the reply slot.
fn device_sync_message(
    asked: &Asked<'_>,
    identity: Id64,
    message: impl FnOnce(ReplyTo) -> StoreDeviceSync,
) {
    if identity != asked.handle.client_id {
        return asked.refuse(ErrorCode::NotPermitted);
    }
    let owner = asked.shard.owner_of(&identity);
    asked.request_reply(owner, |reply| MeshMessage::StoreDeviceSync(message(reply)));
}

/// DeviceSyncAck (§5.7): only on a session with a device_id; no reply unless the
/// owner's queue is full.
fn device_sync_ack(asked: &Asked<'_>, stored_id: &str) {
    let Some(device) = asked.handle.device_id else {
        return asked.refuse(ErrorCode::NotPermitted);
    };
    // An id that is not a UUID names no stored message: no effect (§5.7).
    let Ok(id) = uuid::Uuid::parse_str(stored_id) else {
        return asked.observe();
    };
    let identity = asked.handle.client_id;
    let message = MeshMessage::AckDeviceSync(AckDeviceSync {
        identity,
        target: device,
        id,
    });
    let shard = asked.shard;
    if shard.route(shard.owner_of(&identity), message).is_err() {
        let frame = shard.error_frame(ErrorCode::Overloaded, Some(asked.message_id), Some(1));
        asked.handle.out.borrow_mut().reply_now(frame);
    }
    asked.observe();
}

/// RecoveryProofStore (§5.8), stored on the hash's owner.
fn proof_store(asked: &Asked<'_>, key_hash: Id64, proof_data: Vec<u8>) {
    let message = |reply| {
        MeshMessage::StoreProof(StoreProof {
            reply,
            request_message_id: asked.message_id.to_owned(),
            key_hash,
            proof_data,
        })
    };
    asked.request_reply(asked.shard.owner_of(&key_hash), message);
}
