//! nginx in front (README, Deploy): nginx's stream module ends TLS and forwards
//! the bytes to the relay behind a PROXY protocol header (§2.9), so the relay's
//! per-address admission (§2.10) counts the client's address, not nginx's.
//!
//! Open-source nginx sends only PROXY protocol v1 (`proxy_protocol on`); sending v2
//! is an unmerged draft (nginx pull request 1204), so the recipe uses
//! `RELAY_PROXY_PROTOCOL=v1`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::ca::{Ca, Leaf};
use crate::common::*;
use crate::harness::*;
use crate::wire::fresh_id;

/// Debian's `nginx`; in /usr/sbin, which a user's PATH may lack.
const NGINX: &str = "/usr/sbin/nginx";
/// Debian's `libnginx-mod-stream`.
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// The README's `stream` block, with this test's ports and files.
fn recipe(listen: SocketAddr, relay: SocketAddr, files: &Leaf) -> String {
    format!(
        "stream {{
    # The relay never logs client addresses (section 14.2); nor does the proxy.
    access_log off;

    server {{
        listen {listen} ssl;
        ssl_certificate     {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_alpn http/1.1;

        proxy_pass {relay};
        # PROXY protocol v1, the only version nginx sends.
        proxy_protocol on;
        # Longer than RELAY_IDLE_TIMEOUT (300 s), so the relay decides idleness.
        proxy_timeout 330s;
    }}
}}
",
        cert = files.cert.display(),
        key = files.key.display(),
    )
}

/// One foreground process (no master, no daemon) whose files all live in `dir`,
/// around the recipe. `load_module` must come before the `events` block.
fn config(dir: &Path, recipe: &str) -> String {
    let dir = dir.display();
    format!(
        "load_module {STREAM_MODULE};
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{
    worker_connections 64;
}}
{recipe}"
    )
}

/// nginx on a free port in front of `relay`, TLS with `files`.
fn start_nginx(dir: &Path, relay: SocketAddr, files: &Leaf) -> Proxy {
    assert!(
        Path::new(STREAM_MODULE).exists(),
        "no {STREAM_MODULE}: install the Debian package `libnginx-mod-stream`"
    );
    let listen = free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config(dir, &recipe(listen, relay, files))).unwrap();
    let error_log = dir.join("error.log");
    let mut command = Command::new(NGINX);
    // -e: the error log before the configuration is read (the default is under
    // /var/log); -p: relative paths resolve in the temporary directory.
    command
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(&error_log);
    Proxy::start(command, "nginx", "nginx", dir, listen, &[error_log])
}

/// A WebSocket upgrade request as a client sends it.
pub fn upgrade_request(port: u16) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {}\r\n\r\n",
        crate::wire::KEY
    )
}

/// Waits (bounded by `STUCK`) until the relay's metric has this value.
pub fn await_metric(relay: &Relay, name: &str, labels: &str, value: f64) {
    let begun = Instant::now();
    loop {
        let got = metric_value(&scrape_metrics(relay), name, labels);
        if got == value {
            return;
        }
        assert!(
            begun.elapsed() < STUCK,
            "{name}{labels} is {got}, never became {value}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn behind_nginx_the_per_address_limit_counts_the_client_not_nginx() {
    let (data, dir, ca) = (
        TempDir::new("deploy-data"),
        TempDir::new("deploy-nginx"),
        Ca::new(),
    );
    let files = ca.leaf(dir.path(), 2031);
    let relay = Relay::start(
        data.path(),
        &[
            ("RELAY_PROXY_PROTOCOL", "v1"),
            ("RELAY_PROXY_TRUSTED", "127.0.0.1/32"),
            ("RELAY_MAX_CONNECTIONS_PER_IP", "1"),
        ],
    );
    let nginx = start_nginx(dir.path(), relay.addr, &files);
    let client = ca.client();
    let (first, second) = (loopback(2), loopback(3));

    // Every connection reaches the relay from nginx's 127.0.0.1; the header says
    // which client it carries.
    let recipient = fresh_id();
    let mut sender = wss_from(first, nginx.addr, &client);
    sender.handshake_as(&fresh_id());
    sender.send_json(&update_json("m-1", &recipient, b"sealed through nginx"));
    let ack = sender.recv_json();
    assert_eq!(ack["payload"]["status"], "Stored", "{ack}");

    // 127.0.0.2 has its one connection open: a second one is refused, inside
    // nginx's TLS.
    let refused = https_exchange(
        first,
        nginx.addr,
        &client,
        &upgrade_request(nginx.addr.port()),
    );
    assert_eq!(refused.status, 429, "{refused:?}{}", nginx.log_text());
    assert!(refused.head.contains("\r\nRetry-After: 5"), "{refused:?}");
    assert_eq!(refused.body, r#"{"error":"too many connections"}"#);

    // 127.0.0.3 is another client, and gets its session and the blob.
    let mut receiver = wss_from(second, nginx.addr, &client);
    receiver.handshake_as(&recipient);
    assert_eq!(
        ciphertext_of(&receiver.recv_json()),
        b"sealed through nginx"
    );

    await_metric(
        &relay,
        "relay_connections_refused_total",
        "reason=\"per_ip\"",
        1.0,
    );
    let metrics = scrape_metrics(&relay);
    assert_eq!(
        metric_value(
            &metrics,
            "relay_connections_refused_total",
            "reason=\"global\""
        ),
        0.0
    );
    // Every header nginx sent was read as valid v1: the one connection error is
    // the refusal (§12.2 counts those too).
    assert_eq!(
        metric_value(&metrics, "relay_connection_errors_total", ""),
        1.0,
        "{}",
        nginx.log_text()
    );
    sender.close();
    receiver.close();
}
