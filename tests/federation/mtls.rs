//! Federation over mTLS (§15.3) end to end, with a throwaway CA made at test time
//! (`tests/common/ca.rs`): two relays offloading over the mTLS listener; peers
//! without a certificate, with one from another CA, or with one naming another
//! relay id, on both sides of a link; the plain `/federation` refused with 403;
//! startup refusals; and SIGHUP reloading the certificate while a link stays up.
//!
//! Waits are bounded by `STUCK` and never measured.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_rustls::rustls::pki_types::ServerName;
use futures_rustls::rustls::pki_types::pem::PemObject as _;
use futures_rustls::rustls::{
    self, AlertDescription, ClientConfig, ClientConnection, ServerConfig, ServerConnection,
    StreamOwned,
};

use crate::common::ca::{Ca, Leaf};
use crate::common::*;
use crate::fedwire::*;
use crate::wire::fresh_id;

/// A CA, its file, and a directory for the certificates it issues.
struct Pki {
    dir: TempDir,
    ca: Ca,
    ca_file: PathBuf,
}

impl Pki {
    fn new(label: &str) -> Pki {
        let dir = TempDir::new(label);
        let ca = Ca::new();
        let ca_file = ca.pem_file(dir.path());
        Pki { dir, ca, ca_file }
    }

    /// A certificate naming `relay_id` and localhost (for the URL's host check).
    fn relay_leaf(&self, relay_id: &str, year: i32) -> Leaf {
        self.ca
            .leaf_named(self.dir.path(), relay_id, &[relay_id, "localhost"], year)
    }

    /// A federating relay `relay_id` with mTLS on 127.0.0.1:0 and `leaf`.
    fn relay(&self, relay_id: &str, leaf: &Leaf) -> FedRelay {
        let mut relay = FedRelay::new(relay_id);
        with_mtls(&mut relay, leaf, &self.ca_file);
        relay
    }
}

fn with_mtls(relay: &mut FedRelay, leaf: &Leaf, ca_file: &Path) {
    relay
        .set("RELAY_FEDERATION_TLS_CERT", leaf.cert.to_str().unwrap())
        .set("RELAY_FEDERATION_TLS_KEY", leaf.key.to_str().unwrap())
        .set("RELAY_FEDERATION_TLS_CA", ca_file.to_str().unwrap())
        .set("RELAY_FEDERATION_MTLS_ADDR", "127.0.0.1:0");
}

/// The mTLS listener's address, as the relay logged it before it said it listens.
fn mtls_addr(relay: &Relay) -> SocketAddr {
    let log = relay.log.lock().unwrap();
    let line = log
        .iter()
        .find_map(|l| l.split("federation mTLS on ").nth(1))
        .unwrap_or_else(|| panic!("no mTLS listener logged: {log:?}"));
    line.trim().parse().unwrap()
}

/// The URL a peer configures for this relay's mTLS listener.
fn mtls_url(relay: &Relay) -> String {
    format!("wss://localhost:{}", mtls_addr(relay).port())
}

type ClientTls = StreamOwned<ClientConnection, TcpStream>;

/// TCP and the client side of TLS with `config` to `addr` (server name
/// localhost); the stream and a clone of its socket. In TLS 1.3 the server's
/// verdict on our certificate comes after the client's side is done, with the
/// first read.
fn tls_connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> io::Result<(ClientTls, TcpStream)> {
    let stream = connect_stream(addr);
    let socket = stream.try_clone().unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let connection = ClientConnection::new(Arc::clone(config), name).unwrap();
    let mut tls = StreamOwned::new(connection, stream);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok((tls, socket))
}

