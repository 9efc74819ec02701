//! The first data message of a client connection, under the handshake timer
//! (§4.2): a plain Handshake, or a Noise opening answered with message 2 and then
//! the transport messages up to the end of the encrypted Handshake (§15.1); the
//! authenticated handshake's checks (§4.3). The reader stops at the end of the
//! message that completes the Handshake, so that the owner shard gets the rest.

use futures_lite::io::AsyncReadExt;

use crate::limits;
use crate::noise::channel::{self, Channel, Refused};
use crate::protocol::CloseReason;
use crate::protocol::decode::{self, Handshake};
use crate::transport::Transport;
use crate::wsframe::{self, MessageReader, Step};

use crate::keyed::auth;
use crate::keyed::nonce::NonceVerdict;
use crate::mesh::{MeshMessage, NonceCheck};

use super::Shard;

/// How the pre-session phase ended.
pub(super) enum Outcome {
    /// Reply written or connection gone: close.
    Done,
    /// A client session for `handshake`; `remainder` holds bytes read past it,
    /// `noise` the Noise state of a Noise session (§15.1) with any plaintext
    /// decrypted past the Handshake.
    Session {
        handshake: Box<Handshake>,
        remainder: Vec<u8>,
        noise: Option<Box<Channel>>,
    },
    /// Close the WebSocket with this code and reason (§4.2).
    Close(u16, &'static str),
    /// The peer closed the WebSocket before its Handshake: echo.
    EchoClose(u16),
    /// The handshake timer expired before the upgrade: close the TCP connection.
    TimedOut,
    /// An upgraded `/federation` link for the federation executor (§11.4);
    /// `remainder` holds bytes read past the request head.
    Federation { remainder: Vec<u8> },
}

/// Reads up to the end of the first data message and checks it as a Handshake
/// (§4.2); on a Noise session (§15.1), the opening, then messages up to the end of
/// the first frame inside them. Pings are answered; nothing past the message that
/// completes the Handshake is consumed.
pub(super) async fn first_message(
    shard: &Shard,
    stream: &mut Transport,
    reader: &mut MessageReader,
) -> Outcome {
    let mut chunk = [0u8; limits::HANDSHAKE_READ_CHUNK_BYTES];
    let mut noise: Option<Box<Channel>> = None;
    loop {
        match reader.poll() {
            Step::NeedMore => match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Outcome::Done,
                Ok(n) => reader.feed(&chunk[..n]),
            },
            Step::Write(bytes) => {
                if stream.send(&bytes).await.is_err() {
                    return Outcome::Done;
                }
            }
            Step::PeerClose { code } => return Outcome::EchoClose(code),
            Step::Fail { code, reason } => return Outcome::Close(code, reason),
            Step::Message {
                binary, payload, ..
            } => {
                let frame = match first_data(shard, stream, &mut noise, binary, &payload).await {
                    Ok(Some(frame)) => frame,
                    Ok(None) => {
                        if noise.is_some() {
                            // Frames travel sealed from now on (§15.1).
                            let frame_bytes_max = shard.config.max_message_size + 4;
                            let limit = channel::websocket_message_bytes_max(frame_bytes_max);
                            reader.set_max_message_bytes(limit);
                        }
                        continue;
                    }
                    Err(outcome) => return outcome,
                };
                shard.metrics().messages_received_total.inc();
                let handshake = match decode::decode_handshake(&frame) {
                    Ok(handshake) => handshake,
                    Err(reason) => return close(reason),
                };
                if let Err(reason) = authenticate(shard, &handshake).await {
                    return close(reason);
                }
                return Outcome::Session {
                    handshake: Box::new(handshake),
                    remainder: reader.take_remainder(),
                    noise,
                };
            }
        }
    }
}

fn close(reason: CloseReason) -> Outcome {
    Outcome::Close(reason.code(), reason.reason())
}

/// A data message before the Handshake (§4.2 checks 1 and 2, §15.1): the
/// Handshake frame, `None` when the Handshake is still to come (the Noise opening
/// was answered, or its frame is not whole yet), or the outcome that ends the
/// connection.
async fn first_data(
    shard: &Shard,
    stream: &mut Transport,
    noise: &mut Option<Box<Channel>>,
    binary: bool,
    payload: &[u8],
) -> Result<Option<Vec<u8>>, Outcome> {
    let refused = |refused: Refused| close(refused.close_reason());
    if let Some(channel) = noise {
        if !binary {
            return Err(close(CloseReason::DecryptionFailed));
        }
        channel.open(payload).map_err(refused)?;
        return channel.next_frame().map_err(refused);
    }
    if !binary {
        shard.metrics().messages_received_total.inc();
        return Err(close(CloseReason::HandshakeRequired));
    }
    if !decode::is_noise_opening(payload) {
        if shard.config.require_noise {
            shard.metrics().messages_received_total.inc();
            return Err(close(CloseReason::NoiseRequired));
        }
        return Ok(Some(payload.to_vec()));
    }
    let frame_bytes_max = shard.config.max_message_size + 4;
    let Ok((reply, channel)) = channel::respond(&shard.shared.noise_key, payload, frame_bytes_max)
    else {
        return Err(close(CloseReason::NoiseHandshakeFailed));
    };
    if stream
        .send(&wsframe::server_binary_frame(&reply))
        .await
        .is_err()
    {
        return Err(Outcome::Done);
    }
    shard.metrics().noise_sessions_total.inc();
    *noise = Some(Box::new(channel));
    Ok(None)
}

/// The authenticated handshake of §4.3, when all four fields were given.
async fn authenticate(shard: &Shard, handshake: &Handshake) -> Result<(), CloseReason> {
    let Some(auth) = &handshake.auth else {
        return Ok(());
    };
    let now = shard.now();
    if !auth::precheck(auth, &handshake.client_id, now) {
        return Err(CloseReason::AuthenticationFailed);
    }
    let key = auth.identity_public_key;
    let owner = shard.owner_of(&key);
    let verdict = if owner == shard.index {
        shard.state.borrow_mut().nonces.check(key, auth.nonce, now)
    } else {
        let (verdict, answer) = flume::bounded(1);
        let message = MeshMessage::NonceCheck(NonceCheck {
            key,
            nonce: auth.nonce,
            now,
            verdict,
        });
        if shard.mesh.try_send(owner, message).is_err() {
            return Err(CloseReason::Overloaded);
        }
        answer
            .recv_async()
            .await
            .map_err(|_| CloseReason::InternalError)?
    };
    match verdict {
        NonceVerdict::Fresh => {}
        NonceVerdict::Replayed => return Err(CloseReason::AuthenticationFailed),
        NonceVerdict::Full => return Err(CloseReason::Overloaded),
    }
    if auth::signature_verifies(auth) {
        Ok(())
    } else {
        Err(CloseReason::AuthenticationFailed)
    }
}
