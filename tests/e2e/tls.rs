//! Built-in TLS on the main listener (§2.8): HTTPS probes and `wss://` sessions
//! (handed to their owner shard with the TLS session, pipelined bytes included),
//! a peer that does not speak TLS, the handshake timer over the TLS handshake,
//! SIGHUP reloads that succeed and that fail, the expiry gauge, and startup errors.
//! Certificates are made at test time by a throwaway CA.
//!
//! Waits are bounded by `STUCK` and never measured.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use futures_rustls::rustls::pki_types::ServerName;
use futures_rustls::rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::common::ca::{Ca, cert_file, key_file};
use crate::common::*;
use crate::wire::fresh_id;

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A relay with TLS built in, its certificate files in `certs`.
pub(super) fn tls_relay(data: &TempDir, certs: &TempDir, extra: &[(&str, &str)]) -> Relay {
    let cert = cert_file(certs.path());
    let key = key_file(certs.path());
    let mut vars = vec![
        ("RELAY_TLS_CERT_FILE", cert.to_str().unwrap()),
        ("RELAY_TLS_KEY_FILE", key.to_str().unwrap()),
    ];
    vars.extend_from_slice(extra);
    Relay::start(data.path(), &vars)
}

/// TCP, then a completed TLS handshake for `localhost`.
fn tls_connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(STUCK)).unwrap();
    tls_over(tcp, config)
}

/// A completed TLS handshake for `localhost` over `tcp`.
fn tls_over(tcp: TcpStream, config: &Arc<ClientConfig>) -> Tls {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::clone(config), name).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// The leaf certificate a new connection is served.
fn served_certificate(addr: SocketAddr, config: &Arc<ClientConfig>) -> Vec<u8> {
    let tls = tls_connect(addr, config);
    tls.conn.peer_certificates().unwrap()[0].to_vec()
}

fn wss(addr: SocketAddr, config: &Arc<ClientConfig>) -> Client<Tls> {
    let tls = tls_connect(addr, config);
    let (ws, _) = tungstenite::client::client("ws://localhost/", tls).unwrap();
    Client { ws, noise: None }
}

fn https_get(addr: SocketAddr, config: &Arc<ClientConfig>, path: &str) -> String {
    let mut tls = tls_connect(addr, config);
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    tls.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    // The relay closes after the reply, with close_notify.
    tls.read_to_end(&mut response).unwrap();
    String::from_utf8(response).unwrap()
}

