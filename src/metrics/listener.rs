//! The metrics listener of PROTOCOL.md §12.1: one std thread serving one connection
//! at a time (a low-rate endpoint), HTTP/1.1 with keep-alive, every read and write
//! bounded in time so a slow or silent client cannot hold it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::counters::{Global, ShardMetrics};
use super::text::render;
use crate::limits::{
    HEAD_BYTES_MAX, HEAD_FIELDS_MAX, METRICS_ACCEPT_ERROR_BACKOFF, METRICS_CONNECTION_TIMEOUT,
    METRICS_IO_TIMEOUT, METRICS_LINGER_BYTES_MAX, METRICS_READ_CHUNK_BYTES,
    METRICS_REQUESTS_PER_CONNECTION_MAX,
};

/// Binds the metrics listener (§12.1) and serves it on a new thread, one connection
/// at a time. `GET /` is the index, `GET /metrics` the scrape (behind the bearer
/// token when one is set), `GET /pubkey` the Noise public key `pubkey` (base64url,
/// no token needed), anything else `404`. Returns the bound address; a bind
/// failure is returned as is, for the caller to name `RELAY_METRICS_ADDR`.
pub fn spawn_listener(
    addr: impl ToSocketAddrs,
    token: Option<String>,
    pubkey: String,
    shards: Arc<[ShardMetrics]>,
    global: Arc<Global>,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let state = Listener {
        token,
        pubkey,
        shards,
        global,
    };
    let thread = std::thread::Builder::new()
        .name("relay-metrics".into())
        .spawn(move || state.run(listener))?;
    Ok((local, thread))
}

struct Listener {
    token: Option<String>,
    pubkey: String,
    shards: Arc<[ShardMetrics]>,
    global: Arc<Global>,
}

/// One reply: status line, content type, extra header, body.
struct Reply {
    status: &'static str,
    content_type: &'static str,
    extra_header: &'static str,
    body: Vec<u8>,
}

/// What to do with the connection after a reply.
#[derive(PartialEq)]
enum Next {
    KeepAlive,
    Close,
}

impl Listener {
    fn run(self, listener: TcpListener) {
        for stream in listener.incoming() {
            match stream {
                // Errors on one connection concern only that connection.
                Ok(stream) => {
                    let _ = self.serve(stream);
                }
                // Out of file descriptors or similar: back off instead of spinning.
                Err(_) => std::thread::sleep(METRICS_ACCEPT_ERROR_BACKOFF),
            }
        }
    }

    /// Serves the requests of one connection until it closes, misbehaves, reaches
    /// [`METRICS_REQUESTS_PER_CONNECTION_MAX`] or [`METRICS_CONNECTION_TIMEOUT`].
    fn serve(&self, mut stream: TcpStream) -> io::Result<()> {
        let deadline = Instant::now() + METRICS_CONNECTION_TIMEOUT;
        stream.set_nodelay(true)?;
        let mut buf: Vec<u8> = Vec::with_capacity(1024);
        for served in 1..=METRICS_REQUESTS_PER_CONNECTION_MAX {
            let (reply, next, head_len) = loop {
                if let Some(answered) = self.answer(&buf) {
                    break answered;
                }
                if !read_some(&mut stream, &mut buf, deadline)? {
                    return Ok(());
                }
            };
            let close = next == Next::Close || served == METRICS_REQUESTS_PER_CONNECTION_MAX;
            write_before(&mut stream, &reply.encode(close), deadline)?;
            if close {
                return linger(stream, deadline);
            }
            buf.drain(..head_len);
        }
        Ok(())
    }