/// The TLS alert in an error, if the peer sent one.
fn alert_of(error: &io::Error) -> Option<AlertDescription> {
    match error.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

/// Connects with `config` and sends an upgrade request: the relay must end TLS
/// with an alert before any HTTP answer. The alert.
fn refused_alert(addr: SocketAddr, config: &Arc<ClientConfig>) -> AlertDescription {
    let mut tls = match tls_connect(addr, config) {
        Err(error) => return alert_of(&error).unwrap_or_else(|| panic!("{error}")),
        Ok((tls, _)) => tls,
    };
    let request = "GET /federation HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let _ = tls.write_all(request.as_bytes());
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Err(error) => alert_of(&error).unwrap_or_else(|| panic!("not an alert: {error}")),
        Ok(_) => panic!(
            "the relay answered a peer it should refuse: {:?}",
            String::from_utf8_lossy(&answer)
        ),
    }
}

/// A raw initiator over mTLS presenting `leaf`: the upgraded link.
fn mtls_peer(relay: &Relay, pki: &Pki, leaf: &Leaf) -> FedPeer {
    let addr = mtls_addr(relay);
    let config = pki.ca.client_presenting(Some(leaf));
    let (tls, socket) = tls_connect(addr, &config).unwrap();
    let url = format!("wss://localhost:{}/federation", addr.port());
    FedPeer::connect_on(tls, &url, &socket).unwrap_or_else(|e| panic!("{e}"))
}

/// The leaf certificate the relay's mTLS listener serves now.
fn served_certificate(relay: &Relay, pki: &Pki, client: &Leaf) -> Vec<u8> {
    let config = pki.ca.client_presenting(Some(client));
    let (tls, _) = tls_connect(mtls_addr(relay), &config).unwrap();
    let chain = tls.conn.peer_certificates().unwrap();
    chain[0].as_ref().to_vec()
}

fn federation_expiry(relay: &Relay) -> f64 {
    Metrics::of(relay).get(
        "relay_tls_certificate_expiry_timestamp_seconds",
        r#"listener="federation""#,
    )
}

#[test]
fn two_relays_offload_over_mtls_and_hints_name_the_configured_peer() {
    let pki = Pki::new("mtls-offload");
    let (leaf_a, leaf_b) = (
        pki.relay_leaf("relay-a", 2031),
        pki.relay_leaf("relay-b", 2032),
    );
    let (dir_a, dir_b) = (TempDir::new("mtls-a"), TempDir::new("mtls-b"));
    let b = pki.relay("relay-b", &leaf_b).start(dir_b.path());
    let b_url = mtls_url(&b);
    let a = pki
        .relay("relay-a", &leaf_a)
        .peer(&b_url)
        .tiny(1000, "0.1")
        .start(dir_a.path());
    let Offloaded {
        recipient: r,
        datas,
        ids,
    } = offload_four(&a, &b, 7, "A offloads its four blobs to B over mTLS");
    // A's hints name B as configured: its wss:// mTLS URL (§5.13 carries the
    // entry as is). The client fetches the blobs from B's client port.
    let on_a = Mailbox::read(a.addr, &r);
    assert!(on_a.blobs.is_empty(), "{on_a:?}");
    on_a.check_hints(&b_url);
    let mut hinted = on_a.hint_ids();
    hinted.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(hinted, expected);
    let on_b = Mailbox::read(b.addr, &r);
    assert_eq!(on_b.datas(), sorted(&datas));
    // The links are the mTLS ones, and each side shows its certificate's expiry.
    assert!(count_log(&a, &["outbound federation link up", "relay-b"]) >= 1);
    assert_eq!(federation_expiry(&a), leaf_a.not_after as f64);
    assert_eq!(federation_expiry(&b), leaf_b.not_after as f64);
    // Shutdown drains the mTLS link like any other (§14.1): B's DrainNotice
    // reaches A over it, and B exits 0.
    let mut b = b;
    signal(&b, libc::SIGTERM);
    assert!(wait_exit(&mut b).success(), "{:?}", tail(&b));
    wait_log(&a, &["federation peer is draining", "relay-b"]);
}

