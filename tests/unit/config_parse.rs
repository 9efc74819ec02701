//! `Config::from_vars` against PROTOCOL.md §13 (every variable, its default and
//! range), §15 (unsupported extensions) and the startup warnings of §2.1 and §12.1.

use std::net::SocketAddr;
use std::path::PathBuf;

use vauchi_relay::config::{
    Config, ConfigError, Loaded, MetricsAddr, ProxyProtocol, SqliteSynchronous, StorageBackend,
    help_text,
};

fn net(text: &str) -> ipnet::IpNet {
    text.parse().unwrap()
}

/// Every variable of the §13.2 table, in table order.
const TABLE_NAMES: &[&str] = &[
    "RELAY_LISTEN_ADDR",
    "RELAY_METRICS_ADDR",
    "RELAY_METRICS_TOKEN",
    "RELAY_TLS_VERIFIED",
    "RELAY_MAX_CONNECTIONS",
    "RELAY_MAX_MESSAGE_SIZE",
    "RELAY_HANDSHAKE_TIMEOUT",
    "RELAY_IDLE_TIMEOUT",
    "RELAY_BLOB_TTL_SECS",
    "RELAY_CLEANUP_INTERVAL",
    "RELAY_RATE_LIMIT",
    "RELAY_RECOVERY_RATE_LIMIT",
    "RELAY_MAX_BLOBS_PER_USER",
    "RELAY_MAX_STORAGE_PER_USER",
    "RELAY_STORAGE_BACKEND",
    "RELAY_DATA_DIR",
    "RELAY_SQLITE_SYNCHRONOUS",
    "RELAY_SHARDS",
    "RELAY_CPU_PIN",
    "RELAY_FEDERATION_ENABLED",
    "RELAY_FEDERATION_PEERS",
    "RELAY_FEDERATION_RELAY_ID",
    "RELAY_MAX_STORAGE_BYTES",
    "RELAY_FEDERATION_OFFLOAD_THRESHOLD",
    "RELAY_FEDERATION_OFFLOAD_REFUSE",
    "RELAY_FEDERATION_DRAIN_TIMEOUT",
    "RELAY_FEDERATION_PEER_TIMEOUT",
    "RELAY_FEDERATION_CAPACITY_INTERVAL",
    "RELAY_TLS_CERT_FILE",
    "RELAY_TLS_KEY_FILE",
    "RELAY_MAX_CONNECTIONS_PER_IP",
    "RELAY_IPV6_PREFIX_LEN",
    "RELAY_PROXY_PROTOCOL",
    "RELAY_PROXY_TRUSTED",
    "RELAY_NOISE_STATIC_KEY",
    "RELAY_REQUIRE_NOISE_ENCRYPTION",
    "RELAY_FEDERATION_TLS_CERT",
    "RELAY_FEDERATION_TLS_KEY",
    "RELAY_FEDERATION_TLS_CA",
    "RELAY_FEDERATION_MTLS_ADDR",
    "RELAY_FEDERATION_GOSSIP_ENABLED",
    "RELAY_FEDERATION_GOSSIP_INTERVAL",
    "RELAY_FEDERATION_PEER_TTL",
    "RUST_LOG",
];

fn load(vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    Config::from_vars(vars.iter().copied())
}

fn config(vars: &[(&str, &str)]) -> Config {
    match load(vars) {
        Ok(loaded) => loaded.config,
        Err(error) => panic!("{vars:?} should parse, got: {error}"),
    }
}

fn warnings(vars: &[(&str, &str)]) -> Vec<String> {
    match load(vars) {
        Ok(loaded) => loaded.warnings,
        Err(error) => panic!("{vars:?} should parse, got: {error}"),
    }
}

/// Asserts that `vars` fail on `variable`, and that the message names it and `value`.
fn assert_rejects(vars: &[(&str, &str)], variable: &str, value: &str) -> ConfigError {
    let error = match load(vars) {
        Ok(loaded) => panic!(
            "{vars:?} should fail on {variable}, got {:?}",
            loaded.config
        ),
        Err(error) => error,
    };
    assert_eq!(error.variable, variable, "{vars:?}: {error}");
    assert_eq!(error.value, value, "{vars:?}: {error}");
    let message = error.to_string();
    let prefix = format!("invalid {variable}={value:?}: expected ");
    assert!(
        message.starts_with(&prefix),
        "{message:?} should start with {prefix:?}"
    );
    assert!(!error.expected.is_empty());
    error
}

fn socket(text: &str) -> SocketAddr {
    text.parse().expect("test address is valid")
}

#[test]
fn defaults_when_nothing_is_set() {
    let loaded = load(&[]).expect("the defaults are valid");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let expected = Config {
        listen_addr: socket("0.0.0.0:8080"),
        metrics_addr: MetricsAddr::Socket(socket("127.0.0.1:8081")),
        metrics_token: None,
        tls_verified: false,
        tls: None,
        max_connections: 100_000,
        max_message_size: 1_048_576,
        handshake_timeout_secs: 10,
        idle_timeout_secs: 300,
        blob_ttl_secs: 7_776_000,
        cleanup_interval_secs: 3600,
        rate_limit: 60,
        recovery_rate_limit: 10,
        max_blobs_per_user: 1000,
        max_storage_per_user: 50_000_000,
        storage_backend: StorageBackend::Sqlite,
        data_dir: PathBuf::from("./data"),
        sqlite_synchronous: SqliteSynchronous::Normal,
        shards: None,
        cpu_pin: true,
        federation_enabled: false,
        federation_peers: Vec::new(),
        federation_relay_id: None,
        max_storage_bytes: 1_073_741_824,
        federation_offload_threshold: 0.80,
        federation_offload_refuse: 0.95,
        federation_drain_timeout_secs: 300,
        federation_peer_timeout_secs: 30,
        federation_capacity_interval_secs: 60,
        max_connections_per_ip: 0,
        ipv6_prefix_len: 64,
        proxy_protocol: ProxyProtocol::Off,
        proxy_trusted: vec![net("127.0.0.0/8"), net("::1/128")],
        noise_static_key: None,
        require_noise: false,
        federation_tls: None,
        federation_mtls_addr: None,
        gossip_enabled: false,
        gossip_interval_secs: 120,
        peer_ttl_secs: 3600,
    };
    assert_eq!(loaded.config, expected);
}

