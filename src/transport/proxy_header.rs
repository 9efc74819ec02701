//! The PROXY protocol header (§2.9), sans-I/O: the bytes a trusted load balancer
//! sends before TLS and HTTP, and the client address they name. [`parse`] looks at
//! the bytes received so far and says whether they are a header's beginning (wait
//! for more), a whole header (its length and source), or not a header at all (close
//! at once). It never asks for more than [`BUFFERED_MAX`] bytes: a v2 header's
//! TLVs, which can be longer, are counted in its length and skipped by the reader.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The versions a listener accepts (`RELAY_PROXY_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    V1,
    V2,
    Any,
}

/// What the bytes so far are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// A valid beginning: at least one more byte is needed.
    Incomplete,
    /// A whole header of `length` bytes (for v2 with its TLVs, which need not have
    /// arrived yet). `source` is the client address; `None` keeps the TCP peer's
    /// (v2 `LOCAL`, v1 `UNKNOWN`, and address families without an IP address).
    Complete {
        length: usize,
        source: Option<IpAddr>,
    },
}

/// Not a header of an accepted version; the text says why (for tests; the relay
/// logs nothing about it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid(pub &'static str);

/// The longest v1 header, its CRLF included.
pub const V1_LENGTH_MAX: usize = 107;
/// The v2 signature, version and command, family and protocol, and length.
pub const V2_FIXED_BYTES: usize = 16;
/// The longest v2 address part (two AF_UNIX paths).
pub const V2_ADDRESS_BYTES_MAX: usize = 216;
/// The most bytes [`parse`] ever needs to see.
pub const BUFFERED_MAX: usize = V2_FIXED_BYTES + V2_ADDRESS_BYTES_MAX;
const _: () = assert!(BUFFERED_MAX == crate::limits::PROXY_HEADER_BUFFERED_BYTES_MAX);

const V1_SIGNATURE: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// Parses the first bytes a trusted connection sent.
pub fn parse(bytes: &[u8], versions: Versions) -> Result<Parse, Invalid> {
    let Some(&first) = bytes.first() else {
        return Ok(Parse::Incomplete);
    };
    match (first, versions) {
        (b'P', Versions::V1 | Versions::Any) => parse_v1(bytes),
        (b'\r', Versions::V2 | Versions::Any) => parse_v2(bytes),
        (b'P', Versions::V2) | (b'\r', Versions::V1) => Err(Invalid("wrong version")),
        _ => Err(Invalid("no PROXY protocol header")),
    }
}

/// True if `bytes` and `signature` agree over their common length.
fn agrees(bytes: &[u8], signature: &[u8]) -> bool {
    let common = bytes.len().min(signature.len());
    bytes[..common] == signature[..common]
}