#[test]
fn the_plain_federation_endpoint_answers_403_while_mtls_is_configured() {
    let pki = Pki::new("mtls-403");
    let leaf = pki.relay_leaf("relay-b", 2031);
    let dir = TempDir::new("mtls-403-b");
    let b = pki.relay("relay-b", &leaf).start(dir.path());
    let before = Metrics::of(&b).get("relay_connection_errors_total", "");
    let refusal = FedPeer::connect(b.addr).err().expect("refused");
    assert!(refusal.contains("403"), "{refusal}");
    assert!(
        refusal.contains(r#"{"error":"federation requires mTLS"}"#),
        "{refusal}"
    );
    wait_metrics("the refusal is counted", &[&b], |m| {
        m[0].get("relay_connection_errors_total", "") == before + 1.0
    });
    // Clients on the main port are unaffected.
    let mut client = Client::handshake(b.addr, &fresh_id());
    client.close();
}

#[test]
fn the_mtls_listener_refuses_peers_without_a_certificate_of_its_ca() {
    let pki = Pki::new("mtls-refuse");
    let leaf = pki.relay_leaf("relay-b", 2031);
    let dir = TempDir::new("mtls-refuse-b");
    let b = pki.relay("relay-b", &leaf).start(dir.path());
    let addr = mtls_addr(&b);
    // No certificate at all.
    let alert = refused_alert(addr, &pki.ca.client_presenting(None));
    assert_eq!(alert, AlertDescription::CertificateRequired);
    // A certificate from another CA, for the same names.
    let other = Pki::new("mtls-other-ca");
    let stranger = other.relay_leaf("relay-x", 2031);
    let config = {
        // Trusts B's CA (so the client side completes) but presents the other's.
        let (chain, key) = stranger.load();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(&pki.ca_file).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        Arc::new(config)
    };
    // Both test CAs have the same subject, so the verifier finds the trusted one
    // by name and its signature fails (decrypt_error); a differently named CA
    // would give unknown_ca. Either way, TLS ends before any HTTP.
    let alert = refused_alert(addr, &config);
    assert!(
        matches!(
            alert,
            AlertDescription::UnknownCA | AlertDescription::DecryptError
        ),
        "{alert:?}"
    );
    // A peer that sends nothing is closed by the handshake timer.
    let mut idle = connect_stream(addr);
    let mut buf = [0u8; 16];
    assert!(matches!(idle.read(&mut buf), Ok(0) | Err(_)));
    wait_metrics("each failed handshake is counted", &[&b], |m| {
        m[0].get("relay_connection_errors_total", "") >= 3.0
    });
    assert_eq!(
        Metrics::of(&b).get("relay_federation_peers", r#"state="connected""#),
        0.0
    );
}

#[test]
fn the_acceptor_binds_the_claimed_relay_id_to_the_certificate() {
    let pki = Pki::new("mtls-identity");
    let leaf = pki.relay_leaf("relay-b", 2031);
    let dir = TempDir::new("mtls-identity-b");
    let b = FedRelay::new("relay-b")
        .set("RELAY_HANDSHAKE_TIMEOUT", "1")
        .set("RELAY_FEDERATION_TLS_CERT", leaf.cert.to_str().unwrap())
        .set("RELAY_FEDERATION_TLS_KEY", leaf.key.to_str().unwrap())
        .set("RELAY_FEDERATION_TLS_CA", pki.ca_file.to_str().unwrap())
        .set("RELAY_FEDERATION_MTLS_ADDR", "127.0.0.1:0")
        .start(dir.path());
    // A certificate of the CA naming relay-z, claiming relay-y.
    let z = pki.relay_leaf("relay-z", 2031);
    let peer = mtls_peer(&b, &pki, &z);
    peer.send(peer_handshake("relay-y", 1));
    let (raw, ack) = peer.recv_message();
    assert_eq!(ack["payload"]["type"], "PeerHandshakeAck", "{raw}");
    assert_eq!(ack["payload"]["accepted"], false, "{raw}");
    assert_eq!(ack["payload"]["relay_id"], "relay-b", "{raw}");
    assert_eq!(
        peer.expect_close(&[]),
        (1008, "identity mismatch".to_owned())
    );
    // The same certificate claiming its own name (in another case) is accepted.
    let peer = mtls_peer(&b, &pki, &z);
    peer.send(peer_handshake("RELAY-Z", 1));
    let (raw, ack) = peer.recv_message();
    assert_eq!(ack["payload"]["accepted"], true, "{raw}");
    wait_metrics("relay-z is linked", &[&b], |m| {
        m[0].get("relay_federation_peers", r#"state="connected""#) == 1.0
    });
    // The other §11.4 refusals still apply, self links first.
    let own = pki.relay_leaf("relay-b", 2031);
    let peer = mtls_peer(&b, &pki, &own);
    peer.send(peer_handshake("relay-b", 1));
    let (raw, ack) = peer.recv_message();
    assert_eq!(ack["payload"]["accepted"], false, "{raw}");
    assert_eq!(peer.expect_close(&[]), (1008, "self link".to_owned()));
}

/// A raw mTLS acceptor for the relay to dial: TLS with a client certificate
/// required, then the upgrade.
fn accept_mtls(listener: &TcpListener, config: &Arc<ServerConfig>) -> (FedPeer, Vec<u8>) {
    let stream = accept_stream(listener);
    let socket = stream.try_clone().unwrap();
    let connection = ServerConnection::new(Arc::clone(config)).unwrap();
    let mut tls = StreamOwned::new(connection, stream);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .unwrap_or_else(|e| panic!("TLS with the relay failed: {e}"));
    }
    let client = tls.conn.peer_certificates().expect("a client certificate")[0]
        .as_ref()
        .to_vec();
    (FedPeer::accept_on(tls, &socket), client)
}

#[test]
fn the_initiator_binds_the_acceptors_relay_id_to_its_certificate() {
    let pki = Pki::new("mtls-initiator");
    let leaf_a = pki.relay_leaf("relay-a", 2031);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("wss://localhost:{}", listener.local_addr().unwrap().port());
    let dir = TempDir::new("mtls-initiator-a");
    let a = pki.relay("relay-a", &leaf_a).peer(&url).start(dir.path());
    // The acceptor's certificate names relay-q; it claims relay-p.
    let q = pki.relay_leaf("relay-q", 2031);
    let server = pki.ca.server_requiring_clients(&q);
    let (peer, client) = accept_mtls(&listener, &server);
    assert_eq!(client, leaf_a.der, "the relay presents its own certificate");
    let (raw, hello) = peer.recv_message();
    assert_eq!(hello["payload"]["type"], "PeerHandshake", "{raw}");
    assert_eq!(hello["payload"]["relay_id"], "relay-a", "{raw}");
    peer.send(peer_handshake_ack("relay-p", true, 0, 1_000_000));
    assert_eq!(
        peer.expect_close(&[]),
        (1008, "identity mismatch".to_owned())
    );
    // A failed attempt: the relay retries, and links once the id matches.
    let (peer, _) = accept_mtls(&listener, &server);
    let _ = peer.recv_message();
    peer.send(peer_handshake_ack("relay-q", true, 0, 1_000_000));
    let (raw, report) = peer.recv_message();
    assert_eq!(report["payload"]["type"], "CapacityReport", "{raw}");
    wait_metrics("relay-q is linked", &[&a], |m| {
        m[0].get("relay_federation_peers", r#"state="connected""#) == 1.0
    });
    // Nothing but the relay ids and URL was logged about it.
    assert!(count_log(&a, &["does not name the relay id"]) >= 1);
}

/// Starts the relay binary with `vars` and expects it to stop at startup with
/// status 1, saying `expected`.
fn refuses_to_start(vars: &[(&str, &str)], expected: &str) {
    let dir = TempDir::new("mtls-startup");
    let output = relay_command(dir.path(), vars).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{vars:?}: {stderr}");
    assert!(stderr.contains(expected), "{vars:?}: {stderr}");
}

#[test]
fn startup_stops_on_a_ws_peer_or_a_file_that_does_not_load() {
    let pki = Pki::new("mtls-startup-files");
    let leaf = pki.relay_leaf("relay-a", 2031);
    let (cert, key) = (leaf.cert.to_str().unwrap(), leaf.key.to_str().unwrap());
    let ca = pki.ca_file.to_str().unwrap();
    let garbage = pki.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not PEM at all").unwrap();
    let garbage = garbage.to_str().unwrap();
    let files = |cert: &'static str, key: &'static str, ca: &'static str| {
        vec![
            ("RELAY_FEDERATION_TLS_CERT", cert),
            ("RELAY_FEDERATION_TLS_KEY", key),
            ("RELAY_FEDERATION_TLS_CA", ca),
        ]
    };
    let (cert, key, ca, garbage): (&'static str, &'static str, &'static str, &'static str) = (
        cert.to_owned().leak(),
        key.to_owned().leak(),
        ca.to_owned().leak(),
        garbage.to_owned().leak(),
    );
    let mut ws_peer = files(cert, key, ca);
    ws_peer.push(("RELAY_FEDERATION_ENABLED", "true"));
    ws_peer.push(("RELAY_FEDERATION_PEERS", "ws://127.0.0.1:9"));
    refuses_to_start(&ws_peer, "RELAY_FEDERATION_PEERS");
    // Files are checked even with federation disabled.
    refuses_to_start(&files(cert, key, garbage), "RELAY_FEDERATION_TLS_CA");
    refuses_to_start(&files(cert, garbage, ca), "RELAY_FEDERATION_TLS_KEY");
    refuses_to_start(&files(garbage, key, ca), "RELAY_FEDERATION_TLS_CERT");
    refuses_to_start(
        &files(cert, key, "/nonexistent/ca.pem"),
        "RELAY_FEDERATION_TLS_CA",
    );
    refuses_to_start(&files(cert, key, "")[..2], "RELAY_FEDERATION_TLS_CA");
    // The key's content never appears in a message.
    let key_text = std::fs::read_to_string(key).unwrap();
    let line = key_text.lines().nth(1).unwrap();
    let dir = TempDir::new("mtls-startup-key");
    let swapped = files(key, cert, ca);
    let output = relay_command(dir.path(), &swapped).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&output.stderr).contains(line));
}