#[test]
fn empty_or_blank_means_default() {
    for name in TABLE_NAMES {
        for blank in ["", "   ", "\t\n"] {
            assert_eq!(config(&[(name, blank)]), config(&[]), "{name}={blank:?}");
        }
    }
}

#[test]
fn names_outside_relay_are_ignored() {
    let loaded = load(&[("PATH", "/bin"), ("HOME", "x"), ("RUST_LOG", "debug")]).expect("ok");
    assert_eq!(loaded.config, config(&[]));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

type Check = fn(&Config) -> bool;

#[test]
fn valid_values_of_every_variable() {
    let cases: &[(&str, &str, Check)] = &[
        ("RELAY_LISTEN_ADDR", "127.0.0.1:9000", |c| {
            c.listen_addr == socket("127.0.0.1:9000")
        }),
        ("RELAY_LISTEN_ADDR", "[::1]:0", |c| {
            c.listen_addr == socket("[::1]:0")
        }),
        ("RELAY_LISTEN_ADDR", "[::]:65535", |c| {
            c.listen_addr == socket("[::]:65535")
        }),
        ("RELAY_METRICS_ADDR", "0.0.0.0:9100", |c| {
            c.metrics_addr == MetricsAddr::Socket(socket("0.0.0.0:9100"))
        }),
        ("RELAY_METRICS_ADDR", "[::1]:9100", |c| {
            c.metrics_addr == MetricsAddr::Socket(socket("[::1]:9100"))
        }),
        ("RELAY_METRICS_ADDR", "localhost:9100", |c| {
            c.metrics_addr == MetricsAddr::Localhost(9100)
        }),
        ("RELAY_METRICS_ADDR", "LocalHost:1", |c| {
            c.metrics_addr == MetricsAddr::Localhost(1)
        }),
        ("RELAY_METRICS_TOKEN", "s3cret token", |c| {
            c.metrics_token.as_deref() == Some("s3cret token")
        }),
        ("RELAY_TLS_VERIFIED", "true", |c| c.tls_verified),
        ("RELAY_TLS_VERIFIED", "TRUE", |c| c.tls_verified),
        ("RELAY_TLS_VERIFIED", "1", |c| c.tls_verified),
        ("RELAY_TLS_VERIFIED", "False", |c| !c.tls_verified),
        ("RELAY_TLS_VERIFIED", "0", |c| !c.tls_verified),
        ("RELAY_MAX_CONNECTIONS", "1", |c| c.max_connections == 1),
        ("RELAY_MAX_CONNECTIONS_PER_IP", "0", |c| {
            c.max_connections_per_ip == 0
        }),
        ("RELAY_MAX_CONNECTIONS_PER_IP", "10000000", |c| {
            c.max_connections_per_ip == 10_000_000
        }),
        ("RELAY_IPV6_PREFIX_LEN", "1", |c| c.ipv6_prefix_len == 1),
        ("RELAY_IPV6_PREFIX_LEN", "128", |c| c.ipv6_prefix_len == 128),
        ("RELAY_PROXY_PROTOCOL", "v1", |c| {
            c.proxy_protocol == ProxyProtocol::V1
        }),
        ("RELAY_PROXY_PROTOCOL", "V2", |c| {
            c.proxy_protocol == ProxyProtocol::V2
        }),
        ("RELAY_PROXY_PROTOCOL", "Any", |c| {
            c.proxy_protocol == ProxyProtocol::Any
        }),
        ("RELAY_PROXY_PROTOCOL", "OFF", |c| {
            c.proxy_protocol == ProxyProtocol::Off
        }),
        ("RELAY_PROXY_TRUSTED", "10.0.0.0/8", |c| {
            c.proxy_trusted == [net("10.0.0.0/8")]
        }),
        // Trimmed entries, host bits cleared, bare addresses as single hosts,
        // IPv4-mapped networks as IPv4 ones, empty entries dropped.
        (
            "RELAY_PROXY_TRUSTED",
            " 10.1.2.3/16 , 2001:db8::7/32,,192.0.2.9",
            |c| {
                c.proxy_trusted
                    == [
                        net("10.1.0.0/16"),
                        net("2001:db8::/32"),
                        net("192.0.2.9/32"),
                    ]
            },
        ),
        ("RELAY_PROXY_TRUSTED", "::ffff:10.0.0.0/104,fd00::1", |c| {
            c.proxy_trusted == [net("10.0.0.0/8"), net("fd00::1/128")]
        }),
        ("RELAY_MAX_CONNECTIONS", "10000000", |c| {
            c.max_connections == 10_000_000
        }),
        ("RELAY_MAX_MESSAGE_SIZE", "256", |c| {
            c.max_message_size == 256
        }),
        ("RELAY_MAX_MESSAGE_SIZE", "67108864", |c| {
            c.max_message_size == 67_108_864
        }),
        ("RELAY_HANDSHAKE_TIMEOUT", "1", |c| {
            c.handshake_timeout_secs == 1
        }),
        ("RELAY_HANDSHAKE_TIMEOUT", "3600", |c| {
            c.handshake_timeout_secs == 3600
        }),
        ("RELAY_IDLE_TIMEOUT", "1", |c| c.idle_timeout_secs == 1),
        ("RELAY_IDLE_TIMEOUT", "86400", |c| {
            c.idle_timeout_secs == 86_400
        }),
        ("RELAY_BLOB_TTL_SECS", "1", |c| c.blob_ttl_secs == 1),
        ("RELAY_BLOB_TTL_SECS", "315360000", |c| {
            c.blob_ttl_secs == 315_360_000
        }),
        ("RELAY_CLEANUP_INTERVAL", "1", |c| {
            c.cleanup_interval_secs == 1
        }),
        ("RELAY_CLEANUP_INTERVAL", "86400", |c| {
            c.cleanup_interval_secs == 86_400
        }),
        ("RELAY_RATE_LIMIT", "1", |c| c.rate_limit == 1),
        ("RELAY_RATE_LIMIT", "1000000", |c| c.rate_limit == 1_000_000),
        ("RELAY_RATE_LIMIT", "007", |c| c.rate_limit == 7),
        ("RELAY_RECOVERY_RATE_LIMIT", "1", |c| {
            c.recovery_rate_limit == 1
        }),
        ("RELAY_RECOVERY_RATE_LIMIT", "1000000", |c| {
            c.recovery_rate_limit == 1_000_000
        }),
        ("RELAY_MAX_BLOBS_PER_USER", "0", |c| {
            c.max_blobs_per_user == 0
        }),
        ("RELAY_MAX_BLOBS_PER_USER", "4294967295", |c| {
            c.max_blobs_per_user == 4_294_967_295
        }),
        ("RELAY_MAX_STORAGE_PER_USER", "0", |c| {
            c.max_storage_per_user == 0
        }),
        ("RELAY_MAX_STORAGE_PER_USER", "18446744073709551615", |c| {
            c.max_storage_per_user == u64::MAX
        }),
        ("RELAY_STORAGE_BACKEND", "memory", |c| {
            c.storage_backend == StorageBackend::Memory
        }),
        ("RELAY_STORAGE_BACKEND", "MEMORY", |c| {
            c.storage_backend == StorageBackend::Memory
        }),
        ("RELAY_STORAGE_BACKEND", "Sqlite", |c| {
            c.storage_backend == StorageBackend::Sqlite
        }),
        ("RELAY_DATA_DIR", "/var/lib/vauchi", |c| {
            c.data_dir == std::path::Path::new("/var/lib/vauchi")
        }),
        ("RELAY_SQLITE_SYNCHRONOUS", "FULL", |c| {
            c.sqlite_synchronous == SqliteSynchronous::Full
        }),
        ("RELAY_SQLITE_SYNCHRONOUS", "normal", |c| {
            c.sqlite_synchronous == SqliteSynchronous::Normal
        }),
        ("RELAY_SHARDS", "1", |c| c.shards == Some(1)),
        ("RELAY_SHARDS", "1024", |c| c.shards == Some(1024)),
        ("RELAY_CPU_PIN", "false", |c| !c.cpu_pin),
        ("RELAY_CPU_PIN", "1", |c| c.cpu_pin),
        ("RELAY_FEDERATION_ENABLED", "true", |c| c.federation_enabled),
        ("RELAY_FEDERATION_PEERS", "ws://a.example:8080", |c| {
            c.federation_peers == ["ws://a.example:8080"]
        }),
        ("RELAY_FEDERATION_PEERS", "wss://b.example/relay", |c| {
            c.federation_peers == ["wss://b.example/relay"]
        }),
        ("RELAY_FEDERATION_RELAY_ID", "relay-1", |c| {
            c.federation_relay_id.as_deref() == Some("relay-1")
        }),
        ("RELAY_FEDERATION_RELAY_ID", "~!#{}", |c| {
            c.federation_relay_id.as_deref() == Some("~!#{}")
        }),
        ("RELAY_MAX_STORAGE_BYTES", "1", |c| c.max_storage_bytes == 1),
        ("RELAY_MAX_STORAGE_BYTES", "18446744073709551615", |c| {
            c.max_storage_bytes == u64::MAX
        }),
        ("RELAY_FEDERATION_OFFLOAD_THRESHOLD", "0.5", |c| {
            c.federation_offload_threshold == 0.5
        }),
        ("RELAY_FEDERATION_OFFLOAD_THRESHOLD", "0.0001", |c| {
            c.federation_offload_threshold == 0.0001
        }),
        ("RELAY_FEDERATION_OFFLOAD_THRESHOLD", ".5", |c| {
            c.federation_offload_threshold == 0.5
        }),
        ("RELAY_FEDERATION_OFFLOAD_REFUSE", "1", |c| {
            c.federation_offload_refuse == 1.0
        }),
        ("RELAY_FEDERATION_OFFLOAD_REFUSE", "0.80", |c| {
            c.federation_offload_refuse == 0.8
        }),
        ("RELAY_FEDERATION_OFFLOAD_REFUSE", "1.0", |c| {
            c.federation_offload_refuse == 1.0
        }),
        ("RELAY_FEDERATION_DRAIN_TIMEOUT", "1", |c| {
            c.federation_drain_timeout_secs == 1
        }),
        ("RELAY_FEDERATION_DRAIN_TIMEOUT", "3600", |c| {
            c.federation_drain_timeout_secs == 3600
        }),
        ("RELAY_FEDERATION_PEER_TIMEOUT", "2", |c| {
            c.federation_peer_timeout_secs == 2
        }),
        ("RELAY_FEDERATION_PEER_TIMEOUT", "3600", |c| {
            c.federation_peer_timeout_secs == 3600
        }),
        ("RELAY_FEDERATION_CAPACITY_INTERVAL", "1", |c| {
            c.federation_capacity_interval_secs == 1
        }),
        ("RELAY_FEDERATION_CAPACITY_INTERVAL", "86400", |c| {
            c.federation_capacity_interval_secs == 86_400
        }),
        ("RELAY_FEDERATION_MTLS_ADDR", "[::]:8443", |c| {
            c.federation_mtls_addr == Some(socket("[::]:8443"))
        }),
        ("RELAY_FEDERATION_GOSSIP_ENABLED", "TRUE", |c| {
            c.gossip_enabled
        }),
        ("RELAY_FEDERATION_GOSSIP_INTERVAL", "1", |c| {
            c.gossip_interval_secs == 1
        }),
        ("RELAY_FEDERATION_GOSSIP_INTERVAL", "86400", |c| {
            c.gossip_interval_secs == 86_400
        }),
        ("RELAY_FEDERATION_PEER_TTL", "1", |c| c.peer_ttl_secs == 1),
        ("RELAY_FEDERATION_PEER_TTL", "604800", |c| {
            c.peer_ttl_secs == 604_800
        }),
    ];
    for (name, value, check) in cases {
        let parsed = config(&[(name, value)]);
        assert!(check(&parsed), "{name}={value:?} gave {parsed:?}");
    }
}

#[test]
fn invalid_values_of_every_variable() {
    let cases: &[(&str, &str)] = &[
        ("RELAY_LISTEN_ADDR", "localhost:8080"),
        ("RELAY_LISTEN_ADDR", "0.0.0.0"),
        ("RELAY_LISTEN_ADDR", "0.0.0.0:65536"),
        ("RELAY_LISTEN_ADDR", "::1:8080"),
        ("RELAY_LISTEN_ADDR", "0.0.0.0:+80"),
        ("RELAY_LISTEN_ADDR", "example.com:80"),
        ("RELAY_METRICS_ADDR", "localhost"),
        ("RELAY_METRICS_ADDR", "localhost:"),
        ("RELAY_METRICS_ADDR", "localhost:65536"),
        ("RELAY_METRICS_ADDR", "localhost:+1"),
        ("RELAY_METRICS_ADDR", "example.com:9100"),
        ("RELAY_TLS_VERIFIED", "yes"),
        ("RELAY_TLS_VERIFIED", "2"),
        ("RELAY_MAX_CONNECTIONS", "0"),
        ("RELAY_MAX_CONNECTIONS", "10000001"),
        ("RELAY_MAX_CONNECTIONS", "1e5"),
        ("RELAY_MAX_CONNECTIONS_PER_IP", "10000001"),
        ("RELAY_MAX_CONNECTIONS_PER_IP", "-1"),
        ("RELAY_IPV6_PREFIX_LEN", "0"),
        ("RELAY_IPV6_PREFIX_LEN", "129"),
        ("RELAY_PROXY_PROTOCOL", "on"),
        ("RELAY_PROXY_PROTOCOL", "v3"),
        ("RELAY_PROXY_PROTOCOL", "true"),
        ("RELAY_PROXY_TRUSTED", "10.0.0.0/33"),
        ("RELAY_PROXY_TRUSTED", "::1/129"),
        ("RELAY_PROXY_TRUSTED", "localhost"),
        ("RELAY_PROXY_TRUSTED", "10.0.0.0/8,10.0.0/8"),
        ("RELAY_PROXY_TRUSTED", "10.0.0.0/-1"),
        ("RELAY_MAX_MESSAGE_SIZE", "255"),
        ("RELAY_MAX_MESSAGE_SIZE", "67108865"),
        ("RELAY_HANDSHAKE_TIMEOUT", "0"),
        ("RELAY_HANDSHAKE_TIMEOUT", "3601"),
        ("RELAY_IDLE_TIMEOUT", "0"),
        ("RELAY_IDLE_TIMEOUT", "86401"),
        ("RELAY_BLOB_TTL_SECS", "0"),
        ("RELAY_BLOB_TTL_SECS", "315360001"),
        ("RELAY_CLEANUP_INTERVAL", "0"),
        ("RELAY_CLEANUP_INTERVAL", "86401"),
        ("RELAY_RATE_LIMIT", "abc"),
        ("RELAY_RATE_LIMIT", "0"),
        ("RELAY_RATE_LIMIT", "1000001"),
        ("RELAY_RATE_LIMIT", "+60"),
        ("RELAY_RATE_LIMIT", "-1"),
        ("RELAY_RATE_LIMIT", "1_000"),
        ("RELAY_RATE_LIMIT", "6 0"),
        ("RELAY_RATE_LIMIT", "60.0"),
        ("RELAY_RATE_LIMIT", "99999999999999999999999"),
        ("RELAY_RECOVERY_RATE_LIMIT", "0"),
        ("RELAY_RECOVERY_RATE_LIMIT", "1000001"),
        ("RELAY_MAX_BLOBS_PER_USER", "4294967296"),
        ("RELAY_MAX_BLOBS_PER_USER", "-1"),
        ("RELAY_MAX_STORAGE_PER_USER", "18446744073709551616"),
        ("RELAY_MAX_STORAGE_PER_USER", "1kb"),
        ("RELAY_STORAGE_BACKEND", "postgres"),
        ("RELAY_STORAGE_BACKEND", "sqlite3"),
        ("RELAY_SQLITE_SYNCHRONOUS", "off"),
        ("RELAY_SQLITE_SYNCHRONOUS", "extra"),
        ("RELAY_SHARDS", "0"),
        ("RELAY_SHARDS", "1025"),
        ("RELAY_SHARDS", "auto"),
        ("RELAY_CPU_PIN", "on"),
        ("RELAY_FEDERATION_ENABLED", "enabled"),
        ("RELAY_FEDERATION_PEERS", "http://a.example"),
        ("RELAY_FEDERATION_PEERS", "a.example:8080"),
        ("RELAY_FEDERATION_PEERS", "ws://a.example?x=1"),
        ("RELAY_FEDERATION_PEERS", "ws://a.example#top"),
        ("RELAY_FEDERATION_PEERS", "ws://"),
        ("RELAY_FEDERATION_PEERS", "ws:///"),
        ("RELAY_FEDERATION_PEERS", "ws://a.example, wss://b example"),
        (
            "RELAY_FEDERATION_PEERS",
            "ws://ok.example,ftp://bad.example",
        ),
        ("RELAY_FEDERATION_RELAY_ID", "has space"),
        ("RELAY_FEDERATION_RELAY_ID", "tab\there"),
        ("RELAY_FEDERATION_RELAY_ID", "caf\u{e9}"),
        ("RELAY_MAX_STORAGE_BYTES", "0"),
        ("RELAY_MAX_STORAGE_BYTES", "18446744073709551616"),
        ("RELAY_FEDERATION_OFFLOAD_THRESHOLD", "0"),
        ("RELAY_FEDERATION_OFFLOAD_THRESHOLD", "0.0"),
        ("RELAY_FEDERATION_OFFLOAD_THRESHOLD", "1.01"),
        ("RELAY_FEDERATION_OFFLOAD_THRESHOLD", "-0.5"),
        ("RELAY_FEDERATION_OFFLOAD_THRESHOLD", "80%"),
        ("RELAY_FEDERATION_OFFLOAD_THRESHOLD", "NaN"),
        ("RELAY_FEDERATION_OFFLOAD_THRESHOLD", "inf"),
        ("RELAY_FEDERATION_OFFLOAD_THRESHOLD", "8e-1"),
        ("RELAY_FEDERATION_OFFLOAD_THRESHOLD", "0,8"),
        ("RELAY_FEDERATION_OFFLOAD_THRESHOLD", "."),
        ("RELAY_FEDERATION_OFFLOAD_REFUSE", "0.5"),
        ("RELAY_FEDERATION_OFFLOAD_REFUSE", "1.5"),
        ("RELAY_FEDERATION_OFFLOAD_REFUSE", "high"),
        ("RELAY_FEDERATION_DRAIN_TIMEOUT", "0"),
        ("RELAY_FEDERATION_DRAIN_TIMEOUT", "3601"),
        ("RELAY_FEDERATION_PEER_TIMEOUT", "1"),
        ("RELAY_FEDERATION_PEER_TIMEOUT", "3601"),
        ("RELAY_FEDERATION_CAPACITY_INTERVAL", "0"),
        ("RELAY_FEDERATION_CAPACITY_INTERVAL", "86401"),
        ("RELAY_FEDERATION_MTLS_ADDR", "localhost:8443"),
        ("RELAY_FEDERATION_MTLS_ADDR", "8443"),
        ("RELAY_FEDERATION_GOSSIP_ENABLED", "yes"),
        ("RELAY_FEDERATION_GOSSIP_INTERVAL", "0"),
        ("RELAY_FEDERATION_GOSSIP_INTERVAL", "86401"),
        ("RELAY_FEDERATION_PEER_TTL", "0"),
        ("RELAY_FEDERATION_PEER_TTL", "604801"),
    ];
    for (name, value) in cases {
        assert_rejects(&[(name, value)], name, value);
    }
}

#[test]
fn rate_limit_message_matches_the_protocol_example() {
    let error = assert_rejects(&[("RELAY_RATE_LIMIT", "abc")], "RELAY_RATE_LIMIT", "abc");
    assert_eq!(
        error.to_string(),
        r#"invalid RELAY_RATE_LIMIT="abc": expected an integer 1..=1000000"#
    );
}

#[test]
fn relay_id_length_bounds() {
    let max = "x".repeat(128);
    assert_eq!(
        config(&[("RELAY_FEDERATION_RELAY_ID", &max)]).federation_relay_id,
        Some(max)
    );
    assert_eq!(
        config(&[("RELAY_FEDERATION_RELAY_ID", "a")])
            .federation_relay_id
            .as_deref(),
        Some("a")
    );
    let long = "x".repeat(129);
    assert_rejects(
        &[("RELAY_FEDERATION_RELAY_ID", &long)],
        "RELAY_FEDERATION_RELAY_ID",
        &long,
    );
}

#[test]
fn values_are_trimmed_of_ascii_whitespace() {
    let parsed = config(&[
        ("RELAY_RATE_LIMIT", "  120\t"),
        ("RELAY_TLS_VERIFIED", "\ntrue "),
        ("RELAY_LISTEN_ADDR", " 127.0.0.1:1 "),
        ("RELAY_METRICS_TOKEN", "  tok  "),
        ("RELAY_FEDERATION_RELAY_ID", " id-1 "),
        ("RELAY_STORAGE_BACKEND", " memory\r\n"),
        ("RELAY_FEDERATION_OFFLOAD_THRESHOLD", " 0.9 "),
        ("RELAY_DATA_DIR", " /srv/data "),
    ]);
    assert_eq!(parsed.rate_limit, 120);
    assert!(parsed.tls_verified);
    assert_eq!(parsed.listen_addr, socket("127.0.0.1:1"));
    assert_eq!(parsed.metrics_token.as_deref(), Some("tok"));
    assert_eq!(parsed.federation_relay_id.as_deref(), Some("id-1"));
    assert_eq!(parsed.storage_backend, StorageBackend::Memory);
    assert_eq!(parsed.federation_offload_threshold, 0.9);
    assert_eq!(parsed.data_dir, PathBuf::from("/srv/data"));
}

#[test]
fn errors_show_the_value_as_given() {
    assert_rejects(&[("RELAY_RATE_LIMIT", " 0 ")], "RELAY_RATE_LIMIT", " 0 ");
}

#[test]
fn non_ascii_whitespace_is_not_trimmed() {
    // U+00A0 NO-BREAK SPACE is not ASCII whitespace, so the value stays invalid.
    assert_rejects(
        &[("RELAY_RATE_LIMIT", "\u{a0}60")],
        "RELAY_RATE_LIMIT",
        "\u{a0}60",
    );
}

#[test]
fn first_invalid_variable_in_table_order_is_reported() {
    let vars = [
        ("RELAY_FEDERATION_CAPACITY_INTERVAL", "0"),
        ("RELAY_RATE_LIMIT", "x"),
        ("RELAY_MAX_CONNECTIONS", "0"),
    ];
    assert_rejects(&vars, "RELAY_MAX_CONNECTIONS", "0");
    let mut reversed = vars;
    reversed.reverse();
    assert_rejects(&reversed, "RELAY_MAX_CONNECTIONS", "0");
}

#[test]
fn peers_are_normalised() {
    let peers = |value: &str| config(&[("RELAY_FEDERATION_PEERS", value)]).federation_peers;
    assert_eq!(
        peers(" ws://a.example/ , ,wss://b.example:9000,,ws://a.example, ws://c.example//"),
        ["ws://a.example", "wss://b.example:9000", "ws://c.example/"]
    );
    assert_eq!(peers("ws://a.example/,ws://a.example"), ["ws://a.example"]);
    assert_eq!(peers("wss://x.example/base/"), ["wss://x.example/base"]);
    assert_eq!(peers(",,,"), Vec::<String>::new());
    assert_eq!(peers("WSS://Up.example"), ["wss://Up.example"]);
}

#[test]
fn peer_error_names_the_bad_entry() {
    let error = assert_rejects(
        &[(
            "RELAY_FEDERATION_PEERS",
            "ws://ok.example,ftp://bad.example",
        )],
        "RELAY_FEDERATION_PEERS",
        "ws://ok.example,ftp://bad.example",
    );
    assert!(error.expected.contains("ftp://bad.example"), "{error}");
}

#[test]
fn federation_variables_are_validated_even_when_disabled() {
    assert_rejects(
        &[
            ("RELAY_FEDERATION_ENABLED", "false"),
            ("RELAY_FEDERATION_PEERS", "http://x"),
        ],
        "RELAY_FEDERATION_PEERS",
        "http://x",
    );
}

#[test]
fn refuse_must_not_be_below_threshold() {
    let both = |threshold: &str, refuse: &str| {
        load(&[
            ("RELAY_FEDERATION_OFFLOAD_THRESHOLD", threshold),
            ("RELAY_FEDERATION_OFFLOAD_REFUSE", refuse),
        ])
    };
    let parsed = both("0.7", "0.7")
        .expect("refuse equal to the threshold is valid")
        .config;
    assert_eq!(
        (
            parsed.federation_offload_threshold,
            parsed.federation_offload_refuse
        ),
        (0.7, 0.7)
    );
    assert!(both("1", "1").is_ok());
    let error = both("0.9", "0.85").expect_err("refuse below the threshold");
    assert_eq!(error.variable, "RELAY_FEDERATION_OFFLOAD_REFUSE");
    assert_eq!(error.value, "0.85");
    assert!(error.expected.contains("0.9"), "{error}");
    // A threshold above the default refuse level needs an explicit refuse level.
    let error = assert_rejects(
        &[("RELAY_FEDERATION_OFFLOAD_THRESHOLD", "0.99")],
        "RELAY_FEDERATION_OFFLOAD_REFUSE",
        "0.95",
    );
    assert!(error.expected.contains("default"), "{error}");
    // The threshold itself is checked first.
    assert_rejects(
        &[
            ("RELAY_FEDERATION_OFFLOAD_REFUSE", "0.5"),
            ("RELAY_FEDERATION_OFFLOAD_THRESHOLD", "2"),
        ],
        "RELAY_FEDERATION_OFFLOAD_THRESHOLD",
        "2",
    );
}

#[test]
fn unknown_relay_variables_are_warned_about_by_name() {
    let found = warnings(&[
        ("RELAY_BLOB_TTL_DAYS", "30"),
        ("RELAY_RATE_LIMIT", "61"),
        ("RELAY_LISTEN_PORT", ""),
        ("RUST_LOG", "trace"),
        ("RUST_BACKTRACE", "1"),
    ]);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found.iter().any(|w| w.contains("RELAY_BLOB_TTL_DAYS")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|w| w.contains("RELAY_LISTEN_PORT")),
        "{found:?}"
    );
    assert!(!found.iter().any(|w| w.contains("RUST_")), "{found:?}");
}

