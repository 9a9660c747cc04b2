//! How a session error answers in an axum handler.

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::SessionError;

/// A store outage is 503 Service Unavailable; a value that does not convert is 500.
impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        let status = match &self {
            SessionError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            SessionError::Value { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        tracing::warn!(error = %self, "session error");
        status.into_response()
    }
}