/// `PROXY TCP4|TCP6 <source> <destination> <source port> <destination port>\r\n`,
/// or `PROXY UNKNOWN` followed by anything up to the CRLF.
fn parse_v1(bytes: &[u8]) -> Result<Parse, Invalid> {
    if !agrees(bytes, V1_SIGNATURE) {
        return Err(Invalid("no PROXY protocol header"));
    }
    // The first byte that is neither printable nor a space ends the line: a CR
    // followed by LF, or a malformed header. The verdict depends only on where it
    // is and what it is, so it is the same however the bytes arrive.
    let window = &bytes[..bytes.len().min(V1_LENGTH_MAX)];
    let Some(cr) = window
        .iter()
        .position(|&b| !(b == b' ' || b.is_ascii_graphic()))
    else {
        if bytes.len() >= V1_LENGTH_MAX {
            return Err(Invalid("v1 header longer than 107 bytes"));
        }
        return Ok(Parse::Incomplete);
    };
    if window[cr] != b'\r' {
        return Err(Invalid("v1 header with a control byte"));
    }
    let length = cr + 2;
    if length > V1_LENGTH_MAX {
        return Err(Invalid("v1 header longer than 107 bytes"));
    }
    match bytes.get(cr + 1) {
        None => return Ok(Parse::Incomplete),
        Some(b'\n') => {}
        Some(_) => return Err(Invalid("v1 header with CR not followed by LF")),
    }
    // Printable ASCII and spaces only, so the line is UTF-8.
    let line = &bytes[V1_SIGNATURE.len()..cr];
    let line = std::str::from_utf8(line).map_err(|_| Invalid("v1 header not ASCII"))?;
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        return Ok(Parse::Complete {
            length,
            source: None,
        });
    }
    let fields: Vec<&str> = line.split(' ').collect();
    let [protocol, source, destination, source_port, destination_port] = fields[..] else {
        return Err(Invalid("v1 header without five fields"));
    };
    let (source, destination) = match protocol {
        "TCP4" => (
            source.parse::<Ipv4Addr>().map(IpAddr::V4),
            destination.parse::<Ipv4Addr>().map(IpAddr::V4),
        ),
        "TCP6" => (
            source.parse::<Ipv6Addr>().map(IpAddr::V6),
            destination.parse::<Ipv6Addr>().map(IpAddr::V6),
        ),
        _ => return Err(Invalid("v1 protocol neither TCP4, TCP6 nor UNKNOWN")),
    };
    let (Ok(source), Ok(_)) = (source, destination) else {
        return Err(Invalid("v1 address not of its protocol"));
    };
    if !is_port(source_port) || !is_port(destination_port) {
        return Err(Invalid("v1 port not 0-65535"));
    }
    Ok(Parse::Complete {
        length,
        source: Some(source),
    })
}

/// Decimal 0..=65535 without a sign or a leading zero.
fn is_port(text: &str) -> bool {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let canonical = text == "0" || !text.starts_with('0');
    digits && canonical && text.parse::<u16>().is_ok()
}

/// The binary header: signature, version 2 and a command, a family and a
/// transport protocol, the length of what follows, the addresses, then TLVs.
fn parse_v2(bytes: &[u8]) -> Result<Parse, Invalid> {
    if !agrees(bytes, V2_SIGNATURE) {
        return Err(Invalid("no PROXY protocol header"));
    }
    let Some(&version_command) = bytes.get(12) else {
        return Ok(Parse::Incomplete);
    };
    if version_command >> 4 != 2 {
        return Err(Invalid("v2 header of another version"));
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(Invalid("v2 command neither LOCAL nor PROXY")),
    };
    let Some(&family_protocol) = bytes.get(13) else {
        return Ok(Parse::Incomplete);
    };
    let Some(length) = bytes.get(14..16) else {
        return Ok(Parse::Incomplete);
    };
    let declared = usize::from(u16::from_be_bytes([length[0], length[1]]));
    let length = V2_FIXED_BYTES + declared;
    if local {
        // The balancer's own connection: its protocol block, family included,
        // is discarded unread, as the PROXY protocol's description says.
        return Ok(Parse::Complete {
            length,
            source: None,
        });
    }
    // AF_UNSPEC, AF_INET, AF_INET6, AF_UNIX; UNSPEC, STREAM, DGRAM.
    let address_bytes = match family_protocol >> 4 {
        0 => 0,
        1 => 12,
        2 => 36,
        3 => V2_ADDRESS_BYTES_MAX,
        _ => return Err(Invalid("v2 address family unknown")),
    };
    if family_protocol & 0x0f > 2 {
        return Err(Invalid("v2 transport protocol unknown"));
    }
    if declared < address_bytes {
        return Err(Invalid("v2 length shorter than its addresses"));
    }
    let Some(address) = bytes.get(V2_FIXED_BYTES..V2_FIXED_BYTES + address_bytes) else {
        return Ok(Parse::Incomplete);
    };
    let source = match family_protocol >> 4 {
        1 => {
            let mut v4 = [0u8; 4];
            v4.copy_from_slice(&address[..4]);
            Some(IpAddr::from(v4))
        }
        2 => {
            let mut v6 = [0u8; 16];
            v6.copy_from_slice(&address[..16]);
            Some(IpAddr::from(v6))
        }
        // Unspecified and UNIX sources have no IP address.
        _ => None,
    };
    Ok(Parse::Complete { length, source })
}
