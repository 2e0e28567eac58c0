//! Response construction helpers.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use serde::Serialize;

/// The response body type: a boxed body so that handlers can answer with a
/// buffer or a stream (backups) alike.
pub type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A response.
pub type Response = hyper::Response<Body>;

/// A complete in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A response with the given status, content type and body.
pub fn with_body(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response {
    let mut r = hyper::Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON response.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => with_body(status, "application/json", body),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise response");
            with_body(
                StatusCode::INTERNAL_SERVER_ERROR,
                "application/json",
                Bytes::from_static(
                    br#"{"error":{"code":"InternalServerError","message":"internal error"}}"#,
                ),
            )
        }
    }
}

/// A `text/plain` response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response {
    with_body(status, "text/plain; charset=utf-8", body)
}
