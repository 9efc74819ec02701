//! The main port's HTTP/1.x handling (PROTOCOL.md §2.3-§2.5): a bounded request-head
//! parser (httparse), the routing table, and every plain reply. Pure: bytes in,
//! decisions and bytes out. Every plain reply carries the four §2.3 headers and
//! `Connection: close`; a `HEAD` reply has the same headers and no body.

use async_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::limits::{HEAD_BYTES_MAX, HEAD_FIELDS_MAX};

/// What the caller does next with the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadParse {
    /// The head is not complete yet and still within the limits: read more.
    Partial,
    /// The head is complete; `head_len` bytes of the buffer belong to it.
    Complete { head_len: usize, request: Request },
    /// Over 8192 bytes or 64 header fields: answer 431 and close.
    TooLarge,
    /// Does not parse: answer 400 and close.
    Bad,
}

/// The parts of a request head that routing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request-target up to, not including, the first `?`.
    pub path: String,
    /// True when `Upgrade` has the token `websocket` and `Connection` the token `upgrade`.
    pub is_upgrade: bool,
    /// `Sec-WebSocket-Version`, trimmed; repeated fields are joined with `", "`.
    pub websocket_version: Option<String>,
    /// `Sec-WebSocket-Key`, trimmed; repeated fields are joined with `", "`, which
    /// then fails the base64 check as RFC 6455 wants for a repeated key.
    pub websocket_key: Option<String>,
}

/// Parses the request head at the start of `buf`. Only the first
/// [`HEAD_BYTES_MAX`] bytes are ever looked at, so the cost is bounded however much
/// the caller has buffered.
pub fn parse_head(buf: &[u8]) -> HeadParse {
    let window = &buf[..buf.len().min(HEAD_BYTES_MAX)];
    let mut fields = [httparse::EMPTY_HEADER; HEAD_FIELDS_MAX];
    let mut parsed = httparse::Request::new(&mut fields);
    match parsed.parse(window) {
        Ok(httparse::Status::Complete(head_len)) => HeadParse::Complete {
            head_len,
            request: request_of(&parsed),
        },
        // The window is full and still no end of head: the head is over the limit.
        Ok(httparse::Status::Partial) if buf.len() > HEAD_BYTES_MAX => HeadParse::TooLarge,
        Ok(httparse::Status::Partial) => HeadParse::Partial,
        Err(httparse::Error::TooManyHeaders) => HeadParse::TooLarge,
        Err(_) => HeadParse::Bad,
    }
}

fn request_of(parsed: &httparse::Request<'_, '_>) -> Request {
    // httparse guarantees method, path and version on a complete parse; the fallbacks
    // only keep this function total.
    let method = parsed.method.unwrap_or_default().to_string();
    let target = parsed.path.unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default().to_string();
    let headers = parsed.headers.iter();
    let has_token = |name: &str, token: &str| {
        headers
            .clone()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .any(|h| {
                h.value
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
            })
    };
    let joined = |name: &str| {
        let values: Vec<String> = headers
            .clone()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value.trim_ascii()).into_owned())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    };
    Request {
        method,
        path,
        is_upgrade: has_token("upgrade", "websocket") && has_token("connection", "upgrade"),
        websocket_version: joined("sec-websocket-version"),
        websocket_key: joined("sec-websocket-key"),
    }
}

/// Facts the routing needs besides the request.
#[derive(Debug, Clone, Copy)]
pub struct RouteContext {
    pub federation_enabled: bool,
    /// Federation mTLS is in effect: `/federation` here is refused (§15.3).
    pub federation_mtls: bool,
    pub draining: bool,
}

/// What to do with a parsed request (§2.3 table, §2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Write `response` (a complete `101` reply) and continue as a client session.
    ClientUpgrade { response: Vec<u8> },
    /// Write `response` (a complete `101` reply) and continue as a federation link.
    FederationUpgrade { response: Vec<u8> },
    /// A health probe; the caller fills in the body with [`health_response`].
    Health { path: HealthPath, head_only: bool },
    /// Write this complete reply, shut down the write side, close.
    Reply(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthPath {
    Health,
    Up,
    Ready,
}

/// Routes a request. An upgrade (§2.5) is a `GET` with the upgrade tokens; it is
/// checked in this order: draining (503), `/federation` while federation is off
/// (404) or while mTLS is in effect (403, §15.3), `Sec-WebSocket-Version` (426),
/// `Sec-WebSocket-Key` (400). Any other `GET`
/// or `HEAD`, including a `HEAD` with upgrade headers, takes the plain rows.
pub fn route(request: &Request, context: RouteContext) -> Route {
    let head_only = match request.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::Reply(method_not_allowed()),
    };
    if request.is_upgrade && !head_only {
        return route_upgrade(request, context);
    }
    let path = match request.path.as_str() {
        "/health" => HealthPath::Health,
        "/up" => HealthPath::Up,
        "/ready" => HealthPath::Ready,
        _ => {
            return Route::Reply(reply(
                Status::Ok,
                &[],
                r#"{"error":"This is a WebSocket relay endpoint"}"#,
                head_only,
            ));
        }
    };
    Route::Health { path, head_only }
}

/// Routes a request on the federation mTLS listener (§15.3): exactly a WebSocket
/// upgrade at `/federation` (checked as on the main port); anything else `404`.
pub fn route_mtls(request: &Request, draining: bool) -> Route {
    if request.method != "GET" || !request.is_upgrade || request.path != "/federation" {
        return Route::Reply(reply(
            Status::NotFound,
            &[],
            r#"{"error":"not found"}"#,
            false,
        ));
    }
    let context = RouteContext {
        federation_enabled: true,
        federation_mtls: false,
        draining,
    };
    route_upgrade(request, context)
}

