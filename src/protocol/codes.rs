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
    /// Every code, in §6.1 order (the order of the enum): `ALL[c as usize] == c`.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::MalformedFrame,
        ErrorCode::UnsupportedFrame,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownType,
        ErrorCode::UnexpectedMessage,
        ErrorCode::InvalidField,
        ErrorCode::NotPermitted,
        ErrorCode::RateLimited,
        ErrorCode::QuotaExceeded,
        ErrorCode::StorageUnavailable,
        ErrorCode::Overloaded,
    ];

    /// The snake_case wire code.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedFrame => "malformed_frame",
            ErrorCode::UnsupportedFrame => "unsupported_frame",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::UnexpectedMessage => "unexpected_message",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::NotPermitted => "not_permitted",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::Overloaded => "overloaded",
        }
    }

    /// A short English reason (≤ 200 bytes, never containing ids or data).
    pub fn reason(self) -> &'static str {
        match self {
            ErrorCode::MalformedFrame => "malformed frame or envelope",
            ErrorCode::UnsupportedFrame => "text frames are not supported",
            ErrorCode::UnsupportedVersion => "unsupported protocol version",
            ErrorCode::UnknownType => "unknown message type",
            ErrorCode::UnexpectedMessage => "message type not expected from a client",
            ErrorCode::InvalidField => "missing or invalid field",
            ErrorCode::NotPermitted => "not permitted",
            ErrorCode::RateLimited => "rate limit exceeded",
            ErrorCode::QuotaExceeded => "quota exceeded",
            ErrorCode::StorageUnavailable => "storage unavailable",
            ErrorCode::Overloaded => "relay overloaded",
        }
    }
}

// `ALL` holds each code once, at the index of its discriminant.
const _: () = {
    let mut index = 0;
    while index < ErrorCode::ALL.len() {
        assert!(ErrorCode::ALL[index] as usize == index);
        index += 1;
    }
};

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
    NoiseRequired,
    NoiseHandshakeFailed,
    DecryptionFailed,
    HandshakeTimeout,
    MessageTooBig,
    InternalError,
    Overloaded,
}

impl CloseReason {
    /// The WebSocket close code.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::IdleTimeout => 1000,
            CloseReason::ShuttingDown => 1001,
            CloseReason::ProtocolError => 1002,
            CloseReason::InvalidUtf8 => 1007,
            CloseReason::HandshakeRequired
            | CloseReason::UnsupportedVersion
            | CloseReason::InvalidHandshake
            | CloseReason::AuthenticationFailed
            | CloseReason::NoiseRequired
            | CloseReason::NoiseHandshakeFailed
            | CloseReason::DecryptionFailed
            | CloseReason::HandshakeTimeout => 1008,
            CloseReason::MessageTooBig => 1009,
            CloseReason::InternalError => 1011,
            CloseReason::Overloaded => 1013,
        }
    }

    /// The close reason text, exactly as §2.7 lists it.
    pub fn reason(self) -> &'static str {
        match self {
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::ShuttingDown => "server shutting down",
            CloseReason::ProtocolError => "protocol error",
            CloseReason::InvalidUtf8 => "invalid utf-8",
            CloseReason::HandshakeRequired => "handshake required",
            CloseReason::UnsupportedVersion => "unsupported version",
            CloseReason::InvalidHandshake => "invalid handshake",
            CloseReason::AuthenticationFailed => "authentication failed",
            CloseReason::NoiseRequired => "noise required",
            CloseReason::NoiseHandshakeFailed => "noise handshake failed",
            CloseReason::DecryptionFailed => "decryption failed",
            CloseReason::HandshakeTimeout => "handshake timeout",
            CloseReason::MessageTooBig => "message too big",
            CloseReason::InternalError => "internal error",
            CloseReason::Overloaded => "overloaded",
        }
    }
}
