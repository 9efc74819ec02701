//! The request pipeline of a client session (§3.6): every data message in the
//! order of its steps (frame kind, envelope, rate tokens, version, shape, values),
//! then carried out here or sent to the shard that owns its key. Each request gets
//! a reply slot in the session's [`Outbound`](super::outbound::Outbound), filled
//! when its work completes, so replies leave in request order (§4.8).

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
            let message = |reply| {
                MeshMessage::StoreDeviceSync(StoreDeviceSync {
                    reply,
                    request_message_id: message_id.to_owned(),
                    identity: identity_id,
                    target: target_device_id,
                    sender_device_id,
                    payload: encrypted_payload,
                    version,
                })
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
            let message = MeshMessage::AckDeviceSync(AckDeviceSync {
                identity: handle.client_id,
                target: device,
                id,
            });
            if shard
                .route(shard.owner_of(&handle.client_id), message)
                .is_err()
            {
                let frame = shard.error_frame(ErrorCode::Overloaded, Some(message_id), Some(1));
                handle.out.borrow_mut().reply_now(frame);
            }
            observe();
        }
        ValidRequest::RecoveryProofStore {
            key_hash,
            proof_data,
        } => {
            let message = |reply| {
                MeshMessage::StoreProof(StoreProof {
                    reply,
                    request_message_id: message_id.to_owned(),
                    key_hash,
                    proof_data,
                })
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
            fanout::query_proofs(shard, handle, message_id, key_hashes)
        }
        ValidRequest::PurgeRequest {
            include_device_sync,
            include_recovery_proofs,
            recovery_key_hash,
        } => {
            let proof = recovery_key_hash.filter(|_| include_recovery_proofs);
            fanout::purge(shard, handle, message_id, include_device_sync, proof);
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
    if shard.route(owner, message(reply)).is_err() {
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
    let message = |reply| {
        MeshMessage::Store(StoreBlob {
            reply,
            request_message_id: message_id.to_owned(),
            recipient,
            ciphertext: data,
            sender,
        })
    };
    request_reply(
        shard,
        handle,
        message_id,
        shard.owner_of(&recipient),
        message,
    );
}
