//! Tests for `wsframe::FirstMessageReader` (RFC 6455, PROTOCOL.md §2.6, §4.1): data
//! messages whole, byte by byte and fragmented, control frames before the message,
//! pipelined bytes, and every failure with its close code.

use vauchi_relay::wsframe::{
    CloseScan, FirstMessageReader, LengthCheck, Step, Violation, close_frame, server_binary_frame,
};

const MAX: usize = 1024;
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A client frame with an explicit first byte (FIN, RSV, opcode) and mask.
fn raw_frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(if fin { 0x80 } else { 0 } | opcode, payload, Some(MASK))
}

/// An unmasked server frame, as the reader's Pong and Close must look.
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(0x80 | opcode, payload, None)
}

fn reader_with(bytes: &[u8]) -> FirstMessageReader {
    let mut reader = FirstMessageReader::new(MAX);
    reader.feed(bytes);
    reader
}

fn fail(code: u16, reason: &'static str) -> Step {
    Step::Fail { code, reason }
}

fn message(binary: bool, payload: &[u8], consumed: usize) -> Step {
    Step::Message {
        binary,
        payload: payload.to_vec(),
        consumed,
    }
}

#[test]
fn masked_binary_frame_fed_whole() {
    let bytes = frame(true, BINARY, b"hello");
    let mut reader = reader_with(&bytes);
    assert_eq!(reader.poll(), message(true, b"hello", bytes.len()));
    assert!(reader.into_remainder().is_empty());
}

#[test]
fn masked_binary_frame_fed_byte_by_byte() {
    for payload_len in [0, 1, 125, 126, 1000] {
        let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
        let bytes = frame(true, BINARY, &payload);
        let mut reader = FirstMessageReader::new(MAX);
        for (i, byte) in bytes.iter().enumerate() {
            assert_eq!(reader.poll(), Step::NeedMore, "before byte {i}");
            reader.feed(std::slice::from_ref(byte));
        }
        assert_eq!(reader.poll(), message(true, &payload, bytes.len()));
    }
}

#[test]
fn frame_built_by_tungstenite_is_read() {
    use tungstenite::protocol::frame::Frame;
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    let payload = vec![7u8; 300];
    let mut tungstenite_frame = Frame::message(payload.clone(), OpCode::Data(Data::Binary), true);
    tungstenite_frame.header_mut().mask = Some(MASK);
    let mut bytes = Vec::new();
    tungstenite_frame.format(&mut bytes).expect("format");
    assert_eq!(bytes, frame(true, BINARY, &payload));
    assert_eq!(
        reader_with(&bytes).poll(),
        message(true, &payload, bytes.len())
    );
}

#[test]
fn sixty_four_bit_length_is_read() {
    let payload = vec![9u8; 70_000];
    let bytes = frame(true, BINARY, &payload);
    let mut reader = FirstMessageReader::new(100_000);
    reader.feed(&bytes);
    assert_eq!(reader.poll(), message(true, &payload, bytes.len()));
}

#[test]
fn valid_text_message_is_returned_as_text() {
    let bytes = frame(true, TEXT, "grüße".as_bytes());
    assert_eq!(
        reader_with(&bytes).poll(),
        message(false, "grüße".as_bytes(), bytes.len())
    );
}

#[test]
fn fragmented_message_is_joined() {
    let mut bytes = frame(false, BINARY, b"abc");
    bytes.extend(frame(false, CONTINUATION, b""));
    bytes.extend(frame(false, CONTINUATION, b"def"));
    bytes.extend(frame(true, CONTINUATION, b"gh"));
    assert_eq!(
        reader_with(&bytes).poll(),
        message(true, b"abcdefgh", bytes.len())
    );
}

#[test]
fn fragmented_text_split_inside_a_character_is_valid() {
    let text = "ü".as_bytes();
    let mut bytes = frame(false, TEXT, &text[..1]);
    bytes.extend(frame(true, CONTINUATION, &text[1..]));
    assert_eq!(
        reader_with(&bytes).poll(),
        message(false, text, bytes.len())
    );
}

