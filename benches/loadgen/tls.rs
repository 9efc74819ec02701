//! `--tls`: one rustls client session per connection, driven by hand over the
//! pool's non-blocking sockets; the client configuration (trusting exactly the
//! certificate of a relay started here, a `--tls-ca` file, or the platform's
//! roots); and the throwaway self-signed certificate of a relay started here.
//!
//! Writes keep the plain generator's shape: what a connection queued during one
//! loop turn goes to rustls in one call, so it becomes as few records as fit (one
//! per 16 KiB of plaintext, so one record per frame when a turn sends one frame),
//! and their ciphertext leaves in the one `send` the plain bytes would have.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_rustls::rustls::pki_types::pem::PemObject;
use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use futures_rustls::rustls::{self, ClientConfig, ClientConnection, RootCertStore};

/// Which certificates the client accepts.
pub enum Trust {
    /// Exactly this certificate (DER): the one made for the relay started here.
    Certificate(Vec<u8>),
    /// The certificates of a PEM file (`--tls-ca`).
    CaFile(PathBuf),
    /// The platform's trust store (honours SSL_CERT_FILE / SSL_CERT_DIR).
    Platform,
}

/// What every connection's session is made from.
pub struct Client {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl Client {
    /// A client for `host` (the URL's `host[:port]`), which the certificate must name.
    pub fn new(trust: &Trust, host: &str) -> Result<Self, String> {
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) => name,
            _ => host,
        };
        let name = ServerName::try_from(name.to_string())
            .map_err(|error| format!("{name}: not a TLS server name: {error}"))?;
        Ok(Self {
            config: Arc::new(client_config(roots(trust)?)),
            name,
        })
    }

    pub fn session(&self) -> Result<Session, String> {
        let mut conn = ClientConnection::new(Arc::clone(&self.config), self.name.clone())
            .map_err(|error| format!("TLS session: {error}"))?;
        // The pool bounds what it queues (the window); rustls need not bound it again,
        // and a limit would make a write accept less than a whole turn's frames.
        conn.set_buffer_limit(None);
        Ok(Session { conn })
    }
}

fn roots(trust: &Trust) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match trust {
        Trust::Certificate(der) => roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|error| format!("the relay's certificate: {error}"))?,
        Trust::CaFile(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|items| items.collect::<Result<Vec<_>, _>>())
                .map_err(|error| format!("{}: {error}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(format!("{}: no usable certificate", path.display()));
            }
        }
        Trust::Platform => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err("no certificate in the platform's trust store (use --tls-ca)".into());
            }
        }
    }
    Ok(roots)
}

fn client_config(roots: RootCertStore) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// One connection's TLS state. Bytes pass through it; the pool does the I/O.
pub struct Session {
    conn: ClientConnection,
}

impl Session {
    /// Encrypts `plain` (all of it, in one write: see the header) and appends the
    /// records, with whatever handshake bytes rustls owes, to `out`. Before the
    /// handshake has finished rustls keeps the plaintext and sends it after.
    pub fn seal(&mut self, plain: &mut Vec<u8>, out: &mut Vec<u8>) {
        if !plain.is_empty() {
            self.conn
                .writer()
                .write_all(plain)
                .expect("rustls accepts all plaintext without a buffer limit");
            plain.clear();
        }
        self.drain(out);
    }

    /// Queues a close_notify alert and appends it (and anything before it) to `out`.
    pub fn close(&mut self, out: &mut Vec<u8>) {
        self.conn.send_close_notify();
        self.drain(out);
    }

    fn drain(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            self.conn
                .write_tls(out)
                .expect("writing into a Vec does not fail");
        }
    }

    /// Whether rustls has bytes to send (handshake messages, or plaintext it held
    /// until the handshake finished).
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Decrypts `ciphertext` and appends its plaintext to `plain`. Ok(true) once the
    /// peer has sent close_notify.
    pub fn open(&mut self, mut ciphertext: &[u8], plain: &mut Vec<u8>) -> Result<bool, String> {
        let mut closed = false;
        while !ciphertext.is_empty() && !closed {
            let read = self
                .conn
                .read_tls(&mut ciphertext)
                .map_err(|error| format!("TLS read: {error}"))?;
            let state = self
                .conn
                .process_new_packets()
                .map_err(|error| format!("TLS: {error}"))?;
            let count = state.plaintext_bytes_to_read();
            if count > 0 {
                let start = plain.len();
                plain.resize(start + count, 0);
                self.conn
                    .reader()
                    .read_exact(&mut plain[start..])
                    .map_err(|error| format!("TLS plaintext: {error}"))?;
            }
            closed = state.peer_has_closed() || read == 0;
        }
        Ok(closed)
    }

    /// The negotiated protocol and cipher suite, e.g. `TLSv1_3 TLS13_AES_256_GCM_SHA384`.
    pub fn describe(&self) -> String {
        match (
            self.conn.protocol_version(),
            self.conn.negotiated_cipher_suite(),
        ) {
            (Some(version), Some(suite)) => format!("{version:?} {:?}", suite.suite()),
            _ => "handshaking".to_string(),
        }
    }
}

