//! axum extractors: `Session` (500 when the layer is missing, as axum users
//! expect of a missing extension) and `Option<Session>`.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use super::{Session, SessionError};

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Session>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "Session extractor used without tower_kv::session::SessionLayer",
        ))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Session>().cloned())
    }
}

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