#[test]
fn fragmented_message_fed_byte_by_byte_with_a_ping_in_the_middle() {
    let mut bytes = frame(false, BINARY, b"abc");
    bytes.extend(frame(true, PING, b"p"));
    bytes.extend(frame(true, CONTINUATION, b"def"));
    let mut reader = FirstMessageReader::new(MAX);
    let mut steps = Vec::new();
    for byte in &bytes {
        reader.feed(std::slice::from_ref(byte));
        let mut done = false;
        while !done {
            match reader.poll() {
                Step::NeedMore => break,
                step => {
                    done = matches!(step, Step::Message { .. });
                    steps.push(step);
                }
            }
        }
        if done {
            break;
        }
    }
    assert_eq!(
        steps,
        [
            Step::Write(server_frame(PONG, b"p")),
            message(true, b"abcdef", bytes.len())
        ]
    );
}

#[test]
fn ping_before_data_is_answered_with_the_same_payload() {
    let mut bytes = frame(true, PING, b"are you there");
    bytes.extend(frame(true, PING, b""));
    bytes.extend(frame(true, BINARY, b"data"));
    let mut reader = reader_with(&bytes);
    assert_eq!(
        reader.poll(),
        Step::Write(server_frame(PONG, b"are you there"))
    );
    assert_eq!(reader.poll(), Step::Write(server_frame(PONG, b"")));
    assert_eq!(reader.poll(), message(true, b"data", bytes.len()));
}

#[test]
fn ping_with_the_largest_control_payload() {
    let payload = [0xAB; 125];
    let mut reader = reader_with(&frame(true, PING, &payload));
    assert_eq!(reader.poll(), Step::Write(server_frame(PONG, &payload)));
    assert_eq!(reader.poll(), Step::NeedMore);
}

#[test]
fn pong_is_ignored() {
    let mut bytes = frame(true, PONG, b"unsolicited");
    bytes.extend(frame(true, BINARY, b"x"));
    assert_eq!(reader_with(&bytes).poll(), message(true, b"x", bytes.len()));
}

#[test]
fn pipelined_bytes_stay_in_the_remainder() {
    let first = frame(true, BINARY, b"handshake");
    let mut rest = frame(true, BINARY, b"second");
    rest.extend(frame(true, PING, b"x"));
    rest.extend(&frame(true, BINARY, b"third")[..3]);
    let mut bytes = first.clone();
    bytes.extend(&rest);
    let mut reader = reader_with(&bytes);
    assert_eq!(reader.poll(), message(true, b"handshake", first.len()));
    assert_eq!(reader.into_remainder(), rest);
}

#[test]
fn consumed_counts_control_frames_before_the_message() {
    let ping = frame(true, PING, b"1");
    let data = frame(true, BINARY, b"2");
    let tail = b"\x82".to_vec();
    let mut bytes = ping.clone();
    bytes.extend(&data);
    bytes.extend(&tail);
    let mut reader = FirstMessageReader::new(MAX);
    // Fed in two uneven chunks.
    reader.feed(&bytes[..4]);
    assert_eq!(reader.poll(), Step::NeedMore);
    reader.feed(&bytes[4..]);
    assert!(matches!(reader.poll(), Step::Write(_)));
    assert_eq!(reader.poll(), message(true, b"2", ping.len() + data.len()));
    assert_eq!(reader.into_remainder(), tail);
}

#[test]
fn remainder_before_a_message_is_the_unread_frame() {
    let bytes = frame(true, BINARY, b"partial");
    let mut reader = reader_with(&bytes[..5]);
    assert_eq!(reader.poll(), Step::NeedMore);
    assert_eq!(reader.into_remainder(), &bytes[..5]);
}

#[test]
fn message_of_exactly_max_bytes_is_accepted() {
    let payload = vec![1u8; MAX];
    let bytes = frame(true, BINARY, &payload);
    assert_eq!(
        reader_with(&bytes).poll(),
        message(true, &payload, bytes.len())
    );
    let mut bytes = frame(false, BINARY, &payload[..MAX - 1]);
    bytes.extend(frame(true, CONTINUATION, &payload[MAX - 1..]));
    assert_eq!(
        reader_with(&bytes).poll(),
        message(true, &payload, bytes.len())
    );
}

