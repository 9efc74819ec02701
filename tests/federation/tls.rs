//! `wss://` federation peers (§11.5, §13.2) end to end: the relay process dials a
//! raw federation acceptor that terminates TLS itself (rustls server +
//! tungstenite, written for the test), with certificates made at test time by a
//! throwaway CA. The relay trusts only what `SSL_CERT_FILE` names, so the cases
//! are:
//!
//! * a certificate from the trusted CA for the URL's host: TLS completes (with SNI
//!   for a DNS name), then the handshake, the CapacityReport and an offload run
//!   exactly as over `ws://`, and the hint carries the `wss://` entry;
//! * a certificate from an untrusted CA, or from the trusted CA for another name:
//!   the relay aborts TLS with the matching alert, so no PeerHandshake can ever
//!   reach the peer, retries with backoff, and keeps serving clients.
//!
//! Waits are bounded by `STUCK` and never measured.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::common::*;
use crate::fedwire::*;
use crate::wire::{expect_layout, fresh_id, now};
use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use futures_rustls::rustls::{self, AlertDescription, ServerConfig, ServerConnection, StreamOwned};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use serde_json::Value;

/// The relay under test.
const X: &str = "relay-x";

// ---------------------------------------------------------------- certificates

/// A throwaway certificate authority.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    /// The CA certificate as a PEM file in `dir`, for `SSL_CERT_FILE`.
    fn pem_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.issuer.pem()).unwrap();
        path
    }

    /// A TLS server configuration with a certificate for `names` (DNS names or
    /// IP addresses) signed by this CA.
    fn server(&self, names: &[&str]) -> Arc<ServerConfig> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let chain = vec![CertificateDer::from(cert.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Arc::new(config)
    }
}

// ---------------------------------------------------------------- TLS acceptor

type TlsStream = StreamOwned<ServerConnection, TcpStream>;

/// Waits for the relay's next connection to `listener` and runs the server side
/// of the TLS handshake. Ok: the stream, a clone of its socket and the SNI name
/// the relay sent. Err: why the handshake failed.
fn tls_accept(
    listener: &TcpListener,
    config: &Arc<ServerConfig>,
) -> Result<(TlsStream, TcpStream, Option<String>), io::Error> {
    let stream = accept_stream(listener);
    let socket = stream.try_clone().unwrap();
    let connection = ServerConnection::new(Arc::clone(config)).unwrap();
    let mut tls = StreamOwned::new(connection, stream);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    let sni = tls.conn.server_name().map(str::to_owned);
    Ok((tls, socket, sni))
}

