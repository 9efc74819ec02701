//! The table of every `RELAY_*` variable (§13.2): name, default, rule and meaning.
//! It stays whole (past 500 lines) so that it reads like the spec's table;
//! `Config::from_vars` and `help_text` are driven by it.

use std::path::PathBuf;

use super::parse::{
    BOOLEAN_EXPECTED, is_relay_id, parse_boolean, parse_cidrs, parse_decimal, parse_integer,
    parse_metrics_addr, parse_peers, parse_socket_addr,
};
use super::values::{
    Config, FederationTlsFiles, ProxyProtocol, SqliteSynchronous, StorageBackend, TlsFiles,
};

pub(super) const TLS_CERT_FILE: &str = "RELAY_TLS_CERT_FILE";
pub(super) const TLS_KEY_FILE: &str = "RELAY_TLS_KEY_FILE";
pub(super) const FEDERATION_TLS_CERT: &str = "RELAY_FEDERATION_TLS_CERT";
pub(super) const FEDERATION_TLS_KEY: &str = "RELAY_FEDERATION_TLS_KEY";
pub(super) const FEDERATION_TLS_CA: &str = "RELAY_FEDERATION_TLS_CA";
pub(super) const NOISE_STATIC_KEY: &str = "RELAY_NOISE_STATIC_KEY";

/// The TLS files given so far (the other one stays an empty path until set).
fn tls_files(c: &mut Config) -> &mut TlsFiles {
    c.tls.get_or_insert_with(|| TlsFiles {
        cert: PathBuf::new(),
        key: PathBuf::new(),
    })
}

const LISTEN_EXPECTED: &str = "an address IPv4:port or [IPv6]:port, such as 0.0.0.0:8080";
const METRICS_EXPECTED: &str = "an address IPv4:port, [IPv6]:port or localhost:port";
const RELAY_ID_EXPECTED: &str = "1 to 128 printable ASCII characters without spaces";

