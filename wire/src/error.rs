//! The error envelope: every non-2xx answer's body, `{"error": {"code", "message"}}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `{"error": {"code": "<snake_case>", "message": "<human text>"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The contract's snake_case code (`invalid_request`, `unauthorized`, `not_found`, ...);
    /// `internal` (500) only for a server bug or a storage error.
    #[schema(example = "invalid_request")]
    pub code: String,
    pub message: String,
}

impl ErrorEnvelope {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorEnvelope { error: ErrorBody { code: code.into(), message: message.into() } }
    }
}