/// The TLS alert the client (the relay) sent to end a failed handshake.
fn alert_of(error: &io::Error) -> Option<AlertDescription> {
    match error.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

/// TLS and the WebSocket upgrade with the relay; the raw federation link.
fn accept_wss(listener: &TcpListener, config: &Arc<ServerConfig>) -> (FedPeer, Option<String>) {
    let (tls, socket, sni) =
        tls_accept(listener, config).unwrap_or_else(|e| panic!("TLS with the relay failed: {e}"));
    (FedPeer::accept_on(tls, &socket), sni)
}

/// The relay's next `attempts` connections each abort TLS with `alert`: the
/// handshake never completes, so not one byte of WebSocket (let alone a
/// PeerHandshake) can reach the peer.
fn expect_refused_tls(
    listener: &TcpListener,
    config: &Arc<ServerConfig>,
    alert: AlertDescription,
    attempts: usize,
) {
    for attempt in 1..=attempts {
        match tls_accept(listener, config) {
            Ok(_) => panic!("attempt {attempt}: TLS completed with a certificate to refuse"),
            Err(error) => assert_eq!(
                alert_of(&error),
                Some(alert),
                "attempt {attempt}: the relay's alert: {error}"
            ),
        }
    }
}

// ---------------------------------------------------------------- relay side

/// A relay whose only trust root is `ca_file`, with `url` as its one peer.
fn relay_trusting(ca_file: &Path, url: &str) -> FedRelay {
    let mut relay = FedRelay::new(X);
    relay
        .set("SSL_CERT_FILE", ca_file.to_str().unwrap())
        .peer(url);
    relay
}

fn payload_type(message: &Value) -> &str {
    message["payload"]["type"].as_str().unwrap_or_default()
}

/// The link up to the CapacityReport that follows an accepted handshake (§11.5).
fn complete_handshake(peer: &FedPeer) {
    assert_eq!(peer.path, "/federation");
    let (raw, _) = peer.recv_message();
    let handshake = expect_layout(&raw, &["type", "relay_id", "version", "listen_addr"]);
    assert_eq!(payload_type(&handshake), "PeerHandshake", "{raw}");
    assert_eq!(handshake["payload"]["relay_id"], X, "{raw}");
    assert_eq!(handshake["payload"]["version"], 1, "{raw}");
    peer.send(peer_handshake_ack("peer-tls", true, 0, 1_000_000));
    let (raw, _) = peer.recv_message();
    let report = expect_layout(&raw, &["type", "used_bytes", "max_bytes", "blob_count"]);
    assert_eq!(payload_type(&report), "CapacityReport", "{raw}");
}

/// The relay is still running and serving: a client completes its handshake and
/// `/metrics` answers, with no peer connected.
fn assert_healthy(relay: &mut Relay) {
    assert!(
        relay.child.try_wait().unwrap().is_none(),
        "the relay exited: {:?}",
        tail(relay)
    );
    let mut client = Client::handshake(relay.addr, &fresh_id());
    client.close();
    let metrics = Metrics::of(relay);
    assert_eq!(
        metrics.get("relay_federation_peers", "state=\"connected\""),
        0.0,
        "{}",
        metrics.summary()
    );
}

// ---------------------------------------------------------------- cases

#[test]
fn initiator_dials_a_wss_peer_verifies_it_and_offloads_over_tls() {
    let dir = TempDir::new("fed-tls");
    let ca = Ca::new("vauchi test CA");
    let server = ca.server(&["localhost", "127.0.0.1"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("wss://localhost:{}", listener.local_addr().unwrap().port());
    // Over the threshold at 500 of 1000 bytes.
    let relay = relay_trusting(&ca.pem_file(dir.path()), &url)
        .tiny(1000, "0.5")
        .start(dir.path());

    let (peer, sni) = accept_wss(&listener, &server);
    assert_eq!(sni.as_deref(), Some("localhost"), "SNI is the URL's host");
    complete_handshake(&peer);

    let r = fresh_id();
    let datas: Vec<Vec<u8>> = (0..3).map(|i| blob_data(7, i, 200)).collect();
    let t0 = now();
    let ids = store_blobs(&relay, &r, &datas);
    let (raw, offer) = peer.recv_except(&["CapacityReport"]);
    assert_eq!(payload_type(&offer), "OffloadBlob", "{raw}");
    let payload = &offer["payload"];
    let blob_id = payload["blob_id"].as_str().unwrap().to_owned();
    let index = ids
        .iter()
        .position(|id| *id == blob_id)
        .unwrap_or_else(|| panic!("offered a blob that was never stored: {raw}"));
    let data = bytes_of(&payload["data"]);
    assert_eq!(data, datas[index], "{raw}");
    assert_eq!(payload["routing_id"], r.as_str(), "{raw}");
    assert_eq!(payload["hop_count"], 0, "{raw}");
    assert_eq!(payload["integrity_hash"], integrity_hash(&data), "{raw}");
    let created = payload["created_at_secs"].as_u64().unwrap();
    assert!(t0 <= created && created <= now(), "{raw}");

    // Accepted: at 400 of 1000 bytes the relay is below its threshold again.
    peer.send(offload_ack(&blob_id, true, None));
    wait_metrics("the accepted blob leaves the relay", &[&relay], |m| {
        m[0].offload_sent("accepted") == 1.0 && m[0].blobs_stored() == 2.0
    });
    let mailbox = Mailbox::read(relay.addr, &r);
    mailbox.check_hints(&url);
    assert_eq!(mailbox.hint_ids(), std::slice::from_ref(&blob_id));
    assert_eq!(mailbox.hints[0]["expires_at_secs"], created + DEFAULT_TTL);
    assert_eq!(mailbox.blobs.len(), 2, "{mailbox:?}");
}

#[test]
fn a_wss_peer_named_by_ip_address_is_verified_against_its_ip_san() {
    let dir = TempDir::new("fed-tls-ip");
    let ca = Ca::new("vauchi test CA");
    let server = ca.server(&["127.0.0.1"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("wss://{}", listener.local_addr().unwrap());
    let _relay = relay_trusting(&ca.pem_file(dir.path()), &url).start(dir.path());

    let (peer, sni) = accept_wss(&listener, &server);
    assert_eq!(sni, None, "no SNI for an IP address (RFC 6066 §3)");
    complete_handshake(&peer);
}

#[test]
fn a_certificate_from_an_untrusted_ca_fails_tls_and_the_relay_keeps_retrying() {
    let dir = TempDir::new("fed-tls-untrusted");
    let trusted = Ca::new("vauchi trusted CA");
    let other = Ca::new("vauchi other CA");
    let server = other.server(&["localhost", "127.0.0.1"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("wss://localhost:{}", listener.local_addr().unwrap().port());
    let mut relay = relay_trusting(&trusted.pem_file(dir.path()), &url).start(dir.path());

    // Two attempts (the second after the backoff), both refused by the relay.
    expect_refused_tls(&listener, &server, AlertDescription::UnknownCA, 2);
    wait_log(&relay, &["federation connect failed", &url, "tls"]);
    assert_healthy(&mut relay);
}

#[test]
fn a_certificate_for_another_name_fails_tls_and_the_relay_keeps_retrying() {
    let dir = TempDir::new("fed-tls-name");
    let ca = Ca::new("vauchi test CA");
    // Trusted CA, but neither `localhost` nor 127.0.0.1.
    let server = ca.server(&["relay.example", "192.0.2.1"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("wss://localhost:{}", listener.local_addr().unwrap().port());
    let mut relay = relay_trusting(&ca.pem_file(dir.path()), &url).start(dir.path());

    expect_refused_tls(&listener, &server, AlertDescription::BadCertificate, 2);
    wait_log(&relay, &["federation connect failed", &url, "tls"]);
    assert_healthy(&mut relay);
}