#[test]
fn unknown_variable_warnings_are_in_a_fixed_order() {
    let a = warnings(&[("RELAY_ZZZ", "1"), ("RELAY_AAA", "1")]);
    let b = warnings(&[("RELAY_AAA", "1"), ("RELAY_ZZZ", "1")]);
    assert_eq!(a, b);
    assert!(a[0].contains("RELAY_AAA"), "{a:?}");
}

#[test]
fn noise_static_key_is_read_and_checked() {
    use base64::Engine as _;
    use vauchi_relay::noise::StaticKey;
    let key = StaticKey::generate();
    let bytes = key.to_bytes();
    let unpadded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let padded = base64::engine::general_purpose::URL_SAFE.encode(bytes);
    for text in [&unpadded, &padded, &format!("  {unpadded}\n")] {
        let loaded = load(&[("RELAY_NOISE_STATIC_KEY", text)]).expect("a valid key");
        assert_eq!(loaded.config.noise_static_key.as_ref(), Some(&key));
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }
    assert_eq!(config(&[]).noise_static_key, None);
}

/// §13.1: an invalid RELAY_NOISE_STATIC_KEY stops startup naming the variable,
/// and its value, a private key, appears nowhere in the error.
#[test]
fn an_invalid_noise_static_key_is_refused_without_showing_it() {
    use base64::Engine as _;
    use vauchi_relay::noise::StaticKey;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let key = StaticKey::generate().to_bytes();
    let mut mismatched = key;
    mismatched[33] ^= 0x40;
    let cases = [
        ("not base64url", "abc$def".to_owned()),
        ("63 bytes", engine.encode(&key[..63])),
        ("65 bytes", engine.encode([&key[..], &[0]].concat())),
        ("private key only", engine.encode(&key[..32])),
        ("mismatched public half", engine.encode(mismatched)),
    ];
    for (label, text) in cases {
        let error = load(&[("RELAY_NOISE_STATIC_KEY", &text)]).expect_err(label);
        assert_eq!(error.variable, "RELAY_NOISE_STATIC_KEY", "{label}");
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(&text), "{label}: {shown}");
        assert!(
            !shown.contains(&engine.encode(&key[..32])),
            "{label}: {shown}"
        );
        assert!(shown.contains("RELAY_NOISE_STATIC_KEY"), "{label}: {shown}");
    }
}

