//! Client side of the wire, written for cost per message: RFC 6455 frames
//! (masked on output), the HTTP upgrade, and the protocol v1 messages
//! (4-byte big-endian length + compact JSON) built from byte templates and read
//! with a small member scanner instead of a full JSON parse.

/// One decoded WebSocket frame header; `payload` is the byte range in the input.
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: std::ops::Range<usize>,
}

pub const OPCODE_CONTINUATION: u8 = 0x0;
pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_BINARY: u8 = 0x2;
pub const OPCODE_CLOSE: u8 = 0x8;
pub const OPCODE_PING: u8 = 0x9;

/// Decodes the frame at the start of `input`; None while it is incomplete.
/// Server frames are normally unmasked; a masked one is unmasked in place.
pub fn decode_frame(input: &mut [u8]) -> Option<Frame> {
    if input.len() < 2 {
        return None;
    }
    let fin = input[0] & 0x80 != 0;
    let opcode = input[0] & 0x0f;
    let masked = input[1] & 0x80 != 0;
    let (length, mut start) = match input[1] & 0x7f {
        126 if input.len() >= 4 => (u16::from_be_bytes([input[2], input[3]]) as usize, 4),
        127 if input.len() >= 10 => (
            u64::from_be_bytes(input[2..10].try_into().ok()?) as usize,
            10,
        ),
        126 | 127 => return None,
        short => (short as usize, 2),
    };
    let mask = if masked {
        let key: [u8; 4] = input.get(start..start + 4)?.try_into().ok()?;
        start += 4;
        Some(key)
    } else {
        None
    };
    let end = start.checked_add(length)?;
    if input.len() < end {
        return None;
    }
    if let Some(key) = mask {
        for (index, byte) in input[start..end].iter_mut().enumerate() {
            *byte ^= key[index % 4];
        }
    }
    Some(Frame {
        fin,
        opcode,
        payload: start..end,
    })
}

/// Appends one masked, unfragmented frame carrying `payload` to `out`.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    match payload.len() {
        length @ 0..=125 => out.push(0x80 | length as u8),
        length @ 126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(length as u16).to_be_bytes());
        }
        length => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(length as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    // Mask eight bytes at a time: the key repeats every four bytes and every
    // chunk starts at a multiple of four.
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact(8);
    for chunk in &mut chunks {
        let word =
            u64::from_ne_bytes(chunk.try_into().expect("chunks_exact yields 8 bytes")) ^ wide;
        out.extend_from_slice(&word.to_ne_bytes());
    }
    for (index, byte) in chunks.remainder().iter().enumerate() {
        out.push(byte ^ mask[index % 4]);
    }
}

/// The HTTP/1.1 upgrade request for a client session.
pub fn upgrade_request(host: &str, path: &str, key_bytes: [u8; 16]) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        base64(&key_bytes)
    )
    .into_bytes()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::new();
    for group in bytes.chunks(3) {
        let value = (group[0] as u32) << 16
            | (*group.get(1).unwrap_or(&0) as u32) << 8
            | *group.get(2).unwrap_or(&0) as u32;
        for position in 0..4 {
            if position <= group.len() {
                text.push(ALPHABET[(value >> (18 - 6 * position) & 63) as usize] as char);
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// Outcome of reading the upgrade response head.
pub enum UpgradeReply {
    Incomplete,
    /// Switched to WebSocket; the head was this many bytes long.
    Accepted(usize),
    /// Any other status line (e.g. 503 when the relay refuses admission).
    Refused(String),
}

pub fn parse_upgrade_reply(input: &[u8]) -> UpgradeReply {
    let Some(end) = input.windows(4).position(|window| window == b"\r\n\r\n") else {
        return UpgradeReply::Incomplete;
    };
    let status_line = input[..end]
        .split(|&byte| byte == b'\r')
        .next()
        .unwrap_or(&[]);
    let status = String::from_utf8_lossy(status_line).into_owned();
    if status.starts_with("HTTP/1.1 101") || status.starts_with("HTTP/1.0 101") {
        UpgradeReply::Accepted(end + 4)
    } else {
        UpgradeReply::Refused(status.split(' ').nth(1).unwrap_or("?").to_string())
    }
}

/// Lower-case 64-hex id from 32 random bytes.
pub fn random_id(rng: &mut Rng) -> String {
    let mut id = String::with_capacity(64);
    for _ in 0..4 {
        id.push_str(&format!("{:016x}", rng.next()));
    }
    id
}

/// xorshift64*: masks and ids need spread, not cryptographic strength.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn mask(&mut self) -> [u8; 4] {
        (self.next() as u32).to_ne_bytes()
    }
}

/// Seeds from the clock and a counter so runs and threads differ.
pub fn seed(salt: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    nanos ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (std::process::id() as u64) << 32
}

pub fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Appends the protocol frame prefix placeholder; `finish_message` patches it.
pub fn begin_message(out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0; 4]);
}

