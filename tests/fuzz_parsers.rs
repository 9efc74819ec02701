//! Property-based fuzzing (proptest) of every parser that sees untrusted bytes: the
//! HTTP request head and its routing (PROTOCOL.md §2.3-§2.5), the WebSocket frame
//! reader fed whole and in random small chunks (§2.6), the frame prefix, envelope,
//! Handshake and request payloads (§3.1, §3.2, §4.2, §5), the federation messages
//! (§11.1, §11.2), the PROXY protocol header (§2.9), the `RELAY_*`
//! configuration (§13), and the Noise transport's opening and framing (§15.1).
//!
//! `FUZZ_CASES` sets the cases per property (default 4096, about a second in release);
//! `FUZZ_SEED` a fixed RNG seed (default 0, so runs are reproducible) or `random`;
//! `FUZZ_SECONDS` a per-process time budget after which the remaining cases pass
//! without running. `scripts/fuzz.sh` runs them long. A failure found is persisted by
//! proptest in `tests/fuzz_parsers.proptest-regressions` and replayed first on every
//! later run: commit that file, it is the regression test.

mod federation_examples;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use federation_examples::EXAMPLES as FED_EXAMPLES;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence, RngSeed};
use serde_json::{Map, Value, json};
use vauchi_relay::config::Config;
use vauchi_relay::federation::messages::{self as fed, AdvertisedPeer, FedMessage, Ignored};
use vauchi_relay::http::{self, HeadParse, Route, RouteContext};
use vauchi_relay::limits::HEAD_BYTES_MAX;
use vauchi_relay::noise::channel as noise_channel;
use vauchi_relay::noise::{
    Channel, MAGIC as NOISE_MAGIC, PATTERN as NOISE_PATTERN, Refused, StaticKey,
};
use vauchi_relay::protocol::decode::{
    Request, ShapeError, ValidRequest, decode_envelope, decode_handshake, decode_request, validate,
};
use vauchi_relay::transport::proxy_header::{self, BUFFERED_MAX, Parse, V1_LENGTH_MAX, Versions};
use vauchi_relay::wsframe::{FirstMessageReader, LengthCheck, Step};

// ---- configuration of the runs ---------------------------------------------------

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

fn fuzz_config() -> ProptestConfig {
    let cases = env_number("FUZZ_CASES").unwrap_or(4096);
    let rng_seed = match std::env::var("FUZZ_SEED").as_deref() {
        Ok("random") => RngSeed::Random,
        Ok(text) => RngSeed::Fixed(text.trim().parse().unwrap_or(0)),
        Err(_) => RngSeed::Fixed(0),
    };
    ProptestConfig {
        cases: u32::try_from(cases).unwrap_or(u32::MAX),
        rng_seed,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    }
}

/// True once the `FUZZ_SECONDS` budget of this process is spent.
fn out_of_time() -> bool {
    static DEADLINE: OnceLock<Option<Instant>> = OnceLock::new();
    DEADLINE
        .get_or_init(|| {
            env_number("FUZZ_SECONDS").map(|secs| Instant::now() + Duration::from_secs(secs))
        })
        .is_some_and(|deadline| Instant::now() >= deadline)
}

