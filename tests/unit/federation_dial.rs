//! Outbound peer URLs split for dialling (§11.5, §13.2): scheme, host (IPv6
//! literals without their brackets, as TLS names them) and port, with the
//! scheme's default port when none is written.

use vauchi_relay::federation::dial::PeerAddr;

fn parsed(url: &str) -> Option<(bool, String, u16)> {
    PeerAddr::parse(url).map(|p| (p.tls, p.host, p.port))
}

fn some(tls: bool, host: &str, port: u16) -> Option<(bool, String, u16)> {
    Some((tls, host.to_owned(), port))
}

#[test]
fn host_and_port_of_ws_and_wss_urls() {
    assert_eq!(
        parsed("ws://127.0.0.1:8080"),
        some(false, "127.0.0.1", 8080)
    );
    assert_eq!(
        parsed("wss://relay.example:9443"),
        some(true, "relay.example", 9443)
    );
    assert_eq!(
        parsed("wss://relay.example/base/path"),
        some(true, "relay.example", 443)
    );
    assert_eq!(
        parsed("ws://relay.example"),
        some(false, "relay.example", 80)
    );
    assert_eq!(parsed("wss://Up.Example:1"), some(true, "Up.Example", 1));
}

#[test]
fn ipv6_literals_lose_their_brackets() {
    assert_eq!(parsed("wss://[::1]:8443/x"), some(true, "::1", 8443));
    assert_eq!(parsed("ws://[2001:db8::1]"), some(false, "2001:db8::1", 80));
}

#[test]
fn authorities_that_cannot_be_dialled_are_refused() {
    for url in [
        "wss://",
        "wss://:443",
        "ws://host:",
        "ws://host:http",
        "ws://host:65536",
        "ws://user@host:80",
        "ws://::1:80",
        "ws://[::1]x",
        "ws://[::1",
        "http://host:80",
    ] {
        assert_eq!(parsed(url), None, "{url}");
    }
}
