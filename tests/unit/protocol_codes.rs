//! Error codes (PROTOCOL.md §6.1) and close codes with reason texts (§2.7).

use vauchi_relay::protocol::{CloseReason, ErrorCode};

#[test]
fn error_codes_are_the_snake_case_of_section_6_1() {
    let table = [
        (ErrorCode::MalformedFrame, "malformed_frame"),
        (ErrorCode::UnsupportedFrame, "unsupported_frame"),
        (ErrorCode::UnsupportedVersion, "unsupported_version"),
        (ErrorCode::UnknownType, "unknown_type"),
        (ErrorCode::UnexpectedMessage, "unexpected_message"),
        (ErrorCode::InvalidField, "invalid_field"),
        (ErrorCode::NotPermitted, "not_permitted"),
        (ErrorCode::RateLimited, "rate_limited"),
        (ErrorCode::QuotaExceeded, "quota_exceeded"),
        (ErrorCode::StorageUnavailable, "storage_unavailable"),
        (ErrorCode::Overloaded, "overloaded"),
    ];
    let mut reasons = std::collections::HashSet::new();
    for (code, text) in table {
        assert_eq!(code.as_str(), text);
        let reason = code.reason();
        assert!(!reason.is_empty() && reason.len() <= 200, "{code:?}");
        assert!(reason.is_ascii(), "{code:?}");
        assert!(reasons.insert(reason), "reason of {code:?} is not distinct");
    }
    assert_eq!(ErrorCode::RateLimited.reason(), "rate limit exceeded");
}

#[test]
fn close_reasons_are_the_table_of_section_2_7() {
    let table = [
        (CloseReason::IdleTimeout, 1000, "idle timeout"),
        (CloseReason::ShuttingDown, 1001, "server shutting down"),
        (CloseReason::ProtocolError, 1002, "protocol error"),
        (CloseReason::InvalidUtf8, 1007, "invalid utf-8"),
        (CloseReason::HandshakeRequired, 1008, "handshake required"),
        (CloseReason::UnsupportedVersion, 1008, "unsupported version"),
        (CloseReason::InvalidHandshake, 1008, "invalid handshake"),
        (
            CloseReason::AuthenticationFailed,
            1008,
            "authentication failed",
        ),
        (CloseReason::NoiseRequired, 1008, "noise required"),
        (
            CloseReason::NoiseHandshakeFailed,
            1008,
            "noise handshake failed",
        ),
        (CloseReason::DecryptionFailed, 1008, "decryption failed"),
        (CloseReason::HandshakeTimeout, 1008, "handshake timeout"),
        (CloseReason::MessageTooBig, 1009, "message too big"),
        (CloseReason::InternalError, 1011, "internal error"),
        (CloseReason::Overloaded, 1013, "overloaded"),
    ];
    for (reason, code, text) in table {
        assert_eq!(reason.code(), code, "{reason:?}");
        assert_eq!(reason.reason(), text, "{reason:?}");
        // A close reason must fit a control frame: 125 bytes minus the 2-byte code.
        assert!(text.len() <= 123);
    }
}