// ---- shared generators -----------------------------------------------------------

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop::sample::select(vec![
        b"\r\n".to_vec(),
        b"\n".to_vec(),
        b"\r".to_vec(),
        b":".to_vec(),
        b" ".to_vec(),
        b"\0".to_vec(),
        b"\xff".to_vec(),
        b"\xc3".to_vec(),
        b",".to_vec(),
        b"\"".to_vec(),
        b"{".to_vec(),
        b"}".to_vec(),
        b"[".to_vec(),
        b"]".to_vec(),
        b"\\u0000".to_vec(),
        b"\\ud800".to_vec(),
        b"-1".to_vec(),
        b"1e400".to_vec(),
        b"18446744073709551616".to_vec(),
        b"null".to_vec(),
        b"\r\n\r\n".to_vec(),
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip(at, byte)),
        (
            any::<usize>(),
            prop_oneof![interesting, prop::collection::vec(any::<u8>(), 1..8)]
        )
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (any::<usize>(), 1usize..8).prop_map(|(at, n)| Mutation::Delete(at, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..16).prop_map(|(at, n)| Mutation::Duplicate(at, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for mutation in mutations {
        let len = bytes.len();
        let at = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
        match mutation {
            Mutation::Flip(i, byte) if len > 0 => bytes[i % len] = *byte,
            Mutation::Flip(..) => {}
            Mutation::Insert(i, inserted) => {
                let i = at(*i);
                bytes.splice(i..i, inserted.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = at(*i);
                let end = (i + n).min(len);
                bytes.drain(i..end);
            }
            Mutation::Truncate(i) => bytes.truncate(at(*i)),
            Mutation::Duplicate(i, n) => {
                let i = at(*i);
                let end = (i + n).min(len);
                let copy = bytes[i..end].to_vec();
                bytes.splice(i..i, copy);
            }
        }
    }
}

/// Splits `bytes` at the given (unsorted, possibly out of range) cut points.
fn chunks<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

// ---- HTTP head and routing -------------------------------------------------------

const CONTEXTS: [RouteContext; 4] = [
    RouteContext {
        federation_enabled: false,
        federation_mtls: false,
        draining: false,
    },
    RouteContext {
        federation_enabled: true,
        federation_mtls: false,
        draining: false,
    },
    RouteContext {
        federation_enabled: false,
        federation_mtls: false,
        draining: true,
    },
    RouteContext {
        federation_enabled: true,
        federation_mtls: false,
        draining: true,
    },
];

/// A request head built from plausible parts, some of them hostile.
fn request_head() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec!["GET", "HEAD", "POST", "get", "OPTIONS", "G\tET"]);
    let path = prop_oneof![
        prop::sample::select(vec![
            "/",
            "/health",
            "/up",
            "/ready",
            "/federation",
            "/?x=1",
            "/up?",
            "*",
            "",
            "/%00",
            "/health#x",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,40}",
    ];
    let version = prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 "]);
    let field = prop_oneof![
        Just(("Upgrade".to_owned(), "websocket".to_owned())),
        Just(("Connection".to_owned(), "keep-alive, Upgrade".to_owned())),
        Just(("Sec-WebSocket-Version".to_owned(), "13".to_owned())),
        Just((
            "Sec-WebSocket-Key".to_owned(),
            "dGhlIHNhbXBsZSBub25jZQ==".to_owned()
        )),
        (
            prop::sample::select(vec![
                "Upgrade",
                "connection",
                "SEC-WEBSOCKET-KEY",
                "sec-websocket-version",
                "Host",
                "X-Junk",
            ]),
            "[ -~\t]{0,40}"
        )
            .prop_map(|(name, value)| (name.to_owned(), value)),
        ("[!-~]{0,12}", "[\\x00-\\xff]{0,20}"),
    ];
    let endings = prop::sample::select(vec!["\r\n", "\n"]);
    (
        method,
        path,
        version,
        prop::collection::vec(field, 0..72),
        endings,
        prop::collection::vec(any::<u8>(), 0..32),
    )
        .prop_map(|(method, path, version, fields, eol, tail)| {
            let mut head = format!("{method} {path} {version}{eol}").into_bytes();
            for (name, value) in fields {
                head.extend_from_slice(name.as_bytes());
                head.extend_from_slice(b": ");
                head.extend_from_slice(value.as_bytes());
                head.extend_from_slice(eol.as_bytes());
            }
            head.extend_from_slice(eol.as_bytes());
            head.extend_from_slice(&tail);
            head
        })
}

/// The checks that hold for any bytes given to `parse_head`.
fn check_head(buf: &[u8]) -> Result<(), TestCaseError> {
    let parsed = http::parse_head(buf);
    match &parsed {
        HeadParse::Complete { head_len, request } => {
            prop_assert!(
                *head_len <= HEAD_BYTES_MAX,
                "head_len {head_len} over the limit"
            );
            prop_assert!(*head_len <= buf.len());
            prop_assert!(buf[..*head_len].ends_with(b"\n"));
            for context in CONTEXTS {
                let route = http::route(request, context);
                if let Route::ClientUpgrade { response } | Route::FederationUpgrade { response } =
                    &route
                {
                    prop_assert_eq!(request.method.as_str(), "GET");
                    prop_assert!(request.is_upgrade && !context.draining);
                    prop_assert_eq!(request.websocket_version.as_deref(), Some("13"));
                    prop_assert!(response.starts_with(b"HTTP/1.1 101 "));
                    prop_assert!(response.ends_with(b"\r\n\r\n"));
                }
                if matches!(route, Route::FederationUpgrade { .. }) {
                    prop_assert!(context.federation_enabled);
                    prop_assert_eq!(request.path.as_str(), "/federation");
                }
                if let Route::Health { head_only, .. } = route {
                    prop_assert_eq!(head_only, request.method == "HEAD");
                }
            }
            // Bytes after a complete head do not change it.
            let mut longer = buf.to_vec();
            longer.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n\xff");
            prop_assert_eq!(&http::parse_head(&longer), &parsed);
        }
        HeadParse::Partial => prop_assert!(buf.len() <= HEAD_BYTES_MAX),
        HeadParse::TooLarge | HeadParse::Bad => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn http_head_arbitrary_bytes(buf in prop::collection::vec(any::<u8>(), 0..10_000)) {
        if out_of_time() { return Ok(()); }
        check_head(&buf)?;
    }

    #[test]
    fn http_head_mutated_requests(
        head in request_head(),
        mutations in prop::collection::vec(mutation(), 0..6),
    ) {
        if out_of_time() { return Ok(()); }
        let mut buf = head;
        apply(&mut buf, &mutations);
        check_head(&buf)?;
    }

    #[test]
    fn http_head_over_limit_is_never_complete(
        filler in 0usize..2_000,
        padding in "[a-zA-Z0-9]{1,64}",
        complete_tail in any::<bool>(),
    ) {
        if out_of_time() { return Ok(()); }
        let mut head = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n".to_vec();
        let mut i = 0;
        // Long header lines, then one more byte than the limit before the blank line.
        while head.len() < HEAD_BYTES_MAX + 1 + filler {
            head.extend_from_slice(format!("X-Pad-{i}: {padding}\r\n").as_bytes());
            i += 1;
        }
        if complete_tail {
            head.extend_from_slice(b"\r\n");
        }
        let parsed = http::parse_head(&head);
        prop_assert!(
            !matches!(parsed, HeadParse::Complete { .. }),
            "a {}-byte head parsed as complete", head.len()
        );
    }
}

// ---- WebSocket frame reader --------------------------------------------------------

/// Every step after the first `NeedMore` following a `feed`, and the remainder.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    steps: Vec<Step>,
    remainder: Option<Vec<u8>>,
}

fn is_end(step: &Step, continuous: bool) -> bool {
    match step {
        Step::Message { .. } => !continuous,
        Step::PeerClose { .. } | Step::Fail { .. } => true,
        Step::NeedMore | Step::Write(_) => false,
    }
}

/// Feeds `pieces` one by one, polling after each until `NeedMore` or an end. Steps
/// other than `NeedMore` are recorded, and bounds are checked on the way.
fn drive(pieces: &[&[u8]], max: usize, continuous: bool) -> Result<Run, TestCaseError> {
    let mut reader = if continuous {
        FirstMessageReader::continuous(max)
    } else {
        FirstMessageReader::new(max)
    };
    let largest_piece = pieces.iter().map(|p| p.len()).max().unwrap_or(0);
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    let mut steps = Vec::new();
    let mut fed = 0;
    let mut pieces_left = pieces.iter();
    'feeding: for piece in pieces_left.by_ref() {
        reader.feed(piece);
        fed += piece.len();
        // Each poll consumes at least one frame, so this terminates; the bound guards it.
        for _ in 0..=fed + 1 {
            let step = reader.poll();
            match &step {
                Step::NeedMore => continue 'feeding,
                Step::Write(pong) => prop_assert!(pong.len() <= 2 + 125),
                Step::Message {
                    payload, consumed, ..
                } => {
                    prop_assert!(
                        payload.len() <= max,
                        "payload {} > max {max}",
                        payload.len()
                    );
                    prop_assert!(*consumed <= fed);
                    if pieces.len() > 1 {
                        // The documented bound for a chunked caller is `max + 139 + c`
                        // bytes held; a vector grown by doubling may carry up to as
                        // much again in spare capacity.
                        let bound = max.saturating_add(139 + largest_piece).saturating_mul(2);
                        prop_assert!(
                            payload.capacity() <= bound,
                            "payload capacity {} > {bound}",
                            payload.capacity()
                        );
                    }
                }
                Step::PeerClose { .. } | Step::Fail { .. } => {}
            }
            let end = is_end(&step, continuous);
            steps.push(step);
            if end {
                break 'feeding;
            }
        }
        prop_assert!(false, "poll never returned NeedMore");
    }
    let remainder = match steps.last() {
        Some(Step::Message { consumed, .. }) if !continuous => {
            let consumed = *consumed;
            for piece in pieces_left {
                reader.feed(piece);
            }
            let remainder = reader.into_remainder();
            prop_assert_eq!(consumed + remainder.len(), total);
            Some(remainder)
        }
        Some(Step::PeerClose { .. } | Step::Fail { .. }) => {
            // Polling again repeats the end.
            let again = reader.poll();
            prop_assert_eq!(Some(&again), steps.last());
            None
        }
        _ => None,
    };
    Ok(Run { steps, remainder })
}

/// A frame to encode: `(fin, opcode, payload)`, plus how the length is written.
#[derive(Debug, Clone)]
struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
    mask: [u8; 4],
}

fn encode(frame: &Frame, out: &mut Vec<u8>) {
    out.push(u8::from(frame.fin) << 7 | frame.opcode);
    let len = frame.payload.len();
    // The minimal form, which RFC 6455 §5.2 requires (a longer one fails: below).
    let form = if len > 0xFFFF {
        2
    } else if len > 125 {
        1
    } else {
        0
    };
    match form {
        0 => out.push(0x80 | len as u8),
        1 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&frame.mask);
    out.extend(
        frame
            .payload
            .iter()
            .enumerate()
            .map(|(i, byte)| byte ^ frame.mask[i % 4]),
    );
}

/// One item of a valid client stream: a data message in fragments, or a control frame.
#[derive(Debug, Clone)]
enum Item {
    Message {
        binary: bool,
        payload: Vec<u8>,
        cuts: Vec<usize>,
        /// Ping/Pong payloads sent between fragments.
        interleaved: Vec<(bool, Vec<u8>)>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

fn item() -> impl Strategy<Value = Item> {
    let control = || prop::collection::vec(any::<u8>(), 0..=125);
    let text = "\\PC{0,80}".prop_map(String::into_bytes);
    let bytes = prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..200),
        1 => prop::collection::vec(any::<u8>(), 200..1_200),
    ];
    prop_oneof![
        6 => (
            any::<bool>(),
            bytes,
            text,
            prop::collection::vec(any::<usize>(), 0..4),
            prop::collection::vec((any::<bool>(), control()), 0..3),
        )
            .prop_map(|(binary, bytes, text, cuts, interleaved)| Item::Message {
                binary,
                payload: if binary { bytes } else { text },
                cuts,
                interleaved,
            }),
        2 => control().prop_map(Item::Ping),
        1 => control().prop_map(Item::Pong),
        1 => prop::option::of((
            prop::sample::select(vec![1000u16, 1001, 1003, 1008, 1011, 3000, 4999]),
            "\\PC{0,30}"
        ))
        .prop_map(Item::Close),
    ]
}

/// Encodes the items, returning the bytes and the steps a reader should give.
fn encode_items(items: &[Item], masks: &[[u8; 4]]) -> (Vec<u8>, Vec<Step>) {
    let mut out = Vec::new();
    let mut expected = Vec::new();
    let mut n = 0;
    let mut next = |fin, opcode, payload: Vec<u8>, out: &mut Vec<u8>| {
        let frame = Frame {
            fin,
            opcode,
            payload,
            mask: masks[n % masks.len()],
        };
        n += 1;
        encode(&frame, out);
    };
    for item in items {
        match item {
            Item::Message {
                binary,
                payload,
                cuts,
                interleaved,
            } => {
                let pieces = chunks(payload, cuts);
                let pieces = if pieces.is_empty() {
                    vec![&payload[..0]]
                } else {
                    pieces
                };
                let mut controls = interleaved.iter();
                for (i, piece) in pieces.iter().enumerate() {
                    let opcode = match (i, binary) {
                        (0, true) => 0x2,
                        (0, false) => 0x1,
                        _ => 0x0,
                    };
                    let last = i + 1 == pieces.len();
                    next(last, opcode, piece.to_vec(), &mut out);
                    if !last && let Some((ping, body)) = controls.next() {
                        next(true, if *ping { 0x9 } else { 0xA }, body.clone(), &mut out);
                        if *ping {
                            expected.push(Step::Write(pong_of(body)));
                        }
                    }
                }
                expected.push(Step::Message {
                    binary: *binary,
                    payload: payload.clone(),
                    consumed: out.len(),
                });
            }
            Item::Ping(body) => {
                next(true, 0x9, body.clone(), &mut out);
                expected.push(Step::Write(pong_of(body)));
            }
            Item::Pong(body) => next(true, 0xA, body.clone(), &mut out),
            Item::Close(close) => {
                let (body, code) = match close {
                    None => (Vec::new(), 1000),
                    Some((code, reason)) => {
                        let mut body = code.to_be_bytes().to_vec();
                        body.extend_from_slice(reason.as_bytes());
                        body.truncate(125);
                        let valid = std::str::from_utf8(&body[2..]).is_ok();
                        // A reason cut inside a character is not valid UTF-8.
                        if !valid {
                            body.truncate(2);
                        }
                        (body, *code)
                    }
                };
                next(true, 0x8, body, &mut out);
                expected.push(Step::PeerClose { code });
                break;
            }
        }
    }
    (out, expected)
}

/// The unmasked final Pong the reader writes for a Ping with `body`.
fn pong_of(body: &[u8]) -> Vec<u8> {
    let mut pong = vec![0x8A, body.len() as u8];
    pong.extend_from_slice(body);
    pong
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn wsframe_arbitrary_bytes_whole_and_chunked(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..4_000),
            // Mostly masked final frames with small lengths, so parsing gets further.
            prop::collection::vec(
                prop_oneof![Just(0x81u8), Just(0x82), Just(0x80), Just(0x89), Just(0x88),
                    Just(0x8A), Just(0x01), Just(0x02), any::<u8>()],
                0..400,
            ),
        ],
        cuts in prop::collection::vec(any::<usize>(), 0..40),
        max in prop_oneof![0usize..64, 64usize..5_000, Just(usize::MAX)],
        continuous in any::<bool>(),
    ) {
        if out_of_time() { return Ok(()); }
        let whole = drive(&[&bytes], max, continuous)?;
        let chunked = drive(&chunks(&bytes, &cuts), max, continuous)?;
        prop_assert_eq!(whole, chunked);
    }

    #[test]
    fn wsframe_valid_streams_chunking_invariant(
        items in prop::collection::vec(item(), 1..8),
        masks in prop::collection::vec(any::<[u8; 4]>(), 1..4),
        cuts in prop::collection::vec(any::<usize>(), 0..60),
        tight in any::<bool>(),
        trailing in prop::collection::vec(any::<u8>(), 0..20),
    ) {
        if out_of_time() { return Ok(()); }
        let (mut stream, expected) = encode_items(&items, &masks);
        // The length walk of federation links passes every valid stream, in any chunks.
        let mut check = LengthCheck::new();
        for piece in chunks(&stream, &cuts) {
            prop_assert_eq!(check.feed(piece), Ok(()));
        }
        stream.extend_from_slice(&trailing);
        let largest = expected
            .iter()
            .filter_map(|step| match step {
                Step::Message { payload, .. } => Some(payload.len()),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        // `tight`: the limit is exactly the largest message, which must still pass.
        // The limit bounds every frame, control frames included, hence at least 125.
        let max = if tight { largest.max(125) } else { 1 << 20 };
        let pieces = chunks(&stream, &cuts);
        let whole = drive(&[&stream], max, true)?;
        let chunked = drive(&pieces, max, true)?;
        prop_assert_eq!(&whole, &chunked);
        // The whole stream decodes to the model (a trailing partial frame adds nothing,
        // or a failure after the expected steps).
        prop_assert!(whole.steps.len() >= expected.len(), "{:?} vs {:?}", whole.steps, expected);
        prop_assert_eq!(&whole.steps[..expected.len()], &expected[..]);

        // A first-message reader stops at the first message with the same result.
        let first_whole = drive(&[&stream], max, false)?;
        let first_chunked = drive(&pieces, max, false)?;
        prop_assert_eq!(&first_whole, &first_chunked);
        if let Some(index) = expected.iter().position(|s| matches!(s, Step::Message { .. })) {
            prop_assert_eq!(&first_whole.steps[..], &expected[..=index]);
            if let Some(Step::Message { consumed, .. }) = expected.get(index) {
                prop_assert_eq!(first_whole.remainder.as_deref(), Some(&stream[*consumed..]));
            }
        }
    }

    /// A valid stream with one data frame whose length is written in a longer form
    /// than needed (RFC 6455 §5.2): the session reader fails with 1002 at that frame
    /// and not before, and the federation length walk stops at its header.
    #[test]
    fn wsframe_non_minimal_length_fails_at_its_frame(
        items in prop::collection::vec(item(), 0..5),
        masks in prop::collection::vec(any::<[u8; 4]>(), 1..4),
        len in prop_oneof![0usize..126, 126usize..70_000],
        long_form in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..60),
    ) {
        if out_of_time() { return Ok(()); }
        let (mut stream, mut expected) = encode_items(&items, &masks);
        if matches!(expected.last(), Some(Step::PeerClose { .. })) {
            return Ok(());
        }
        let bad_at = stream.len();
        // 0..126 bytes in the 16- or 64-bit form; 126..65536 in the 64-bit form.
        let extended = if len > 0xFFFF || len >= 126 || long_form { 8 } else { 2 };
        if len > 0xFFFF {
            return Ok(());
        }
        stream.push(0x82);
        if extended == 2 {
            stream.push(0x80 | 126);
            stream.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            stream.push(0x80 | 127);
            stream.extend_from_slice(&(len as u64).to_be_bytes());
        }
        stream.extend_from_slice(&[1, 2, 3, 4]);
        stream.extend(std::iter::repeat_n(0u8, len));
        expected.push(Step::Fail { code: 1002, reason: "protocol error" });
        let run = drive(&chunks(&stream, &cuts), 1 << 20, true)?;
        prop_assert_eq!(&run.steps[..], &expected[..]);
        // The walk fails in the chunk where the bad header ends, passing the bytes of
        // that chunk before the header (none if the header began in an earlier one).
        let header_end = bad_at + 2 + extended + 4;
        let mut check = LengthCheck::new();
        let mut walked = 0;
        let mut failed = false;
        for piece in chunks(&stream, &cuts) {
            let result = check.feed(piece);
            if walked + piece.len() < header_end {
                prop_assert_eq!(result, Ok(()));
            } else {
                prop_assert_eq!(result.map_err(|v| v.pass), Err(bad_at.saturating_sub(walked)));
                failed = true;
                break;
            }
            walked += piece.len();
        }
        prop_assert!(failed);
    }
}

