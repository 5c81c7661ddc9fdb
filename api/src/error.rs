//! The API's one error type, mapped to the contract's status codes and error codes at the
//! HTTP and WebSocket edge.

use std::convert::Infallible;

use parley_storage::{Rejection, StoreError};
use parley_wire::bodies::BodyError;
use parley_wire::ErrorEnvelope;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

/// An error answered to a client: `{"error": {"code", "message"}}` with `status`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, sent as `Retry-After` (the contract's 429s carry one; a full queue's 503 too).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    /// The same error, telling the client to retry after `secs` seconds (at least 1).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn invalid_credentials() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "wrong user id or password")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn not_member() -> Self {
        Rejection::NotMember.into()
    }

    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// A write route's body that is not declared `application/json`: refused before it is read,
    /// so an HTML form (which can only send `text/plain`, urlencoded or multipart) can never
    /// drive a JSON endpoint cross-site. The contract has no 415 code, so `invalid_request`.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request", message)
    }

    /// A body that did not arrive in time (a slow or stalled sender holding a connection).
    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "invalid_request", message)
    }

    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The contract's error envelope of this error.
    pub fn body(&self) -> ErrorEnvelope {
        ErrorEnvelope::new(self.code, self.message.clone())
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::Invalid(m) => ApiError::invalid(m),
            BodyError::TooLarge(m) => ApiError::payload_too_large(m),
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let status = match &r {
            Rejection::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Rejection::NotFound(_) => StatusCode::NOT_FOUND,
            Rejection::Forbidden(_)
            | Rejection::NotFriends
            | Rejection::Blocked
            | Rejection::NotMember
            | Rejection::NotAdmin
            | Rejection::Muted
            | Rejection::AccountDeactivated => StatusCode::FORBIDDEN,
            Rejection::UserExists | Rejection::AlreadyFriends | Rejection::OwnerCannotLeave => StatusCode::CONFLICT,
            Rejection::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        };
        ApiError::new(status, r.code(), r.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // Every store error a request meets passes here: a corrupt record stops the node before
        // anything of it is answered.
        crate::fail_stop::on_store_error(&e);
        tracing::error!(error = %e, "store error");
        ApiError::internal("storage error")
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let mut resp = warp::reply::json(&self.body()).into_response();
        *resp.status_mut() = self.status;
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(warp::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

impl warp::reject::Reject for ApiError {}

/// Turns warp's own rejections (no route, wrong method, oversize body) into contract errors.
pub async fn recover(rej: warp::Rejection) -> Result<Response, Infallible> {
    let err = if let Some(e) = rej.find::<ApiError>() {
        e.clone()
    } else if rej.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::payload_too_large("request body too large")
    } else if rej.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::invalid("a content-length header is required")
    } else if rej.find::<warp::reject::UnsupportedMediaType>().is_some()
        || rej.find::<warp::reject::InvalidQuery>().is_some()
    {
        ApiError::invalid("malformed request")
    } else if rej.is_not_found() || rej.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::not_found("no such route")
    } else {
        tracing::debug!(?rej, "unhandled rejection");
        ApiError::invalid("malformed request")
    };
    Ok(err.into_response())
}