#[test]
fn an_mtls_address_in_use_stops_startup_even_if_its_holder_shares_ports() {
    let pki = Pki::new("mtls-clash");
    let leaf = pki.relay_leaf("relay-a", 2031);
    // A socket that lets others share its port (SO_REUSEPORT, as every shard's
    // main listener does): the mTLS listener must still not bind beside it.
    let holder = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    holder.set_reuse_port(true).unwrap();
    holder
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    holder.listen(16).unwrap();
    let taken = holder
        .local_addr()
        .unwrap()
        .as_socket()
        .unwrap()
        .to_string();
    let taken: &'static str = taken.leak();
    let mut vars: Vec<(&str, &str)> = vec![
        ("RELAY_FEDERATION_ENABLED", "true"),
        ("RELAY_FEDERATION_TLS_CERT", leaf.cert.to_str().unwrap()),
        ("RELAY_FEDERATION_TLS_KEY", leaf.key.to_str().unwrap()),
        ("RELAY_FEDERATION_TLS_CA", pki.ca_file.to_str().unwrap()),
        ("RELAY_FEDERATION_MTLS_ADDR", taken),
    ];
    refuses_to_start(&vars, "RELAY_FEDERATION_MTLS_ADDR");
    // The same address for both listeners cannot start either.
    let free = free_port_addr().to_string();
    vars.pop();
    vars.push(("RELAY_LISTEN_ADDR", &free));
    vars.push(("RELAY_FEDERATION_MTLS_ADDR", &free));
    refuses_to_start(&vars, "cannot bind");
}