pub fn finish_message(out: &mut [u8]) {
    let length = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&length.to_be_bytes());
}

pub fn handshake_json(out: &mut Vec<u8>, message_id: &str, client_id: &str, unix_secs: u64) {
    begin_message(out);
    out.extend_from_slice(
        format!(
            "{{\"version\":1,\"message_id\":\"{message_id}\",\"timestamp\":{unix_secs},\
             \"payload\":{{\"type\":\"Handshake\",\"client_id\":\"{client_id}\"}}}}"
        )
        .as_bytes(),
    );
    finish_message(out);
}

pub fn ack_json(out: &mut Vec<u8>, message_id: &[u8], blob_id: &[u8], unix_secs: u64) {
    begin_message(out);
    out.extend_from_slice(b"{\"version\":1,\"message_id\":\"");
    out.extend_from_slice(message_id);
    out.extend_from_slice(b"\",\"timestamp\":");
    push_decimal(out, unix_secs);
    out.extend_from_slice(b",\"payload\":{\"type\":\"Acknowledgment\",\"message_id\":\"");
    out.extend_from_slice(blob_id);
    out.extend_from_slice(b"\",\"status\":\"ReceivedByRecipient\"}}");
    finish_message(out);
}

pub fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

pub fn push_hex(out: &mut Vec<u8>, value: u64, width: usize) {
    for shift in (0..width).rev() {
        out.push(b"0123456789abcdef"[(value >> (shift * 4) & 15) as usize]);
    }
}

pub fn parse_hex(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &byte| {
        Some(acc << 4 | (byte as char).to_digit(16)? as u64)
    })
}

/// An EncryptedUpdate request whose only varying parts are the message id
/// sequence number and, optionally, an 8-byte stamp at the start of the
/// ciphertext. Everything else is formatted once.
pub struct UpdateTemplate {
    /// `{"version":1,"message_id":"<tag>-`
    head: Vec<u8>,
    /// `","timestamp":T,"payload":{"type":"EncryptedUpdate","recipient_id":"R","ciphertext":[`
    middle: Vec<u8>,
    /// The ciphertext after the stamp, then `]}}`.
    tail: Vec<u8>,
    stamped: bool,
}

/// Width of the sequence number in message ids (hex digits).
pub const SEQ_HEX_DIGITS: usize = 12;

impl UpdateTemplate {
    pub fn new(
        tag: &str,
        recipient_id: &str,
        size_bytes: usize,
        stamped: bool,
        rng: &mut Rng,
        unix_secs: u64,
    ) -> Self {
        let head = format!("{{\"version\":1,\"message_id\":\"{tag}-").into_bytes();
        let middle = format!(
            "\",\"timestamp\":{unix_secs},\"payload\":{{\"type\":\"EncryptedUpdate\",\"recipient_id\":\"{recipient_id}\",\"ciphertext\":["
        )
        .into_bytes();
        let fixed_bytes = if stamped {
            size_bytes.saturating_sub(8)
        } else {
            size_bytes
        };
        let mut tail = Vec::new();
        for index in 0..fixed_bytes {
            if index > 0 || stamped {
                tail.push(b',');
            }
            push_decimal(&mut tail, rng.next() & 0xff);
        }
        tail.extend_from_slice(b"]}}");
        Self {
            head,
            middle,
            tail,
            stamped,
        }
    }

