//! The main port's HTTP/1.x handling (PROTOCOL.md §2.3-§2.5): a bounded request-head
//! parser (httparse), the routing table, and every plain reply. Pure: bytes in,
//! decisions and bytes out.

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
    pub websocket_version: Option<String>,
    pub websocket_key: Option<String>,
}

pub fn parse_head(buf: &[u8]) -> HeadParse {
    todo!("helper C {}", buf.len())
}

/// Facts the routing needs besides the request.
#[derive(Debug, Clone, Copy)]
pub struct RouteContext {
    pub federation_enabled: bool,
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

pub fn route(request: &Request, context: RouteContext) -> Route {
    todo!("helper C {request:?} {context:?}")
}

/// Values of the health body (§2.4).
#[derive(Debug, Clone, Copy)]
pub struct HealthFacts {
    pub draining: bool,
    pub uptime_seconds: u64,
    pub blob_count: u64,
    pub shards: u32,
}

/// The complete reply to a health probe.
pub fn health_response(path: HealthPath, head_only: bool, facts: HealthFacts) -> Vec<u8> {
    todo!("helper C {path:?} {head_only} {facts:?}")
}

/// 400, 431 and the 503 overload refusal of §2.2 as complete replies.
pub fn bad_request() -> Vec<u8> {
    todo!()
}
pub fn head_too_large() -> Vec<u8> {
    todo!()
}
pub fn overloaded() -> Vec<u8> {
    todo!()
}
