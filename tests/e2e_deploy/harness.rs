//! What both proxy tests share: a throwaway CA and a server certificate for
//! localhost made at test time, TLS clients that trust only that CA and connect
//! from a chosen loopback source address, and a proxy child process that is
//! waited for until it accepts and killed when dropped.
//!
//! Waits are bounded by `STUCK` as hang guards and never measured.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_rustls::rustls::pki_types::ServerName;
use futures_rustls::rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::common::*;

pub type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A loopback address of its own for each simulated client.
pub fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A port on 127.0.0.1 that nothing listened on a moment ago: bound, read and
/// released, for a proxy to listen on.
pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// TLS for `localhost` to `target` from `source`, its handshake completed.
pub fn tls_from(source: IpAddr, target: SocketAddr, config: &Arc<ClientConfig>) -> Tls {
    let tcp = connect_from(source, target);
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::clone(config), name).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// A `wss://localhost:<port>/` session from `source`, upgraded, no Handshake yet.
pub fn wss_from(source: IpAddr, target: SocketAddr, config: &Arc<ClientConfig>) -> Client<Tls> {
    let tls = tls_from(source, target, config);
    let url = format!("wss://localhost:{}/", target.port());
    let (ws, _) = tungstenite::client::client(url, tls)
        .unwrap_or_else(|e| panic!("WebSocket upgrade through the proxy: {e}"));
    Client { ws, noise: None }
}

/// A response read to the end of the stream: status code, head and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Sends `request` over TLS from `source` and reads the response until the
/// server closes.
pub fn https_exchange(
    source: IpAddr,
    target: SocketAddr,
    config: &Arc<ClientConfig>,
    request: &str,
) -> Response {
    let mut tls = tls_from(source, target, config);
    tls.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("reading the response: {e}; so far {raw:?}"));
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    Response {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// The bytes of an `EncryptedUpdate`'s ciphertext.
pub fn ciphertext_of(update: &serde_json::Value) -> Vec<u8> {
    assert_eq!(update["payload"]["type"], "EncryptedUpdate", "{update}");
    update["payload"]["ciphertext"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect()
}

/// A proxy process in the foreground, its output in files, killed when dropped.
pub struct Proxy {
    child: Child,
    name: &'static str,
    logs: Vec<PathBuf>,
    pub addr: SocketAddr,
}

impl Proxy {
    /// Spawns `command` (its stdout and stderr into `dir`), then waits until
    /// `addr` accepts TCP connections. `package` is the Debian package that
    /// provides it, named when it cannot be run.
    pub fn start(
        mut command: Command,
        name: &'static str,
        package: &str,
        dir: &Path,
        addr: SocketAddr,
        other_logs: &[PathBuf],
    ) -> Proxy {
        let output = dir.join(format!("{name}.output"));
        let file = File::create(&output).unwrap();
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot run {name} ({e}): install the Debian package `{package}`")
        });
        let mut logs = vec![output];
        logs.extend_from_slice(other_logs);
        let mut proxy = Proxy {
            child,
            name,
            logs,
            addr,
        };
        proxy.await_accepting();
        proxy
    }

    fn await_accepting(&mut self) {
        let begun = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited ({status}): {}", self.name, self.log_text());
            }
            // Both proxies finish TLS before they open the upstream connection,
            // so this probe never reaches the relay.
            if TcpStream::connect(self.addr).is_ok() {
                return;
            }
            assert!(
                begun.elapsed() < STUCK,
                "{} never accepted on {}: {}",
                self.name,
                self.addr,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the proxy wrote, for failure messages.
    pub fn log_text(&self) -> String {
        self.logs
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                format!("\n--- {}:\n{text}", path.display())
            })
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