    /// Answers the request whose head starts `buf`: `None` while the head is
    /// incomplete, otherwise the reply, whether to keep the connection, and the
    /// head's length.
    fn answer(&self, buf: &[u8]) -> Option<(Reply, Next, usize)> {
        let window = &buf[..buf.len().min(HEAD_BYTES_MAX)];
        let mut fields = [httparse::EMPTY_HEADER; HEAD_FIELDS_MAX];
        let mut request = httparse::Request::new(&mut fields);
        let head_len = match request.parse(window) {
            Ok(httparse::Status::Complete(head_len)) => head_len,
            Ok(httparse::Status::Partial) if buf.len() <= HEAD_BYTES_MAX => return None,
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                return Some((
                    Reply::text(
                        "431 Request Header Fields Too Large",
                        "Request Header Fields Too Large",
                    ),
                    Next::Close,
                    0,
                ));
            }
            Err(_) => {
                return Some((
                    Reply::text("400 Bad Request", "Bad Request"),
                    Next::Close,
                    0,
                ));
            }
        };
        Some((self.route(&request), next_after(&request), head_len))
    }

    /// The reply to a complete request head: the index, the scrape (behind the
    /// token when one is set), or `404`.
    fn route(&self, request: &httparse::Request<'_, '_>) -> Reply {
        let method = request.method.unwrap_or_default();
        let target = request.path.unwrap_or_default();
        let path = target.split('?').next().unwrap_or_default();
        match (method, path) {
            ("GET", "/") => Reply {
                status: "200 OK",
                content_type: "application/json",
                extra_header: "",
                body: format!(
                    r#"{{"service":"vauchi-relay-metrics","version":"{}","endpoints":["/metrics","/pubkey"]}}"#,
                    env!("CARGO_PKG_VERSION")
                )
                .into_bytes(),
            },
            ("GET", "/metrics") if self.authorized(header(request, "authorization").next()) => {
                Reply {
                    status: "200 OK",
                    content_type: "text/plain; version=0.0.4; charset=utf-8",
                    extra_header: "",
                    body: render(&self.shards, &self.global).into_bytes(),
                }
            }
            ("GET", "/pubkey") => Reply {
                status: "200 OK",
                content_type: "text/plain",
                extra_header: "",
                body: self.pubkey.clone().into_bytes(),
            },
            ("GET", "/metrics") => Reply {
                extra_header: "WWW-Authenticate: Bearer\r\n",
                ..Reply::text("401 Unauthorized", "Unauthorized")
            },
            _ => Reply::text("404 Not Found", "Not Found"),
        }
    }

    /// True when no token is set, or the first `Authorization` field is exactly
    /// `Bearer <token>`, compared in constant time.
    fn authorized(&self, authorization: Option<&[u8]>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let expected = format!("Bearer {token}");
        constant_time_eq(authorization.unwrap_or_default(), expected.as_bytes())
    }
}

/// Whether the connection stays open after the reply to `request`.
fn next_after(request: &httparse::Request<'_, '_>) -> Next {
    // Request bodies are not read, so a request that has one ends the connection.
    let has_body = header(request, "transfer-encoding").next().is_some()
        || header(request, "content-length").any(|v| v.trim_ascii() != b"0");
    let close_asked = header(request, "connection").any(|v| {
        v.split(|b| *b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
    });
    if request.version == Some(1) && !has_body && !close_asked {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// The values of every field `name` (any case) of `request`, in order.
fn header<'a>(
    request: &'a httparse::Request<'_, '_>,
    name: &'static str,
) -> impl Iterator<Item = &'a [u8]> {
    request
        .headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

impl Reply {
    fn text(status: &'static str, body: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            extra_header: "",
            body: body.as_bytes().to_vec(),
        }
    }

    fn encode(&self, close: bool) -> Vec<u8> {
        let mut bytes = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{}{}\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            self.extra_header,
            if close { "Connection: close\r\n" } else { "" },
        )
        .into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Compares in time that depends only on the lengths, never on where the bytes
/// first differ. (The token's length is not treated as a secret.)
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (index, byte) in expected.iter().enumerate() {
        diff |= byte ^ given.get(index).copied().unwrap_or(!byte);
    }
    std::hint::black_box(diff) == 0
}

/// The time left before `deadline`, capped at [`METRICS_IO_TIMEOUT`]; an error once
/// the deadline has passed.
fn io_timeout(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    Ok(left.min(METRICS_IO_TIMEOUT))
}

/// Reads what is available (at most one head's worth past the limit) into `buf`.
/// Returns false when the peer closed.
fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> io::Result<bool> {
    stream.set_read_timeout(Some(io_timeout(deadline)?))?;
    let mut chunk = [0u8; METRICS_READ_CHUNK_BYTES];
    let room = (HEAD_BYTES_MAX + 1)
        .saturating_sub(buf.len())
        .clamp(1, chunk.len());
    let n = stream.read(&mut chunk[..room])?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

/// Writes all of `bytes`, each write bounded by the time left.
fn write_before(stream: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.set_write_timeout(Some(io_timeout(deadline)?))?;
        let n = stream.write(bytes)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Closes after a final reply: shut the write side, then discard a bounded amount of
/// unread input so the kernel does not reset the connection before the client has
/// read the reply.
fn linger(mut stream: TcpStream, deadline: Instant) -> io::Result<()> {
    stream.shutdown(Shutdown::Write)?;
    let mut chunk = [0u8; METRICS_READ_CHUNK_BYTES];
    let mut discarded = 0;
    while discarded < METRICS_LINGER_BYTES_MAX {
        stream.set_read_timeout(Some(io_timeout(deadline)?))?;
        match stream.read(&mut chunk)? {
            0 => break,
            n => discarded += n,
        }
    }
    Ok(())
}
