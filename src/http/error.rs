//! `ApiError`: every error answer, in the contract's shape
//! `{"error": {"code", "message", "request_id"}}`. Lower layers' errors are
//! converted here, in one place; internal causes are logged, never sent.

use hyper::StatusCode;
use hyper::header::{CONNECTION, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use super::response::{self, Response};
use crate::replication::Unconfirmed;
use crate::storage::StorageError;

/// An error answer: status, contract code, human message, optional extra
/// fields inside `error`, and extra headers (`Allow`, `Retry-After`, …).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    fields: Map<String, Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with a status, a contract code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), fields: Map::new(), headers: Vec::new() }
    }

    /// `400 BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// `404 NotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// `405 MethodNotAllowed` with the `Allow` header.
    pub fn method_not_allowed(allow: HeaderValue) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "method not allowed on this path")
            .with_header(hyper::header::ALLOW, allow)
    }

    /// `413 RequestEntityTooLarge`; the connection is closed, the rest of the
    /// body is never read.
    pub fn too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("request body exceeds the limit of {limit} bytes"),
        )
        .with_header(CONNECTION, HeaderValue::from_static("close"))
    }

    /// `415 UnsupportedMediaType`.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "the body must be sent as Content-Type: application/json",
        )
    }

    /// `503 ServiceUnavailable` with `Retry-After` in seconds.
    pub fn unavailable(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", message)
            .with_header(hyper::header::RETRY_AFTER, HeaderValue::from(retry_after_secs))
    }

    /// `500 InternalServerError`; the cause must already be logged.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "internal error")
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Adds a field inside the `error` object (e.g. the existing `id` on a
    /// username conflict).
    pub fn with_field(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(name.to_string(), value.into());
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The contract code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Renders the error answer for a request.
    pub fn into_response(self, request_id: &str) -> Response {
        let mut error = Map::new();
        error.insert("code".into(), json!(self.code));
        error.insert("message".into(), json!(self.message));
        error.insert("request_id".into(), json!(request_id));
        error.extend(self.fields);
        let mut r = response::json(self.status, &json!({ "error": error }));
        for (name, value) in self.headers {
            r.headers_mut().append(name, value);
        }
        r
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match &e {
            StorageError::Pool(_) => {
                tracing::warn!(error = %e, "database busy");
                Self::unavailable("the database is busy, try again", 1)
            }
            _ if e.is_unwritable() => {
                tracing::error!(error = %e, "database not writable");
                Self::unavailable("storage is not writable", 30)
            }
            _ => {
                tracing::error!(error = %e, "storage error");
                Self::internal()
            }
        }
    }
}

impl From<Unconfirmed> for ApiError {
    /// The change is committed locally but the replica did not confirm it:
    /// no success answer a lost disk could take back. Retrying is safe (a
    /// message sent again is answered as a duplicate once replicated).
    fn from(e: Unconfirmed) -> Self {
        tracing::warn!(error = %e, "answer refused: not confirmed on the replica");
        Self::unavailable(
            format!(
                "the change is stored locally but the replica did not confirm it within {} s; try again",
                e.timeout_secs
            ),
            e.timeout_secs,
        )
    }
}