#[test]
fn sighup_reloads_the_federation_certificate_while_the_link_stays_up() {
    let pki = Pki::new("mtls-reload");
    let (leaf_a, leaf_b) = (
        pki.relay_leaf("relay-a", 2031),
        pki.relay_leaf("relay-b", 2031),
    );
    let (dir_a, dir_b) = (TempDir::new("mtls-reload-a"), TempDir::new("mtls-reload-b"));
    let b = pki.relay("relay-b", &leaf_b).start(dir_b.path());
    let a = pki
        .relay("relay-a", &leaf_a)
        .peer(&mtls_url(&b))
        .start(dir_a.path());
    wait_metrics("A and B are linked over mTLS", &[&a, &b], |m| {
        m.iter()
            .all(|m| m.get("relay_federation_peers", r#"state="connected""#) == 1.0)
    });
    let probe = pki.relay_leaf("relay-probe", 2031);
    assert_eq!(served_certificate(&b, &pki, &probe), leaf_b.der);
    // A new certificate in the same files, then SIGHUP.
    let renewed = pki.relay_leaf("relay-b", 2033);
    signal(&b, libc::SIGHUP);
    wait_metrics("B uses the renewed certificate", &[&b], |m| {
        m[0].get(
            "relay_tls_certificate_expiry_timestamp_seconds",
            r#"listener="federation""#,
        ) == renewed.not_after as f64
    });
    assert_eq!(served_certificate(&b, &pki, &probe), renewed.der);
    // A key file that does not load: the renewed certificate stays.
    std::fs::write(&renewed.key, "-----BEGIN PRIVATE KEY-----\nbroken\n").unwrap();
    signal(&b, libc::SIGHUP);
    wait_metrics("the failed reload is counted", &[&b], |m| {
        m[0].get("relay_tls_reload_failures_total", "") == 1.0
    });
    let error = wait_log(&b, &["keeping the federation mTLS certificate"]);
    assert!(error.contains("RELAY_FEDERATION_TLS_KEY"), "{error}");
    assert_eq!(federation_expiry(&b), renewed.not_after as f64);
    assert_eq!(served_certificate(&b, &pki, &probe), renewed.der);
    // The link of before is still the only one: never dropped, never redialled.
    assert_eq!(count_log(&a, &["outbound federation link up"]), 1);
    assert_eq!(count_log(&a, &["outbound federation link down"]), 0);
    assert_eq!(
        Metrics::of(&a).get("relay_federation_peers", r#"state="connected""#),
        1.0
    );
}

/// Review: one certificate binds one relay id. The ASCII case-insensitive match of
/// §15.3 must not let a single certificate hold several registry entries (one per
/// spelling of its name): that bypasses `replaced` (§11.3) and lets one holder
/// fill FEDERATION_PEERS_MAX, refusing every other inbound peer.
#[test]
fn one_certificate_links_as_one_peer_whatever_the_case_it_claims() {
    let pki = Pki::new("mtls-review-case");
    let leaf = pki.relay_leaf("relay-b", 2031);
    let dir = TempDir::new("mtls-review-case-b");
    let b = pki.relay("relay-b", &leaf).start(dir.path());
    let z = pki.relay_leaf("relay-z", 2031);
    let mut held = Vec::new();
    for claim in ["relay-z", "RELAY-Z", "Relay-Z"] {
        let peer = mtls_peer(&b, &pki, &z);
        peer.send(peer_handshake(claim, 1));
        let _ = peer.recv_message();
        held.push(peer);
    }
    wait_metrics("the links are up", &[&b], |m| {
        m[0].get("relay_federation_peers", r#"state="connected""#) >= 1.0
    });
    // Let every handshake finish before counting.
    let probe = mtls_peer(&b, &pki, &z);
    probe.send(peer_handshake("relay-z", 1));
    let _ = probe.recv_message();
    held.push(probe);
    let m = Metrics::of(&b);
    let known = m.get("relay_federation_peers", r#"state="connected""#)
        + m.get("relay_federation_peers", r#"state="disconnected""#);
    assert_eq!(known, 1.0, "one certificate, one peer: {}", m.summary());
}