// ---- frame prefix, envelope, Handshake and request payloads ----------------------

const EXAMPLES: &[&str] = &[
    r#"{"version":1,"message_id":"m-b-1","timestamp":1767225600,"payload":{"type":"Handshake","client_id":"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c","device_id":"e22f9a018051dff57acb7463844564c7ace1e00fd315972863c9bcf41a09ccec","suppress_presence":false}}"#,
    r#"{"version":1,"message_id":"m-a-1","timestamp":1767225600,"payload":{"type":"Handshake","client_id":"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a","identity_public_key":"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a","nonce":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f","signature":"ba60e1debfee7a5fa58161f2224e26671a39ed105deefae3adc97603c469bae8f20690af899d5bb9f3c40d01ed842cb6d4e066bebd899862100c485cc31f320a","timestamp":1767225600}}"#,
    r#"{"version":1,"message_id":"48ff506c-5ee7-412d-95c9-7729ca758a49","timestamp":1767225600,"payload":{"type":"EncryptedUpdate","recipient_id":"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c","ciphertext":[1,2,3]}}"#,
    r#"{"version":1,"message_id":"b1d4c0a2-2f7e-4c55-9b3e-0c6a5d4e3f21","timestamp":1767225661,"payload":{"type":"Acknowledgment","message_id":"8f8b0be7-b5e1-4fd5-b45b-2a6939393c59","status":"ReceivedByRecipient"}}"#,
    r#"{"version":1,"message_id":"2a7c9e14-5b3d-4f60-8a21-c4d3e2f1a0b9","timestamp":1767225600,"payload":{"type":"DeviceSyncMessage","identity_id":"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c","target_device_id":"6b8550e905f742f37404fb8317caca94ffecb000c0a96c5c040fe85e0705cfae","sender_device_id":"e22f9a018051dff57acb7463844564c7ace1e00fd315972863c9bcf41a09ccec","encrypted_payload":[9,8,7],"version":12}}"#,
    r#"{"version":1,"message_id":"c3d2e1f0-a9b8-4c7d-9e6f-5a4b3c2d1e0f","timestamp":1767225701,"payload":{"type":"DeviceSyncAck","message_id":"35618a1a-23c5-4583-8bf9-508015ad6889","synced_version":12}}"#,
    r#"{"version":1,"message_id":"7d6c5b4a-3e2f-4a1b-8c9d-0e1f2a3b4c5d","timestamp":1767225600,"payload":{"type":"RecoveryProofStore","key_hash":"4ba705c25362ebd6b2ade2c57108919a1d88a537dd7d0b698f6f412b43df50b5","proof_data":[5,6,7]}}"#,
    r#"{"version":1,"message_id":"9e8d7c6b-5a4f-4e3d-a2c1-b0a9f8e7d6c5","timestamp":1767225600,"payload":{"type":"RecoveryProofQuery","key_hashes":["4ba705c25362ebd6b2ade2c57108919a1d88a537dd7d0b698f6f412b43df50b5"]}}"#,
    r#"{"version":1,"message_id":"1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9","timestamp":1767225600,"payload":{"type":"PurgeRequest","include_device_sync":true,"include_recovery_proofs":true,"recovery_key_hash":"4ba705c25362ebd6b2ade2c57108919a1d88a537dd7d0b698f6f412b43df50b5"}}"#,
    r#"{"version":1,"message_id":"6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d","timestamp":1767225600,"payload":{"type":"AccountRevoked","sender_id":"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a","recipient_id":"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c","timestamp":1767225600,"signature":[17,34]}}"#,
    r#"{"version":1,"message_id":"1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9","timestamp":1767225600,"payload":{"type":"PurgeResponse","blobs_deleted":3,"device_sync_deleted":1,"recovery_proofs_deleted":1}}"#,
];