    pub fn write(&self, out: &mut Vec<u8>, seq: u64, stamp: u64) {
        begin_message(out);
        out.extend_from_slice(&self.head);
        push_hex(out, seq, SEQ_HEX_DIGITS);
        out.extend_from_slice(&self.middle);
        if self.stamped {
            for (index, byte) in stamp.to_be_bytes().iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                push_decimal(out, *byte as u64);
            }
        }
        out.extend_from_slice(&self.tail);
        finish_message(out);
    }
}

/// The members of a relay message that the scenarios look at. Ids are raw
/// string contents (the relay's ids never contain escapes).
#[derive(Default)]
pub struct Reply<'a> {
    pub kind: &'a [u8],
    /// Envelope message_id: the blob id of a delivered EncryptedUpdate.
    pub envelope_id: &'a [u8],
    /// Payload message_id: the request an ack or Error answers.
    pub request_id: &'a [u8],
    pub status: &'a [u8],
    pub code: &'a [u8],
    /// Raw `[..]` text of a delivered ciphertext.
    pub ciphertext: &'a [u8],
}

/// Reads a protocol message (prefix included). None if the frame prefix or the
/// JSON shape is wrong; member order is not assumed.
pub fn parse_reply(message: &[u8]) -> Option<Reply<'_>> {
    let length = u32::from_be_bytes(message.get(..4)?.try_into().ok()?) as usize;
    let json = &message[4..];
    if length != json.len() {
        return None;
    }
    let mut reply = Reply::default();
    let mut payload: &[u8] = &[];
    for_each_member(json, |key, value| match key {
        b"message_id" => reply.envelope_id = string_contents(value),
        b"payload" => payload = value,
        _ => {}
    })?;
    for_each_member(payload, |key, value| match key {
        b"type" => reply.kind = string_contents(value),
        b"message_id" => reply.request_id = string_contents(value),
        b"status" => reply.status = string_contents(value),
        b"code" => reply.code = string_contents(value),
        b"ciphertext" => reply.ciphertext = value,
        _ => {}
    })?;
    Some(reply)
}

fn string_contents(value: &[u8]) -> &[u8] {
    if value.len() >= 2 && value[0] == b'"' {
        &value[1..value.len() - 1]
    } else {
        &[]
    }
}

fn skip_whitespace(json: &[u8], mut at: usize) -> usize {
    while at < json.len() && matches!(json[at], b' ' | b'\t' | b'\r' | b'\n') {
        at += 1;
    }
    at
}

/// Index just past the JSON value starting at `at`.
fn skip_value(json: &[u8], at: usize) -> Option<usize> {
    match *json.get(at)? {
        b'"' => skip_string(json, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut index = at;
            while index < json.len() {
                match json[index] {
                    b'"' => {
                        index = skip_string(json, index)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(index + 1);
                        }
                    }
                    _ => {}
                }
                index += 1;
            }
            None
        }
        _ => {
            let mut index = at;
            while index < json.len()
                && !matches!(
                    json[index],
                    b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'
                )
            {
                index += 1;
            }
            Some(index)
        }
    }
}

fn skip_string(json: &[u8], at: usize) -> Option<usize> {
    let mut index = at + 1;
    while index < json.len() {
        match json[index] {
            b'\\' => index += 2,
            b'"' => return Some(index + 1),
            _ => index += 1,
        }
    }
    None
}

