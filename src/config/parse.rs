//! The value syntaxes shared by the variables: strict integers, booleans and
//! decimals, socket addresses, CIDR lists, and the federation peer list.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::values::MetricsAddr;

pub(super) const BOOLEAN_EXPECTED: &str = "a boolean: true, 1, false or 0";

/// Plain decimal digits: no sign, no underscore, no exponent.
pub(super) fn parse_integer(text: &str) -> Option<u64> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

pub(super) fn parse_boolean(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Digits with at most one `.`: no sign, exponent, `inf` or `NaN`.
pub(super) fn parse_decimal(text: &str) -> Option<f64> {
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    let dots = text.bytes().filter(|b| *b == b'.').count();
    if digits == 0 || dots > 1 || digits + dots != text.len() {
        return None;
    }
    text.parse().ok()
}

/// `IPv4:port` or `[IPv6]:port`; the port is plain digits.
pub(super) fn parse_socket_addr(text: &str) -> Option<SocketAddr> {
    let (_, port) = text.rsplit_once(':')?;
    parse_integer(port)?;
    text.parse().ok()
}

pub(super) fn parse_metrics_addr(text: &str) -> Option<MetricsAddr> {
    match text.split_at_checked("localhost:".len()) {
        Some((host, port)) if host.eq_ignore_ascii_case("localhost:") => {
            let port = u16::try_from(parse_integer(port)?).ok()?;
            Some(MetricsAddr::Localhost(port))
        }
        _ => parse_socket_addr(text).map(MetricsAddr::Socket),
    }
}

/// Trims entries, drops empty ones and duplicates, removes one trailing `/`.
pub(super) fn parse_peers(text: &str) -> Result<Vec<String>, String> {
    let mut peers: Vec<String> = Vec::new();
    for entry in text.split(',').map(str::trim_ascii) {
        if entry.is_empty() {
            continue;
        }
        let peer = normalise_peer(entry).ok_or_else(|| {
            format!(
                "comma-separated ws:// or wss:// URLs without query or fragment, \
                 and {entry:?} is not one"
            )
        })?;
        // Linear search: the list is as long as one environment variable allows.
        if !peers.contains(&peer) {
            peers.push(peer);
        }
    }
    Ok(peers)
}

/// `ws://host[:port][/path]` or `wss://...`, trimmed; the scheme is lower-cased
/// and one trailing `/` removed (§13.2). Gossiped URLs are read by the same rule.
pub fn normalise_peer(entry: &str) -> Option<String> {
    let entry = entry.trim_ascii();
    let (scheme, rest) = entry.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "ws" && scheme != "wss" {
        return None;
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let host = rest.split_once('/').map_or(rest, |(host, _)| host);
    let clean = rest
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
    (!host.is_empty() && clean).then(|| format!("{scheme}://{rest}"))
}

/// Comma-separated CIDRs, entries trimmed and empty ones dropped; host bits are
/// cleared, and a bare address is the network of that one host. IPv4-mapped IPv6
/// networks become IPv4 ones, as peer addresses do before they are matched.
pub(super) fn parse_cidrs(text: &str) -> Result<Vec<IpNet>, String> {
    let mut networks = Vec::new();
    for entry in text.split(',').map(str::trim_ascii) {
        if entry.is_empty() {
            continue;
        }
        let network = entry
            .parse::<IpNet>()
            .ok()
            .or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from))
            .ok_or_else(|| format!("comma-separated IPv4/IPv6 CIDRs, and {entry:?} is not one"))?;
        let network = match network {
            IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96)
                    .expect("a prefix of at most 32 bits"),
                None => network,
            },
            _ => network,
        };
        networks.push(network.trunc());
    }
    Ok(networks)
}

/// A relay id (§13.2): 1 to 128 printable ASCII characters without spaces.
pub fn is_relay_id(text: &str) -> bool {
    !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic())
}
