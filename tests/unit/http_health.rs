//! The health replies of PROTOCOL.md §2.4: the exact example, member order, `/ready`
//! while draining, and HEAD.

use vauchi_relay::http::{HealthFacts, HealthPath, health_response};

const FACTS: HealthFacts = HealthFacts {
    draining: false,
    uptime_seconds: 3600,
    blob_count: 42,
    shards: 4,
};

fn expected(status_line: &str, body: &str, head_only: bool) -> String {
    format!(
        "{status_line}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{}",
        body.len(),
        if head_only { "" } else { body }
    )
}

fn body(status: &str, facts: HealthFacts) -> String {
    format!(
        r#"{{"status":"{status}","version":"{}","uptime_seconds":{},"blob_count":{},"shards":{}}}"#,
        env!("CARGO_PKG_VERSION"),
        facts.uptime_seconds,
        facts.blob_count,
        facts.shards
    )
}

#[test]
fn the_protocol_example_byte_for_byte() {
    // PROTOCOL.md §2.4, for a 0.1.0 crate.
    let example = "HTTP/1.1 200 OK\r\n\
                   Content-Type: application/json\r\n\
                   Content-Length: 87\r\n\
                   Cache-Control: no-store\r\n\
                   Connection: close\r\n\
                   \r\n\
                   {\"status\":\"healthy\",\"version\":\"0.1.0\",\"uptime_seconds\":3600,\"blob_count\":42,\"shards\":4}";
    if env!("CARGO_PKG_VERSION") == "0.1.0" {
        let reply = health_response(HealthPath::Health, false, FACTS);
        assert_eq!(std::str::from_utf8(&reply), Ok(example));
    }
    let reply = health_response(HealthPath::Health, false, FACTS);
    assert_eq!(
        std::str::from_utf8(&reply),
        Ok(expected("HTTP/1.1 200 OK", &body("healthy", FACTS), false).as_str())
    );
}

#[test]
fn every_path_and_state() {
    let draining = HealthFacts {
        draining: true,
        ..FACTS
    };
    let rows = [
        (HealthPath::Health, FACTS, "HTTP/1.1 200 OK", "healthy"),
        (HealthPath::Up, FACTS, "HTTP/1.1 200 OK", "healthy"),
        (HealthPath::Ready, FACTS, "HTTP/1.1 200 OK", "healthy"),
        (HealthPath::Health, draining, "HTTP/1.1 200 OK", "healthy"),
        (HealthPath::Up, draining, "HTTP/1.1 200 OK", "healthy"),
        (
            HealthPath::Ready,
            draining,
            "HTTP/1.1 503 Service Unavailable",
            "draining",
        ),
    ];
    for (path, facts, status_line, status) in rows {
        for head_only in [false, true] {
            let reply = health_response(path, head_only, facts);
            assert_eq!(
                std::str::from_utf8(&reply),
                Ok(expected(status_line, &body(status, facts), head_only).as_str()),
                "{path:?} {head_only}"
            );
        }
    }
}

#[test]
fn extreme_values() {
    let facts = HealthFacts {
        draining: false,
        uptime_seconds: u64::MAX,
        blob_count: 0,
        shards: u32::MAX,
    };
    let reply = health_response(HealthPath::Up, false, facts);
    assert_eq!(
        std::str::from_utf8(&reply),
        Ok(expected("HTTP/1.1 200 OK", &body("healthy", facts), false).as_str())
    );
}