const PAYLOAD_TYPES: &[&str] = &[
    "Handshake",
    "EncryptedUpdate",
    "Acknowledgment",
    "DeviceSyncMessage",
    "DeviceSyncAck",
    "RecoveryProofStore",
    "RecoveryProofQuery",
    "PurgeRequest",
    "AccountRevoked",
    "HandshakeAck",
    "PurgeResponse",
    "Error",
    "encryptedupdate",
    "",
];

/// The binary message for `json`: exact prefix, then the text.
fn frame(json: &[u8]) -> Vec<u8> {
    let mut message = (json.len() as u32).to_be_bytes().to_vec();
    message.extend_from_slice(json);
    message
}

/// Any JSON value, small, with the edge cases of the field types.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![0u64, 1, 2, 255, 256, u64::MAX]).prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::String),
        "[0-9a-fA-F]{62,66}".prop_map(Value::String),
        prop::sample::select(PAYLOAD_TYPES.to_vec()).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,12}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// One edit of an envelope or its payload.
#[derive(Debug, Clone)]
enum JsonEdit {
    Remove(usize),
    Replace(usize, Value),
    Add(String, Value),
    SetType(&'static str),
}

/// Member names the client edits add, besides random ones.
const MEMBERS: &[&str] = &[
    "version",
    "message_id",
    "timestamp",
    "payload",
    "type",
    "recipient_id",
    "ciphertext",
    "client_id",
    "status",
    "key_hashes",
    "signature",
];

/// An edit that adds one of `members` (or a random name) and sets one of `types`.
fn json_edit(
    members: &'static [&'static str],
    types: &'static [&'static str],
) -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        any::<usize>().prop_map(JsonEdit::Remove),
        (any::<usize>(), json_value()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        (
            prop_oneof![
                prop::sample::select(members.to_vec()).prop_map(str::to_owned),
                "[a-z_]{1,10}",
            ],
            json_value()
        )
            .prop_map(|(k, v)| JsonEdit::Add(k, v)),
        prop::sample::select(types.to_vec()).prop_map(JsonEdit::SetType),
    ]
}

fn edit_object(object: &mut Map<String, Value>, edit: &JsonEdit) {
    let key_at = |object: &Map<String, Value>, i: usize| {
        (!object.is_empty()).then(|| object.keys().nth(i % object.len()).cloned())?
    };
    match edit {
        JsonEdit::Remove(i) => {
            if let Some(key) = key_at(object, *i) {
                object.remove(&key);
            }
        }
        JsonEdit::Replace(i, value) => {
            if let Some(key) = key_at(object, *i) {
                object.insert(key, value.clone());
            }
        }
        JsonEdit::Add(key, value) => {
            object.insert(key.clone(), value.clone());
        }
        JsonEdit::SetType(kind) => {
            object.insert("type".to_owned(), Value::from(*kind));
        }
    }
}

/// Applies `envelope_edits` to `example`, `payload_edits` to its payload, and checks
/// the result; then garbles its text with `text_mutations` and checks it again.
fn check_edited(
    example: &str,
    envelope_edits: &[JsonEdit],
    payload_edits: &[JsonEdit],
    text_mutations: &[Mutation],
    check: fn(&[u8]) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let mut envelope: Value = serde_json::from_str(example).expect("example parses");
    let object = envelope.as_object_mut().expect("example is an object");
    for edit in envelope_edits {
        edit_object(object, edit);
    }
    if let Some(Value::Object(payload)) = object.get_mut("payload") {
        for edit in payload_edits {
            edit_object(payload, edit);
        }
    }
    let mut text = serde_json::to_vec(&envelope).expect("serializes");
    check(&frame(&text))?;
    apply(&mut text, text_mutations);
    check(&frame(&text))
}

/// Runs every decoder on a message; none may panic, and each result is consistent.
fn check_message(message: &[u8]) -> Result<(), TestCaseError> {
    let prefix_ok = message.len() >= 4
        && u32::from_be_bytes([message[0], message[1], message[2], message[3]]) as usize
            == message.len() - 4;
    let _ = decode_handshake(message);
    match decode_envelope(message) {
        Ok(envelope) => {
            prop_assert!(prefix_ok, "an envelope decoded behind a wrong prefix");
            if let Ok(request) = decode_request(&envelope) {
                let _ = validate(request);
            }
        }
        Err(malformed) => {
            if !prefix_ok {
                prop_assert_eq!(malformed.message_id, None);
            }
        }
    }
    Ok(())
}