#[test]
fn gossip_variables_are_validated_not_warned_about() {
    let loaded = load(&[
        ("RELAY_FEDERATION_GOSSIP_ENABLED", "true"),
        ("RELAY_FEDERATION_GOSSIP_INTERVAL", "30"),
        ("RELAY_FEDERATION_PEER_TTL", "600"),
    ])
    .expect("valid");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert!(c.gossip_enabled);
    assert_eq!((c.gossip_interval_secs, c.peer_ttl_secs), (30, 600));
    // Validated even with federation disabled (§13.1).
    assert_rejects(
        &[("RELAY_FEDERATION_GOSSIP_INTERVAL", "0")],
        "RELAY_FEDERATION_GOSSIP_INTERVAL",
        "0",
    );
}

#[test]
fn require_noise_encryption_is_a_boolean() {
    for value in ["true", "TRUE", "1"] {
        let loaded = load(&[("RELAY_REQUIRE_NOISE_ENCRYPTION", value)]).expect("valid");
        assert!(loaded.config.require_noise, "{value}");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }
    assert_rejects(
        &[("RELAY_REQUIRE_NOISE_ENCRYPTION", "maybe")],
        "RELAY_REQUIRE_NOISE_ENCRYPTION",
        "maybe",
    );
    for value in ["false", "0", ""] {
        let loaded = load(&[("RELAY_REQUIRE_NOISE_ENCRYPTION", value)]).expect("valid");
        assert!(!loaded.config.require_noise, "{value:?}");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }
}

