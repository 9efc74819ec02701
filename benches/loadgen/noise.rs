//! `--noise`: every connection wraps its session in Noise NK (PROTOCOL.md §15.1),
//! as a client would: after the upgrade, the opening (magic and message 1) and
//! the relay's reply; then each frame is sealed into one transport message per
//! 65519 bytes, and the relay's messages are opened and cut back into frames by
//! their length prefix. The relay started here gets a key made now.

pub const PATTERN: &str = "Noise_NK_25519_ChaChaPoly_BLAKE2s";
pub const MAGIC: [u8; 3] = [0x00, 0x56, 0x32];
const PLAINTEXT_MAX: usize = 65535 - 16;

/// A new relay key: RELAY_NOISE_STATIC_KEY's value (base64url of private ‖
/// public) and the public half.
pub fn relay_key() -> (String, [u8; 32]) {
    use base64::Engine as _;
    let builder = snow::Builder::new(PATTERN.parse().expect("the NK pattern"));
    let pair = builder.generate_keypair().expect("an X25519 key pair");
    let bytes = [pair.private.as_slice(), pair.public.as_slice()].concat();
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let public = pair.public.try_into().expect("32 bytes");
    (text, public)
}

/// `--noise-pubkey`: the base64url public key an external relay's `/pubkey` serves.
pub fn parse_public(text: &str) -> Result<[u8; 32], String> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| format!("--noise-pubkey {text:?}: not base64url of 32 bytes"))
}

/// One connection's Noise state: opening, then transport.
pub struct Session {
    /// Message 1 sent; waiting for message 2.
    opening: Option<Box<snow::HandshakeState>>,
    transport: Option<Box<snow::TransportState>>,
    /// Plaintext not yet cut into frames.
    inbound: Vec<u8>,
}

impl Session {
    /// A session for a relay with key `public`, and its opening message.
    pub fn start(public: &[u8; 32]) -> (Session, Vec<u8>) {
        let mut initiator = snow::Builder::new(PATTERN.parse().expect("the NK pattern"))
            .remote_public_key(public)
            .and_then(|builder| builder.build_initiator())
            .expect("an NK initiator");
        let mut opening = vec![0u8; MAGIC.len() + 48];
        opening[..3].copy_from_slice(&MAGIC);
        let n = initiator
            .write_message(&[], &mut opening[3..])
            .expect("message 1");
        opening.truncate(3 + n);
        let session = Session {
            opening: Some(Box::new(initiator)),
            transport: None,
            inbound: Vec::new(),
        };
        (session, opening)
    }

    pub fn is_open(&self) -> bool {
        self.transport.is_some()
    }

    /// Reads the relay's reply to the opening.
    pub fn finish(&mut self, reply: &[u8]) -> Result<(), String> {
        let mut state = self.opening.take().ok_or("a second opening reply")?;
        let message = reply
            .strip_prefix(&MAGIC)
            .ok_or("the opening's reply lacks the magic")?;
        let mut payload = [0u8; 64];
        state
            .read_message(message, &mut payload)
            .map_err(|error| format!("message 2: {error}"))?;
        let transport = state
            .into_transport_mode()
            .map_err(|error| format!("transport mode: {error}"))?;
        self.transport = Some(Box::new(transport));
        Ok(())
    }

    /// Seals `frame` into transport messages, each handed to `emit`.
    pub fn seal(&mut self, frame: &[u8], scratch: &mut Vec<u8>, mut emit: impl FnMut(&[u8])) {
        let transport = self
            .transport
            .as_mut()
            .expect("sealing after the opening completed");
        for chunk in frame.chunks(PLAINTEXT_MAX) {
            scratch.resize(chunk.len() + 16, 0);
            let n = transport
                .write_message(chunk, scratch)
                .expect("a transport message");
            emit(&scratch[..n]);
        }
    }

    /// Opens one message from the relay onto the frame stream.
    pub fn open(&mut self, message: &[u8]) -> Result<(), String> {
        let transport = self
            .transport
            .as_mut()
            .ok_or("a message before the opening's reply")?;
        let at = self.inbound.len();
        self.inbound.resize(at + message.len(), 0);
        match transport.read_message(message, &mut self.inbound[at..]) {
            Ok(n) => {
                self.inbound.truncate(at + n);
                Ok(())
            }
            Err(error) => Err(format!("a message from the relay: {error}")),
        }
    }

    /// The next whole frame the relay sent, prefix included.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        let prefix = self.inbound.first_chunk::<4>()?;
        let length = u32::from_be_bytes(*prefix) as usize + 4;
        if self.inbound.len() < length {
            return None;
        }
        if self.inbound.len() == length {
            return Some(std::mem::take(&mut self.inbound));
        }
        Some(self.inbound.drain(..length).collect())
    }
}