#[test]
fn close_frames() {
    let rows: &[(&[u8], Step)] = &[
        (b"", Step::PeerClose { code: 1000 }),
        (b"\x03\xe8", Step::PeerClose { code: 1000 }),
        (b"\x03\xe9bye", Step::PeerClose { code: 1001 }),
        (b"\x03\xf3", Step::PeerClose { code: 1011 }),
        (b"\x03\xf5", Step::PeerClose { code: 1013 }),
        (b"\x0b\xb8", Step::PeerClose { code: 3000 }),
        (b"\x13\x87", Step::PeerClose { code: 4999 }),
        (b"\x03", fail(1002, "protocol error")),
        (b"\x00\x00", fail(1002, "protocol error")),
        (b"\x03\xe7", fail(1002, "protocol error")), // 999
        (b"\x03\xec", fail(1002, "protocol error")), // 1004 reserved
        (b"\x03\xed", fail(1002, "protocol error")), // 1005 must not be sent
        (b"\x03\xee", fail(1002, "protocol error")), // 1006 must not be sent
        (b"\x03\xf7", fail(1002, "protocol error")), // 1015 must not be sent
        (b"\x07\xd0", fail(1002, "protocol error")), // 2000 reserved
        (b"\x13\x88", fail(1002, "protocol error")), // 5000
        (b"\x03\xe8\xff", fail(1007, "invalid utf-8")),
    ];
    for (payload, expected) in rows {
        let mut bytes = frame(true, CLOSE, payload);
        bytes.extend(frame(true, BINARY, b"never read"));
        assert_eq!(&reader_with(&bytes).poll(), expected, "{payload:?}");
    }
}

#[test]
fn close_in_the_middle_of_a_fragmented_message() {
    let mut bytes = frame(false, BINARY, b"abc");
    bytes.extend(frame(true, CLOSE, b"\x03\xe8"));
    assert_eq!(reader_with(&bytes).poll(), Step::PeerClose { code: 1000 });
}

#[test]
fn protocol_errors_close_with_1002() {
    let protocol_error = fail(1002, "protocol error");
    let rows: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked data", raw_frame(0x82, b"x", None)),
        ("unmasked ping", raw_frame(0x89, b"x", None)),
        ("unmasked close", raw_frame(0x88, b"", None)),
        ("rsv1", raw_frame(0xC2, b"x", Some(MASK))),
        ("rsv2", raw_frame(0xA2, b"x", Some(MASK))),
        ("rsv3", raw_frame(0x92, b"x", Some(MASK))),
        ("rsv on ping", raw_frame(0xC9, b"x", Some(MASK))),
        ("opcode 3", frame(true, 0x3, b"x")),
        ("opcode 7", frame(true, 0x7, b"x")),
        ("opcode 0xB", frame(true, 0xB, b"x")),
        ("opcode 0xF", frame(true, 0xF, b"x")),
        ("fragmented ping", frame(false, PING, b"x")),
        ("fragmented pong", frame(false, PONG, b"x")),
        ("fragmented close", frame(false, CLOSE, b"")),
        ("ping of 126 bytes", frame(true, PING, &[0; 126])),
        ("close of 126 bytes", frame(true, CLOSE, &[0x03; 126])),
        ("continuation first", frame(true, CONTINUATION, b"x")),
        (
            "unfinished continuation first",
            frame(false, CONTINUATION, b"x"),
        ),
        ("new data frame inside a message", {
            let mut bytes = frame(false, BINARY, b"a");
            bytes.extend(frame(true, BINARY, b"b"));
            bytes
        }),
        ("new text frame inside a message", {
            let mut bytes = frame(false, TEXT, b"a");
            bytes.extend(frame(true, TEXT, b"b"));
            bytes
        }),
        ("64-bit length with the top bit set", {
            let mut bytes = vec![0x82, 0x80 | 127];
            bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
            bytes
        }),
        ("64-bit length of all ones", {
            let mut bytes = vec![0x82, 0x80 | 127];
            bytes.extend_from_slice(&u64::MAX.to_be_bytes());
            bytes
        }),
    ];
    for (name, bytes) in rows {
        assert_eq!(reader_with(&bytes).poll(), protocol_error, "{name}");
    }
}

#[test]
fn protocol_errors_are_found_from_the_first_two_bytes() {
    // Nothing beyond the two fixed header bytes is needed to refuse these.
    for first_two in [
        [0x82, 0x05],
        [0xC2, 0x85],
        [0x83, 0x85],
        [0x09, 0x85],
        [0x80, 0x85],
    ] {
        assert_eq!(
            reader_with(&first_two).poll(),
            fail(1002, "protocol error"),
            "{first_two:?}"
        );
    }
}

