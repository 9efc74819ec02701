//! A federation link's socket (PROTOCOL.md §11.1, §2.7): its WebSocket limits,
//! writes bounded by the send timeout, reading the next data message, and the
//! closes, including the one after the peer broke the framing.
//!
//! Links never carry `Error` messages: a read error that is the peer's fault is
//! answered with a close code (1009 or 1002), nothing else.

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::error::ProtocolError;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_lite::{AsyncRead, AsyncWrite, StreamExt};

use crate::limits::{
    FEDERATION_READ_BUFFER_BYTES, FEDERATION_SEND_TIMEOUT, FEDERATION_WRITE_BUFFER_FACTOR,
};

use super::super::checked::{self, Checked};
use super::super::node::{Node, within};

pub fn socket_config(node: &Node) -> WebSocketConfig {
    let limit = node.message_size_limit();
    WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
        .read_buffer_size(FEDERATION_READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(limit.saturating_mul(FEDERATION_WRITE_BUFFER_FACTOR))
}

/// Sends our Close, bounded like any write to the peer.
async fn send_close<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    code: u16,
    reason: &'static str,
) {
    let frame = CloseFrame {
        code: code.into(),
        reason: reason.into(),
    };
    let _ = within(FEDERATION_SEND_TIMEOUT, ws.close(Some(frame))).await;
}

pub async fn close<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    code: u16,
    reason: &'static str,
) {
    send_close(ws, code, reason).await;
    // Wait briefly for the peer's Close (§2.7).
    read_to_end(ws).await;
}

/// Our Close after a read error that is the peer's fault: the library has ended its
/// stream, so the peer's Close is looked for on the raw stream (§2.7), up to the
/// close wait.
pub async fn close_broken<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<Checked<S>>,
    code: u16,
    reason: &'static str,
) {
    send_close(ws, code, reason).await;
    let _ = within(crate::limits::CLOSE_WAIT, ws.get_mut().wait_for_close()).await;
}

/// Reads until the peer ends the connection, up to the close wait (§2.7); the
/// library answers a Close received meanwhile.
pub async fn read_to_end<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) {
    let _ = within(crate::limits::CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Writes one message; false if the link failed or the peer stopped reading.
pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    frame: Vec<u8>,
) -> bool {
    send_message(ws, Message::Binary(frame.into())).await
}

pub async fn send_message<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    message: Message,
) -> bool {
    matches!(
        within(FEDERATION_SEND_TIMEOUT, ws.send(message)).await,
        Some(Ok(()))
    )
}

/// The next data message, skipping control frames. `None` at the end or on error.
pub async fn next_data<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> Option<Result<Message, WsError>> {
    loop {
        match ws.next().await? {
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            other => return Some(other),
        }
    }
}

/// The close for a read error that is the peer's fault (§11.1): 1009 for a frame
/// or message over the limit, 1002 for any other RFC 6455 violation; `None` when
/// the connection itself failed.
pub fn violation_close(error: &WsError) -> Option<(u16, &'static str)> {
    match error {
        WsError::Capacity(_) => Some((1009, "message too big")),
        // The peer closed TCP without a Close: the link is gone, nothing to send.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        // Invalid UTF-8 in a text frame breaks RFC 6455 too; §11.1 has no 1007.
        WsError::Protocol(_) | WsError::Utf8(_) => Some((1002, "protocol error")),
        error if checked::is_length_violation(error) => Some((1002, "protocol error")),
        _ => None,
    }
}
