//! The configuration's values: `Config`, the field types of its enumerated
//! variables, and what the values mean together (the startup warnings). The
//! tables in `variables` fill these in; nothing here parses text.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageBackend {
    Sqlite,
    Memory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteSynchronous {
    Normal,
    Full,
}

/// The metrics address: an IP socket address or `localhost:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsAddr {
    Socket(SocketAddr),
    Localhost(u16),
}

/// `RELAY_PROXY_PROTOCOL` (§2.9): which PROXY protocol header trusted sources send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    Off,
    V1,
    V2,
    Any,
}

/// The certificate and key files of built-in TLS (§2.8), set together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The three files of federation mTLS (§15.3), set together; one not given is an
/// empty path until `Config::from_vars` refuses it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FederationTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub metrics_addr: MetricsAddr,
    pub metrics_token: Option<String>,
    pub tls_verified: bool,
    /// Built-in TLS on the main listener (§2.8); `None`: plain TCP.
    pub tls: Option<TlsFiles>,
    pub max_connections: u64,
    pub max_message_size: usize,
    pub handshake_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub blob_ttl_secs: u64,
    pub cleanup_interval_secs: u64,
    pub rate_limit: u32,
    pub recovery_rate_limit: u32,
    /// 0 = unlimited.
    pub max_blobs_per_user: u64,
    /// 0 = unlimited.
    pub max_storage_per_user: u64,
    pub storage_backend: StorageBackend,
    pub data_dir: PathBuf,
    pub sqlite_synchronous: SqliteSynchronous,
    /// `None` = the number of CPUs in the process's affinity mask (resolved at startup).
    pub shards: Option<usize>,
    pub cpu_pin: bool,
    pub federation_enabled: bool,
    /// Normalised entries (trimmed, deduplicated, one trailing `/` removed).
    pub federation_peers: Vec<String>,
    pub federation_relay_id: Option<String>,
    pub max_storage_bytes: u64,
    pub federation_offload_threshold: f64,
    pub federation_offload_refuse: f64,
    pub federation_drain_timeout_secs: u64,
    pub federation_peer_timeout_secs: u64,
    pub federation_capacity_interval_secs: u64,
    /// §2.10; 0 = unlimited.
    pub max_connections_per_ip: u64,
    /// §2.10: IPv6 client addresses count by their first this many bits.
    pub ipv6_prefix_len: u8,
    pub proxy_protocol: ProxyProtocol,
    /// The sources that must send a PROXY header (§2.9), host bits cleared.
    pub proxy_trusted: Vec<ipnet::IpNet>,
    /// Federation mTLS (§15.3); `None`: federation links are plain WebSockets on
    /// the main port.
    pub federation_tls: Option<FederationTlsFiles>,
    /// `None`: the listen IP with its port + 2 (see [`Config::federation_mtls_addr`]).
    pub federation_mtls_addr: Option<SocketAddr>,
    pub gossip_enabled: bool,
    pub gossip_interval_secs: u64,
    pub peer_ttl_secs: u64,
    /// RELAY_NOISE_STATIC_KEY (§15.1); `None`: the key file of `data_dir`, read or
    /// made at startup. Its `Debug` shows the public half only.
    pub noise_static_key: Option<crate::noise::StaticKey>,
    /// RELAY_REQUIRE_NOISE_ENCRYPTION (§15.1).
    pub require_noise: bool,
}

impl Config {
    /// Whether a connection from `peer` must begin with a PROXY header (§2.9).
    pub fn proxy_trusts(&self, peer: std::net::IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.proxy_protocol != ProxyProtocol::Off
            && self.proxy_trusted.iter().any(|net| net.contains(&peer))
    }
}

impl Config {
    /// Federation mTLS is in effect: configured, with federation enabled (§15.3).
    pub fn federation_mtls(&self) -> bool {
        self.federation_enabled && self.federation_tls.is_some()
    }

    /// The mTLS listener's address (§15.3): as set, else the main listener's IP
    /// with its port + 2 (an ephemeral main port gives an ephemeral one). `None`
    /// only when that default would be past port 65535.
    pub fn federation_mtls_addr(&self) -> Option<SocketAddr> {
        if let Some(addr) = self.federation_mtls_addr {
            return Some(addr);
        }
        let mut addr = self.listen_addr;
        if addr.port() != 0 {
            addr.set_port(addr.port().checked_add(2)?);
        }
        Some(addr)
    }
}

impl MetricsAddr {
    /// `localhost` counts as loopback: it is what the operator asked for.
    pub fn is_loopback(&self) -> bool {
        match self {
            MetricsAddr::Socket(addr) => addr.ip().to_canonical().is_loopback(),
            MetricsAddr::Localhost(_) => true,
        }
    }
}

impl std::fmt::Display for MetricsAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsAddr::Socket(addr) => write!(f, "{addr}"),
            MetricsAddr::Localhost(port) => write!(f, "localhost:{port}"),
        }
    }
}

impl Config {
    /// The warnings of §2.1 (TLS must be terminated by a proxy), §14.3 (federation
    /// without mTLS) and §12.1 (metrics open to the network without a token), for
    /// `main` to log after binding.
    pub fn startup_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let proxied = self.tls.is_none() && !self.tls_verified;
        if proxied && !self.listen_addr.ip().to_canonical().is_loopback() {
            warnings.push(format!(
                "RELAY_LISTEN_ADDR={} is not a loopback address and this relay terminates \
                 no TLS: TLS must be terminated by a reverse proxy in front of it \
                 (set RELAY_TLS_VERIFIED=true once it is)",
                self.listen_addr
            ));
        }
        let loopback = self.listen_addr.ip().to_canonical().is_loopback();
        if self.federation_enabled && self.federation_tls.is_none() && !loopback {
            warnings.push(format!(
                "federation is enabled on RELAY_LISTEN_ADDR={}, which is not a loopback \
                 address, without mTLS: anyone who can reach /federation can claim a relay \
                 id and offer blobs, stored without per-user quotas up to \
                 RELAY_FEDERATION_OFFLOAD_REFUSE of the storage (set \
                 RELAY_FEDERATION_TLS_CERT, _KEY and _CA, PROTOCOL.md §15.3)",
                self.listen_addr
            ));
        }
        if self.metrics_token.is_none() && !self.metrics_addr.is_loopback() {
            warnings.push(format!(
                "RELAY_METRICS_ADDR={} is not a loopback address and RELAY_METRICS_TOKEN \
                 is unset: anyone who can reach it can read /metrics",
                self.metrics_addr
            ));
        }
        warnings
    }
}
