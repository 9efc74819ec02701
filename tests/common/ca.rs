//! A throwaway certificate authority for tests of TLS (built in, federation peers,
//! proxies in front): server certificates for localhost written to disk, and
//! rustls clients that trust the authority alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_rustls::rustls::pki_types::CertificateDer;
use futures_rustls::rustls::{self, ClientConfig, RootCertStore};
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

    /// Offers ALPN `http/1.1` only, as WebSocket clients do.
    pub fn client(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.issuer.der().to_vec()))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

pub fn cert_file(dir: &Path) -> PathBuf {
    dir.join("cert.pem")
}

pub fn key_file(dir: &Path) -> PathBuf {
    dir.join("key.pem")
}
