//! The HTTP edge: hyper server, router, request/response helpers, and the one
//! place where errors become the contract's error JSON. Nothing here knows
//! business rules; handlers in `api/` call into the domain.

pub mod error;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod tls;

pub use error::ApiError;
pub use request::RequestContext;
pub use response::{Body, Response};
