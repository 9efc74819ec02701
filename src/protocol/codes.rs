//! Error codes (§6.1) and close codes with their reason texts (§2.7), each mapped to
//! its wire form in one place.

/// The `code` of an Error message (§6.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum ErrorCode {
    MalformedFrame,
    UnsupportedFrame,
    UnsupportedVersion,
    UnknownType,
    UnexpectedMessage,
    InvalidField,
    NotPermitted,
    RateLimited,
    QuotaExceeded,
    StorageUnavailable,
    Overloaded,
}

impl ErrorCode {
    /// The snake_case wire code.
    pub fn as_str(self) -> &'static str {
        todo!()
    }
    /// A short English reason (≤ 200 bytes, never containing ids or data).
    pub fn reason(self) -> &'static str {
        todo!()
    }
}

/// Why the relay closes a client session: each maps to the code and reason text of §2.7.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CloseReason {
    IdleTimeout,
    ShuttingDown,
    ProtocolError,
    InvalidUtf8,
    HandshakeRequired,
    UnsupportedVersion,
    InvalidHandshake,
    AuthenticationFailed,
    NoiseNotSupported,
    HandshakeTimeout,
    MessageTooBig,
    InternalError,
    Overloaded,
}

impl CloseReason {
    pub fn code(self) -> u16 {
        todo!()
    }
    pub fn reason(self) -> &'static str {
        todo!()
    }
}