#[test]
fn invalid_utf8_text_closes_with_1007() {
    let rows: [&[u8]; 4] = [b"\xff", b"ab\xc3", b"\xed\xa0\x80", b"\xc0\xaf"];
    for payload in rows {
        assert_eq!(
            reader_with(&frame(true, TEXT, payload)).poll(),
            fail(1007, "invalid utf-8"),
            "{payload:?}"
        );
    }
    // Split across fragments, checked when the message completes.
    let mut bytes = frame(false, TEXT, b"ok");
    bytes.extend(frame(true, CONTINUATION, b"\xff"));
    assert_eq!(reader_with(&bytes).poll(), fail(1007, "invalid utf-8"));
}

#[test]
fn frame_over_max_closes_with_1009_from_the_header() {
    let too_big = fail(1009, "message too big");
    // 16-bit length: only the 4 header bytes before the mask are fed.
    let bytes = frame(true, BINARY, &vec![0; MAX + 1]);
    assert_eq!(reader_with(&bytes[..4]).poll(), too_big);
    // 64-bit length.
    let bytes = frame(true, BINARY, &vec![0; 70_000]);
    assert_eq!(reader_with(&bytes[..10]).poll(), too_big);
    // An unfinished frame is checked too.
    let bytes = frame(false, BINARY, &vec![0; MAX + 1]);
    assert_eq!(reader_with(&bytes[..4]).poll(), too_big);
    // A small maximum with a 7-bit length.
    let mut reader = FirstMessageReader::new(10);
    reader.feed(&frame(true, BINARY, &[0; 11])[..2]);
    assert_eq!(reader.poll(), too_big);
}

#[test]
fn joined_message_over_max_closes_with_1009_from_the_header() {
    let mut bytes = frame(false, BINARY, &vec![0; MAX - 10]);
    let first_len = bytes.len();
    bytes.extend(frame(false, CONTINUATION, &[0; 10]));
    let second_end = bytes.len();
    bytes.extend(frame(true, CONTINUATION, &[0; 1]));
    // Exactly max after two fragments is fine so far.
    assert_eq!(reader_with(&bytes[..second_end]).poll(), Step::NeedMore);
    // The third header alone (2 bytes) already shows the message is too big.
    assert_eq!(
        reader_with(&bytes[..second_end + 2]).poll(),
        fail(1009, "message too big")
    );
    assert!(first_len < second_end);
}

#[test]
fn declared_huge_length_fails_from_the_header() {
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(i64::MAX as u64).to_be_bytes());
    assert_eq!(reader_with(&header).poll(), fail(1009, "message too big"));
}

#[test]
fn failure_is_sticky() {
    let mut reader = reader_with(&raw_frame(0x82, b"x", None));
    assert_eq!(reader.poll(), fail(1002, "protocol error"));
    reader.feed(&frame(true, BINARY, b"x"));
    assert_eq!(reader.poll(), fail(1002, "protocol error"));
}

#[test]
fn close_frame_encoding() {
    assert_eq!(
        close_frame(1009, "message too big"),
        server_frame(CLOSE, b"\x03\xf1message too big")
    );
    assert_eq!(close_frame(1000, ""), vec![0x88, 0x02, 0x03, 0xe8]);
    // A reason too long for a control frame is cut at a character boundary.
    let long = "é".repeat(100);
    let bytes = close_frame(1000, &long);
    assert_eq!(bytes[1] as usize, bytes.len() - 2);
    assert!(bytes.len() - 2 <= 125);
    assert!(std::str::from_utf8(&bytes[4..]).is_ok());
    assert_eq!(&bytes[4..], "é".repeat(61).as_bytes());
}

#[test]
fn server_binary_frame_encoding() {
    assert_eq!(server_binary_frame(b"abc"), server_frame(BINARY, b"abc"));
    assert_eq!(server_binary_frame(b""), vec![0x82, 0x00]);
    let medium = vec![5u8; 126];
    assert_eq!(server_binary_frame(&medium), server_frame(BINARY, &medium));
    assert_eq!(&server_binary_frame(&medium)[..4], &[0x82, 126, 0, 126]);
    let large = vec![6u8; 65_536];
    assert_eq!(
        &server_binary_frame(&large)[..10],
        &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]
    );
    assert_eq!(server_binary_frame(&large).len(), 65_546);
}