const MTLS_FILES: [(&str, &str); 3] = [
    ("RELAY_FEDERATION_TLS_CERT", "/etc/relay/fed-cert.pem"),
    ("RELAY_FEDERATION_TLS_KEY", "/etc/relay/fed-key.pem"),
    ("RELAY_FEDERATION_TLS_CA", "/etc/relay/fed-ca.pem"),
];

#[test]
fn mtls_files_are_read_together() {
    for federation in ["true", "false"] {
        let mut vars = MTLS_FILES.to_vec();
        vars.push(("RELAY_FEDERATION_ENABLED", federation));
        vars.push(("RELAY_FEDERATION_TLS_CERT", " /etc/relay/fed-cert.pem "));
        let loaded = load(&vars).expect("valid");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let files = loaded.config.federation_tls.clone().expect("set");
        assert_eq!(files.cert, PathBuf::from("/etc/relay/fed-cert.pem"));
        assert_eq!(files.key, PathBuf::from("/etc/relay/fed-key.pem"));
        assert_eq!(files.ca, PathBuf::from("/etc/relay/fed-ca.pem"));
        assert_eq!(loaded.config.federation_mtls(), federation == "true");
    }
}

#[test]
fn a_partial_mtls_set_stops_startup_naming_the_missing_variable() {
    for (missing, file) in MTLS_FILES.iter().enumerate() {
        for federation in ["true", "false"] {
            let mut vars: Vec<(&str, &str)> = MTLS_FILES
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != missing)
                .map(|(_, v)| *v)
                .collect();
            vars.push(("RELAY_FEDERATION_ENABLED", federation));
            let error = load(&vars).unwrap_err();
            assert_eq!(error.variable, file.0, "{error}");
        }
        // One alone names the first missing one too.
        let error = load(&[*file]).unwrap_err();
        assert_ne!(error.variable, file.0, "{error}");
        assert!(error.to_string().contains(file.0), "{error}");
    }
    // Empty means unset.
    assert_eq!(
        config(&[("RELAY_FEDERATION_TLS_CA", " ")]).federation_tls,
        None
    );
}