/// A 64-hex id in mixed case.
fn hex_id() -> impl Strategy<Value = String> {
    "[0-9a-fA-F]{64}"
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn protocol_arbitrary_bytes(
        body in prop::collection::vec(any::<u8>(), 0..600),
        exact_prefix in any::<bool>(),
    ) {
        if out_of_time() { return Ok(()); }
        check_message(&body)?;
        if exact_prefix {
            check_message(&frame(&body))?;
        }
    }

    #[test]
    fn protocol_wrong_prefix_is_refused(
        json_index in any::<prop::sample::Index>(),
        prefix in any::<u32>(),
        short in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        if out_of_time() { return Ok(()); }
        let json = json_index.get(EXAMPLES).as_bytes();
        prop_assume!(prefix as usize != json.len());
        let mut message = prefix.to_be_bytes().to_vec();
        message.extend_from_slice(json);
        prop_assert!(decode_envelope(&message).is_err());
        prop_assert!(decode_handshake(&message).is_err());
        prop_assert!(decode_envelope(&short).is_err());
        // Off by one either way around the right length.
        let mut longer = frame(json);
        longer.push(b' ');
        prop_assert!(decode_envelope(&longer).is_err());
        let right = frame(json);
        prop_assert!(decode_envelope(&right[..right.len() - 1]).is_err());
    }

    #[test]
    fn protocol_mutated_envelopes(
        json_index in any::<prop::sample::Index>(),
        envelope_edits in prop::collection::vec(json_edit(MEMBERS, PAYLOAD_TYPES), 0..3),
        payload_edits in prop::collection::vec(json_edit(MEMBERS, PAYLOAD_TYPES), 0..5),
        text_mutations in prop::collection::vec(mutation(), 0..3),
    ) {
        if out_of_time() { return Ok(()); }
        check_edited(
            json_index.get::<&str>(EXAMPLES),
            &envelope_edits,
            &payload_edits,
            &text_mutations,
            check_message,
        )?;
    }

    #[test]
    fn protocol_encrypted_update_round_trips(
        recipient in hex_id(),
        ciphertext in prop::collection::vec(any::<u8>(), 0..512),
        message_id in "\\PC{0,40}",
        timestamp in any::<u64>(),
        extra in prop::collection::btree_map("[a-z_]{1,10}", json_value(), 0..3),
    ) {
        if out_of_time() { return Ok(()); }
        let mut payload = Map::new();
        for (key, value) in extra {
            payload.insert(format!("x_{key}"), value);
        }
        payload.insert("type".to_owned(), json!("EncryptedUpdate"));
        payload.insert("recipient_id".to_owned(), json!(recipient));
        payload.insert("ciphertext".to_owned(), json!(ciphertext));
        let envelope = json!({
            "version": 1,
            "message_id": message_id,
            "timestamp": timestamp,
            "payload": payload,
        });
        let message = frame(&serde_json::to_vec(&envelope).expect("serializes"));
        let decoded = decode_envelope(&message).expect("valid envelope decodes");
        prop_assert_eq!(decoded.version, 1);
        prop_assert_eq!(&decoded.message_id, &message_id);
        prop_assert_eq!(decoded.timestamp, timestamp);
        prop_assert_eq!(decoded.payload_type.as_str(), "EncryptedUpdate");
        let request = decode_request(&decoded).expect("valid request shape");
        match validate(request) {
            Ok(ValidRequest::EncryptedUpdate { recipient_id, ciphertext: out }) => {
                prop_assert_eq!(recipient_id.to_hex(), recipient.to_ascii_lowercase());
                prop_assert_eq!(out, ciphertext);
            }
            other => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    #[test]
    fn protocol_handshake_round_trips(
        client in hex_id(),
        device in prop::option::of(hex_id()),
        suppress in prop::option::of(any::<bool>()),
    ) {
        if out_of_time() { return Ok(()); }
        let mut payload = Map::new();
        payload.insert("type".to_owned(), json!("Handshake"));
        payload.insert("client_id".to_owned(), json!(client));
        if let Some(device) = &device {
            payload.insert("device_id".to_owned(), json!(device));
        }
        if let Some(suppress) = suppress {
            payload.insert("suppress_presence".to_owned(), json!(suppress));
        }
        let envelope = json!({"version": 1, "message_id": "m", "timestamp": 0, "payload": payload});
        let message = frame(&serde_json::to_vec(&envelope).expect("serializes"));
        let handshake = decode_handshake(&message).expect("valid handshake decodes");
        prop_assert_eq!(handshake.client_id.to_hex(), client.to_ascii_lowercase());
        prop_assert_eq!(
            handshake.device_id.map(|id| id.to_hex()),
            device.map(|d| d.to_ascii_lowercase())
        );
        prop_assert_eq!(handshake.suppress_presence, suppress.unwrap_or(false));
        prop_assert!(handshake.auth.is_none());
    }
}

// ---- federation messages ------------------------------------------------------------

/// The §11.2 and §15.2 types (the first `FED_KNOWN_TYPES`), then some that are not.
const FED_PAYLOAD_TYPES: &[&str] = &[
    "PeerHandshake",
    "PeerHandshakeAck",
    "OffloadBlob",
    "OffloadAck",
    "CapacityReport",
    "DrainNotice",
    "DrainAck",
    "OffloadRequest",
    "PeerAdvertisement",
    "PeerAdvertisementAck",
    "Handshake",
    "drainack",
    "",
];
const FED_KNOWN_TYPES: usize = 10;

fn is_fed_type(kind: &str) -> bool {
    FED_PAYLOAD_TYPES[..FED_KNOWN_TYPES].contains(&kind)
}

/// The envelope members and every field of §11.2.
const FED_MEMBERS: &[&str] = &[
    "version",
    "message_id",
    "timestamp",
    "payload",
    "type",
    "relay_id",
    "listen_addr",
    "accepted",
    "capacity_used_bytes",
    "capacity_max_bytes",
    "blob_id",
    "routing_id",
    "data",
    "created_at_secs",
    "integrity_hash",
    "hop_count",
    "reason",
    "used_bytes",
    "max_bytes",
    "blob_count",
    "drain_timeout_secs",
    "count",
    "total_bytes",
    "peers",
    "url",
    "capacity_pct",
    "last_seen_secs",
    "new_peers_count",
];

/// A value for a federation field: any JSON, or one near the fields' types and ranges.
fn fed_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => json_value(),
        1 => prop::collection::vec(0u64..=256, 0..64).prop_map(Value::from),
        1 => (0u64..=300).prop_map(Value::from),
        1 => prop::sample::select(FED_PAYLOAD_TYPES.to_vec()).prop_map(Value::from),
    ]
}

/// A payload object of any federation type with any members.
fn fed_payload() -> impl Strategy<Value = Map<String, Value>> {
    let name = prop_oneof![
        4 => prop::sample::select(FED_MEMBERS.to_vec()).prop_map(str::to_owned),
        1 => "[a-z_]{0,10}",
    ];
    (
        prop::option::of(prop::sample::select(FED_PAYLOAD_TYPES.to_vec())),
        prop::collection::vec((name, fed_value()), 0..10),
    )
        .prop_map(|(kind, members)| {
            let mut payload: Map<String, Value> = members.into_iter().collect();
            if let Some(kind) = kind {
                payload.insert("type".to_owned(), Value::from(kind));
            }
            payload
        })
}

/// Any string, control characters and quotes included.
fn fed_text() -> impl Strategy<Value = String> {
    prop_oneof!["\\PC{0,40}", "[\\x00-\\x7f]{0,20}", Just(String::new())]
}

/// Any federation message.
fn fed_message() -> impl Strategy<Value = FedMessage> {
    let data = prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(any::<u8>(), 64..2_000),
    ];
    prop_oneof![
        (fed_text(), any::<u8>(), fed_text()).prop_map(|(relay_id, version, listen_addr)| {
            FedMessage::PeerHandshake {
                relay_id,
                version,
                listen_addr,
            }
        }),
        (
            fed_text(),
            any::<u8>(),
            any::<bool>(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(relay_id, version, accepted, used, max)| {
                FedMessage::PeerHandshakeAck {
                    relay_id,
                    version,
                    accepted,
                    capacity_used_bytes: used,
                    capacity_max_bytes: max,
                }
            }),
        (
            fed_text(),
            fed_text(),
            data,
            any::<u64>(),
            fed_text(),
            any::<u8>()
        )
            .prop_map(
                |(blob_id, routing_id, data, created_at_secs, hash, hop_count)| {
                    FedMessage::OffloadBlob {
                        blob_id,
                        routing_id,
                        data,
                        created_at_secs,
                        integrity_hash: hash,
                        hop_count,
                    }
                }
            ),
        (fed_text(), any::<bool>(), prop::option::of(fed_text())).prop_map(
            |(blob_id, accepted, reason)| FedMessage::OffloadAck {
                blob_id,
                accepted,
                reason,
            }
        ),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(used, max, count)| {
            FedMessage::CapacityReport {
                used_bytes: used,
                max_bytes: max,
                blob_count: count,
            }
        }),
        any::<u64>().prop_map(|secs| FedMessage::DrainNotice {
            drain_timeout_secs: secs
        }),
        Just(FedMessage::DrainAck),
        (any::<u64>(), any::<u64>())
            .prop_map(|(count, total_bytes)| { FedMessage::OffloadRequest { count, total_bytes } }),
        prop::collection::vec((fed_text(), fed_text(), any::<u8>(), any::<u64>()), 0..4).prop_map(
            |entries| FedMessage::PeerAdvertisement {
                peers: entries
                    .into_iter()
                    .map(
                        |(relay_id, url, capacity_pct, last_seen_secs)| AdvertisedPeer {
                            relay_id,
                            url,
                            capacity_pct,
                            last_seen_secs,
                        }
                    )
                    .collect(),
            }
        ),
        any::<u64>().prop_map(|n| FedMessage::PeerAdvertisementAck { new_peers_count: n }),
    ]
}