#[test]
fn server_frames_parse_with_tungstenite() {
    use std::io::Cursor;
    use tungstenite::protocol::frame::FrameHeader;
    for payload_len in [0usize, 125, 126, 65_535, 65_536] {
        let bytes = server_binary_frame(&vec![1; payload_len]);
        let mut cursor = Cursor::new(&bytes);
        let (header, length) = FrameHeader::parse(&mut cursor)
            .expect("parses")
            .expect("complete");
        assert!(header.is_final);
        assert_eq!(header.mask, None);
        assert_eq!(length, payload_len as u64);
        assert_eq!(cursor.position() as usize + payload_len, bytes.len());
    }
}

#[test]
fn consumed_grows_with_each_whole_frame_of_an_unfinished_message() {
    // The session restarts its idle timer on it (§2.6): every fragment counts.
    let first = frame(false, BINARY, b"ab");
    let second = frame(false, CONTINUATION, b"");
    let mut reader = FirstMessageReader::continuous(MAX);
    assert_eq!(reader.consumed(), 0);
    reader.feed(&first[..3]);
    assert_eq!(reader.poll(), Step::NeedMore);
    assert_eq!(reader.consumed(), 0, "half a frame is not a frame");
    reader.feed(&first[3..]);
    assert_eq!(reader.poll(), Step::NeedMore);
    assert_eq!(reader.consumed(), first.len());
    reader.feed(&second);
    assert_eq!(reader.poll(), Step::NeedMore);
    assert_eq!(reader.consumed(), first.len() + second.len());
}

