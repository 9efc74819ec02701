//! The byte stream under a main-port connection: plain TCP, or TLS built in (§2.8).
//! Everything above it (HTTP, frames, sessions, federation links) reads and writes
//! a [`Transport`] and does not know which. A transport with no I/O in flight comes
//! apart into [`Parts`] that another executor puts back together, so that a TLS
//! session moves to the owner shard as a plain one does.

pub mod certs;
pub mod proxy_header;
pub mod tls;
pub mod x509;

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use std::net::IpAddr;

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use futures_rustls::rustls::ServerConnection;
use glommio::net::TcpStream;

use crate::http::{self, HeadParse};
use crate::limits;

use tls::TlsServer;

pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsServer>),
}

/// A transport taken apart: a duplicate of its socket's fd and, for TLS, the
/// session state. It owns the fd: dropped unused, it closes it.
pub struct Parts {
    fd: OwnedFd,
    tls: Option<Box<ServerConnection>>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Transport {
    fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(tcp) => tcp,
            Transport::Tls(tls) => tls.tcp(),
        }
    }

    /// Takes the transport apart for another executor. Call it only with no read
    /// or write in flight (glommio streams have no `into_raw_fd`, so the fd is
    /// duplicated and the stream dropped: GLOMMIO-NOTES).
    pub fn into_parts(self) -> io::Result<Parts> {
        // SAFETY of the borrow: the stream is alive for the whole statement.
        let fd = unsafe { BorrowedFd::borrow_raw(self.tcp().as_raw_fd()) }.try_clone_to_owned()?;
        let tls = match self {
            Transport::Plain(_) => None,
            Transport::Tls(tls) => Some(Box::new(tls.into_parts().1)),
        };
        Ok(Parts { fd, tls })
    }

    /// Puts a transport back together on this executor.
    pub fn from_parts(parts: Parts) -> Transport {
        // SAFETY: `parts` owns the fd, and gives it up here.
        let tcp = unsafe { TcpStream::from_raw_fd(parts.fd.into_raw_fd()) };
        match parts.tls {
            None => Transport::Plain(tcp),
            Some(conn) => Transport::Tls(Box::new(TlsServer::from_parts(tcp, *conn))),
        }
    }

    /// Writes all of `bytes` and sends them (a TLS write may hold its last records
    /// until flushed).
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        use futures_lite::io::AsyncWriteExt;
        self.write_all(bytes).await?;
        self.flush().await
    }

    /// Ends the connection: for TLS our close_notify, if the socket takes it at
    /// once (nothing waits for a peer that reads nothing), then both directions.
    pub async fn shutdown(&mut self) {
        if let Transport::Tls(tls) = self {
            let mut once = Some(());
            std::future::poll_fn(|cx| {
                if once.take().is_some() {
                    let _ = Pin::new(&mut **tls).poll_close(cx);
                }
                Poll::Ready(())
            })
            .await;
        }
        let _ = self.tcp().shutdown(std::net::Shutdown::Both).await;
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Transport::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Transport::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Transport::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_close(cx),
            Transport::Tls(tls) => Pin::new(&mut **tls).poll_close(cx),
        }
    }
}

/// Reads a PROXY protocol header (§2.9) from a trusted connection, consuming
/// exactly its bytes so that TLS or HTTP starts right after it, and returns the
/// source it names (`None`: keep the TCP peer address). An error means: not a
/// header of `versions`, or the peer closed first. The caller bounds the wait.
///
/// Bytes are peeked, and consumed only once they are known to be the header's: an
/// incomplete beginning is consumed (so that the next peek waits for new bytes
/// instead of returning the same ones), a complete header exactly to its end.
pub async fn read_proxy_header(
    tcp: &mut TcpStream,
    versions: proxy_header::Versions,
) -> io::Result<Option<IpAddr>> {
    let mut header = [0u8; limits::PROXY_HEADER_BUFFERED_BYTES_MAX];
    let mut consumed = 0;
    loop {
        let seen = tcp.peek(&mut header[consumed..]).await?;
        if seen == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let parsed = proxy_header::parse(&header[..consumed + seen], versions)
            .map_err(|invalid| io::Error::new(io::ErrorKind::InvalidData, invalid.0))?;
        match parsed {
            proxy_header::Parse::Incomplete => {
                // parse never asks for more than the buffer holds.
                assert!(consumed + seen < header.len());
                tcp.read_exact(&mut header[consumed..consumed + seen])
                    .await?;
                consumed += seen;
            }
            proxy_header::Parse::Complete { length, source } => {
                let buffered = length.min(consumed + seen);
                tcp.read_exact(&mut header[consumed..buffered]).await?;
                // The TLVs of a v2 header past what was peeked: skipped.
                let rest = (length - buffered) as u64;
                let skipped =
                    futures_lite::io::copy((&mut *tcp).take(rest), futures_lite::io::sink())
                        .await?;
                if skipped < rest {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                return Ok(source);
            }
        }
    }
}

/// Reads a request head, bounded by §2.3. Returns the parse result and the buffer.
pub async fn read_head(stream: &mut Transport) -> Option<(HeadParse, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; limits::HEAD_READ_CHUNK_BYTES];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        match http::parse_head(&buf) {
            HeadParse::Partial if buf.len() <= limits::HEAD_BYTES_MAX => continue,
            HeadParse::Partial => return Some((HeadParse::TooLarge, buf)),
            parsed => return Some((parsed, buf)),
        }
    }
}