/// Runs the federation decoder on a message: it may not panic, its reason agrees with
/// the client decoder on the same frame and envelope, and what it decodes re-encodes
/// to the same value.
fn check_fed_message(message: &[u8]) -> Result<(), TestCaseError> {
    let frame_ok = message.len() >= 4
        && u32::from_be_bytes([message[0], message[1], message[2], message[3]]) as usize
            == message.len() - 4
        && std::str::from_utf8(&message[4..]).is_ok();
    let decoded = fed::decode(message);
    let envelope = decode_envelope(message);
    match (&decoded, &envelope) {
        (Err(Ignored::MalformedFrame), Err(_)) => prop_assert!(!frame_ok),
        (Err(Ignored::BadEnvelope), Err(_)) => prop_assert!(frame_ok),
        (Err(Ignored::UnsupportedVersion), Ok(envelope)) => prop_assert_ne!(envelope.version, 1),
        (Err(Ignored::UnknownType), Ok(envelope)) => {
            prop_assert_eq!(envelope.version, 1);
            prop_assert!(!is_fed_type(&envelope.payload_type));
        }
        (Err(Ignored::BadPayload), Ok(envelope)) => {
            prop_assert_eq!(envelope.version, 1);
            prop_assert!(is_fed_type(&envelope.payload_type));
        }
        (Ok(value), Ok(envelope)) => {
            prop_assert_eq!(envelope.version, 1);
            prop_assert_eq!(value.type_name(), envelope.payload_type.as_str());
            prop_assert_eq!(
                &fed::decode(&fed::encode(value, envelope.timestamp)),
                &decoded
            );
        }
        (decoded, envelope) => {
            prop_assert!(
                false,
                "federation {decoded:?} but client envelope {envelope:?}"
            )
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn federation_arbitrary_bytes(
        body in prop::collection::vec(any::<u8>(), 0..600),
        exact_prefix in any::<bool>(),
    ) {
        if out_of_time() { return Ok(()); }
        check_fed_message(&body)?;
        if exact_prefix {
            check_fed_message(&frame(&body))?;
        }
    }

    #[test]
    fn federation_arbitrary_envelopes(
        version in prop_oneof![4 => Just(json!(1)), 1 => json_value()],
        message_id in prop_oneof![4 => "\\PC{0,40}".prop_map(Value::from), 1 => json_value()],
        timestamp in prop_oneof![4 => any::<u64>().prop_map(Value::from), 1 => json_value()],
        payload in fed_payload(),
        text_mutations in prop::collection::vec(mutation(), 0..3),
    ) {
        if out_of_time() { return Ok(()); }
        let envelope = json!({
            "version": version,
            "message_id": message_id,
            "timestamp": timestamp,
            "payload": payload,
        });
        let mut text = serde_json::to_vec(&envelope).expect("serializes");
        check_fed_message(&frame(&text))?;
        apply(&mut text, &text_mutations);
        check_fed_message(&frame(&text))?;
    }

    #[test]
    fn federation_mutated_examples(
        json_index in any::<prop::sample::Index>(),
        envelope_edits in prop::collection::vec(json_edit(FED_MEMBERS, FED_PAYLOAD_TYPES), 0..3),
        payload_edits in prop::collection::vec(json_edit(FED_MEMBERS, FED_PAYLOAD_TYPES), 0..5),
        text_mutations in prop::collection::vec(mutation(), 0..3),
    ) {
        if out_of_time() { return Ok(()); }
        check_edited(
            json_index.get::<&str>(&FED_EXAMPLES),
            &envelope_edits,
            &payload_edits,
            &text_mutations,
            check_fed_message,
        )?;
    }

    #[test]
    fn federation_round_trips(
        message in fed_message(),
        now in any::<u64>(),
        extra in prop::collection::btree_map("x_[a-z_]{0,10}", json_value(), 0..3),
    ) {
        if out_of_time() { return Ok(()); }
        let encoded = fed::encode(&message, now);
        prop_assert_eq!(fed::decode(&encoded), Ok(message.clone()));
        let envelope = decode_envelope(&encoded).expect("the client decoder reads it");
        prop_assert_eq!(envelope.version, 1);
        prop_assert_eq!(envelope.timestamp, now);
        prop_assert_eq!(envelope.payload_type.as_str(), message.type_name());
        // Members in another order (serde_json sorts them) and unknown members added
        // decode to the same value.
        let mut value: Value = serde_json::from_slice(&encoded[4..]).expect("JSON");
        let payload = value["payload"].as_object_mut().expect("object");
        payload.extend(extra);
        let reordered = frame(&serde_json::to_vec(&value).expect("serializes"));
        prop_assert_eq!(fed::decode(&reordered), Ok(message));
    }
}

// ---- configuration ------------------------------------------------------------------

const VARIABLES: &[&str] = &[
    "RELAY_BLOB_TTL_SECS",
    "RELAY_CLEANUP_INTERVAL",
    "RELAY_CPU_PIN",
    "RELAY_DATA_DIR",
    "RELAY_FEDERATION_CAPACITY_INTERVAL",
    "RELAY_FEDERATION_DRAIN_TIMEOUT",
    "RELAY_FEDERATION_ENABLED",
    "RELAY_FEDERATION_GOSSIP_ENABLED",
    "RELAY_FEDERATION_GOSSIP_INTERVAL",
    "RELAY_FEDERATION_MTLS_ADDR",
    "RELAY_FEDERATION_OFFLOAD_REFUSE",
    "RELAY_FEDERATION_OFFLOAD_THRESHOLD",
    "RELAY_FEDERATION_PEERS",
    "RELAY_FEDERATION_PEER_TIMEOUT",
    "RELAY_FEDERATION_PEER_TTL",
    "RELAY_FEDERATION_RELAY_ID",
    "RELAY_FEDERATION_TLS_CA",
    "RELAY_FEDERATION_TLS_CERT",
    "RELAY_FEDERATION_TLS_KEY",
    "RELAY_HANDSHAKE_TIMEOUT",
    "RELAY_IDLE_TIMEOUT",
    "RELAY_LISTEN_ADDR",
    "RELAY_MAX_BLOBS_PER_USER",
    "RELAY_MAX_CONNECTIONS",
    "RELAY_MAX_MESSAGE_SIZE",
    "RELAY_MAX_STORAGE_BYTES",
    "RELAY_MAX_STORAGE_PER_USER",
    "RELAY_METRICS_ADDR",
    "RELAY_METRICS_TOKEN",
    "RELAY_NOISE_STATIC_KEY",
    "RELAY_RATE_LIMIT",
    "RELAY_RECOVERY_RATE_LIMIT",
    "RELAY_REQUIRE_NOISE_ENCRYPTION",
    "RELAY_SHARDS",
    "RELAY_SQLITE_SYNCHRONOUS",
    "RELAY_STORAGE_BACKEND",
    "RELAY_TLS_VERIFIED",
];

fn config_value() -> impl Strategy<Value = String> {
    let word = prop::sample::select(vec![
        "",
        " ",
        "0",
        "1",
        "-1",
        "true",
        "false",
        "TRUE",
        "yes",
        "no",
        "on",
        "off",
        "sqlite",
        "memory",
        "normal",
        "full",
        "NaN",
        "inf",
        "-0",
        "0.5",
        "1.5",
        "1e3",
        "0x10",
        "18446744073709551615",
        "18446744073709551616",
        "4294967296",
        "127.0.0.1:8080",
        "[::1]:9090",
        "localhost:9090",
        "localhost:",
        "0.0.0.0:0",
        ":80",
        "ws://a/,ws://a",
        "wss://peer.example/, ,wss://peer.example",
        "/tmp",
        "\u{0}",
        "é",
    ]);
    prop_oneof![
        4 => word.clone().prop_map(str::to_owned),
        2 => (word, prop::sample::select(vec!["", " ", "\t", "\n", "\u{a0}"]))
            .prop_map(|(w, pad)| format!("{pad}{w}{pad}")),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| f.to_string()),
        2 => "\\PC{0,24}",
        1 => "[\\x00-\\x7f]{0,16}",
    ]
}

fn config_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(VARIABLES.to_vec()).prop_map(str::to_owned),
        1 => "RELAY_[A-Z_]{0,12}",
        1 => "[A-Za-z_]{0,10}",
    ]
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn config_from_arbitrary_vars(
        vars in prop::collection::vec((config_name(), config_value()), 0..12),
    ) {
        if out_of_time() { return Ok(()); }
        let result = Config::from_vars(vars.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        if let Err(error) = &result {
            prop_assert!(error.to_string().contains(&error.variable), "{error}");
            prop_assert!(
                VARIABLES.contains(&error.variable.as_str()),
                "error on unknown variable {}", error.variable
            );
        }
        // The outcome does not depend on the order of distinct names.
        let distinct: BTreeMap<&str, &str> =
            vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let forward = Config::from_vars(distinct.iter().map(|(n, v)| (*n, *v)));
        let backward = Config::from_vars(distinct.iter().rev().map(|(n, v)| (*n, *v)));
        prop_assert_eq!(format!("{forward:?}"), format!("{backward:?}"));
        prop_assert_eq!(format!("{forward:?}"), format!("{result:?}"));
    }
}