/// A masked binary frame whose length is written with `length_bytes` extended bytes
/// (0, 2 or 8), whether or not that is the shortest form.
fn frame_with_length_form(payload: &[u8], length_bytes: usize) -> Vec<u8> {
    let mut out = vec![0x82];
    match length_bytes {
        0 => out.push(0x80 | payload.len() as u8),
        2 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// The reader used to accept a length written in a longer form than needed (a
/// 148-byte frame with a 64-bit length, a 100-byte one with a 16-bit length);
/// RFC 6455 §5.2 requires the minimal form, and §2.6 closes any violation 1002.
#[test]
fn non_minimal_lengths_close_with_1002_from_the_header() {
    let cases = [
        (100usize, 2usize),
        (125, 2),
        (0, 2),
        (148, 8),
        (148, 2),
        (65_535, 8),
        (0, 8),
    ];
    for (len, form) in cases {
        let bytes = frame_with_length_form(&vec![7; len], form);
        let minimal = match len {
            0..=125 => form == 0,
            126..=65_535 => form == 2,
            _ => form == 8,
        };
        let mut reader = FirstMessageReader::new(100_000);
        reader.feed(&bytes);
        let expected = if minimal {
            message(true, &vec![7; len], bytes.len())
        } else {
            fail(1002, "protocol error")
        };
        assert_eq!(reader.poll(), expected, "{len} bytes, {form}-byte length");
        // The header alone (before the mask) is enough to tell.
        if !minimal {
            let mut reader = FirstMessageReader::new(100_000);
            reader.feed(&bytes[..2 + form]);
            assert_eq!(reader.poll(), fail(1002, "protocol error"), "{len}, {form}");
        }
    }
    // The minimal forms at each boundary are read.
    for len in [125usize, 126, 65_535, 65_536] {
        let bytes = frame(true, BINARY, &vec![1; len]);
        let mut reader = FirstMessageReader::new(100_000);
        reader.feed(&bytes);
        assert_eq!(
            reader.poll(),
            message(true, &vec![1; len], bytes.len()),
            "{len}"
        );
    }
}

#[test]
fn length_check_passes_minimal_streams_in_any_chunks() {
    let mut stream = Vec::new();
    for len in [0usize, 5, 125, 126, 300, 65_535, 65_536, 70_000] {
        stream.extend(frame(true, BINARY, &vec![3; len]));
        stream.extend(server_frame(PING, b"p"));
    }
    for chunk in [1usize, 2, 3, 7, 100, 4096, stream.len()] {
        let mut check = LengthCheck::new();
        for piece in stream.chunks(chunk) {
            assert_eq!(check.feed(piece), Ok(()), "chunks of {chunk}");
        }
        assert!(!check.failed());
    }
}

#[test]
fn length_check_finds_the_header_of_the_first_non_minimal_frame() {
    let good = frame(true, BINARY, &[1; 300]);
    let bad = frame_with_length_form(&[2; 148], 8);
    let mut stream = good.clone();
    stream.extend(&bad);
    stream.extend(frame(true, BINARY, b"after"));
    // Whole: the bytes before the bad header may pass.
    let mut check = LengthCheck::new();
    let bad_end = good.len() + bad.len() - 148; // past the bad frame's header
    assert_eq!(
        check.feed(&stream),
        Err(Violation {
            pass: good.len(),
            walked: bad_end
        })
    );
    assert!(check.failed());
    assert_eq!(
        check.feed(b"more"),
        Err(Violation { pass: 0, walked: 0 }),
        "failure is sticky"
    );
    // The bad header split over two chunks: the part before it in the second.
    let split = good.len() + 3;
    let mut check = LengthCheck::new();
    assert_eq!(check.feed(&stream[..split]), Ok(()));
    assert_eq!(
        check.feed(&stream[split..]),
        Err(Violation {
            pass: 0,
            walked: bad_end - split
        })
    );
    // Unmasked (server) frames are walked the same way.
    let mut server = server_frame(BINARY, &[0; 200]);
    let at = server.len();
    server.extend([0x82, 126, 0, 5, 1, 2, 3, 4, 5]);
    assert_eq!(
        LengthCheck::new().feed(&server).map_err(|v| v.pass),
        Err(at)
    );
}

/// After a reader failed on a frame whose header tells its length, the peer's
/// Close is found behind it, payloads passed over, in any chunks; data that only
/// looks like a Close inside a payload is not taken for one.
#[test]
fn close_scan_finds_the_close_behind_failed_frames() {
    let mut stream = raw_frame(0x82, &[0x88; 300], None); // unmasked: a 1002 frame
    stream.extend(frame(true, BINARY, &[0x88, 0x80, 1, 2, 3, 4]));
    stream.extend(frame_with_length_form(&[0; 10], 8)); // non-minimal: walked too
    let close_at = stream.len();
    stream.extend(frame(true, CLOSE, &1000u16.to_be_bytes()));
    for chunk in [1usize, 3, 64, stream.len()] {
        let mut scan = CloseScan::new();
        let mut fed = 0;
        let mut found_at = None;
        for piece in stream.chunks(chunk) {
            fed += piece.len();
            if scan.feed(piece) {
                found_at = Some(fed);
                break;
            }
        }
        let found_at = found_at.expect("the Close is found");
        // Found once its header (2 bytes and the mask) is in, not before.
        assert!(found_at >= close_at + 6, "chunks of {chunk}: {found_at}");
        assert!(scan.feed(b"anything"), "stays found");
    }
    let mut scan = CloseScan::new();
    assert!(!scan.feed(&stream[..close_at]));
}

/// The scan ends only once the Close frame's payload is in too, so that nothing
/// of it is left unread when TCP closes; and it goes on from a length walk that
/// stopped at a violation, past the offending frame's payload.
#[test]
fn close_scan_waits_for_the_close_payload_and_resumes_a_length_walk() {
    let close = frame(true, CLOSE, b"\x03\xe8bye");
    let mut scan = CloseScan::new();
    assert!(!scan.feed(&close[..close.len() - 1]));
    assert!(scan.feed(&close[close.len() - 1..]));

    let bad = frame_with_length_form(&[0x88; 140], 8);
    let mut stream = bad.clone();
    stream.extend(&close);
    let mut check = LengthCheck::new();
    let violation = check.feed(&stream).unwrap_err();
    assert_eq!(violation.walked, 14, "64-bit length and mask");
    let mut scan = check.into_close_scan();
    let rest = &stream[violation.walked..];
    assert!(
        !scan.feed(&rest[..140]),
        "the bad frame's payload is passed over"
    );
    assert!(scan.feed(&rest[140..]));
}
