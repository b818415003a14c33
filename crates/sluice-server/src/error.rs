//! The one place where domain errors become HTTP responses: status code, a stable error kind,
//! a JSON body `{"error": {"type", "code", "message"}}` and, for overload, `Retry-After`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sluice_contract::metrics::{ErrorReason, RequestStatus};

use crate::engine::EngineError;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ApiError {
    /// Malformed JSON or an impossible request (a prompt longer than the context).
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed JSON with a value out of range or of the wrong type.
    #[error("{0}")]
    Unprocessable(String),
    #[error("request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// The client did not send its request body in time.
    #[error("the request body did not arrive within the body read timeout")]
    BodyTimeout,
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("model {0:?} is not served here")]
    ModelNotFound(String),
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("server is at its admission limit; retry after {0} s")]
    Overloaded(u64),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Internal(String),
    /// A failure the engine reported (and already counted in metrics).
    #[error(transparent)]
    Engine(EngineError),
}

/// Added to error responses so the metrics middleware can count them; the engine counts the
/// failures it produces itself, so those carry `counted: true`.
#[derive(Debug, Clone, Copy)]
pub struct ErrorOutcome {
    pub status: RequestStatus,
    pub reason: ErrorReason,
    pub counted: bool,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::ModelNotFound(_) | ApiError::RouteNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Engine(e) => match e {
                EngineError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                EngineError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }

    /// A stable, machine-readable kind (the body's `type`) and the `llm_errors_total` reason.
    pub fn kind(&self) -> ErrorReason {
        match self {
            ApiError::BadRequest(_) | ApiError::Unprocessable(_) | ApiError::BodyTimeout => {
                ErrorReason::InvalidRequest
            }
            ApiError::PayloadTooLarge(_) => ErrorReason::PayloadTooLarge,
            ApiError::Unauthorized => ErrorReason::Unauthorized,
            ApiError::ModelNotFound(_) | ApiError::RouteNotFound(_) => ErrorReason::NotFound,
            ApiError::Overloaded(_) => ErrorReason::Overloaded,
            ApiError::Unavailable(_) => ErrorReason::Unavailable,
            ApiError::Timeout(_) => ErrorReason::Timeout,
            ApiError::Internal(_) => ErrorReason::Internal,
            ApiError::Engine(e) => e.outcome().1,
        }
    }

    fn outcome_status(&self) -> RequestStatus {
        match self {
            ApiError::Overloaded(_) => RequestStatus::Rejected,
            ApiError::Timeout(_) => RequestStatus::Timeout,
            ApiError::Engine(e) => e.outcome().0,
            ApiError::Unavailable(_) | ApiError::Internal(_) => RequestStatus::Error,
            ApiError::BadRequest(_)
            | ApiError::Unprocessable(_)
            | ApiError::PayloadTooLarge(_)
            | ApiError::BodyTimeout
            | ApiError::Unauthorized
            | ApiError::ModelNotFound(_)
            | ApiError::RouteNotFound(_) => RequestStatus::Invalid,
        }
    }

    /// The JSON error body, also sent as an SSE event when a stream fails midway.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"type": self.kind().as_str(), "code": self.status().as_u16(), "message": self.to_string()}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), axum::Json(self.body())).into_response();
        if let ApiError::Overloaded(secs) = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp.extensions_mut().insert(ErrorOutcome {
            status: self.outcome_status(),
            reason: self.kind(),
            counted: matches!(self, ApiError::Engine(_)),
        });
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_kinds_and_retry_after() {
        let cases = [
            (ApiError::BadRequest("x".into()), 400, "invalid_request"),
            (ApiError::Unprocessable("x".into()), 422, "invalid_request"),
            (ApiError::PayloadTooLarge(10), 413, "payload_too_large"),
            (ApiError::Unauthorized, 401, "unauthorized"),
            (ApiError::ModelNotFound("m".into()), 404, "not_found"),
            (ApiError::Overloaded(3), 429, "overloaded"),
            (ApiError::Unavailable("x".into()), 503, "unavailable"),
            (ApiError::Timeout("x".into()), 504, "timeout"),
            (ApiError::Internal("x".into()), 500, "internal"),
        ];
        for (err, code, kind) in cases {
            assert_eq!(err.status().as_u16(), code);
            assert_eq!(err.kind().as_str(), kind);
        }
        let resp = ApiError::Overloaded(3).into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
    }
}
