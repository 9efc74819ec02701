//! A throwaway certificate authority for tests of TLS (built in, federation peers
//! and mTLS, proxies in front): certificates written to disk, and rustls clients
//! and servers that trust the authority alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_rustls::rustls::pki_types::pem::PemObject;
use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use futures_rustls::rustls::server::WebPkiClientVerifier;
use futures_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// A throwaway certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate written to disk: its files, its DER and its `notAfter`.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: Vec<u8>,
    pub not_after: i64,
}

impl Ca {
    pub fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "relay test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    /// A certificate for localhost and 127.0.0.1 expiring on `year`-06-30, written
    /// as `cert.pem` and `key.pem` in `dir`.
    pub fn leaf(&self, dir: &Path, year: i32) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, 6, 30);
        let not_after = params.not_after.unix_timestamp();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(cert_file(dir), cert.pem()).unwrap();
        std::fs::write(key_file(dir), key.serialize_pem()).unwrap();
        Leaf {
            cert: cert_file(dir),
            key: key_file(dir),
            der: cert.der().to_vec(),
            not_after,
        }
    }

    /// A certificate for `names` (DNS names or IP addresses) expiring on
    /// `year`-06-30, written as `{stem}-cert.pem` and `{stem}-key.pem` in `dir`
    /// (over any earlier files of that stem).
    pub fn leaf_named(&self, dir: &Path, stem: &str, names: &[&str], year: i32) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.not_after = rcgen::date_time_ymd(year, 6, 30);
        let not_after = params.not_after.unix_timestamp();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{stem}-cert.pem")),
            dir.join(format!("{stem}-key.pem")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Leaf {
            cert: cert_path,
            key: key_path,
            der: cert.der().to_vec(),
            not_after,
        }
    }

    /// The authority's certificate as `ca.pem` in `dir`.
    pub fn pem_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.issuer.pem()).unwrap();
        path
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.issuer.der().to_vec()))
            .unwrap();
        roots
    }

    /// Offers ALPN `http/1.1` only, as WebSocket clients do.
    pub fn client(&self) -> Arc<ClientConfig> {
        self.client_presenting(None)
    }

    /// The same, presenting `leaf` as its client certificate (mTLS) if given.
    pub fn client_presenting(&self, leaf: Option<&Leaf>) -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots());
        let mut config = match leaf {
            None => builder.with_no_client_auth(),
            Some(leaf) => {
                let (chain, key) = leaf.load();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// A TLS server with `leaf` that requires a client certificate from this
    /// authority (an mTLS acceptor written for the tests).
    pub fn server_requiring_clients(&self, leaf: &Leaf) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()), provider.clone())
                .build()
                .unwrap();
        let (chain, key) = leaf.load();
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        Arc::new(config)
    }
}

impl Leaf {
    /// The certificate and key as rustls takes them, read back from the files.
    pub fn load(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        (chain, PrivateKeyDer::from_pem_file(&self.key).unwrap())
    }
}

pub fn cert_file(dir: &Path) -> PathBuf {
    dir.join("cert.pem")
}

pub fn key_file(dir: &Path) -> PathBuf {
    dir.join("key.pem")
}
