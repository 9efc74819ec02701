//! Certificates for a TLS listener (§2.8, §15.3): the PEM files loaded into a
//! rustls server configuration (and, for federation mTLS, the client configuration
//! that dials peers with the same certificate), kept behind a lock so that SIGHUP
//! can swap in new ones while connections use the old (each connection takes the
//! configuration in use when it begins), and the `notAfter` of the certificate in
//! use.
//!
//! The private key is read into rustls and nowhere else: no error names more of
//! it than its variable.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures_rustls::rustls::crypto::CryptoProvider;
use futures_rustls::rustls::pki_types::pem::PemObject;
use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use futures_rustls::rustls::server::WebPkiClientVerifier;
use futures_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};

/// TLS 1.3 and 1.2 (§2.8, §15.3).
static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The certificate and key files of a listener, and the variables that named them
/// (for messages).
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_variable: &'static str,
    pub key_variable: &'static str,
    /// Federation mTLS (§15.3): the authorities peers' certificates must chain to,
    /// and its variable. With it, the listener requires a client certificate, and
    /// a client configuration dials peers with this certificate.
    pub ca: Option<(PathBuf, &'static str)>,
}

/// A listener's TLS configuration, replaceable while connections use the old one.
pub struct ServerCerts {
    files: CertFiles,
    current: RwLock<Loaded>,
}

#[derive(Clone)]
struct Loaded {
    config: Arc<ServerConfig>,
    /// With a CA: dialling peers, presenting this certificate, trusting the CA.
    client: Option<Arc<ClientConfig>>,
    not_after: i64,
}

impl ServerCerts {
    /// Loads the files; the error names the variable of the file that failed.
    pub fn load(files: CertFiles) -> Result<ServerCerts, String> {
        let loaded = load(&files)?;
        Ok(ServerCerts {
            files,
            current: RwLock::new(loaded),
        })
    }

    /// The configuration for a connection that begins now.
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.read().config)
    }

    /// The configuration for a peer dialled now (mTLS only).
    pub fn client_config(&self) -> Option<Arc<ClientConfig>> {
        self.read().client.clone()
    }

    /// `notAfter` of the certificate in use, in unix seconds.
    pub fn not_after(&self) -> i64 {
        self.read().not_after
    }

    /// Re-reads the files (SIGHUP): on success new connections use them; on failure
    /// the certificate in use stays, and the error names the variable.
    pub fn reload(&self) -> Result<(), String> {
        let loaded = load(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }
}

fn load(files: &CertFiles) -> Result<Loaded, String> {
    let cert_error = |why: String| {
        format!(
            "cannot load {} ({}): {why}",
            files.cert_variable,
            files.cert.display()
        )
    };
    let chain = read_chain(&files.cert).map_err(cert_error)?;
    let not_after = super::x509::not_after(&chain[0]).ok_or_else(|| {
        cert_error("the first certificate has no readable validity period".into())
    })?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|error| {
        format!(
            "cannot load {} ({}): {}",
            files.key_variable,
            files.key.display(),
            key_error(&error)
        )
    })?;
    let mismatch = |error: rustls::Error| {
        format!(
            "cannot use {} with {}: {error}",
            files.key_variable, files.cert_variable
        )
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(VERSIONS)
        .map_err(|e| format!("cannot configure TLS: {e}"))?;
    let (mut config, client) = match &files.ca {
        None => {
            let config = builder
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(mismatch)?;
            (config, None)
        }
        Some((path, variable)) => {
            let roots = read_roots(path)
                .map_err(|why| format!("cannot load {variable} ({}): {why}", path.display()))?;
            let client = client_config(&provider, roots.clone(), chain.clone(), key.clone_key())
                .map_err(mismatch)?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| format!("{variable} cannot verify peers: {e}"))?;
            let config = builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)
                .map_err(mismatch)?;
            (config, Some(Arc::new(client)))
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        client,
        not_after,
    })
}

/// Dialling federation peers (§15.3): this certificate presented, the peer's
/// verified against `roots` alone (not the system's) and the URL's host.
fn client_config(
    provider: &Arc<CryptoProvider>,
    roots: RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, rustls::Error> {
    let mut config = ClientConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The CA certificates of a PEM file; at least one must be usable.
fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(read_chain(path)?);
    if added == 0 {
        return Err("no usable CA certificate in the file".into());
    }
    Ok(roots)
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if chain.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(chain)
}

/// What went wrong with a key file, without any of its content.
fn key_error(error: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => "no PKCS#8, PKCS#1 or SEC1 private key in the file".into(),
        _ => "the file is not a readable PEM private key".into(),
    }
}
