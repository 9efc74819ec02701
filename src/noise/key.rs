//! The relay's static X25519 key pair (§15.1): from RELAY_NOISE_STATIC_KEY, else
//! `{data_dir}/relay_noise_key.bin`, else new and written there (mode 0600).
//! Both halves are kept, 64 bytes private ‖ public; a public half that is not the
//! private one's is refused. The private half is never printed: `Debug` shows the
//! public key only, and no error carries key bytes.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::Dh;

/// The key file's name inside `RELAY_DATA_DIR`.
pub const KEY_FILE_NAME: &str = "relay_noise_key.bin";
/// Private ‖ public, 32 bytes each.
pub const KEY_BYTES: usize = 64;

/// base64url; padding optional when reading, never written.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Clone, PartialEq, Eq)]
pub struct StaticKey {
    private: [u8; 32],
    public: [u8; 32],
}

impl std::fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKey")
            .field("public", &self.public_base64url())
            .finish_non_exhaustive()
    }
}

/// Why key bytes were refused; no variant carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    NotBase64url,
    /// Not 64 bytes; the length found.
    Length(usize),
    /// The public half is not the private half's.
    Mismatch,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::NotBase64url => write!(f, "not base64url"),
            KeyError::Length(n) => write!(f, "{n} bytes, not {KEY_BYTES}"),
            KeyError::Mismatch => write!(f, "the public key does not match the private key"),
        }
    }
}

fn curve25519() -> Box<dyn Dh> {
    // Invariant: the default resolver is built in (feature use-curve25519).
    DefaultResolver
        .resolve_dh(&snow::params::DHChoice::Curve25519)
        .expect("snow's Curve25519")
}

impl StaticKey {
    /// A new random key pair.
    pub fn generate() -> StaticKey {
        let mut dh = curve25519();
        let mut rng = DefaultResolver.resolve_rng().expect("snow's random source");
        // Invariant: the operating system's random source works (uuid needs it too).
        dh.generate(&mut *rng).expect("a random X25519 key");
        StaticKey::from_parts(dh.privkey())
    }

    fn from_parts(private: &[u8]) -> StaticKey {
        let mut dh = curve25519();
        dh.set(private);
        let mut key = StaticKey {
            private: [0; 32],
            public: [0; 32],
        };
        key.private.copy_from_slice(dh.privkey());
        key.public.copy_from_slice(dh.pubkey());
        key
    }

    /// 64 bytes, private ‖ public, the public half matching the private one.
    pub fn from_bytes(bytes: &[u8]) -> Result<StaticKey, KeyError> {
        if bytes.len() != KEY_BYTES {
            return Err(KeyError::Length(bytes.len()));
        }
        let key = StaticKey::from_parts(&bytes[..32]);
        if key.private[..] != bytes[..32] || key.public[..] != bytes[32..] {
            return Err(KeyError::Mismatch);
        }
        Ok(key)
    }

    /// RELAY_NOISE_STATIC_KEY's form: base64url of the 64 bytes, padding optional.
    pub fn from_base64url(text: &str) -> Result<StaticKey, KeyError> {
        let bytes = BASE64URL.decode(text).map_err(|_| KeyError::NotBase64url)?;
        StaticKey::from_bytes(&bytes)
    }

    pub fn private(&self) -> &[u8; 32] {
        &self.private
    }

    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    /// The public key as `/pubkey` serves it: 43 characters, no padding (§12.1).
    pub fn public_base64url(&self) -> String {
        BASE64URL.encode(self.public)
    }

    /// Private ‖ public, as the key file and RELAY_NOISE_STATIC_KEY hold them.
    pub fn to_bytes(&self) -> [u8; KEY_BYTES] {
        let mut bytes = [0; KEY_BYTES];
        bytes[..32].copy_from_slice(&self.private);
        bytes[32..].copy_from_slice(&self.public);
        bytes
    }
}

/// The key file of `data_dir`: read if it exists (exactly 64 bytes, not readable
/// by group or others, a matching pair), else a new key written there with mode
/// 0600. Every error names the file and never its content.
pub fn load_or_create(data_dir: &Path) -> Result<StaticKey, String> {
    let path = data_dir.join(KEY_FILE_NAME);
    let named = |what: String| format!("{}: {what}", path.display());
    match std::fs::metadata(&path) {
        Ok(metadata) => {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(named(format!(
                    "mode {mode:03o} lets group or others read the Noise private key; \
                     chmod 600 it"
                )));
            }
            if metadata.len() != KEY_BYTES as u64 {
                return Err(named(format!(
                    "{} bytes, expected {KEY_BYTES} (private ‖ public)",
                    metadata.len()
                )));
            }
            let bytes = std::fs::read(&path).map_err(|e| named(e.to_string()))?;
            StaticKey::from_bytes(&bytes).map_err(|e| named(e.to_string()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = StaticKey::generate();
            write_new(&path, &key).map_err(|e| named(format!("cannot write: {e}")))?;
            Ok(key)
        }
        Err(error) => Err(named(error.to_string())),
    }
}

/// Writes a new key file with mode 0600 (never another mode, even for a moment)
/// so that a restart finds the same key, crash-safely: the key goes to a
/// temporary file, which is synced and renamed into place, and then the directory
/// is synced, so a crash leaves either no key file (a new key is made) or the whole
/// one, never a short file that would stop every later start. The data directory
/// is locked by this process, so nobody else writes there meanwhile.
fn write_new(path: &Path, key: &StaticKey) -> std::io::Result<()> {
    let temporary = path.with_extension("bin.new");
    // A leftover of a crash mid-write holds no key anyone uses.
    match std::fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(&key.to_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}