/// A throwaway self-signed certificate for `localhost` and 127.0.0.1, written as
/// `cert.pem` and `key.pem` in `dir`. Returns the two paths and the certificate's DER.
pub fn self_signed(dir: &Path) -> Result<(PathBuf, PathBuf, Vec<u8>), String> {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(|error| format!("cannot make a certificate: {error}"))?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    for (path, pem) in [
        (&cert, made.cert.pem()),
        (&key, made.signing_key.serialize_pem()),
    ] {
        std::fs::write(path, pem)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }
    Ok((cert, key, made.cert.der().to_vec()))
}

/// The content lengths of the TLS records in `bytes` (which must hold whole records).
fn record_lengths(mut bytes: &[u8]) -> Vec<usize> {
    let mut lengths = Vec::new();
    while bytes.len() >= 5 {
        let length = u16::from_be_bytes([bytes[3], bytes[4]]) as usize;
        lengths.push(length);
        bytes = &bytes[(5 + length).min(bytes.len())..];
    }
    assert!(bytes.is_empty(), "a partial record");
    lengths
}

/// Checks run by the `selftest` scenario: a session against an in-memory rustls
/// server holding a certificate from `self_signed`, the plaintext both ways, and
/// the record shape of writes (one record per write up to 16 KiB).
pub fn self_test() {
    let dir = std::env::temp_dir().join(format!("vauchi-loadgen-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (_, key_path, der) = self_signed(&dir).expect("a certificate");
    let key = PrivateKeyDer::from_pem_file(&key_path).expect("the key reads back");
    std::fs::remove_dir_all(&dir).expect("temp dir removed");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("default versions")
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(der.clone())], key)
            .expect("the certificate and key match"),
    );
    for host in ["127.0.0.1:443", "localhost"] {
        let client = Client::new(&Trust::Certificate(der.clone()), host).expect("client");
        let mut session = client.session().expect("session");
        let mut server = rustls::ServerConnection::new(Arc::clone(&server_config)).expect("server");
        let (mut to_server, mut plain) = (Vec::new(), Vec::new());
        let mut request = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        session.seal(&mut request, &mut to_server);
        // Handshake: pass bytes back and forth until the request reaches the server.
        let mut received = Vec::new();
        for _ in 0..10 {
            let mut input = &to_server[..];
            while !input.is_empty() {
                server.read_tls(&mut input).expect("server reads");
            }
            to_server.clear();
            let state = server.process_new_packets().expect("a valid handshake");
            let start = received.len();
            received.resize(start + state.plaintext_bytes_to_read(), 0);
            server
                .reader()
                .read_exact(&mut received[start..])
                .expect("server plaintext");
            let mut to_client = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut to_client).expect("into a Vec");
            }
            assert!(!session.open(&to_client, &mut plain).expect("client reads"));
            session.seal(&mut Vec::new(), &mut to_server);
        }
        assert_eq!(received, b"GET / HTTP/1.1\r\n\r\n", "{host}: request");
        assert!(!session.wants_write());
        for (write, records) in [(1_000, 1), (16_384, 1), (16_385, 2), (40_000, 3)] {
            let mut out = Vec::new();
            session.seal(&mut vec![7u8; write], &mut out);
            assert_eq!(record_lengths(&out).len(), records, "{write} bytes");
        }
        let mut reply = Vec::new();
        server
            .writer()
            .write_all(b"HTTP/1.1 101 ok")
            .expect("server writes");
        server.send_close_notify();
        while server.wants_write() {
            server.write_tls(&mut reply).expect("into a Vec");
        }
        // Byte by byte: records split across reads are put together.
        let mut closed = false;
        for byte in reply.chunks(1) {
            closed = session.open(byte, &mut plain).expect("client reads");
        }
        assert!(closed, "close_notify is reported");
        assert_eq!(plain, b"HTTP/1.1 101 ok");
        assert!(session.describe().starts_with("TLSv1_3 "));
    }
}
