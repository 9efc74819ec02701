//! Caddy in front (README, Deploy): Caddy ends TLS and proxies WebSocket upgrades
//! and probes over HTTP/1.1 to a relay that speaks plain ws:// and http://.
//!
//! Caddy 2.6 cannot send a PROXY protocol header upstream (its `reverse_proxy`
//! transport has no `proxy_protocol` before 2.7), and the relay does not read
//! `X-Forwarded-For`: behind Caddy every client has Caddy's address, so the recipe
//! leaves `RELAY_MAX_CONNECTIONS_PER_IP` unset.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use crate::common::ca::{Ca, Leaf};
use crate::common::*;
use crate::harness::*;
use crate::wire::fresh_id;

/// The README's site block, with this test's address and files.
fn recipe(listen: SocketAddr, relay: SocketAddr, files: &Leaf) -> String {
    format!(
        "https://localhost:{port} {{
	tls {cert} {key}
	reverse_proxy {relay}
}}
",
        port = listen.port(),
        cert = files.cert.display(),
        key = files.key.display(),
    )
}

/// Global options that keep Caddy to this test: no admin endpoint, no HTTP->HTTPS
/// redirect listener on :80, only the loopback address, and no HTTP/3, which
/// would also take the UDP port.
fn config(listen: SocketAddr, recipe: &str) -> String {
    format!(
        "{{
	admin off
	auto_https disable_redirects
	default_bind {ip}
	servers {{
		protocols h1 h2
	}}
}}

{recipe}",
        ip = listen.ip()
    )
}

/// Caddy on a free port in front of `relay`, TLS with `files`; its home, data
/// and configuration directories are `dir`.
fn start_caddy(dir: &Path, relay: SocketAddr, files: &Leaf) -> Proxy {
    let listen = free_port();
    let caddyfile = dir.join("Caddyfile");
    std::fs::write(&caddyfile, config(listen, &recipe(listen, relay, files))).unwrap();
    let mut command = Command::new("caddy");
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&caddyfile)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"));
    Proxy::start(command, "caddy", "caddy", dir, listen, &[])
}

#[test]
fn behind_caddy_wss_sessions_and_https_probes_reach_the_plain_relay() {
    let (data, dir, ca) = (
        TempDir::new("deploy-data"),
        TempDir::new("deploy-caddy"),
        Ca::new(),
    );
    let files = ca.leaf(dir.path(), 2031);
    let relay = Relay::start(data.path(), &[]);
    let caddy = start_caddy(dir.path(), relay.addr, &files);
    let client = ca.client();
    let here = loopback(1);

    // The recipient is connected first, so the blob is pushed live through Caddy.
    let recipient = fresh_id();
    let mut receiver = wss_from(here, caddy.addr, &client);
    receiver.handshake_as(&recipient);
    let mut sender = wss_from(here, caddy.addr, &client);
    sender.handshake_as(&fresh_id());
    sender.send_json(&update_json("m-1", &recipient, b"sealed through caddy"));
    let ack = sender.recv_json();
    assert_eq!(ack["payload"]["status"], "Stored", "{ack}");
    assert_eq!(
        ciphertext_of(&receiver.recv_json()),
        b"sealed through caddy"
    );

    let request = format!(
        "GET /health HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
        caddy.addr.port()
    );
    let health = https_exchange(here, caddy.addr, &client, &request);
    assert_eq!(health.status, 200, "{health:?}{}", caddy.log_text());
    assert!(
        health.head.contains("\r\nContent-Type: application/json"),
        "{health:?}"
    );
    let body: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(body["status"], "healthy", "{body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"), "{body}");
    assert!(body["shards"].as_u64().unwrap() >= 1, "{body}");
    sender.close();
    receiver.close();
}

/// §15.1 behind a TLS proxy, the case Noise is for: Caddy ends TLS and sees only
/// Noise transport messages; a relay that requires Noise closes a plain session
/// with 1008 `noise required` and serves Noise sessions through Caddy.
#[test]
fn behind_caddy_noise_sessions_pass_and_plain_ones_are_refused_when_required() {
    let (data, dir, ca) = (
        TempDir::new("deploy-data"),
        TempDir::new("deploy-caddy-noise"),
        Ca::new(),
    );
    let files = ca.leaf(dir.path(), 2031);
    let vars = [("RELAY_REQUIRE_NOISE_ENCRYPTION", "true")];
    let relay = Relay::start_over(Wire::Noise, data.path(), &vars);
    let key = relay.noise_key.unwrap();
    let caddy = start_caddy(dir.path(), relay.addr, &files);
    let client = ca.client();
    let here = loopback(1);

    let recipient = fresh_id();
    let mut receiver = wss_from(here, caddy.addr, &client);
    receiver.open_noise(&key);
    receiver.handshake_as(&recipient);
    let mut sender = wss_from(here, caddy.addr, &client);
    sender.open_noise(&key);
    sender.handshake_as(&fresh_id());
    sender.send_json(&update_json("n-1", &recipient, b"sealed twice"));
    let ack = sender.recv_json();
    assert_eq!(ack["payload"]["status"], "Stored", "{ack}");
    assert_eq!(ciphertext_of(&receiver.recv_json()), b"sealed twice");

    let mut plain = wss_from(here, caddy.addr, &client);
    plain.send_json(&handshake_json(&fresh_id()));
    assert_eq!(plain.expect_close(1008), "noise required");
    sender.close();
    receiver.close();
}