#[test]
fn mtls_refuses_a_ws_peer() {
    let mut vars = MTLS_FILES.to_vec();
    vars.push(("RELAY_FEDERATION_ENABLED", "true"));
    vars.push((
        "RELAY_FEDERATION_PEERS",
        "wss://a.example, ws://b.example:8080",
    ));
    let error = load(&vars).unwrap_err();
    assert_eq!(error.variable, "RELAY_FEDERATION_PEERS");
    assert!(error.value.contains("ws://b.example:8080"), "{error}");
    assert!(error.expected.contains("wss://"), "{error}");
    vars.pop();
    vars.push((
        "RELAY_FEDERATION_PEERS",
        "wss://a.example,wss://b.example:8443",
    ));
    assert!(load(&vars).is_ok());
}

#[test]
fn mtls_listener_address_defaults_to_listen_port_plus_two() {
    let mut vars = MTLS_FILES.to_vec();
    vars.push(("RELAY_LISTEN_ADDR", "10.0.0.1:8080"));
    assert_eq!(
        config(&vars).federation_mtls_addr(),
        Some(socket("10.0.0.1:8082"))
    );
    vars.push(("RELAY_FEDERATION_MTLS_ADDR", "[::]:9443"));
    assert_eq!(
        config(&vars).federation_mtls_addr(),
        Some(socket("[::]:9443"))
    );
    // An ephemeral main port gives an ephemeral mTLS port.
    let ephemeral = config(&[("RELAY_LISTEN_ADDR", "127.0.0.1:0")]);
    assert_eq!(
        ephemeral.federation_mtls_addr(),
        Some(socket("127.0.0.1:0"))
    );
    // A default past 65535 must be set by hand.
    let mut high = MTLS_FILES.to_vec();
    high.push(("RELAY_LISTEN_ADDR", "0.0.0.0:65535"));
    assert_eq!(
        load(&high).unwrap_err().variable,
        "RELAY_FEDERATION_MTLS_ADDR"
    );
    high.push(("RELAY_FEDERATION_MTLS_ADDR", "0.0.0.0:8443"));
    assert!(load(&high).is_ok());
}

