//! The route table and the handlers, one module per resource. Handlers are
//! thin: parse the request into typed values, call one domain or storage
//! function, map the result to a response.

mod ops;

use hyper::Request;
use hyper::body::Incoming;

use crate::http::router::{Route, Verb};
use crate::http::{ApiError, RequestContext, Response};

/// Every endpoint the appliance answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /health` (compat).
    Health,
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`.
    Readyz,
    /// `GET /version`.
    Version,
    /// `GET /metrics`.
    Metrics,
    /// `GET /openapi.json`.
    OpenApi,
}

const fn route(verb: Verb, path: &'static str, endpoint: Endpoint) -> Route {
    Route {
        verb,
        path,
        endpoint,
    }
}

/// The route table. `tests/api/openapi.rs` keeps it and `assets/openapi.json`
/// in step.
pub const ROUTES: &[Route] = &[
    route(Verb::Get, "/health", Endpoint::Health),
    route(Verb::Get, "/healthz", Endpoint::Healthz),
    route(Verb::Get, "/readyz", Endpoint::Readyz),
    route(Verb::Get, "/version", Endpoint::Version),
    route(Verb::Get, "/metrics", Endpoint::Metrics),
    route(Verb::Get, "/openapi.json", Endpoint::OpenApi),
];

/// Runs the handler for `endpoint`.
pub async fn dispatch(
    endpoint: Endpoint,
    ctx: RequestContext,
    _req: Request<Incoming>,
) -> Result<Response, ApiError> {
    match endpoint {
        Endpoint::Health => Ok(ops::health()),
        Endpoint::Healthz => Ok(ops::healthz()),
        Endpoint::Readyz => ops::readyz(&ctx).await,
        Endpoint::Version => Ok(ops::version()),
        Endpoint::Metrics => Ok(ops::metrics(&ctx)),
        Endpoint::OpenApi => Ok(ops::openapi()),
    }
}
