//! The authenticated handshake checks of §4.3 that need no shared state: the clock
//! window, the key/client_id match, and strict Ed25519 verification over
//! `nonce || timestamp (u64 big-endian)`. The replay check lives in `nonce`.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::limits::AUTH_WINDOW_SECS;
use crate::protocol::Id64;
use crate::protocol::decode::HandshakeAuth;

/// Steps 2 and 3: true when the timestamp is in the window and the key is the
/// client's identity.
pub fn precheck(auth: &HandshakeAuth, client_id: &Id64, now: u64) -> bool {
    now.abs_diff(auth.timestamp) <= AUTH_WINDOW_SECS && auth.identity_public_key == *client_id
}

/// Step 5: strict Ed25519 verification (non-canonical encodings and small-order
/// keys are rejected).
pub fn signature_verifies(auth: &HandshakeAuth) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(&auth.identity_public_key.0) else {
        return false;
    };
    let mut message = [0u8; 40];
    message[..32].copy_from_slice(&auth.nonce);
    message[32..].copy_from_slice(&auth.timestamp.to_be_bytes());
    let signature = Signature::from_bytes(&auth.signature);
    key.verify_strict(&message, &signature).is_ok()
}
