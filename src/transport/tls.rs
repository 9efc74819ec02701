//! A TLS server session over a glommio TCP stream (§2.8), driven by hand with
//! rustls's sans-I/O `ServerConnection`, so that both halves can be taken apart
//! ([`TlsServer::into_parts`]) and sent to the shard that owns the session, which
//! puts them back together and goes on where the accepting shard stopped: records
//! rustls read but the relay has not, and its keys, travel inside the connection.
//!
//! Invariant: at most one write's records are queued: a write first sends what the
//! previous one left, and only then encrypts more.

use std::io::{self, IoSlice, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_rustls::rustls::{ServerConfig, ServerConnection};
use glommio::net::TcpStream;

use crate::limits::{TLS_GATHER_BYTES, TLS_SCRATCH_KEPT_BYTES_MAX};

pub struct TlsServer {
    tcp: TcpStream,
    conn: ServerConnection,
    /// Reused by gathered sends; never longer than `TLS_GATHER_BYTES`.
    scratch: Vec<u8>,
    /// Our close_notify is queued.
    closing: bool,
}

impl TlsServer {
    /// A server session that has not begun its handshake.
    pub fn new(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<TlsServer> {
        let conn = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsServer::from_parts(tcp, conn))
    }

    /// Puts a session back together from [`into_parts`](Self::into_parts).
    pub fn from_parts(tcp: TcpStream, conn: ServerConnection) -> TlsServer {
        TlsServer {
            tcp,
            conn,
            scratch: Vec::new(),
            closing: false,
        }
    }

    /// The stream and the session state. Nothing is lost if no read or write is in
    /// flight: every byte rustls has read stays in the connection.
    pub fn into_parts(self) -> (TcpStream, ServerConnection) {
        (self.tcp, self.conn)
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The peer's certificate (DER), once the handshake verified one (§15.3).
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        let chain = self.conn.peer_certificates()?;
        chain.first().map(|cert| cert.as_ref())
    }

    /// Runs the handshake to its end; an error (alert sent where rustls made one)
    /// or EOF fails it.
    pub async fn handshake(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_handshake(cx)).await
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_send_records(cx))?;
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if ready!(self.poll_receive_records(cx))? == 0 {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Sends every queued record; `Pending` while the socket takes no more.
    fn poll_send_records(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            let mut sink = Sink {
                tcp: &mut self.tcp,
                scratch: &mut self.scratch,
                cx,
            };
            match self.conn.write_tls(&mut sink) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads records from the socket and processes them: the bytes read (0 at EOF).
    /// A record that fails is answered with rustls's alert, as far as the socket
    /// takes it at once, and fails the read.
    fn poll_receive_records(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut source = Source {
            tcp: &mut self.tcp,
            cx,
        };
        let n = match self.conn.read_tls(&mut source) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if let Err(error) = self.conn.process_new_packets() {
            let _ = self.poll_send_records(cx);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncRead for TlsServer {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.conn.reader().read(buf) {
                // 0: the peer's close_notify.
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Records rustls made while reading (a key update's answer) go out
            // with the next write if the socket takes none now.
            if let Poll::Ready(Err(e)) = this.poll_send_records(cx) {
                return Poll::Ready(Err(e));
            }
            if ready!(this.poll_receive_records(cx))? == 0 {
                return Poll::Ready(Ok(0));
            }
        }
    }
}

impl AsyncWrite for TlsServer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_send_records(cx))?;
        let n = this.conn.writer().write(buf)?;
        // Taken: what the socket does not take now goes with the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_send_records(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send_records(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            this.closing = true;
            this.conn.send_close_notify();
        }
        ready!(this.poll_send_records(cx))?;
        Pin::new(&mut this.tcp).poll_close(cx)
    }
}

/// The socket as rustls's `Read`: `WouldBlock` stands for `Pending` (the waker is
/// registered).
struct Source<'a, 'b> {
    tcp: &'a mut TcpStream,
    cx: &'a mut Context<'b>,
}

impl Read for Source<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.tcp).poll_read(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// The socket as rustls's `Write`. rustls hands its queued records over as one
/// vectored write; glommio's stream would send only the first buffer, so they
/// are gathered into one send (fewer syscalls, and an alert queued behind another
/// record still leaves).
struct Sink<'a, 'b> {
    tcp: &'a mut TcpStream,
    scratch: &'a mut Vec<u8>,
    cx: &'a mut Context<'b>,
}

impl Sink<'_, '_> {
    fn send(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.tcp).poll_write(self.cx, bytes) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Sink<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        match (filled.next(), filled.next()) {
            (None, _) => return Ok(0),
            (Some(only), None) => return self.send(only),
            _ => {}
        }
        let mut scratch = std::mem::take(self.scratch);
        scratch.clear();
        for buf in bufs {
            let room = TLS_GATHER_BYTES - scratch.len();
            if room == 0 {
                break;
            }
            scratch.extend_from_slice(&buf[..buf.len().min(room)]);
        }
        // A partial send reports the bytes taken from the front, as writev would.
        let result = self.send(&scratch);
        // A session that once gathered a large backlog does not keep its buffer
        // for life: at 100,000 sessions that would be gigabytes.
        if scratch.capacity() <= TLS_SCRATCH_KEPT_BYTES_MAX {
            *self.scratch = scratch;
        }
        result
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