/// How a variable's default is produced.
pub(super) enum DefaultValue {
    /// Run through the variable's own parser, exactly like a value that was set.
    Text(&'static str),
    /// No value: the field keeps its absent state (`None`, empty) and is resolved
    /// elsewhere. The text only describes this for `--help`.
    Absent(&'static str),
}

pub(super) enum Rule {
    /// Plain decimal digits within `min..=max`.
    Integer {
        min: u64,
        max: u64,
        set: fn(&mut Config, u64),
    },
    Boolean(fn(&mut Config, bool)),
    /// `valid` is for `--help`; `parse` returns the expected text when it refuses.
    Custom {
        valid: &'static str,
        parse: fn(&mut Config, &str) -> Result<(), String>,
    },
    /// A path to one of the federation mTLS files (§15.3).
    Path {
        valid: &'static str,
        field: fn(&mut FederationTlsFiles) -> &mut PathBuf,
    },
    /// Read by another component (the log subscriber); listed for `--help` only.
    External {
        valid: &'static str,
    },
}

impl Rule {
    /// Applies a trimmed, non-empty value, or returns the expected text.
    pub(super) fn apply(&self, config: &mut Config, text: &str) -> Result<(), String> {
        match self {
            Rule::Integer { min, max, set } => {
                let value = parse_integer(text)
                    .filter(|value| (min..=max).contains(&value))
                    .ok_or_else(|| format!("an integer {min}..={max}"))?;
                set(config, value);
            }
            Rule::Boolean(set) => set(config, parse_boolean(text).ok_or(BOOLEAN_EXPECTED)?),
            Rule::Custom { parse, .. } => parse(config, text)?,
            Rule::Path { field, .. } => {
                let files = config
                    .federation_tls
                    .get_or_insert_with(FederationTlsFiles::default);
                *field(files) = PathBuf::from(text);
            }
            Rule::External { .. } => {}
        }
        Ok(())
    }

    pub(super) fn valid(&self) -> String {
        match self {
            Rule::Integer { min, max, .. } => format!("{min}..={max}"),
            Rule::Boolean(_) => "true, 1, false or 0".to_owned(),
            Rule::Custom { valid, .. } | Rule::Path { valid, .. } | Rule::External { valid } => {
                (*valid).to_owned()
            }
        }
    }
}

pub(super) struct VarSpec {
    pub(super) name: &'static str,
    pub(super) default: DefaultValue,
    pub(super) rule: Rule,
    pub(super) meaning: &'static str,
}

/// The §13.2 table, in its order (which is also the order errors are looked for).
pub(super) static VARIABLES: &[VarSpec] = &[
    VarSpec {
        name: "RELAY_LISTEN_ADDR",
        default: DefaultValue::Text("0.0.0.0:8080"),
        rule: Rule::Custom {
            valid: "IPv4:port or [IPv6]:port",
            parse: |c, text| {
                c.listen_addr = parse_socket_addr(text).ok_or(LISTEN_EXPECTED)?;
                Ok(())
            },
        },
        meaning: "Main listener: probes, client and federation WebSockets",
    },
    VarSpec {
        name: "RELAY_METRICS_ADDR",
        default: DefaultValue::Text("127.0.0.1:8081"),
        rule: Rule::Custom {
            valid: "IPv4:port, [IPv6]:port or localhost:port",
            parse: |c, text| {
                c.metrics_addr = parse_metrics_addr(text).ok_or(METRICS_EXPECTED)?;
                Ok(())
            },
        },
        meaning: "Metrics listener",
    },
    VarSpec {
        name: "RELAY_METRICS_TOKEN",
        default: DefaultValue::Absent("unset"),
        rule: Rule::Custom {
            valid: "any non-empty string",
            parse: |c, text| {
                c.metrics_token = Some(text.to_owned());
                Ok(())
            },
        },
        meaning: "Bearer token required for /metrics",
    },
    VarSpec {
        name: "RELAY_TLS_VERIFIED",
        default: DefaultValue::Text("false"),
        rule: Rule::Boolean(|c, value| c.tls_verified = value),
        meaning: "true silences the TLS-proxy warning; it never blocks startup",
    },
    integer(
        "RELAY_MAX_CONNECTIONS",
        "100000",
        (1, 10_000_000),
        |c, v| c.max_connections = v,
        "Open TCP connections on the main port",
    ),
    integer(
        "RELAY_MAX_MESSAGE_SIZE",
        "1048576",
        (256, 67_108_864),
        |c, v| c.max_message_size = narrow(v),
        "Largest JSON text of a message, bytes",
    ),
    integer(
        "RELAY_HANDSHAKE_TIMEOUT",
        "10",
        (1, 3600),
        |c, v| c.handshake_timeout_secs = v,
        "Seconds from accept to request head and Handshake",
    ),
    integer(
        "RELAY_IDLE_TIMEOUT",
        "300",
        (1, 86_400),
        |c, v| c.idle_timeout_secs = v,
        "Seconds without a message from the client before closing",
    ),
    integer(
        "RELAY_BLOB_TTL_SECS",
        "7776000",
        (1, 315_360_000),
        |c, v| c.blob_ttl_secs = v,
        "Blob, device-sync and hint lifetime, seconds (90 days)",
    ),
    integer(
        "RELAY_CLEANUP_INTERVAL",
        "3600",
        (1, 86_400),
        |c, v| c.cleanup_interval_secs = v,
        "Seconds between expiry sweeps",
    ),
    integer(
        "RELAY_RATE_LIMIT",
        "60",
        (1, 1_000_000),
        |c, v| c.rate_limit = narrow(v),
        "General messages per minute per client",
    ),
    integer(
        "RELAY_RECOVERY_RATE_LIMIT",
        "10",
        (1, 1_000_000),
        |c, v| c.recovery_rate_limit = narrow(v),
        "Recovery messages per minute per client",
    ),
    integer(
        "RELAY_MAX_BLOBS_PER_USER",
        "1000",
        (0, 4_294_967_295),
        |c, v| c.max_blobs_per_user = v,
        "Stored blobs per recipient; 0 = unlimited",
    ),
    integer(
        "RELAY_MAX_STORAGE_PER_USER",
        "50000000",
        (0, u64::MAX),
        |c, v| c.max_storage_per_user = v,
        "Stored bytes per recipient; 0 = unlimited",
    ),
    VarSpec {
        name: "RELAY_STORAGE_BACKEND",
        default: DefaultValue::Text("sqlite"),
        rule: Rule::Custom {
            valid: "sqlite or memory (any case)",
            parse: |c, text| {
                c.storage_backend = match text.to_ascii_lowercase().as_str() {
                    "sqlite" => StorageBackend::Sqlite,
                    "memory" => StorageBackend::Memory,
                    _ => return Err("sqlite or memory".to_owned()),
                };
                Ok(())
            },
        },
        meaning: "Where blobs are kept",
    },
    VarSpec {
        name: "RELAY_DATA_DIR",
        default: DefaultValue::Text("./data"),
        rule: Rule::Custom {
            valid: "a path, created if missing",
            parse: |c, text| {
                c.data_dir = PathBuf::from(text);
                Ok(())
            },
        },
        meaning: "Databases and the relay_id file",
    },
    VarSpec {
        name: "RELAY_SQLITE_SYNCHRONOUS",
        default: DefaultValue::Text("normal"),
        rule: Rule::Custom {
            valid: "normal or full (any case)",
            parse: |c, text| {
                c.sqlite_synchronous = match text.to_ascii_lowercase().as_str() {
                    "normal" => SqliteSynchronous::Normal,
                    "full" => SqliteSynchronous::Full,
                    _ => return Err("normal or full".to_owned()),
                };
                Ok(())
            },
        },
        meaning: "SQLite durability: full also survives power loss",
    },
    VarSpec {
        name: "RELAY_SHARDS",
        default: DefaultValue::Absent("the CPUs in the process's affinity mask"),
        rule: Rule::Integer {
            min: 1,
            max: 1024,
            set: |c, v| c.shards = Some(narrow(v)),
        },
        meaning: "Shards, one executor thread each",
    },
    VarSpec {
        name: "RELAY_CPU_PIN",
        default: DefaultValue::Text("true"),
        rule: Rule::Boolean(|c, value| c.cpu_pin = value),
        meaning: "Pin each shard to a CPU of the allowed set",
    },
    VarSpec {
        name: "RELAY_FEDERATION_ENABLED",
        default: DefaultValue::Text("false"),
        rule: Rule::Boolean(|c, value| c.federation_enabled = value),
        meaning: "Federate with other relays",
    },
    VarSpec {
        name: "RELAY_FEDERATION_PEERS",
        default: DefaultValue::Absent("empty"),
        rule: Rule::Custom {
            valid: "comma-separated ws:// or wss:// URLs, no query or fragment",
            parse: |c, text| {
                c.federation_peers = parse_peers(text)?;
                Ok(())
            },
        },
        meaning: "Peer relays; the link URL is the entry + /federation. wss:// peers are \
                  verified against the system trust roots (SSL_CERT_FILE, SSL_CERT_DIR)",
    },
    VarSpec {
        name: "RELAY_FEDERATION_RELAY_ID",
        default: DefaultValue::Absent("from {RELAY_DATA_DIR}/relay_id, else generated"),
        rule: Rule::Custom {
            valid: "1-128 printable ASCII characters, no spaces",
            parse: |c, text| {
                if !is_relay_id(text) {
                    return Err(RELAY_ID_EXPECTED.to_owned());
                }
                c.federation_relay_id = Some(text.to_owned());
                Ok(())
            },
        },
        meaning: "This relay's id towards peers",
    },
    integer(
        "RELAY_MAX_STORAGE_BYTES",
        "1073741824",
        (1, u64::MAX),
        |c, v| c.max_storage_bytes = v,
        "Storage capacity used as the federation load denominator",
    ),
    VarSpec {
        name: "RELAY_FEDERATION_OFFLOAD_THRESHOLD",
        default: DefaultValue::Text("0.80"),
        rule: Rule::Custom {
            valid: "a decimal 0 < x <= 1",
            parse: |c, text| {
                c.federation_offload_threshold = parse_decimal(text)
                    .filter(|x| *x > 0.0 && *x <= 1.0)
                    .ok_or("a decimal number x with 0 < x <= 1")?;
                Ok(())
            },
        },
        meaning: "Load fraction above which blobs are offloaded to peers",
    },
    VarSpec {
        name: "RELAY_FEDERATION_OFFLOAD_REFUSE",
        default: DefaultValue::Text("0.95"),
        rule: Rule::Custom {
            valid: "a decimal x with threshold <= x <= 1",
            // The threshold precedes this entry, so it is already parsed.
            parse: |c, text| {
                let threshold = c.federation_offload_threshold;
                c.federation_offload_refuse = parse_decimal(text)
                    .filter(|x| *x >= threshold && *x <= 1.0)
                    .ok_or_else(|| {
                        format!(
                            "a decimal number x with \
                             RELAY_FEDERATION_OFFLOAD_THRESHOLD ({threshold}) <= x <= 1"
                        )
                    })?;
                Ok(())
            },
        },
        meaning: "Load fraction above which offers from peers are refused",
    },
    integer(
        "RELAY_FEDERATION_DRAIN_TIMEOUT",
        "300",
        (1, 3600),
        |c, v| c.federation_drain_timeout_secs = v,
        "Upper bound of shutdown, seconds",
    ),
    integer(
        "RELAY_FEDERATION_PEER_TIMEOUT",
        "30",
        (2, 3600),
        |c, v| c.federation_peer_timeout_secs = v,
        "Peer handshake wait, ack wait and keepalive, seconds",
    ),
    integer(
        "RELAY_FEDERATION_CAPACITY_INTERVAL",
        "60",
        (1, 86_400),
        |c, v| c.federation_capacity_interval_secs = v,
        "Seconds between offload ticks and capacity reports",
    ),
    VarSpec {
        name: TLS_CERT_FILE,
        default: DefaultValue::Absent("unset"),
        rule: Rule::Custom {
            valid: "a PEM file: the certificate chain, leaf first; set with RELAY_TLS_KEY_FILE",
            parse: |c, text| {
                tls_files(c).cert = PathBuf::from(text);
                Ok(())
            },
        },
        meaning: "Built-in TLS on the main listener (reloaded on SIGHUP)",
    },
    VarSpec {
        name: TLS_KEY_FILE,
        default: DefaultValue::Absent("unset"),
        rule: Rule::Custom {
            valid: "a PEM file: PKCS#8, PKCS#1 or SEC1 private key; set with RELAY_TLS_CERT_FILE",
            parse: |c, text| {
                tls_files(c).key = PathBuf::from(text);
                Ok(())
            },
        },
        meaning: "Private key of RELAY_TLS_CERT_FILE",
    },
    integer(
        "RELAY_MAX_CONNECTIONS_PER_IP",
        "0",
        (0, 10_000_000),
        |c, v| c.max_connections_per_ip = v,
        "Open TCP connections on the main port per client address (0 = unlimited)",
    ),
    integer(
        "RELAY_IPV6_PREFIX_LEN",
        "64",
        (1, 128),
        |c, v| c.ipv6_prefix_len = narrow(v),
        "Leading bits of an IPv6 client address that make one address for the limit",
    ),
    VarSpec {
        name: "RELAY_PROXY_PROTOCOL",
        default: DefaultValue::Text("off"),
        rule: Rule::Custom {
            valid: "off, v1, v2 or any (any case)",
            parse: |c, text| {
                c.proxy_protocol = match text.to_ascii_lowercase().as_str() {
                    "off" => ProxyProtocol::Off,
                    "v1" => ProxyProtocol::V1,
                    "v2" => ProxyProtocol::V2,
                    "any" => ProxyProtocol::Any,
                    _ => return Err("off, v1, v2 or any".to_owned()),
                };
                Ok(())
            },
        },
        meaning: "PROXY protocol header that connections from RELAY_PROXY_TRUSTED must send",
    },
    VarSpec {
        name: "RELAY_PROXY_TRUSTED",
        default: DefaultValue::Text("127.0.0.0/8,::1/128"),
        rule: Rule::Custom {
            valid: "comma-separated IPv4/IPv6 CIDRs (a bare address is one host)",
            parse: |c, text| {
                c.proxy_trusted = parse_cidrs(text)?;
                Ok(())
            },
        },
        meaning: "Load balancers whose PROXY header names the client address",
    },
    VarSpec {
        name: NOISE_STATIC_KEY,
        default: DefaultValue::Absent("{RELAY_DATA_DIR}/relay_noise_key.bin, made if missing"),
        rule: Rule::Custom {
            valid: "base64url (padding optional) of 64 bytes: X25519 private key then its public key",
            parse: |c, text| {
                // The reason names no key bytes (§13.1).
                let key = crate::noise::StaticKey::from_base64url(text)
                    .map_err(|e| format!("base64url of 64 bytes, private then public: {e}"))?;
                c.noise_static_key = Some(key);
                Ok(())
            },
        },
        meaning: "The relay's static Noise NK key (§15.1); /pubkey serves its public half",
    },
    VarSpec {
        name: "RELAY_REQUIRE_NOISE_ENCRYPTION",
        default: DefaultValue::Text("false"),
        rule: Rule::Boolean(|c, v| c.require_noise = v),
        meaning: "Close plain client sessions with 1008 noise required (§15.1)",
    },
    federation_tls_file(
        FEDERATION_TLS_CERT,
        "a PEM file: this relay's certificate chain, leaf first; the three set together",
        |files| &mut files.cert,
        "Federation mTLS: this relay's certificate (reloaded on SIGHUP)",
    ),
    federation_tls_file(
        FEDERATION_TLS_KEY,
        "a PEM file: PKCS#8, PKCS#1 or SEC1 private key",
        |files| &mut files.key,
        "Federation mTLS: its private key",
    ),
    federation_tls_file(
        FEDERATION_TLS_CA,
        "a PEM file: one or more CA certificates",
        |files| &mut files.ca,
        "Federation mTLS: the authorities whose certificates peers must present",
    ),
    VarSpec {
        name: "RELAY_FEDERATION_MTLS_ADDR",
        default: DefaultValue::Absent("the RELAY_LISTEN_ADDR IP, its port + 2"),
        rule: Rule::Custom {
            valid: "IPv4:port or [IPv6]:port",
            parse: |c, text| {
                c.federation_mtls_addr = Some(parse_socket_addr(text).ok_or(LISTEN_EXPECTED)?);
                Ok(())
            },
        },
        meaning: "Federation mTLS listener (when the three files are set)",
    },
    VarSpec {
        name: "RELAY_FEDERATION_GOSSIP_ENABLED",
        default: DefaultValue::Text("false"),
        rule: Rule::Boolean(|c, value| c.gossip_enabled = value),
        meaning: "Advertise peers on outbound links and remember advertised ones",
    },
    integer(
        "RELAY_FEDERATION_GOSSIP_INTERVAL",
        "120",
        (1, 86_400),
        |c, v| c.gossip_interval_secs = v,
        "Seconds between peer advertisements",
    ),
    integer(
        "RELAY_FEDERATION_PEER_TTL",
        "3600",
        (1, 604_800),
        |c, v| c.peer_ttl_secs = v,
        "Seconds a discovered peer is remembered after its last advertisement",
    ),
    VarSpec {
        name: "RUST_LOG",
        default: DefaultValue::Text("info"),
        rule: Rule::External {
            valid: "a log filter",
        },
        meaning: "Log verbosity",
    },
];

const fn integer(
    name: &'static str,
    default: &'static str,
    (min, max): (u64, u64),
    set: fn(&mut Config, u64),
    meaning: &'static str,
) -> VarSpec {
    VarSpec {
        name,
        default: DefaultValue::Text(default),
        rule: Rule::Integer { min, max, set },
        meaning,
    }
}

/// One of the three federation mTLS files (§15.3); the others stay empty paths
/// until set.
const fn federation_tls_file(
    name: &'static str,
    valid: &'static str,
    field: fn(&mut FederationTlsFiles) -> &mut PathBuf,
    meaning: &'static str,
) -> VarSpec {
    VarSpec {
        name,
        default: DefaultValue::Absent("unset"),
        rule: Rule::Path { valid, field },
        meaning,
    }
}

/// Narrows a range-checked integer to its field's type.
fn narrow<T: TryFrom<u64>>(value: u64) -> T {
    // Invariant: every Integer rule's `max` fits the type of the field it sets;
    // tests/unit/config_parse.rs parses each variable's maximum.
    T::try_from(value).unwrap_or_else(|_| unreachable!("{value} exceeds its field's type"))
}
