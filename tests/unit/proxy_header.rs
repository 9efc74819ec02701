//! The PROXY protocol header parser (§2.9): every valid form with its source, the
//! malformed ones, and that any beginning of a valid header asks for more.

use std::net::IpAddr;

use vauchi_relay::transport::proxy_header::{
    BUFFERED_MAX, Invalid, Parse, V1_LENGTH_MAX, Versions, parse,
};

const SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header: command (0 LOCAL, 1 PROXY), family and protocol byte, the
/// addresses and `tlv_bytes` bytes of TLVs.
pub fn v2(command: u8, family_protocol: u8, addresses: &[u8], tlv_bytes: usize) -> Vec<u8> {
    let mut header = SIGNATURE.to_vec();
    header.push(0x20 | command);
    header.push(family_protocol);
    let length = (addresses.len() + tlv_bytes) as u16;
    header.extend_from_slice(&length.to_be_bytes());
    header.extend_from_slice(addresses);
    // TLVs are skipped unread: their content does not matter.
    header.extend(std::iter::repeat_n(0x04, tlv_bytes));
    header
}

/// The address part of an AF_INET header from `source` to 192.0.2.1.
pub fn inet(source: [u8; 4]) -> Vec<u8> {
    let mut part = source.to_vec();
    part.extend_from_slice(&[192, 0, 2, 1, 0x30, 0x39, 0x01, 0xbb]);
    part
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

fn complete(header: &[u8], source: Option<IpAddr>) -> Parse {
    Parse::Complete {
        length: header.len(),
        source,
    }
}

#[test]
fn v1_headers_name_their_source() {
    let cases: &[(&str, Option<IpAddr>)] = &[
        (
            "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n",
            ip("203.0.113.7"),
        ),
        (
            "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
            ip("0.0.0.0"),
        ),
        (
            "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n",
            ip("2001:db8::1"),
        ),
        (
            "PROXY TCP6 ::ffff:198.51.100.1 ::1 1 2\r\n",
            ip("::ffff:198.51.100.1"),
        ),
        ("PROXY UNKNOWN\r\n", None),
        ("PROXY UNKNOWN ffff:: ffff:: 1 2\r\n", None),
    ];
    for (header, source) in cases {
        let bytes = header.as_bytes();
        for versions in [Versions::V1, Versions::Any] {
            assert_eq!(
                parse(bytes, versions),
                Ok(complete(bytes, *source)),
                "{header:?}"
            );
        }
        // What follows the header is not part of it.
        let mut followed = bytes.to_vec();
        followed.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(parse(&followed, Versions::V1), Ok(complete(bytes, *source)));
        for end in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..end], Versions::V1),
                Ok(Parse::Incomplete),
                "{:?}",
                &header[..end]
            );
        }
    }
}

#[test]
fn the_longest_v1_header_is_107_bytes() {
    // The worst case of the PROXY protocol's own description: UNKNOWN with two
    // full IPv6 addresses and ports.
    let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let longest = format!("PROXY UNKNOWN {full} {full} 65535 65535\r\n");
    assert_eq!(longest.len(), V1_LENGTH_MAX);
    assert_eq!(
        parse(longest.as_bytes(), Versions::V1),
        Ok(complete(longest.as_bytes(), None))
    );
    let tcp6 = format!("PROXY TCP6 {full} {full} 65535 65535\r\n");
    assert_eq!(
        parse(tcp6.as_bytes(), Versions::V1),
        Ok(complete(tcp6.as_bytes(), ip(full)))
    );
    let padded = format!("PROXY UNKNOWN {}\r\n", "x".repeat(V1_LENGTH_MAX - 15));
    assert_eq!(padded.len(), V1_LENGTH_MAX + 1);
    assert!(parse(padded.as_bytes(), Versions::V1).is_err());
    // Without its CRLF, too: no need to wait for more than 107 bytes.
    assert!(parse(&padded.as_bytes()[..V1_LENGTH_MAX], Versions::V1).is_err());
    assert_eq!(
        parse(&padded.as_bytes()[..V1_LENGTH_MAX - 1], Versions::V1),
        Ok(Parse::Incomplete)
    );
}

#[test]
fn malformed_v1_headers_are_invalid() {
    let cases = [
        "PROXY TCP4 203.0.113.7 192.0.2.1 56324\r\n",
        "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443 9\r\n",
        "PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n",
        "PROXY TCP6 203.0.113.7 2001:db8::1 1 2\r\n",
        "PROXY TCP4 203.0.113.256 192.0.2.1 1 2\r\n",
        "PROXY TCP4 203.0.113.7 192.0.2.1 65536 2\r\n",
        "PROXY TCP4 203.0.113.7 192.0.2.1 01 2\r\n",
        "PROXY TCP4 203.0.113.7 192.0.2.1 +1 2\r\n",
        "PROXY TCP4 203.0.113.7  192.0.2.1 1 2\r\n",
        "PROXY TCP4 203.0.113.7 192.0.2.1 1 2 \r\n",
        "PROXY UDP4 203.0.113.7 192.0.2.1 1 2\r\n",
        "PROXY tcp4 203.0.113.7 192.0.2.1 1 2\r\n",
        "PROXY TCP4 203.0.113.7 192.0.2.1 1 2\n",
        "PROXY TCP4 203.0.113.7 192.0.2.1 1 2\rX",
        "PROXY UNKNOWNX\r\n",
        "PROXY \r\n",
        "PROXY TCP4 203.0.113.7\t192.0.2.1 1 2\r\n",
        "PROXYTCP4 203.0.113.7 192.0.2.1 1 2\r\n",
        "proxy TCP4 203.0.113.7 192.0.2.1 1 2\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for header in cases {
        assert!(
            matches!(parse(header.as_bytes(), Versions::Any), Err(Invalid(_))),
            "{header:?} gave {:?}",
            parse(header.as_bytes(), Versions::Any)
        );
    }
}