#[test]
fn federation_without_mtls_on_a_public_listener_is_warned_about() {
    let fed_warnings = |vars: &[(&str, &str)]| {
        let mut all = vars.to_vec();
        all.push(("RELAY_TLS_VERIFIED", "true"));
        config(&all)
            .startup_warnings()
            .into_iter()
            .filter(|w| w.contains("mTLS"))
            .count()
    };
    let enabled = ("RELAY_FEDERATION_ENABLED", "true");
    assert_eq!(fed_warnings(&[enabled]), 1);
    assert_eq!(
        fed_warnings(&[enabled, ("RELAY_LISTEN_ADDR", "[::]:8080")]),
        1
    );
    assert_eq!(fed_warnings(&[]), 0);
    assert_eq!(
        fed_warnings(&[enabled, ("RELAY_LISTEN_ADDR", "127.0.0.1:8080")]),
        0
    );
    let mut with_mtls = MTLS_FILES.to_vec();
    with_mtls.push(enabled);
    assert_eq!(fed_warnings(&with_mtls), 0);
}

#[test]
fn table_values_are_checked_before_extension_variables() {
    assert_rejects(
        &[
            ("RELAY_REQUIRE_NOISE_ENCRYPTION", "true"),
            ("RELAY_RATE_LIMIT", "0"),
        ],
        "RELAY_RATE_LIMIT",
        "0",
    );
}