// ---- repeated member names (§3.3) ------------------------------------------------

/// The member names at the top level of a JSON object, unescaped, in order: an
/// independent reading (a hand-written scanner, not serde) that the decoders'
/// duplicate checks are compared with. `None` if the text is not an object whose
/// strings it can read.
fn member_names(json: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = json.chars().collect();
    let mut names = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    // At depth 1, a string is a name when it follows `{` or `,` (not a value).
    let mut expect_name = false;
    while i < chars.len() {
        match chars[i] {
            '{' => {
                depth += 1;
                expect_name = depth == 1;
                i += 1;
            }
            '[' => {
                depth += 1;
                i += 1;
            }
            '}' | ']' => {
                depth = depth.checked_sub(1)?;
                i += 1;
            }
            ',' => {
                expect_name = depth == 1;
                i += 1;
            }
            ':' => {
                expect_name = false;
                i += 1;
            }
            '"' => {
                let (text, next) = read_string(&chars, i + 1)?;
                if depth == 1 && expect_name {
                    names.push(text);
                }
                expect_name = false;
                i = next;
            }
            _ => i += 1,
        }
    }
    Some(names)
}

/// The unescaped text of a JSON string whose body starts at `start`, and the index
/// after its closing quote.
fn read_string(chars: &[char], start: usize) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut units: Vec<u16> = Vec::new();
    let mut i = start;
    loop {
        let c = *chars.get(i)?;
        if c != '\\' && !units.is_empty() {
            out.push_str(&String::from_utf16(&units).ok()?);
            units.clear();
        }
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => {
                let escaped = *chars.get(i + 1)?;
                i += 2;
                let simple = match escaped {
                    '"' => '"',
                    '\\' => '\\',
                    '/' => '/',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'u' => {
                        let hex: String = chars.get(i..i + 4)?.iter().collect();
                        units.push(u16::from_str_radix(&hex, 16).ok()?);
                        i += 4;
                        continue;
                    }
                    _ => return None,
                };
                if !units.is_empty() {
                    out.push_str(&String::from_utf16(&units).ok()?);
                    units.clear();
                }
                out.push(simple);
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
}

fn has_repeat(names: &[String]) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    !names.iter().all(|name| seen.insert(name))
}

/// Member names for the extras: unknown ones, the known ones, and escaped spellings
/// of some of them (as raw JSON string bodies).
const EXTRA_NAMES: &[&str] = &[
    "x",
    "\\u0078",
    "y",
    "sender_id",
    "sender\\u005fid",
    "type",
    "t\\u0079pe",
    "ciphertext",
    "recipient_id",
    "version",
    "message_id",
    "timestamp",
    "payload",
    "\\ud83d\\ude00",
    "\u{1F600}",
    "drain_timeout_secs",
];

fn extras() -> impl Strategy<Value = Vec<(usize, &'static str, Value)>> {
    prop::collection::vec(
        (
            any::<usize>(),
            prop::sample::select(EXTRA_NAMES.to_vec()),
            json_value(),
        ),
        0..4,
    )
}

/// `base` members (raw `"name":value` texts) with `extras` inserted at their
/// positions, as one object.
fn object_with(base: &[String], extras: &[(usize, &str, Value)]) -> String {
    let mut members = base.to_vec();
    for (at, name, value) in extras {
        let at = at % (members.len() + 1);
        members.insert(at, format!("\"{name}\":{value}"));
    }
    format!("{{{}}}", members.join(","))
}

