//! Every `RELAY_*` variable of PROTOCOL.md §13: parsed once, validated, defaulted.
//! An invalid value is a `ConfigError` naming the variable and the value; `main`
//! prints it and exits with status 1 before binding anything.
//!
//! One static table (`VARIABLES`) drives parsing, defaults and `--help`, so they
//! cannot drift apart: each default is the table's own text run through the
//! variable's own parser. The unsupported extensions of §15 are a second table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
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

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub metrics_addr: MetricsAddr,
    pub metrics_token: Option<String>,
    pub tls_verified: bool,
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
}

/// An invalid value; `Display` gives e.g.
/// `invalid RELAY_RATE_LIMIT="abc": expected an integer 1..=1000000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: String,
    pub value: String,
    pub expected: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid {}={:?}: expected {}",
            self.variable, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

/// A parsed configuration plus the warnings to log (unknown variables and the like).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
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
    /// Parses from (name, value) pairs, e.g. `std::env::vars()`. Names not starting
    /// with `RELAY_` are ignored. Variables are checked in the order of the §13.2
    /// table, then the §15 ones, so the error reported is the same whatever the
    /// order of `vars`. If a name appears twice, the last value wins.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Loaded, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let given: BTreeMap<String, String> = vars
            .into_iter()
            .filter(|(name, _)| name.as_ref().starts_with("RELAY_"))
            .map(|(name, value)| (name.as_ref().to_owned(), value.as_ref().to_owned()))
            .collect();

        let mut config = Config::unset();
        for spec in VARIABLES {
            let raw = given.get(spec.name).map_or("", String::as_str);
            let (text, shown, defaulted) = match (raw.trim_ascii(), &spec.default) {
                ("", DefaultValue::Text(default)) => (*default, *default, true),
                ("", DefaultValue::Absent(_)) => continue,
                (trimmed, _) => (trimmed, raw, false),
            };
            spec.rule.apply(&mut config, text).map_err(|mut expected| {
                // Only a default that depends on another variable can fail
                // (RELAY_FEDERATION_OFFLOAD_REFUSE below a raised threshold).
                if defaulted {
                    expected.push_str("; the value shown is the default, so set it");
                }
                ConfigError {
                    variable: spec.name.to_owned(),
                    value: shown.to_owned(),
                    expected,
                }
            })?;
        }

        let mut warnings = Vec::new();
        for (name, extension) in EXTENSIONS {
            let raw = given.get(*name).map_or("", String::as_str);
            let text = raw.trim_ascii();
            if text.is_empty() {
                continue;
            }
            let error = |expected: &str| ConfigError {
                variable: (*name).to_owned(),
                value: raw.to_owned(),
                expected: expected.to_owned(),
            };
            match extension {
                Extension::RequireNoise => match parse_boolean(text) {
                    None => return Err(error(BOOLEAN_EXPECTED)),
                    Some(true) => return Err(error(NOISE_REQUIRED_EXPECTED)),
                    Some(false) => {}
                },
                Extension::MtlsCredential if config.federation_enabled => {
                    return Err(error(MTLS_EXPECTED));
                }
                Extension::MtlsCredential => warnings.push(format!(
                    "{name} is ignored: federation is disabled, and federation mTLS \
                     is not supported (PROTOCOL.md §15.3)"
                )),
                // Warnings never carry the value: RELAY_NOISE_STATIC_KEY is a private key.
                Extension::Ignored(reason) => {
                    warnings.push(format!("{name} is ignored: {reason}"));
                }
            }
        }

        let known = |name: &str| {
            VARIABLES.iter().any(|spec| spec.name == name)
                || EXTENSIONS.iter().any(|(known, _)| *known == name)
        };
        warnings.extend(
            given
                .keys()
                .filter(|name| !known(name))
                .map(|name| format!("unknown variable {name} is ignored")),
        );
        Ok(Loaded { config, warnings })
    }

    /// The warnings of §2.1 (TLS must be terminated by a proxy) and §12.1 (metrics
    /// open to the network without a token), for `main` to log after binding.
    pub fn startup_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.tls_verified && !self.listen_addr.ip().to_canonical().is_loopback() {
            warnings.push(format!(
                "RELAY_LISTEN_ADDR={} is not a loopback address and this relay terminates \
                 no TLS: TLS must be terminated by a reverse proxy in front of it \
                 (set RELAY_TLS_VERIFIED=true once it is)",
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

    /// The state before the table runs: every field with a `Text` default is
    /// overwritten by it; the others keep the "absent" value set here.
    fn unset() -> Config {
        Config {
            listen_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            metrics_addr: MetricsAddr::Localhost(0),
            metrics_token: None,
            tls_verified: false,
            max_connections: 0,
            max_message_size: 0,
            handshake_timeout_secs: 0,
            idle_timeout_secs: 0,
            blob_ttl_secs: 0,
            cleanup_interval_secs: 0,
            rate_limit: 0,
            recovery_rate_limit: 0,
            max_blobs_per_user: 0,
            max_storage_per_user: 0,
            storage_backend: StorageBackend::Sqlite,
            data_dir: PathBuf::new(),
            sqlite_synchronous: SqliteSynchronous::Normal,
            shards: None,
            cpu_pin: false,
            federation_enabled: false,
            federation_peers: Vec::new(),
            federation_relay_id: None,
            max_storage_bytes: 0,
            federation_offload_threshold: 0.0,
            federation_offload_refuse: 0.0,
            federation_drain_timeout_secs: 0,
            federation_peer_timeout_secs: 0,
            federation_capacity_interval_secs: 0,
        }
    }
}

/// One line per variable, with its default, valid values and meaning, for `--help`.
pub fn help_text() -> String {
    let width = VARIABLES
        .iter()
        .map(|spec| spec.name.len())
        .max()
        .unwrap_or(0);
    let mut text = String::from(
        "Environment variables (PROTOCOL.md §13); unset or empty means the default, \
         values are trimmed:\n",
    );
    for spec in VARIABLES {
        let default = match spec.default {
            DefaultValue::Text(default) | DefaultValue::Absent(default) => default,
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            text,
            "  {:width$}  default {default}; valid {}. {}",
            spec.name,
            spec.rule.valid(),
            spec.meaning,
        );
    }
    text.push_str(
        "Not supported (§15): RELAY_REQUIRE_NOISE_ENCRYPTION=true and, with federation \
         enabled, RELAY_FEDERATION_TLS_CERT/_KEY/_CA stop startup; the other Noise, gossip \
         and mTLS variables are ignored with a warning.\n",
    );
    text
}

/// How a variable's default is produced.
enum DefaultValue {
    /// Run through the variable's own parser, exactly like a value that was set.
    Text(&'static str),
    /// No value: the field keeps its absent state (`None`, empty) and is resolved
    /// elsewhere. The text only describes this for `--help`.
    Absent(&'static str),
}

enum Rule {
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
    /// Read by another component (the log subscriber); listed for `--help` only.
    External {
        valid: &'static str,
    },
}

impl Rule {
    /// Applies a trimmed, non-empty value, or returns the expected text.
    fn apply(&self, config: &mut Config, text: &str) -> Result<(), String> {
        match self {
            Rule::Integer { min, max, set } => {
                let value = parse_integer(text)
                    .filter(|value| (min..=max).contains(&value))
                    .ok_or_else(|| format!("an integer {min}..={max}"))?;
                set(config, value);
            }
            Rule::Boolean(set) => set(config, parse_boolean(text).ok_or(BOOLEAN_EXPECTED)?),
            Rule::Custom { parse, .. } => parse(config, text)?,
            Rule::External { .. } => {}
        }
        Ok(())
    }

    fn valid(&self) -> String {
        match self {
            Rule::Integer { min, max, .. } => format!("{min}..={max}"),
            Rule::Boolean(_) => "true, 1, false or 0".to_owned(),
            Rule::Custom { valid, .. } | Rule::External { valid } => (*valid).to_owned(),
        }
    }
}

struct VarSpec {
    name: &'static str,
    default: DefaultValue,
    rule: Rule,
    meaning: &'static str,
}

/// The §13.2 table, in its order (which is also the order errors are looked for).
static VARIABLES: &[VarSpec] = &[
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
                let valid = text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic());
                if !valid {
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

/// Narrows a range-checked integer to its field's type.
fn narrow<T: TryFrom<u64>>(value: u64) -> T {
    // Invariant: every Integer rule's `max` fits the type of the field it sets;
    // tests/unit/config_parse.rs parses each variable's maximum.
    T::try_from(value).unwrap_or_else(|_| unreachable!("{value} exceeds its field's type"))
}

enum Extension {
    /// Cannot be honoured, so `true` stops startup (§15.1).
    RequireNoise,
    /// mTLS certificate, key or CA: stops startup if federation is enabled (§15.3).
    MtlsCredential,
    /// Ignored with a warning giving this reason.
    Ignored(&'static str),
}

const NOISE_IGNORED: &str = "this relay does not implement the Noise transport (PROTOCOL.md §15.1)";
const GOSSIP_IGNORED: &str = "gossip peer discovery is not supported (PROTOCOL.md §15.2)";
const MTLS_IGNORED: &str = "federation mTLS is not supported (PROTOCOL.md §15.3)";

/// The §15 variables, in the order they are checked.
static EXTENSIONS: &[(&str, Extension)] = &[
    ("RELAY_REQUIRE_NOISE_ENCRYPTION", Extension::RequireNoise),
    ("RELAY_NOISE_STATIC_KEY", Extension::Ignored(NOISE_IGNORED)),
    (
        "RELAY_FEDERATION_GOSSIP_ENABLED",
        Extension::Ignored(GOSSIP_IGNORED),
    ),
    (
        "RELAY_FEDERATION_GOSSIP_INTERVAL",
        Extension::Ignored(GOSSIP_IGNORED),
    ),
    (
        "RELAY_FEDERATION_PEER_TTL",
        Extension::Ignored(GOSSIP_IGNORED),
    ),
    ("RELAY_FEDERATION_TLS_CERT", Extension::MtlsCredential),
    ("RELAY_FEDERATION_TLS_KEY", Extension::MtlsCredential),
    ("RELAY_FEDERATION_TLS_CA", Extension::MtlsCredential),
    (
        "RELAY_FEDERATION_MTLS_ADDR",
        Extension::Ignored(MTLS_IGNORED),
    ),
];

const BOOLEAN_EXPECTED: &str = "a boolean: true, 1, false or 0";
const NOISE_REQUIRED_EXPECTED: &str = "false or unset: this relay does not implement the \
     Noise transport (PROTOCOL.md §15.1), so it cannot require it";
const MTLS_EXPECTED: &str = "unset while RELAY_FEDERATION_ENABLED is true: federation mTLS \
     is not supported (PROTOCOL.md §15.3), and federating without the configured \
     authentication would be a downgrade";
const LISTEN_EXPECTED: &str = "an address IPv4:port or [IPv6]:port, such as 0.0.0.0:8080";
const METRICS_EXPECTED: &str = "an address IPv4:port, [IPv6]:port or localhost:port";
const RELAY_ID_EXPECTED: &str = "1 to 128 printable ASCII characters without spaces";

/// Plain decimal digits: no sign, no underscore, no exponent.
fn parse_integer(text: &str) -> Option<u64> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_boolean(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Digits with at most one `.`: no sign, exponent, `inf` or `NaN`.
fn parse_decimal(text: &str) -> Option<f64> {
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    let dots = text.bytes().filter(|b| *b == b'.').count();
    if digits == 0 || dots > 1 || digits + dots != text.len() {
        return None;
    }
    text.parse().ok()
}

/// `IPv4:port` or `[IPv6]:port`; the port is plain digits.
fn parse_socket_addr(text: &str) -> Option<SocketAddr> {
    let (_, port) = text.rsplit_once(':')?;
    parse_integer(port)?;
    text.parse().ok()
}

fn parse_metrics_addr(text: &str) -> Option<MetricsAddr> {
    match text.split_at_checked("localhost:".len()) {
        Some((host, port)) if host.eq_ignore_ascii_case("localhost:") => {
            let port = u16::try_from(parse_integer(port)?).ok()?;
            Some(MetricsAddr::Localhost(port))
        }
        _ => parse_socket_addr(text).map(MetricsAddr::Socket),
    }
}

/// Trims entries, drops empty ones and duplicates, removes one trailing `/`.
fn parse_peers(text: &str) -> Result<Vec<String>, String> {
    let mut peers: Vec<String> = Vec::new();
    for entry in text.split(',').map(str::trim_ascii) {
        if entry.is_empty() {
            continue;
        }
        let peer = normalise_peer(entry).ok_or_else(|| {
            format!(
                "comma-separated ws:// or wss:// URLs without query or fragment, \
                 and {entry:?} is not one"
            )
        })?;
        // Linear search: the list is as long as one environment variable allows.
        if !peers.contains(&peer) {
            peers.push(peer);
        }
    }
    Ok(peers)
}

/// `ws://host[:port][/path]` or `wss://...`; the scheme is lower-cased.
fn normalise_peer(entry: &str) -> Option<String> {
    let (scheme, rest) = entry.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "ws" && scheme != "wss" {
        return None;
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let host = rest.split_once('/').map_or(rest, |(host, _)| host);
    let clean = rest
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
    (!host.is_empty() && clean).then(|| format!("{scheme}://{rest}"))
}