#[test]
fn tls_proxy_warning_on_non_loopback_listener() {
    let tls_warnings = |vars: &[(&str, &str)]| {
        config(vars)
            .startup_warnings()
            .into_iter()
            .filter(|w| w.contains("RELAY_LISTEN_ADDR"))
            .count()
    };
    assert_eq!(tls_warnings(&[]), 1);
    assert_eq!(tls_warnings(&[("RELAY_LISTEN_ADDR", "[::]:8080")]), 1);
    assert_eq!(tls_warnings(&[("RELAY_TLS_VERIFIED", "true")]), 0);
    assert_eq!(tls_warnings(&[("RELAY_LISTEN_ADDR", "127.0.0.1:8080")]), 0);
    assert_eq!(tls_warnings(&[("RELAY_LISTEN_ADDR", "127.1.2.3:8080")]), 0);
    assert_eq!(tls_warnings(&[("RELAY_LISTEN_ADDR", "[::1]:8080")]), 0);
    let text = config(&[]).startup_warnings().join("\n");
    assert!(text.contains("TLS") && text.contains("proxy"), "{text}");
    // TLS built in: no proxy to warn about (§2.1).
    let built_in = [
        ("RELAY_TLS_CERT_FILE", "/etc/relay/cert.pem"),
        ("RELAY_TLS_KEY_FILE", "/etc/relay/key.pem"),
    ];
    assert_eq!(tls_warnings(&built_in), 0);
}

#[test]
fn tls_files_are_set_together_or_not_at_all() {
    let both = config(&[
        ("RELAY_TLS_CERT_FILE", " /etc/relay/cert.pem "),
        ("RELAY_TLS_KEY_FILE", "/etc/relay/key.pem"),
    ]);
    let files = both.tls.expect("both set");
    assert_eq!(files.cert, std::path::PathBuf::from("/etc/relay/cert.pem"));
    assert_eq!(files.key, std::path::PathBuf::from("/etc/relay/key.pem"));
    assert_eq!(config(&[("RELAY_TLS_CERT_FILE", " ")]).tls, None);
    for (given, missing) in [
        ("RELAY_TLS_CERT_FILE", "RELAY_TLS_KEY_FILE"),
        ("RELAY_TLS_KEY_FILE", "RELAY_TLS_CERT_FILE"),
    ] {
        let error = load(&[(given, "/etc/relay/file.pem")]).unwrap_err();
        assert_eq!(error.variable, missing);
        assert!(error.to_string().contains(given), "{error}");
    }
}

#[test]
fn metrics_warning_on_non_loopback_without_token() {
    let metrics_warnings = |vars: &[(&str, &str)]| {
        let mut all = vars.to_vec();
        all.push(("RELAY_TLS_VERIFIED", "true"));
        config(&all).startup_warnings()
    };
    assert!(metrics_warnings(&[]).is_empty());
    assert!(metrics_warnings(&[("RELAY_METRICS_ADDR", "localhost:9100")]).is_empty());
    assert!(metrics_warnings(&[("RELAY_METRICS_ADDR", "[::1]:9100")]).is_empty());
    assert!(
        metrics_warnings(&[
            ("RELAY_METRICS_ADDR", "0.0.0.0:9100"),
            ("RELAY_METRICS_TOKEN", "t")
        ])
        .is_empty()
    );
    let found = metrics_warnings(&[("RELAY_METRICS_ADDR", "0.0.0.0:9100")]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("RELAY_METRICS_ADDR") && found[0].contains("RELAY_METRICS_TOKEN"));
}

#[test]
fn help_text_mentions_every_variable_with_its_default() {
    let help = help_text();
    let defaults = [
        ("RELAY_LISTEN_ADDR", "0.0.0.0:8080"),
        ("RELAY_METRICS_ADDR", "127.0.0.1:8081"),
        ("RELAY_MAX_CONNECTIONS", "100000"),
        ("RELAY_BLOB_TTL_SECS", "7776000"),
        ("RELAY_RATE_LIMIT", "60"),
        ("RELAY_STORAGE_BACKEND", "sqlite"),
        ("RELAY_FEDERATION_OFFLOAD_THRESHOLD", "0.80"),
        ("RUST_LOG", "info"),
    ];
    for name in TABLE_NAMES {
        let lines: Vec<&str> = help
            .lines()
            .filter(|l| l.trim_start().starts_with(name))
            .collect();
        assert!(!lines.is_empty(), "help lacks {name}:\n{help}");
    }
    for (name, default) in defaults {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}"));
        assert!(line.contains(default), "{line:?} lacks {default}");
    }
}