/// Calls `visit(key, raw value)` for each member of the object `json`.
fn for_each_member<'a>(json: &'a [u8], mut visit: impl FnMut(&'a [u8], &'a [u8])) -> Option<()> {
    let mut at = skip_whitespace(json, 0);
    if json.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_whitespace(json, at + 1);
    if json.get(at) == Some(&b'}') {
        return Some(());
    }
    loop {
        let key_end = skip_string(json, at)?;
        let key = &json[at + 1..key_end - 1];
        at = skip_whitespace(json, key_end);
        if json.get(at) != Some(&b':') {
            return None;
        }
        let value_start = skip_whitespace(json, at + 1);
        let value_end = skip_value(json, value_start)?;
        visit(key, &json[value_start..value_end]);
        at = skip_whitespace(json, value_end);
        match json.get(at)? {
            b',' => at = skip_whitespace(json, at + 1),
            b'}' => return Some(()),
            _ => return None,
        }
    }
}

/// The first eight ciphertext bytes as a big-endian u64 (the send stamp).
pub fn ciphertext_stamp(ciphertext: &[u8]) -> Option<u64> {
    let inner = ciphertext.strip_prefix(b"[")?;
    let mut stamp = 0u64;
    let mut parts = inner.split(|&byte| byte == b',' || byte == b']');
    for _ in 0..8 {
        let text = parts.next()?;
        let text = std::str::from_utf8(text).ok()?.trim();
        stamp = stamp << 8 | text.parse::<u8>().ok()? as u64;
    }
    Some(stamp)
}

/// Checks of the codec, run by the `selftest` scenario (a harness-less bench
/// has no test runner).
pub fn self_test() {
    let mut rng = Rng::new(3);
    let template = UpdateTemplate::new("c1", &"ab".repeat(32), 200, true, &mut rng, 1_767_225_600);
    let mut out = Vec::new();
    template.write(&mut out, 42, 0x0102_0304_0506_0708);
    let reply = parse_reply(&out).expect("a built update parses");
    assert_eq!(reply.kind, b"EncryptedUpdate");
    assert_eq!(reply.envelope_id, b"c1-00000000002a");
    assert_eq!(
        ciphertext_stamp(reply.ciphertext),
        Some(0x0102_0304_0506_0708)
    );
    assert_eq!(reply.ciphertext.iter().filter(|&&b| b == b',').count(), 199);

    let stored = br#"{"version":1,"message_id":"fd88","timestamp":1,"payload":{"type":"Acknowledgment","message_id":"x-0a","status":"Stored","blob_id":"8f8b"}}"#;
    let mut framed = (stored.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(stored);
    let reply = parse_reply(&framed).expect("an ack parses");
    assert_eq!(
        (
            reply.kind,
            reply.status,
            reply.request_id,
            reply.envelope_id
        ),
        (
            &b"Acknowledgment"[..],
            &b"Stored"[..],
            &b"x-0a"[..],
            &b"fd88"[..]
        )
    );
    framed[3] += 1;
    assert!(
        parse_reply(&framed).is_none(),
        "a wrong length prefix is refused"
    );

    let error = br#"{ "payload" : {"code":"overloaded","message_id":null,"reason":"a \"b\" }","type":"Error"}, "message_id":"e1"}"#;
    let mut framed = (error.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(error);
    let reply = parse_reply(&framed).expect("member order and spacing do not matter");
    assert_eq!(
        (reply.kind, reply.code, reply.request_id, reply.envelope_id),
        (&b"Error"[..], &b"overloaded"[..], &b""[..], &b"e1"[..])
    );

    let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    for length in [0, 5, 125, 126, 300] {
        let mut out = Vec::new();
        encode_frame(&mut out, OPCODE_BINARY, &payload[..length], [1, 2, 3, 4]);
        let frame = decode_frame(&mut out).expect("complete frame");
        assert_eq!(&out[frame.payload], &payload[..length]);
    }
    assert!(decode_frame(&mut [0x82, 126, 1]).is_none());

    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64(b"fooba"), "Zm9vYmE=");
    assert_eq!(base64(&[0u8; 16]), "AAAAAAAAAAAAAAAAAAAAAA==");
    assert_eq!(parse_hex(b"00000000002a"), Some(42));
}