fn route_upgrade(request: &Request, context: RouteContext) -> Route {
    let federation = request.path == "/federation";
    if context.draining {
        return Route::Reply(reply(
            Status::ServiceUnavailable,
            &[("Retry-After", "5")],
            r#"{"error":"draining"}"#,
            false,
        ));
    }
    if federation && !context.federation_enabled {
        return Route::Reply(reply(
            Status::NotFound,
            &[],
            r#"{"error":"federation disabled"}"#,
            false,
        ));
    }
    if federation && context.federation_mtls {
        return Route::Reply(reply(
            Status::Forbidden,
            &[],
            r#"{"error":"federation requires mTLS"}"#,
            false,
        ));
    }
    if request.websocket_version.as_deref() != Some("13") {
        return Route::Reply(reply(
            Status::UpgradeRequired,
            &[("Sec-WebSocket-Version", "13")],
            r#"{"error":"unsupported websocket version"}"#,
            false,
        ));
    }
    let key = match request.websocket_key.as_deref() {
        Some(key) if is_base64_of_16_bytes(key) => key,
        _ => return Route::Reply(bad_request()),
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    )
    .into_bytes();
    if federation {
        Route::FederationUpgrade { response }
    } else {
        Route::ClientUpgrade { response }
    }
}

/// True when `key` is the canonical, padded, standard-alphabet base64 encoding of
/// exactly 16 bytes: 22 alphabet characters, the last carrying 2 data bits and 4 zero
/// bits, then `==`.
fn is_base64_of_16_bytes(key: &str) -> bool {
    let bytes = key.as_bytes();
    let is_alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    bytes.len() == 24
        && bytes[..22].iter().all(is_alphabet)
        && &bytes[22..] == b"=="
        && base64_value(bytes[21]) & 0x0F == 0
}

fn base64_value(b: u8) -> u8 {
    match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        _ => 63,
    }
}

/// Values of the health body (§2.4).
#[derive(Debug, Clone, Copy)]
pub struct HealthFacts {
    pub draining: bool,
    pub uptime_seconds: u64,
    pub blob_count: u64,
    pub shards: u32,
}

/// The complete reply to a health probe. Only `/ready` reports draining (503).
pub fn health_response(path: HealthPath, head_only: bool, facts: HealthFacts) -> Vec<u8> {
    let draining = facts.draining && path == HealthPath::Ready;
    let (status, text) = if draining {
        (Status::ServiceUnavailable, "draining")
    } else {
        (Status::Ok, "healthy")
    };
    let body = format!(
        r#"{{"status":"{text}","version":"{}","uptime_seconds":{},"blob_count":{},"shards":{}}}"#,
        env!("CARGO_PKG_VERSION"),
        facts.uptime_seconds,
        facts.blob_count,
        facts.shards,
    );
    reply(status, &[], &body, head_only)
}

/// 400: the head does not parse, or an upgrade has a bad `Sec-WebSocket-Key`.
pub fn bad_request() -> Vec<u8> {
    reply(Status::BadRequest, &[], r#"{"error":"bad request"}"#, false)
}

/// 431: the head is over [`HEAD_BYTES_MAX`] bytes or [`HEAD_FIELDS_MAX`] fields.
pub fn head_too_large() -> Vec<u8> {
    reply(
        Status::HeadTooLarge,
        &[],
        r#"{"error":"request header fields too large"}"#,
        false,
    )
}

/// 503: the connection limit is reached (§2.2).
pub fn overloaded() -> Vec<u8> {
    reply(
        Status::ServiceUnavailable,
        &[("Retry-After", "5")],
        r#"{"error":"overloaded"}"#,
        false,
    )
}

/// 429: the client address has `RELAY_MAX_CONNECTIONS_PER_IP` open (§2.10).
pub fn too_many_connections() -> Vec<u8> {
    reply(
        Status::TooManyRequests,
        &[("Retry-After", "5")],
        r#"{"error":"too many connections"}"#,
        false,
    )
}

/// 408: the handshake timer expired before the request head arrived (§2.2, optional).
pub fn handshake_timeout() -> Vec<u8> {
    reply(
        Status::RequestTimeout,
        &[],
        r#"{"error":"request timeout"}"#,
        false,
    )
}

fn method_not_allowed() -> Vec<u8> {
    reply(
        Status::MethodNotAllowed,
        &[("Allow", "GET, HEAD")],
        r#"{"error":"method not allowed"}"#,
        false,
    )
}

/// Every status a plain reply can have.
#[derive(Debug, Clone, Copy)]
enum Status {
    Ok,
    BadRequest,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    UpgradeRequired,
    TooManyRequests,
    HeadTooLarge,
    ServiceUnavailable,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::Forbidden => "403 Forbidden",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::RequestTimeout => "408 Request Timeout",
            Status::UpgradeRequired => "426 Upgrade Required",
            Status::TooManyRequests => "429 Too Many Requests",
            Status::HeadTooLarge => "431 Request Header Fields Too Large",
            Status::ServiceUnavailable => "503 Service Unavailable",
        }
    }
}

/// A complete plain reply: the §2.3 headers in a fixed order, then `extra`, then the
/// body unless `head_only` (whose `Content-Length` is still that of the body).
fn reply(status: Status, extra: &[(&str, &str)], body: &str, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        status.line(),
        body.len()
    );
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(body);
    }
    out.into_bytes()
}
