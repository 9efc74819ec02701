//! Opening an outbound federation link (PROTOCOL.md §11.5, §13.2): the peer URL's
//! host and port, TCP to each of its addresses in turn, TLS for `wss://` (rustls
//! with the ring provider, verified against the system trust roots, SNI and name
//! check against the URL's host), then the WebSocket upgrade. The caller bounds
//! the whole by `RELAY_FEDERATION_PEER_TIMEOUT`.
//!
//! Errors carry the stage and the library's reason (no ids); the caller logs them
//! with the peer URL.

use std::fmt;
use std::io::{self, IoSlice};
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use futures_rustls::rustls::pki_types::ServerName;
use futures_rustls::rustls::{self, ClientConfig, RootCertStore};
use glommio::net::TcpStream;

use crate::limits::FEDERATION_TLS_GATHER_BYTES;

use super::checked::Checked;

/// Default ports when the URL names none.
const WS_PORT: u16 = 80;
const WSS_PORT: u16 = 443;

/// A configured peer URL (§13.2), split for dialling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    pub tls: bool,
    /// The host as written, without the brackets of an IPv6 literal.
    pub host: String,
    pub port: u16,
}

impl PeerAddr {
    /// `ws://host[:port][/path]` or `wss://…` as the configuration normalised it;
    /// `None` if the authority is not a host with an optional numeric port.
    pub fn parse(url: &str) -> Option<PeerAddr> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("wss://") {
            (true, rest)
        } else {
            (false, url.strip_prefix("ws://")?)
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let default = if tls { WSS_PORT } else { WS_PORT };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']')?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match port {
            None => default,
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.parse().ok()?
            }
            Some(_) => return None,
        };
        let bracketed = authority.starts_with('[');
        // Userinfo is not supported; a colon outside brackets is not a host.
        if host.is_empty() || host.contains('@') || (!bracketed && host.contains(':')) {
            return None;
        }
        Some(PeerAddr {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

/// Why an outbound link could not be opened.
#[derive(Debug)]
pub enum DialError {
    /// Name resolution or TCP.
    Connect(String),
    /// TLS: the handshake failed, e.g. an untrusted certificate or a name mismatch.
    Tls(String),
    /// The WebSocket upgrade.
    Upgrade(String),
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialError::Connect(reason) => write!(f, "connect: {reason}"),
            DialError::Tls(reason) => write!(f, "tls: {reason}"),
            DialError::Upgrade(reason) => write!(f, "upgrade: {reason}"),
        }
    }
}

/// The trust roots for `wss://` peers, loaded once per process: the system store,
/// or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set. Logs how many loaded, and warns
/// when none did (every `wss://` attempt will then fail verification).
pub fn client_config() -> Arc<ClientConfig> {
    let loaded = rustls_native_certs::load_native_certs();
    if let Some(error) = loaded.errors.first() {
        tracing::warn!(
            errors = loaded.errors.len(),
            first = %error,
            "some system trust roots could not be loaded"
        );
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        tracing::warn!(
            ignored,
            "no system trust roots loaded: wss:// federation peers cannot be verified"
        );
    } else {
        tracing::info!(
            roots = added,
            ignored,
            "trust roots loaded for wss:// peers"
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // The ring provider supports the default versions; this cannot fail.
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// TCP to each resolved address of `peer` in turn; the first that connects.
/// Resolution blocks the executor, as `TcpStream::connect` with a name would.
async fn connect(peer: &PeerAddr) -> Result<TcpStream, DialError> {
    let addrs: Vec<SocketAddr> = (peer.host.as_str(), peer.port)
        .to_socket_addrs()
        .map_err(|e| DialError::Connect(e.to_string()))?
        .collect();
    let mut last = DialError::Connect("the host has no address".to_owned());
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(error) => last = DialError::Connect(error.to_string()),
        }
    }
    Err(last)
}

async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    target: &str,
    stream: S,
    config: WebSocketConfig,
) -> Result<WebSocketStream<Checked<S>>, DialError> {
    let stream = Checked::after_http_head(stream);
    let (ws, _) = async_tungstenite::client_async_with_config(target, stream, Some(config))
        .await
        .map_err(|e| DialError::Upgrade(e.to_string()))?;
    Ok(ws)
}

/// `ws://`: TCP, then the upgrade to `target`.
pub async fn open_plain(
    peer: &PeerAddr,
    target: &str,
    config: WebSocketConfig,
) -> Result<WebSocketStream<Checked<TcpStream>>, DialError> {
    let stream = connect(peer).await?;
    upgrade(target, stream, config).await
}

/// A `wss://` link's byte stream.
pub type TlsLink = TlsStream<GatherWrites<TcpStream>>;

/// A `wss://` link and the peer's certificate (DER), for the identity check of
/// mTLS (§15.3).
pub type TlsOpened = (WebSocketStream<Checked<TlsLink>>, Vec<u8>);

/// `wss://`: TCP, TLS verified against `tls`'s roots for the URL's host (sent as
/// SNI unless it is an IP address), then the upgrade to `target`. A certificate
/// that fails verification ends the handshake with the matching alert.
pub async fn open_tls(
    peer: &PeerAddr,
    tls: &Arc<ClientConfig>,
    target: &str,
    config: WebSocketConfig,
) -> Result<TlsOpened, DialError> {
    let name = ServerName::try_from(peer.host.clone())
        .map_err(|_| DialError::Tls("the host is not a valid DNS name or IP address".into()))?;
    let stream = GatherWrites::new(connect(peer).await?);
    let stream = TlsConnector::from(Arc::clone(tls))
        .connect(name, stream)
        .await
        .map_err(|e| DialError::Tls(e.to_string()))?;
    let certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.as_ref().to_vec())
        .unwrap_or_default();
    Ok((upgrade(target, stream, config).await?, certificate))
}

/// A stream whose vectored writes send the buffers together. glommio's
/// `TcpStream` only has the futures-io default, which writes the first buffer
/// alone; rustls hands its queued records over as one vectored write, and after
/// a failed handshake tries exactly once to send them, so without this the alert
/// queued behind the ChangeCipherSpec never leaves and the peer sees a bare EOF.
/// It also makes one send of what would be one per record.
pub struct GatherWrites<S> {
    inner: S,
    /// Reused between writes; never longer than `FEDERATION_TLS_GATHER_BYTES`.
    scratch: Vec<u8>,
}

impl<S> GatherWrites<S> {
    pub fn new(inner: S) -> GatherWrites<S> {
        GatherWrites {
            inner,
            scratch: Vec::new(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GatherWrites<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GatherWrites<S> {
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
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        match (filled.next(), filled.next()) {
            (None, _) => return Pin::new(&mut this.inner).poll_write(cx, &[]),
            (Some(only), None) => return Pin::new(&mut this.inner).poll_write(cx, only),
            _ => {}
        }
        this.scratch.clear();
        for buf in bufs {
            let room = FEDERATION_TLS_GATHER_BYTES - this.scratch.len();
            if room == 0 {
                break;
            }
            this.scratch.extend_from_slice(&buf[..buf.len().min(room)]);
        }
        // A partial write reports the bytes taken from the front, as writev would.
        Pin::new(&mut this.inner).poll_write(cx, &this.scratch)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}
