//! Certificates for a TLS listener (§2.8): the PEM files loaded into a rustls
//! server configuration, kept behind a lock so that SIGHUP can swap in new ones
//! while connections use the old (each connection takes the configuration in use
//! when it begins), and the `notAfter` of the certificate in use.
//!
//! The private key is read into rustls and nowhere else: no error names more of
//! it than its variable.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures_rustls::rustls::pki_types::pem::PemObject;
use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use futures_rustls::rustls::{self, ServerConfig};

/// The certificate and key files of a listener, and the variables that named them
/// (for messages).
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_variable: &'static str,
    pub key_variable: &'static str,
}

/// A listener's TLS configuration, replaceable while connections use the old one.
pub struct ServerCerts {
    files: CertFiles,
    current: RwLock<Loaded>,
}

#[derive(Clone)]
struct Loaded {
    config: Arc<ServerConfig>,
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
    let not_after = not_after(&chain[0]).ok_or_else(|| {
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("cannot configure TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| {
            format!(
                "cannot use {} with {}: {error}",
                files.key_variable, files.cert_variable
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        not_after,
    })
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

/// The `notAfter` of an X.509 certificate (DER) in unix seconds: Certificate ->
/// tbsCertificate -> [version], serialNumber, signature, issuer, validity.
pub fn not_after(cert: &[u8]) -> Option<i64> {
    let (certificate, _) = der_element(cert, 0x30)?;
    let (mut tbs, _) = der_element(certificate, 0x30)?;
    if tbs.first() == Some(&0xa0) {
        tbs = der_element(tbs, 0xa0)?.1;
    }
    let (_, rest) = der_element(tbs, 0x02)?;
    let (_, rest) = der_element(rest, 0x30)?;
    let (_, rest) = der_element(rest, 0x30)?;
    let (validity, _) = der_element(rest, 0x30)?;
    let (_, after) = der_time(validity)?;
    der_time(after).map(|(seconds, _)| seconds)
}

/// One DER element of the given tag: its content and what follows it.
fn der_element(bytes: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = bytes.split_first()?;
    if first != tag {
        return None;
    }
    let (&len, mut rest) = rest.split_first()?;
    let len = if len < 0x80 {
        usize::from(len)
    } else {
        let count = usize::from(len & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (digits, after) = rest.split_at(count);
        rest = after;
        digits
            .iter()
            .fold(0usize, |n, &d| (n << 8) | usize::from(d))
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// A UTCTime (YYMMDDHHMMSSZ, years 1950-2049) or GeneralizedTime
/// (YYYYMMDDHHMMSSZ): unix seconds and what follows.
fn der_time(bytes: &[u8]) -> Option<(i64, &[u8])> {
    let (text, rest, year) = match bytes.first()? {
        0x17 => {
            let (text, rest) = der_element(bytes, 0x17)?;
            let yy = digits(text.get(..2)?)?;
            (
                text.get(2..)?,
                rest,
                if yy < 50 { 2000 + yy } else { 1900 + yy },
            )
        }
        0x18 => {
            let (text, rest) = der_element(bytes, 0x18)?;
            (text.get(4..)?, rest, digits(text.get(..4)?)?)
        }
        _ => return None,
    };
    if text.len() != 11 || text[10] != b'Z' {
        return None;
    }
    let field = |at: usize| digits(&text[at..at + 2]);
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3_600 + minute * 60 + second, rest))
}

fn digits(text: &[u8]) -> Option<i64> {
    text.iter().try_fold(0i64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}