#[test]
fn what_is_not_a_header_is_invalid_from_its_first_differing_byte() {
    // An HTTP request, a TLS ClientHello: closed at once, not at the timer.
    for (bytes, versions) in [
        (&b"G"[..], Versions::Any),
        (b"\x16\x03\x01", Versions::Any),
        (b"PROXX", Versions::V1),
        (b"\r\n\r\n\0\r\nQUIX", Versions::V2),
        (b"\r\n\r\n\0\r\nQUIT\n\x30", Versions::V2),
    ] {
        assert!(parse(bytes, versions).is_err(), "{bytes:?}");
    }
    assert_eq!(parse(b"", Versions::Any), Ok(Parse::Incomplete));
    assert_eq!(parse(b"PROX", Versions::Any), Ok(Parse::Incomplete));
    assert_eq!(parse(b"\r\n\r\n", Versions::Any), Ok(Parse::Incomplete));
}

#[test]
fn a_version_that_is_not_accepted_is_invalid() {
    let one = b"PROXY TCP4 203.0.113.7 192.0.2.1 1 2\r\n";
    let two = v2(1, 0x11, &inet([203, 0, 113, 7]), 0);
    assert!(parse(one, Versions::V2).is_err());
    assert!(parse(&two, Versions::V1).is_err());
    // Already from the first byte.
    assert!(parse(b"P", Versions::V2).is_err());
    assert!(parse(b"\r", Versions::V1).is_err());
}

#[test]
fn v2_headers_name_their_source_and_count_their_tlvs() {
    let mut inet6 = vec![0x20, 0x01, 0x0d, 0xb8];
    inet6.extend_from_slice(&[0; 11]);
    inet6.push(0x09);
    inet6.extend_from_slice(&[0xfe; 16]);
    inet6.extend_from_slice(&[0, 1, 0, 2]);
    let cases: &[(Vec<u8>, Option<IpAddr>)] = &[
        (v2(1, 0x11, &inet([203, 0, 113, 7]), 0), ip("203.0.113.7")),
        (v2(1, 0x12, &inet([203, 0, 113, 8]), 0), ip("203.0.113.8")),
        (v2(1, 0x10, &inet([203, 0, 113, 9]), 5), ip("203.0.113.9")),
        (v2(1, 0x21, &inet6, 0), ip("2001:db8::9")),
        (v2(1, 0x21, &inet6, 300), ip("2001:db8::9")),
        // UNIX sockets and unspecified families have no IP address.
        (v2(1, 0x31, &[b'/'; 216], 0), None),
        (v2(1, 0x00, &[], 0), None),
        (v2(1, 0x00, &[], 40), None),
        // LOCAL: the proxy's own connection (a health check); its addresses, if
        // any, are ignored.
        (v2(0, 0x00, &[], 0), None),
        (v2(0, 0x11, &inet([203, 0, 113, 7]), 0), None),
        (v2(0, 0x11, &[], 0), None),
        // Even with a family and protocol it does not know: LOCAL discards them.
        (v2(0, 0x4f, &[], 0), None),
    ];
    for (header, source) in cases {
        for versions in [Versions::V2, Versions::Any] {
            assert_eq!(
                parse(header, versions),
                Ok(complete(header, *source)),
                "{header:?}"
            );
        }
        // The TLVs need not have arrived: the length says how many to skip.
        let addresses = match header[13] >> 4 {
            _ if header[12] & 0x0f == 0 => 0,
            1 => 12,
            2 => 36,
            3 => 216,
            _ => 0,
        };
        assert_eq!(
            parse(&header[..16 + addresses], Versions::V2),
            Ok(complete(header, *source))
        );
        for end in 0..16 + addresses {
            assert_eq!(
                parse(&header[..end], Versions::V2),
                Ok(Parse::Incomplete),
                "{end} bytes of {header:?}"
            );
        }
    }
}

#[test]
fn malformed_v2_headers_are_invalid() {
    let good = v2(1, 0x11, &inet([203, 0, 113, 7]), 0);
    let with = |at: usize, byte: u8| {
        let mut header = good.clone();
        header[at] = byte;
        header
    };
    let cases = [
        with(12, 0x11),                            // version 1 in the binary form
        with(12, 0x31),                            // version 3
        with(12, 0x22),                            // command 2
        with(13, 0x41),                            // family 4
        with(13, 0x13),                            // protocol 3
        v2(1, 0x11, &inet([1, 2, 3, 4])[..11], 0), // shorter than AF_INET's 12
        v2(1, 0x21, &[0; 35], 0),                  // shorter than AF_INET6's 36
        v2(1, 0x31, &[0; 215], 0),                 // shorter than AF_UNIX's 216
    ];
    for header in cases {
        assert!(parse(&header, Versions::Any).is_err(), "{header:?}");
    }
}

#[test]
fn no_header_needs_more_than_the_buffer() {
    assert_eq!(BUFFERED_MAX, 232);
    let unix = v2(1, 0x31, &[0; 216], 65_535 - 216);
    assert_eq!(
        parse(&unix[..BUFFERED_MAX], Versions::Any),
        Ok(Parse::Complete {
            length: 16 + 65_535,
            source: None
        })
    );
}
