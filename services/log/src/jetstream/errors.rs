//! Classification of publish failures: the one place that decides what a
//! server or client error means for an append.

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::ErrorCode;

/// "Wrong last sequence": the expected-last-sequence guard failed.
pub(crate) const ERR_WRONG_LAST_SEQUENCE: u64 = 10071;
/// "Wrong last sequence" as some server versions report it on replicated
/// streams (async-nats maps it to `PublishErrorKind::Other`).
pub(crate) const ERR_WRONG_LAST_SEQUENCE_CONSTANT: u64 = 10164;
/// "Message size exceeds maximum allowed".
const ERR_MESSAGE_TOO_LARGE: u64 = 10054;
/// "Duplicate message id is in process": another publish with the same id
/// is being stored right now (replicated streams, atomic batches).
const ERR_DUPLICATE_IN_PROCESS: u64 = 10158;

/// What a failed publish means for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublishFailure {
    /// The optimistic-concurrency guard failed (10071 or 10164).
    Conflict,
    /// The same event id is being stored by another publish at this very
    /// moment; asking again shortly answers "duplicate" with its sequence.
    InProcess,
    /// The server could not be reached, or did not answer in time. The
    /// message may or may not be stored; retrying with the same id is safe.
    Unavailable(String),
    /// The server refused the message itself (too large …): retrying will not help.
    Invalid(String),
    /// The server refused for another reason (its error code, if any, and
    /// description). For an atomic batch this covers "contains a duplicate
    /// message id" (10201) and friends.
    Rejected {
        /// JetStream `err_code`, when the server sent one.
        code: Option<u64>,
        /// Human-readable reason.
        description: String,
    },
}

/// Maps an async-nats publish error to what it means for an append.
pub(crate) fn classify_publish_error(err: &PublishError) -> PublishFailure {
    let server = std::error::Error::source(err)
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>());
    let code = server.map(|e| e.error_code());
    match (err.kind(), code) {
        (PublishErrorKind::WrongLastSequence, _) => PublishFailure::Conflict,
        (_, Some(ErrorCode(ERR_WRONG_LAST_SEQUENCE)))
        | (_, Some(ErrorCode(ERR_WRONG_LAST_SEQUENCE_CONSTANT))) => PublishFailure::Conflict,
        (_, Some(ErrorCode(ERR_DUPLICATE_IN_PROCESS))) => PublishFailure::InProcess,
        (PublishErrorKind::MaxPayloadExceeded, _) | (_, Some(ErrorCode(ERR_MESSAGE_TOO_LARGE))) => {
            PublishFailure::Invalid(err.to_string())
        }
        (PublishErrorKind::TimedOut, _)
        | (PublishErrorKind::BrokenPipe, _)
        | (PublishErrorKind::StreamNotFound, _)
        | (PublishErrorKind::MaxAckPending, _) => PublishFailure::Unavailable(err.to_string()),
        (_, Some(ErrorCode(c))) => PublishFailure::Rejected {
            code: Some(c),
            description: err.to_string(),
        },
        // No server answer to inspect: the request could not be sent, or the
        // answer could not be parsed. Treat as transient.
        (_, None) => PublishFailure::Unavailable(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: u64, description: &str) -> async_nats::jetstream::Error {
        serde_json::from_value(serde_json::json!({
            "code": 400,
            "err_code": code,
            "description": description,
        }))
        .expect("a JetStream API error is plain JSON")
    }

    #[test]
    fn both_wrong_last_sequence_codes_are_conflicts() {
        let e = PublishError::with_source(
            PublishErrorKind::WrongLastSequence,
            server_error(10071, "wrong last sequence: 5"),
        );
        assert_eq!(classify_publish_error(&e), PublishFailure::Conflict);
        // async-nats reports 10164 as `Other`.
        let e = PublishError::with_source(
            PublishErrorKind::Other,
            server_error(10164, "wrong last sequence"),
        );
        assert_eq!(classify_publish_error(&e), PublishFailure::Conflict);
        let e = PublishError::new(PublishErrorKind::WrongLastSequence);
        assert_eq!(classify_publish_error(&e), PublishFailure::Conflict);
    }

    #[test]
    fn transport_failures_are_retryable_and_refusals_are_not() {
        for kind in [
            PublishErrorKind::TimedOut,
            PublishErrorKind::BrokenPipe,
            PublishErrorKind::StreamNotFound,
        ] {
            let e = PublishError::new(kind);
            assert!(matches!(
                classify_publish_error(&e),
                PublishFailure::Unavailable(_)
            ));
        }
        let e = PublishError::with_source(
            PublishErrorKind::Other,
            server_error(10201, "atomic publish batch contains duplicate message id"),
        );
        assert!(matches!(
            classify_publish_error(&e),
            PublishFailure::Rejected {
                code: Some(10201),
                ..
            }
        ));
        let e = PublishError::with_source(
            PublishErrorKind::Other,
            server_error(10158, "duplicate message id is in process"),
        );
        assert_eq!(classify_publish_error(&e), PublishFailure::InProcess);
        let e = PublishError::new(PublishErrorKind::MaxPayloadExceeded);
        assert!(matches!(
            classify_publish_error(&e),
            PublishFailure::Invalid(_)
        ));
    }
}
