//! Every `RELAY_*` variable of PROTOCOL.md §13: parsed once, validated, defaulted.
//! An invalid value is a `ConfigError` naming the variable and the value; `main`
//! prints it and exits with status 1 before binding anything.
//!
//! One static table (`VARIABLES`) drives parsing, defaults and `--help`, so they
//! cannot drift apart: each default is the table's own text run through the
//! variable's own parser. The table lives in `variables`, the value syntaxes
//! it shares in `parse`, the resulting types in `values`; this file holds the
//! passes over the table.

mod parse;
mod values;
mod variables;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

pub use parse::{is_relay_id, normalise_peer};
pub use values::{
    Config, FederationTlsFiles, MetricsAddr, ProxyProtocol, SqliteSynchronous, StorageBackend,
    TlsFiles,
};
use variables::{
    DefaultValue, FEDERATION_TLS_CA, FEDERATION_TLS_CERT, FEDERATION_TLS_KEY, NOISE_STATIC_KEY,
    TLS_CERT_FILE, TLS_KEY_FILE, VARIABLES,
};

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

impl Config {
    /// Parses from (name, value) pairs, e.g. `std::env::vars()`. Names not starting
    /// with `RELAY_` are ignored. Variables are checked in the order of the §13.2
    /// table, so the error reported is the same whatever the order of `vars`. If a name appears twice, the last value wins.
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
        let config = apply_variables(&given)?;
        check_tls_pair(&config)?;
        check_federation_tls(&config)?;
        let known = |name: &str| VARIABLES.iter().any(|spec| spec.name == name);
        let warnings = given
            .keys()
            .filter(|name| !known(name))
            .map(|name| format!("unknown variable {name} is ignored"))
            .collect();
        Ok(Loaded { config, warnings })
    }

    /// The state before the table runs: every field with a `Text` default is
    /// overwritten by it; the others keep the "absent" value set here.
    fn unset() -> Config {
        Config {
            listen_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            metrics_addr: MetricsAddr::Localhost(0),
            metrics_token: None,
            tls_verified: false,
            tls: None,
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
            max_connections_per_ip: 0,
            ipv6_prefix_len: 0,
            proxy_protocol: ProxyProtocol::Off,
            proxy_trusted: Vec::new(),
            federation_tls: None,
            federation_mtls_addr: None,
            gossip_enabled: false,
            gossip_interval_secs: 0,
            peer_ttl_secs: 0,
            noise_static_key: None,
            require_noise: false,
        }
    }
}

/// Runs every §13.2 variable through its rule, in the table's order; unset or
/// empty ones through their default.
fn apply_variables(given: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
    let mut config = Config::unset();
    for spec in VARIABLES {
        let raw = given.get(spec.name).map_or("", String::as_str);
        let (text, shown, defaulted) = match (raw.trim_ascii(), &spec.default) {
            ("", DefaultValue::Text(default)) => (*default, *default, true),
            ("", DefaultValue::Absent(_)) => continue,
            // §13.1: never the value of a private key, not even in the error.
            (trimmed, _) if spec.name == NOISE_STATIC_KEY => (trimmed, "(not shown)", false),
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
    Ok(config)
}

/// `RELAY_TLS_CERT_FILE` and `RELAY_TLS_KEY_FILE` are set together or not at all
/// (§2.8); the table fills in whichever was given, an empty path for the other.
fn check_tls_pair(config: &Config) -> Result<(), ConfigError> {
    let Some(files) = &config.tls else {
        return Ok(());
    };
    let missing = |name: &str, other: &str| ConfigError {
        variable: name.to_owned(),
        value: String::new(),
        expected: format!("a path: it is set together with {other}"),
    };
    match (
        files.cert.as_os_str().is_empty(),
        files.key.as_os_str().is_empty(),
    ) {
        (false, true) => Err(missing(TLS_KEY_FILE, TLS_CERT_FILE)),
        (true, false) => Err(missing(TLS_CERT_FILE, TLS_KEY_FILE)),
        _ => Ok(()),
    }
}

/// The three mTLS files are set together or not at all, whether or not federation
/// is enabled (§15.3); with them, every peer is dialled over `wss://`, because a
/// `ws://` peer could not be authenticated. The mTLS listener's default address
/// must exist.
fn check_federation_tls(config: &Config) -> Result<(), ConfigError> {
    let Some(files) = &config.federation_tls else {
        return Ok(());
    };
    let given = [
        (FEDERATION_TLS_CERT, &files.cert),
        (FEDERATION_TLS_KEY, &files.key),
        (FEDERATION_TLS_CA, &files.ca),
    ];
    let set: Vec<&str> = given
        .iter()
        .filter(|(_, path)| !path.as_os_str().is_empty())
        .map(|(name, _)| *name)
        .collect();
    if let Some((missing, _)) = given.iter().find(|(_, path)| path.as_os_str().is_empty()) {
        return Err(ConfigError {
            variable: (*missing).to_owned(),
            value: String::new(),
            expected: format!(
                "a path: RELAY_FEDERATION_TLS_CERT, _KEY and _CA are set together, \
                 and {} is set",
                set.join(" and ")
            ),
        });
    }
    if let Some(plain) = config
        .federation_peers
        .iter()
        .find(|p| p.starts_with("ws://"))
    {
        return Err(ConfigError {
            variable: "RELAY_FEDERATION_PEERS".to_owned(),
            value: plain.clone(),
            expected: "wss:// URLs only: federation mTLS is configured \
                       (RELAY_FEDERATION_TLS_CERT), and a ws:// peer could not be \
                       authenticated"
                .to_owned(),
        });
    }
    if config.federation_mtls_addr().is_none() {
        return Err(ConfigError {
            variable: "RELAY_FEDERATION_MTLS_ADDR".to_owned(),
            value: String::new(),
            expected: "an address: its default, the RELAY_LISTEN_ADDR port + 2, is past 65535"
                .to_owned(),
        });
    }
    Ok(())
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
    text
}
