//! The HTTP edge: hyper server, router, request/response helpers, and the one
//! place where errors become the contract's error JSON. Nothing here knows
//! business rules, routes or the application state: the server takes its
//! route table and handler from above (`api`), and imports neither `api`
//! nor `app`.

pub mod error;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod tls;

pub use error::ApiError;
pub use response::{Body, Response};