proptest! {
    #![proptest_config(fuzz_config())]

    /// An EncryptedUpdate with extra members in the envelope and the payload: a
    /// repeated envelope name is malformed, a repeated payload `type` too, any other
    /// repeated payload name invalid_field, and otherwise the request decodes,
    /// exactly as the independent reading of the names predicts.
    #[test]
    fn protocol_repeated_members_match_an_independent_reading(
        envelope_extras in extras(),
        payload_extras in extras(),
        ciphertext in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        if out_of_time() { return Ok(()); }
        let recipient = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
        let payload = object_with(
            &[
                r#""type":"EncryptedUpdate""#.to_string(),
                format!(r#""recipient_id":"{recipient}""#),
                format!(r#""ciphertext":{}"#, json!(ciphertext)),
            ],
            &payload_extras,
        );
        let envelope = object_with(
            &[
                r#""version":1"#.to_string(),
                r#""message_id":"m""#.to_string(),
                r#""timestamp":1"#.to_string(),
                format!(r#""payload":{payload}"#),
            ],
            &envelope_extras,
        );
        let envelope_names = member_names(&envelope).expect("the scanner reads it");
        let payload_names = member_names(&payload).expect("the scanner reads it");
        let message = frame(envelope.as_bytes());
        let decoded = decode_envelope(&message);
        if has_repeat(&envelope_names) {
            prop_assert!(decoded.is_err(), "{}", envelope);
            return Ok(());
        }
        let type_repeated = payload_names.iter().filter(|n| *n == "type").count() > 1;
        if type_repeated {
            prop_assert!(decoded.is_err(), "{}", envelope);
            return Ok(());
        }
        let decoded = decoded.map_err(|e| TestCaseError::fail(format!("{e:?}: {envelope}")))?;
        let request = decode_request(&decoded);
        if has_repeat(&payload_names) {
            prop_assert_eq!(request, Err(ShapeError::InvalidField), "{}", envelope);
        } else {
            let expected = Request::EncryptedUpdate {
                recipient_id: recipient.to_owned(),
                ciphertext: ciphertext.clone(),
            };
            prop_assert_eq!(request, Ok(expected), "{}", envelope);
        }
    }

    /// The same for the federation codec: a repeated envelope name is a bad
    /// envelope, a repeated payload name a bad payload.
    #[test]
    fn federation_repeated_members_match_an_independent_reading(
        envelope_extras in extras(),
        payload_extras in extras(),
    ) {
        if out_of_time() { return Ok(()); }
        let payload = object_with(
            &[r#""type":"DrainNotice""#.to_string(), r#""drain_timeout_secs":7"#.to_string()],
            &payload_extras,
        );
        let envelope = object_with(
            &[
                r#""version":1"#.to_string(),
                r#""message_id":"m""#.to_string(),
                r#""timestamp":1"#.to_string(),
                format!(r#""payload":{payload}"#),
            ],
            &envelope_extras,
        );
        let envelope_names = member_names(&envelope).expect("the scanner reads it");
        let payload_names = member_names(&payload).expect("the scanner reads it");
        let decoded = fed::decode(&frame(envelope.as_bytes()));
        let type_repeated = payload_names.iter().filter(|n| *n == "type").count() > 1;
        let expected = if has_repeat(&envelope_names) || type_repeated {
            Err(Ignored::BadEnvelope)
        } else if has_repeat(&payload_names) {
            Err(Ignored::BadPayload)
        } else {
            Ok(FedMessage::DrainNotice { drain_timeout_secs: 7 })
        };
        prop_assert_eq!(decoded, expected, "{}", envelope);
    }
}

// ---- PROXY protocol header -------------------------------------------------------

const ALL_VERSIONS: [Versions; 3] = [Versions::V1, Versions::V2, Versions::Any];

/// A valid header of either version and the source it names.
fn proxy_header_and_source() -> impl Strategy<Value = (Vec<u8>, Option<std::net::IpAddr>)> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let v1 = prop_oneof![
        (any::<u32>(), any::<u32>(), any::<u16>(), any::<u16>()).prop_map(|(s, d, sp, dp)| {
            let (s, d) = (Ipv4Addr::from(s), Ipv4Addr::from(d));
            (
                format!("PROXY TCP4 {s} {d} {sp} {dp}\r\n").into_bytes(),
                Some(IpAddr::V4(s)),
            )
        }),
        (any::<u128>(), any::<u128>(), any::<u16>(), any::<u16>()).prop_map(|(s, d, sp, dp)| {
            let (s, d) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
            (
                format!("PROXY TCP6 {s} {d} {sp} {dp}\r\n").into_bytes(),
                Some(IpAddr::V6(s)),
            )
        }),
        "( [!-~]{1,20}){0,4}"
            .prop_map(|tail| { (format!("PROXY UNKNOWN{tail}\r\n").into_bytes(), None) }),
    ];
    let v2 = (
        0u8..2,
        0u8..4,
        0u8..3,
        prop::collection::vec(any::<u8>(), 216),
        prop::collection::vec(any::<u8>(), 0..400),
    )
        .prop_map(|(command, family, protocol, addresses, tlvs)| {
            let address_bytes = [0, 12, 36, 216][usize::from(family)];
            let addresses = &addresses[..address_bytes];
            let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            header.push(0x20 | command);
            header.push(family << 4 | protocol);
            header.extend_from_slice(&((address_bytes + tlvs.len()) as u16).to_be_bytes());
            header.extend_from_slice(addresses);
            header.extend_from_slice(&tlvs);
            let source = match (command, family) {
                (1, 1) => Some(IpAddr::from(<[u8; 4]>::try_from(&addresses[..4]).unwrap())),
                (1, 2) => Some(IpAddr::from(
                    <[u8; 16]>::try_from(&addresses[..16]).unwrap(),
                )),
                _ => None,
            };
            (header, source)
        });
    prop_oneof![v1, v2]
}

/// What holds for any bytes: no panic; a verdict on a prefix stands once more
/// bytes arrive (the reader parses each arrival's prefix, so it must not matter
/// where the segments end); no wait beyond the buffer or a v1 header's length.
fn check_proxy_prefixes(bytes: &[u8], versions: Versions) -> Result<(), TestCaseError> {
    let whole = proxy_header::parse(bytes, versions);
    for end in 0..bytes.len() {
        let prefix = proxy_header::parse(&bytes[..end], versions);
        match prefix {
            Ok(Parse::Incomplete) => {}
            Ok(Parse::Complete { .. }) | Err(_) => {
                prop_assert_eq!(prefix, whole, "after {} of {:?}", end, bytes);
            }
        }
    }
    if whole == Ok(Parse::Incomplete) {
        prop_assert!(bytes.len() < BUFFERED_MAX, "{:?}", bytes);
        if bytes.first() == Some(&b'P') {
            prop_assert!(bytes.len() < V1_LENGTH_MAX, "{:?}", bytes);
        }
    }
    if let Ok(Parse::Complete { length, .. }) = whole {
        prop_assert!(length <= 16 + 65_535);
        // The bytes a header needs seen are all its own.
        let needed = bytes.len().min(length);
        prop_assert_eq!(proxy_header::parse(&bytes[..needed], versions), whole);
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn proxy_header_arbitrary_bytes(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(|tail| {
                let mut bytes = b"PROXY ".to_vec();
                bytes.extend(tail);
                bytes
            }),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(|tail| {
                let mut bytes = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
                bytes.extend(tail);
                bytes
            }),
        ],
    ) {
        if out_of_time() { return Ok(()); }
        for versions in ALL_VERSIONS {
            check_proxy_prefixes(&bytes, versions)?;
        }
    }

    #[test]
    fn proxy_header_valid_and_mutated(
        (header, source) in proxy_header_and_source(),
        trailing in prop::collection::vec(any::<u8>(), 0..64),
        mutations in prop::collection::vec(mutation(), 0..4),
    ) {
        if out_of_time() { return Ok(()); }
        let mut bytes = header.clone();
        bytes.extend_from_slice(&trailing);
        let versions = if header[0] == b'P' { Versions::V1 } else { Versions::V2 };
        let expected = Ok(Parse::Complete { length: header.len(), source });
        prop_assert_eq!(proxy_header::parse(&bytes, versions), expected, "{:?}", bytes);
        prop_assert_eq!(proxy_header::parse(&bytes, Versions::Any), expected);
        let other = if versions == Versions::V1 { Versions::V2 } else { Versions::V1 };
        prop_assert!(proxy_header::parse(&bytes, other).is_err());
        check_proxy_prefixes(&bytes, versions)?;
        apply(&mut bytes, &mutations);
        for versions in ALL_VERSIONS {
            check_proxy_prefixes(&bytes, versions)?;
        }
    }
}

// ---- Noise transport (§15.1) -------------------------------------------------------

const NOISE_LIMIT: usize = 4096 + 4;

/// A client and the relay's channel after an opening.
fn noise_pair() -> (snow::TransportState, Channel) {
    static KEY: OnceLock<StaticKey> = OnceLock::new();
    let key = KEY.get_or_init(StaticKey::generate);
    let mut initiator = snow::Builder::new(NOISE_PATTERN.parse().unwrap())
        .remote_public_key(key.public())
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut message = [0u8; 64];
    let n = initiator.write_message(&[], &mut message).unwrap();
    let opening = [&NOISE_MAGIC[..], &message[..n]].concat();
    let (reply, channel) = noise_channel::respond(key, &opening, NOISE_LIMIT).unwrap();
    initiator.read_message(&reply[3..], &mut message).unwrap();
    (initiator.into_transport_mode().unwrap(), channel)
}

fn client_seal(client: &mut snow::TransportState, plaintext: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; plaintext.len() + 16];
    let n = client.write_message(plaintext, &mut out).unwrap();
    out.truncate(n);
    out
}

/// Frames of the stream, each a prefix and its content (within the limit).
fn noise_frames() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..NOISE_LIMIT - 4), 1..6).prop_map(
        |contents| {
            contents
                .into_iter()
                .map(|content| [&(content.len() as u32).to_be_bytes()[..], &content].concat())
                .collect()
        },
    )
}

proptest! {
    #![proptest_config(fuzz_config())]

    /// A message 1 of arbitrary bytes behind the magic never opens a session and
    /// never panics.
    #[test]
    fn noise_opening_of_arbitrary_bytes_fails(
        tail in prop::collection::vec(any::<u8>(), 0..200),
        magic in any::<bool>(),
    ) {
        if out_of_time() { return Ok(()); }
        let key = StaticKey::generate();
        let mut opening = if magic { NOISE_MAGIC.to_vec() } else { Vec::new() };
        opening.extend(tail);
        prop_assert!(noise_channel::respond(&key, &opening, NOISE_LIMIT).is_err());
    }

    /// However the stream of frames is cut into transport messages, the relay
    /// gets back exactly those frames; a tampered message is refused and leaves
    /// the frames before it intact.
    #[test]
    fn noise_frames_survive_any_split_and_tampering_is_refused(
        frames in noise_frames(),
        cuts in prop::collection::vec(1usize..3000, 1..20),
        tamper in prop::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>())),
    ) {
        if out_of_time() { return Ok(()); }
        let (mut client, mut channel) = noise_pair();
        let stream = frames.concat();
        let mut messages = Vec::new();
        let mut at = 0;
        for cut in cuts.iter().cycle() {
            if at == stream.len() { break; }
            let end = (at + cut).min(stream.len());
            messages.push((at, client_seal(&mut client, &stream[at..end])));
            at = end;
        }
        let tampered = tamper.map(|(which, byte)| {
            let which = which.index(messages.len());
            let message = &mut messages[which].1;
            let byte = byte.index(message.len());
            message[byte] ^= 1;
            which
        });
        let mut got = Vec::new();
        for (index, (start, message)) in messages.iter().enumerate() {
            if Some(index) == tampered {
                prop_assert_eq!(channel.open(message), Err(Refused::Decryption));
                // Every frame that ended before this message came through whole.
                let whole: usize = got.iter().map(Vec::len).sum();
                prop_assert!(whole <= *start);
                prop_assert_eq!(&got.concat()[..], &stream[..whole]);
                return Ok(());
            }
            prop_assert_eq!(channel.open(message), Ok(()));
            while let Some(frame) = channel.next_frame().unwrap() {
                got.push(frame);
            }
        }
        prop_assert_eq!(got, frames);
        prop_assert!(!channel.has_buffered());
    }

    /// A length prefix over the limit is refused once its 4 bytes are in, however
    /// they are spread over messages, before any of the frame's content.
    #[test]
    fn noise_prefix_over_the_limit_is_refused(
        length in (NOISE_LIMIT as u32 - 3)..=u32::MAX,
        split in 0usize..=4,
        content in prop::collection::vec(any::<u8>(), 0..100),
    ) {
        if out_of_time() { return Ok(()); }
        let (mut client, mut channel) = noise_pair();
        let prefix = length.to_be_bytes();
        channel.open(&client_seal(&mut client, &prefix[..split])).unwrap();
        if split < 4 {
            prop_assert_eq!(channel.next_frame(), Ok(None));
        }
        let rest = [&prefix[split..], &content[..]].concat();
        channel.open(&client_seal(&mut client, &rest)).unwrap();
        prop_assert_eq!(channel.next_frame(), Err(Refused::TooBig));
    }
}
