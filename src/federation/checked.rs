//! The byte stream under a federation WebSocket, checked for what the WebSocket
//! library lets through: a frame length not written in its minimal form (RFC 6455
//! §5.2), which §2.6 and §11.1 answer with 1002. Bytes pass through unchanged up to
//! the offending frame's header; from then on every read fails with
//! [`LengthViolation`], which the link turns into its 1002 close.
//!
//! On an outbound link the check starts after the HTTP response head (the first
//! `\r\n\r\n`); on an inbound one, at the first byte after the upgrade.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use async_tungstenite::tungstenite::Error as WsError;
use futures_lite::{AsyncRead, AsyncWrite};

use crate::limits::CLOSE_WAIT_READ_BYTES;
use crate::wsframe::{LengthCheck, Violation};

const HEAD_END: &[u8; 4] = b"\r\n\r\n";

/// A frame length that is not minimal arrived on the link.
#[derive(Debug)]
pub struct LengthViolation;

impl std::fmt::Display for LengthViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a frame length is not in its minimal form")
    }
}

impl std::error::Error for LengthViolation {}

/// Whether a WebSocket error is this stream's [`LengthViolation`].
pub fn is_length_violation(error: &WsError) -> bool {
    matches!(error, WsError::Io(io) if io.get_ref().is_some_and(|e| e.is::<LengthViolation>()))
}

fn violation() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, LengthViolation)
}

pub struct Checked<S> {
    inner: S,
    check: LengthCheck,
    /// Bytes of `\r\n\r\n` matched so far while the HTTP response head is still
    /// passing; `None` once frames have begun.
    head_matched: Option<usize>,
    /// The bytes of the read that held the offending header, after that header (at
    /// most one read buffer): where the walk goes on after the violation.
    held: Vec<u8>,
}

impl<S> Checked<S> {
    /// For an outbound link: frames begin after the response head.
    pub fn after_http_head(inner: S) -> Checked<S> {
        Checked {
            inner,
            check: LengthCheck::new(),
            head_matched: Some(0),
            held: Vec::new(),
        }
    }

    /// For an inbound link whose upgrade is done: frames begin now.
    pub fn frames(inner: S) -> Checked<S> {
        Checked {
            inner,
            check: LengthCheck::new(),
            head_matched: None,
            held: Vec::new(),
        }
    }

    /// Checks bytes that were read past the upgrade before this stream existed and
    /// go to the library directly; false if they hold a violation.
    pub fn check_early(&mut self, bytes: &[u8]) -> bool {
        match self.check.feed(bytes) {
            Ok(()) => true,
            Err(violation) => {
                self.held = bytes[violation.walked..].to_vec();
                false
            }
        }
    }

    /// Walks bytes just read; on a violation, its offsets in `bytes`.
    fn walk(&mut self, bytes: &[u8]) -> Result<(), Violation> {
        let mut start = 0;
        if let Some(matched) = self.head_matched.as_mut() {
            for (i, &byte) in bytes.iter().enumerate() {
                *matched = if byte == HEAD_END[*matched] {
                    *matched + 1
                } else {
                    usize::from(byte == HEAD_END[0])
                };
                if *matched == HEAD_END.len() {
                    start = i + 1;
                    break;
                }
            }
            if *matched < HEAD_END.len() {
                return Ok(());
            }
            self.head_matched = None;
        }
        self.check
            .feed(&bytes[start..])
            .map_err(|violation| Violation {
                pass: start + violation.pass,
                walked: start + violation.walked,
            })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Checked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.check.failed() {
            return Poll::Ready(Err(violation()));
        }
        let n = ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        match this.walk(&buf[..n]) {
            Ok(()) => Poll::Ready(Ok(n)),
            Err(Violation { pass, walked }) => {
                this.held = buf[walked..n].to_vec();
                // The frames before the offending header go on; the next read fails.
                if pass > 0 {
                    Poll::Ready(Ok(pass))
                } else {
                    Poll::Ready(Err(violation()))
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> Checked<S> {
    /// After the library has given up on the link (it ends its stream at the first
    /// read error) and our Close is out: reads the peer's frames on, without the
    /// library, until its Close or EOF, so that TCP closes as §2.7 says and not
    /// with the peer's bytes unread (a reset that can lose our Close). The scan
    /// goes on from the length walk, which has seen every byte read so far: in
    /// step with the frames after a length violation (past the offending header)
    /// and after an error the library found (a frame over the limit, refused from
    /// its header, is passed over). The caller bounds the wait.
    pub async fn wait_for_close(&mut self) {
        let mut scan = std::mem::take(&mut self.check).into_close_scan();
        if scan.feed(&std::mem::take(&mut self.held)) {
            return;
        }
        let mut chunk = [0u8; CLOSE_WAIT_READ_BYTES];
        while let Ok(n @ 1..) = futures_lite::AsyncReadExt::read(&mut self.inner, &mut chunk).await
        {
            if scan.feed(&chunk[..n]) {
                return;
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Checked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}
