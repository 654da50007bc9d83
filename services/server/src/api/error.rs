//! The one error shape every action answers with:
//! `{"error": {"code": "...", "message": "..."}}` and a fitting status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
pub use powernode_actions::ErrorCode;
use serde_json::json;

/// An action's refusal or failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `invalid_arguments`.
    pub code: ErrorCode,
    /// Human message naming the problem.
    pub message: String,
}

impl ApiError {
    /// A code, with its status ([`ErrorCode::status`]).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(code.status())
                .expect("every ErrorCode's status is a valid HTTP status"),
            code,
            message: message.into(),
        }
    }

    /// 400 with a code.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            ..Self::new(code, message)
        }
    }

    /// 401: no or unknown credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// 403: the token lacks a permission.
    pub fn forbidden(permission: &str) -> Self {
        Self::new(
            ErrorCode::Forbidden,
            format!("this token lacks the permission {permission}"),
        )
    }

    /// 404: an unknown id (also for another account's ids: they do not exist for you).
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            ErrorCode::NotFound,
            format!("no {what} {id:?} in this account"),
        )
    }

    /// 503: the log is unreachable or slow; the action may be retried.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<powernode_log::LogError> for ApiError {
    fn from(e: powernode_log::LogError) -> Self {
        match e {
            powernode_log::LogError::Conflict { .. } => {
                Self::new(ErrorCode::Conflict, e.to_string())
            }
            powernode_log::LogError::IdTaken { .. } => Self::new(ErrorCode::IdTaken, e.to_string()),
            powernode_log::LogError::Invalid(_) => {
                Self::bad_request(ErrorCode::InvalidEvent, e.to_string())
            }
            _ if e.is_retryable() => Self::unavailable(e.to_string()),
            _ => Self::new(ErrorCode::LogError, e.to_string()),
        }
    }
}