/// Waits (bounded by `STUCK`) until the metric has this value.
fn await_metric(relay: &Relay, name: &str, labels: &str, value: f64) {
    let begun = Instant::now();
    loop {
        if metric_value(&scrape_metrics(relay), name, labels) == value {
            return;
        }
        assert!(
            begun.elapsed() < STUCK,
            "{name}{labels} never became {value}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn sighup(relay: &Relay) {
    // SAFETY: kill only sends a signal to the child we started.
    let result = unsafe { libc::kill(relay.child.id() as i32, libc::SIGHUP) };
    assert_eq!(result, 0);
}

fn log_text(relay: &Relay) -> String {
    relay.log.lock().unwrap().join("\n")
}

#[test]
fn probes_are_https_and_sessions_are_wss_across_shards() {
    let (data, certs, ca) = (
        TempDir::new("tls-data"),
        TempDir::new("tls-certs"),
        Ca::new(),
    );
    let leaf = ca.leaf(certs.path(), 2031);
    let relay = tls_relay(&data, &certs, &[("RELAY_SHARDS", "2")]);
    let client = ca.client();

    let health = https_get(relay.addr, &client, "/health");
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(health.contains("\"status\":\"healthy\""), "{health}");
    assert_eq!(served_certificate(relay.addr, &client), leaf.der);
    let metrics = scrape_metrics(&relay);
    assert_eq!(
        metric_value(
            &metrics,
            "relay_tls_certificate_expiry_timestamp_seconds",
            "{listener=\"main\"}"
        ),
        leaf.not_after as f64
    );
    assert!(!metrics.contains("listener=\"federation\""), "{metrics}");

    // Recipients on both shards: each session is handed to its owner with the TLS
    // session; the sender pipelines an update behind its Handshake, in one record.
    let recipients: Vec<String> = (0..8).map(|_| fresh_id()).collect();
    let mut sender = wss(relay.addr, &client);
    sender.feed_json(&handshake_json(&fresh_id()));
    sender.feed_json(&update_json("m-0", &recipients[0], b"sealed 0"));
    sender.flush();
    assert_eq!(sender.recv_json()["payload"]["type"], "HandshakeAck");
    assert_eq!(sender.recv_json()["payload"]["status"], "Stored");
    for (i, recipient) in recipients.iter().enumerate().skip(1) {
        let text = format!("sealed {i}");
        sender.send_json(&update_json(&format!("m-{i}"), recipient, text.as_bytes()));
        assert_eq!(sender.recv_json()["payload"]["status"], "Stored");
    }
    for (i, recipient) in recipients.iter().enumerate() {
        let mut receiver = wss(relay.addr, &client);
        receiver.handshake_as(recipient);
        let update = receiver.recv_json();
        assert_eq!(update["payload"]["type"], "EncryptedUpdate", "{update}");
        let expected: Vec<u8> = format!("sealed {i}").into_bytes();
        let got: Vec<u8> = update["payload"]["ciphertext"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(got, expected);
        receiver.close();
    }
}

#[test]
fn a_peer_that_does_not_speak_tls_is_closed_without_a_reply() {
    let (data, certs, ca) = (
        TempDir::new("tls-data"),
        TempDir::new("tls-certs"),
        Ca::new(),
    );
    ca.leaf(certs.path(), 2031);
    let relay = tls_relay(&data, &certs, &[]);
    let before = metric_value(&scrape_metrics(&relay), "relay_connection_errors_total", "");
    let mut tcp = TcpStream::connect(relay.addr).unwrap();
    tcp.set_read_timeout(Some(STUCK)).unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    // At most a TLS alert record (content type 21), never an HTTP reply.
    assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");
    await_metric(&relay, "relay_connection_errors_total", "", before + 1.0);
}

#[test]
fn the_handshake_timer_covers_the_tls_handshake() {
    let (data, certs, ca) = (
        TempDir::new("tls-data"),
        TempDir::new("tls-certs"),
        Ca::new(),
    );
    ca.leaf(certs.path(), 2031);
    let relay = tls_relay(&data, &certs, &[("RELAY_HANDSHAKE_TIMEOUT", "1")]);
    let mut tcp = TcpStream::connect(relay.addr).unwrap();
    tcp.set_read_timeout(Some(STUCK)).unwrap();
    // Half a ClientHello record header, then silence.
    tcp.write_all(&[22, 3, 1]).unwrap();
    let mut answer = Vec::new();
    let read = tcp.read_to_end(&mut answer);
    assert!(read.is_ok(), "closed, not stuck: {read:?}");
    await_metric(&relay, "relay_connection_errors_total", "", 1.0);
}

#[test]
fn sighup_serves_new_certificates_to_new_connections_and_keeps_sessions() {
    let (data, certs, ca) = (
        TempDir::new("tls-data"),
        TempDir::new("tls-certs"),
        Ca::new(),
    );
    let first = ca.leaf(certs.path(), 2031);
    let relay = tls_relay(&data, &certs, &[]);
    let client = ca.client();
    let mut session = wss(relay.addr, &client);
    session.handshake_as(&fresh_id());

    let second = ca.leaf(certs.path(), 2033);
    sighup(&relay);
    await_metric(
        &relay,
        "relay_tls_certificate_expiry_timestamp_seconds",
        "{listener=\"main\"}",
        second.not_after as f64,
    );
    assert_ne!(first.der, second.der);
    assert_eq!(served_certificate(relay.addr, &client), second.der);
    // The session begun under the old certificate goes on.
    session.send_json(&update_json("after-reload", &fresh_id(), b"sealed"));
    assert_eq!(session.recv_json()["payload"]["status"], "Stored");
    let metrics = scrape_metrics(&relay);
    assert_eq!(
        metric_value(&metrics, "relay_tls_reload_failures_total", ""),
        0.0
    );
    assert!(log_text(&relay).contains("TLS certificates reloaded"));
}

#[test]
fn a_reload_that_fails_keeps_the_certificate_in_use() {
    let (data, certs, ca) = (
        TempDir::new("tls-data"),
        TempDir::new("tls-certs"),
        Ca::new(),
    );
    let leaf = ca.leaf(certs.path(), 2031);
    let relay = tls_relay(&data, &certs, &[]);
    let client = ca.client();
    let secret =
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0IGtleSBieXRlcw==\n-----END PRIVATE KEY-----\n";
    std::fs::write(key_file(certs.path()), secret).unwrap();
    sighup(&relay);
    await_metric(&relay, "relay_tls_reload_failures_total", "", 1.0);
    std::fs::write(cert_file(certs.path()), "not a certificate").unwrap();
    sighup(&relay);
    await_metric(&relay, "relay_tls_reload_failures_total", "", 2.0);

    assert_eq!(served_certificate(relay.addr, &client), leaf.der);
    let metrics = scrape_metrics(&relay);
    assert_eq!(
        metric_value(
            &metrics,
            "relay_tls_certificate_expiry_timestamp_seconds",
            "{listener=\"main\"}"
        ),
        leaf.not_after as f64
    );
    let log = log_text(&relay);
    assert!(log.contains("RELAY_TLS_KEY_FILE"), "{log}");
    assert!(log.contains("RELAY_TLS_CERT_FILE"), "{log}");
    assert!(
        !log.contains("c2VjcmV0"),
        "the key file's content was logged"
    );
    let health = https_get(relay.addr, &client, "/health");
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
}

#[test]
fn sighup_without_tls_only_says_so() {
    let data = TempDir::new("tls-data");
    let relay = Relay::start(data.path(), &[]);
    sighup(&relay);
    let begun = Instant::now();
    while !log_text(&relay).contains("no TLS certificates to reload") {
        assert!(begun.elapsed() < STUCK, "{}", log_text(&relay));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Client::handshake(relay.addr, &fresh_id()).close();
    let metrics = scrape_metrics(&relay);
    assert!(
        !metrics.contains("relay_tls_certificate_expiry_timestamp_seconds{"),
        "{metrics}"
    );
}

/// The relay's exit status and stderr for these variables (it must not start).
fn startup_failure(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let data = TempDir::new("tls-data");
    let output = relay_command(data.path(), vars).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn certificate_files_that_do_not_load_stop_startup_naming_the_variable() {
    let (certs, other, ca) = (
        TempDir::new("tls-certs"),
        TempDir::new("tls-other"),
        Ca::new(),
    );
    ca.leaf(certs.path(), 2031);
    ca.leaf(other.path(), 2031);
    let cert = cert_file(certs.path());
    let key = key_file(certs.path());
    let missing = certs.path().join("missing.pem");
    let foreign_key = key_file(other.path());
    let cases: [(&Path, &Path, &str); 3] = [
        (&missing, &key, "RELAY_TLS_CERT_FILE"),
        (&cert, &missing, "RELAY_TLS_KEY_FILE"),
        (&cert, &foreign_key, "RELAY_TLS_KEY_FILE"),
    ];
    for (cert, key, variable) in cases {
        let (status, stderr) = startup_failure(&[
            ("RELAY_TLS_CERT_FILE", cert.to_str().unwrap()),
            ("RELAY_TLS_KEY_FILE", key.to_str().unwrap()),
        ]);
        assert_eq!(status, Some(1), "{stderr}");
        assert!(stderr.contains(variable), "{variable}: {stderr}");
        assert!(!stderr.contains("listening on"), "{stderr}");
    }
}

#[test]
fn a_backlog_reaches_a_reader_that_falls_behind_in_full() {
    // Enough to fill the socket buffers while the reader sleeps, so that writes
    // wait for the socket: the last records must still leave.
    const BLOBS: usize = 400;
    let (data, certs, ca) = (
        TempDir::new("tls-data"),
        TempDir::new("tls-certs"),
        Ca::new(),
    );
    ca.leaf(certs.path(), 2031);
    let relay = tls_relay(&data, &certs, &[("RELAY_RATE_LIMIT", "1000000")]);
    let client = ca.client();
    let recipient = fresh_id();
    let ciphertext = vec![7u8; 32 * 1024];
    let mut sender = wss(relay.addr, &client);
    sender.handshake_as(&fresh_id());
    for i in 0..BLOBS {
        sender.feed_json(&update_json(&format!("m-{i}"), &recipient, &ciphertext));
    }
    sender.flush();
    for _ in 0..BLOBS {
        assert_eq!(sender.recv_json()["payload"]["status"], "Stored");
    }
    let mut receiver = wss(relay.addr, &client);
    receiver.send_json(&handshake_json(&recipient));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(receiver.recv_json()["payload"]["type"], "HandshakeAck");
    for _ in 0..BLOBS {
        let update = receiver.recv_json();
        assert_eq!(update["payload"]["type"], "EncryptedUpdate");
    }
}

#[test]
fn behind_a_proxy_protocol_header_comes_tls_and_the_header_names_the_client() {
    let (data, certs, ca) = (
        TempDir::new("tls-proxy-data"),
        TempDir::new("tls-proxy-certs"),
        Ca::new(),
    );
    ca.leaf(certs.path(), 2031);
    let relay = tls_relay(
        &data,
        &certs,
        &[
            ("RELAY_PROXY_PROTOCOL", "v1"),
            ("RELAY_MAX_CONNECTIONS_PER_IP", "1"),
            ("RELAY_SHARDS", "2"),
        ],
    );
    let client = ca.client();
    let behind = |source: &str| {
        let mut tcp = TcpStream::connect(relay.addr).unwrap();
        tcp.set_read_timeout(Some(STUCK)).unwrap();
        let header = format!("PROXY TCP4 {source} 127.0.0.1 40000 443\r\n");
        tcp.write_all(header.as_bytes()).unwrap();
        tls_over(tcp, &client)
    };
    // A wss:// session for client 198.51.100.1 (handed to its owner shard).
    let (ws, _) = tungstenite::client::client("ws://localhost/", behind("198.51.100.1")).unwrap();
    let mut session = Client { ws, noise: None };
    session.handshake_as(&fresh_id());
    session.send_json(&update_json("u1", B, b"sealed"));
    assert_eq!(session.recv_json()["payload"]["status"], "Stored");

    // Its second connection is refused inside TLS; another client's is served.
    let request = |source: &str| {
        let mut tls = behind(source);
        tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut response = Vec::new();
        tls.read_to_end(&mut response).unwrap();
        String::from_utf8(response).unwrap()
    };
    let refused = request("198.51.100.1");
    assert!(refused.starts_with("HTTP/1.1 429 "), "{refused}");
    let served = request("198.51.100.2");
    assert!(served.starts_with("HTTP/1.1 200 OK\r\n"), "{served}");
    session.close();
}

/// Regression: the relay once read the certificate paths from the environment
/// again instead of from the parsed configuration, so padded values stopped
/// startup, empty ones (unset, §13.1) too, and a path that was not UTF-8 left the
/// listener plain without a warning.
#[test]
fn the_certificate_paths_are_the_configurations_trimmed_and_empty_means_unset() {
    let (data, certs, ca) = (
        TempDir::new("tls-trim-data"),
        TempDir::new("tls-trim-certs"),
        Ca::new(),
    );
    let leaf = ca.leaf(certs.path(), 2031);
    let cert = format!(" {} ", cert_file(certs.path()).display());
    let key = format!("\t{}\n", key_file(certs.path()).display());
    let relay = Relay::start(
        data.path(),
        &[("RELAY_TLS_CERT_FILE", &cert), ("RELAY_TLS_KEY_FILE", &key)],
    );
    assert_eq!(served_certificate(relay.addr, &ca.client()), leaf.der);
    drop(relay);

    let plain = Relay::start(
        data.path(),
        &[("RELAY_TLS_CERT_FILE", ""), ("RELAY_TLS_KEY_FILE", " ")],
    );
    let health = crate::wire::http_exchange(plain.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(health.status, 200, "{health:?}");
}
