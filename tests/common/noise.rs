//! A Noise NK client for the tests, written from PROTOCOL.md §15.1 with `snow`:
//! the opening (magic, message 1; magic, message 2), then one transport message
//! per WebSocket message, frames over 65519 bytes split, and the relay's
//! messages reassembled into frames by their length prefix.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::net::TcpStream;

pub const PATTERN: &str = "Noise_NK_25519_ChaChaPoly_BLAKE2s";
pub const MAGIC: [u8; 3] = [0x00, 0x56, 0x32];
pub const PLAINTEXT_MAX: usize = 65535 - 16;

/// How a test session reaches the relay: plain v1 frames, or inside Noise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Plain,
    Noise,
}

/// Message 1 behind the magic, and the state that reads message 2.
pub fn opening(server_public: &[u8; 32]) -> (Vec<u8>, snow::HandshakeState) {
    let mut initiator = snow::Builder::new(PATTERN.parse().unwrap())
        .remote_public_key(server_public)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut message = vec![0u8; 128];
    let n = initiator.write_message(&[], &mut message).unwrap();
    ([&MAGIC[..], &message[..n]].concat(), initiator)
}

/// A client's side of an opened Noise session.
pub struct NoiseClient {
    transport: snow::TransportState,
    inbound: Vec<u8>,
}

impl NoiseClient {
    /// Reads the relay's reply to `opening` (magic and the 48 bytes of message 2).
    pub fn finish(mut state: snow::HandshakeState, reply: &[u8]) -> NoiseClient {
        assert_eq!(reply.len(), 51, "reply to the opening: {reply:?}");
        assert_eq!(reply[..3], MAGIC);
        let mut payload = [0u8; 64];
        let n = state.read_message(&reply[3..], &mut payload).unwrap();
        assert_eq!(n, 0, "message 2 has an empty payload");
        NoiseClient {
            transport: state.into_transport_mode().unwrap(),
            inbound: Vec::new(),
        }
    }

    /// One transport message carrying `plaintext` (at most 65519 bytes).
    pub fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; plaintext.len() + 16];
        let n = self.transport.write_message(plaintext, &mut out).unwrap();
        out.truncate(n);
        out
    }

    /// The transport messages that carry one v1 frame (§15.1).
    pub fn seal_frame(&mut self, frame: &[u8]) -> Vec<Vec<u8>> {
        frame
            .chunks(PLAINTEXT_MAX)
            .map(|chunk| self.seal(chunk))
            .collect()
    }

    /// Decrypts a message from the relay onto the frame stream.
    pub fn open(&mut self, message: &[u8]) {
        let mut plain = vec![0u8; message.len()];
        let n = self
            .transport
            .read_message(message, &mut plain)
            .expect("the relay's message decrypts");
        self.inbound.extend_from_slice(&plain[..n]);
    }

    /// The next whole frame from the relay, prefix included.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        let prefix = self.inbound.first_chunk::<4>()?;
        let len = u32::from_be_bytes(*prefix) as usize + 4;
        if self.inbound.len() < len {
            return None;
        }
        Some(self.inbound.drain(..len).collect())
    }
}

/// The relay's Noise public key from its metrics listener's `/pubkey` (§12.1).
pub fn fetch_pubkey(metrics: SocketAddr) -> [u8; 32] {
    use base64::Engine as _;
    let mut stream = TcpStream::connect(metrics).unwrap();
    stream.set_read_timeout(Some(super::STUCK)).unwrap();
    stream
        .write_all(b"GET /pubkey HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("Content-Type: text/plain\r\n"),
        "{response}"
    );
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(body.len(), 43, "{body:?}");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .unwrap();
    bytes.try_into().unwrap()
}
