//! The Noise NK transport of PROTOCOL.md §15.1, without I/O: the relay's static
//! key ([`key`]), the responder's opening and the transport that turns Noise
//! messages into the stream of v1 frames and back ([`channel`]).
//!
//! The cryptography is the `snow` crate's (`Noise_NK_25519_ChaChaPoly_BLAKE2s`);
//! this module only frames it.

pub mod channel;
pub mod key;

pub use channel::{
    Channel, MAGIC, MESSAGE_BYTES_MAX, PATTERN, PLAINTEXT_BYTES_MAX, Refused, TAG_BYTES,
};
pub use key::StaticKey;
