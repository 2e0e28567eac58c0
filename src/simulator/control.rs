//! The control API under `/_sim/`, for tests and testers. No
//! authentication: the simulator is a test tool, bound to loopback by
//! default.
//!
//! - `GET /_sim/received?since=SEQ&limit=N` → `{"items": [ReceivedMessage…],
//!   "next_since": SEQ}`, oldest first (`since` default 0, `limit` default
//!   and max 10000); pass `next_since` back to page on.
//! - `GET /_sim/stats` → [`SimStats`](super::SimStats).
//! - `GET /_sim/faults` → [`FaultsView`](super::FaultsView);
//!   `POST /_sim/faults` with a [`Faults`] body replaces the faults and
//!   answers the view (`400` when out of range); `DELETE /_sim/faults` clears them.
//! - `GET /_sim/reports` → `{"items": [ReportRecord…]}`.
//! - `POST /_sim/tokens/expire` → `{"expired": N}`: every issued token stops working.
//! - `PUT /_sim/catalog` with `{"sites": [{"SiteCode"}…], "meters": [{"MeterCode"}…]}`
//!   → `{"sites": N, "meters": M}`: the catalog served from now on.
//! - `GET /_sim/capacity` → [`CapacityView`](super::CapacityView)
//!   `{"capacity": N|null, "queue": M|null, "in_service": A, "queued": B}`;
//!   `PUT /_sim/capacity` with `{"capacity": N|null, "queue": M}` (`queue`
//!   optional, default 2 × capacity; a missing `capacity` means null =
//!   unlimited) sets it from now on and answers the view; `400` for a
//!   capacity of 0, values above 1,000,000, or a queue without a capacity.
//! - `POST /_sim/reset` → `{"reset": true}`: forgets messages, reports,
//!   counters and tokens and restores the faults and capacity given at start.
//!
//! Control requests are never queued or delayed.

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Capacity, Catalog, Faults, Shared, SimError};
use crate::http::ApiError;
use crate::http::request::{parse_json, read_body};
use crate::http::response::{self, Response};

/// Largest page of `/_sim/received`.
const MAX_PAGE: usize = 10_000;
/// Largest control request body.
const MAX_CONTROL_BODY: u64 = 4 * 1024 * 1024;

/// Answers one `/_sim/` request.
pub(crate) async fn dispatch(shared: &Shared, req: Request<Incoming>) -> Result<Response, ApiError> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let allow = match path.as_str() {
        "/_sim/received" | "/_sim/stats" | "/_sim/reports" => "GET",
        "/_sim/faults" => "GET, POST, DELETE",
        "/_sim/reset" | "/_sim/tokens/expire" => "POST",
        "/_sim/catalog" => "PUT",
        "/_sim/capacity" => "GET, PUT",
        _ => return Err(ApiError::not_found("no such control path")),
    };
    let ok = |value: Value| Ok(response::json(StatusCode::OK, &value));
    match (method, path.as_str()) {
        (Method::GET, "/_sim/received") => {
            let (since, limit) = page(req.uri().query().unwrap_or(""))?;
            let items = shared.records().received_since(since, limit);
            let next_since = items.last().map_or(since, |m| m.seq);
            ok(json!({"items": items, "next_since": next_since}))
        }
        (Method::GET, "/_sim/stats") => ok(json!(shared.stats())),
        (Method::GET, "/_sim/reports") => ok(json!({"items": shared.records().reports()})),
        (Method::GET, "/_sim/faults") => ok(json!(shared.faults.view())),
        (Method::POST, "/_sim/faults") => {
            let faults: Faults = read_json_body(req).await?;
            shared.faults.set(faults).map_err(refusal)?;
            tracing::info!(faults = ?shared.faults.get(), "eSight simulator: faults set");
            ok(json!(shared.faults.view()))
        }
        (Method::DELETE, "/_sim/faults") => {
            shared.faults.clear();
            tracing::info!("eSight simulator: faults cleared");
            ok(json!(shared.faults.view()))
        }
        (Method::POST, "/_sim/tokens/expire") => {
            let active = shared.records().stats().tokens.active;
            shared.records().expire_tokens();
            ok(json!({"expired": active}))
        }
        (Method::PUT, "/_sim/catalog") => {
            let lists: CatalogLists = read_json_body(req).await?;
            let catalog =
                Catalog::from_json(&lists.sites.to_string(), &lists.meters.to_string()).map_err(refusal)?;
            let counts = json!({"sites": catalog.site_codes().len(), "meters": catalog.meter_codes().len()});
            *super::lock(&shared.catalog) = catalog;
            ok(counts)
        }
        (Method::GET, "/_sim/capacity") => ok(json!(shared.capacity.view())),
        (Method::PUT, "/_sim/capacity") => {
            let setting: CapacitySetting = read_json_body(req).await?;
            let capacity = match (setting.capacity, setting.queue) {
                (None, None) => None,
                (None, Some(_)) => {
                    return Err(ApiError::bad_request("a queue needs a capacity (or leave both null)"));
                }
                (Some(n), queue) => Some(Capacity::new(n, queue).map_err(refusal)?),
            };
            shared.capacity.set(capacity);
            tracing::info!(?capacity, "eSight simulator: capacity set");
            ok(json!(shared.capacity.view()))
        }
        (Method::POST, "/_sim/reset") => {
            shared.reset();
            tracing::info!("eSight simulator: reset");
            ok(json!({"reset": true}))
        }
        _ => Err(ApiError::method_not_allowed(HeaderValue::from_static(allow))),
    }
}

/// The body of `PUT /_sim/catalog`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogLists {
    sites: Value,
    meters: Value,
}

/// The body of `PUT /_sim/capacity`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapacitySetting {
    #[serde(default)]
    capacity: Option<u64>,
    #[serde(default)]
    queue: Option<u64>,
}

async fn read_json_body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = read_body(&parts.headers, body, MAX_CONTROL_BODY).await?;
    parse_json(&bytes)
}

fn refusal(e: SimError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", e.to_string())
}

/// `since` and `limit` from the query string.
fn page(query: &str) -> Result<(u64, usize), ApiError> {
    let mut since = 0;
    let mut limit = MAX_PAGE;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = || ApiError::bad_request(format!("`{key}` must be a whole number"));
        match key {
            "since" => since = value.parse().map_err(|_| bad())?,
            "limit" => limit = value.parse::<usize>().map_err(|_| bad())?.min(MAX_PAGE),
            _ => {}
        }
    }
    Ok((since, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_default_and_cap() {
        assert_eq!(page("").unwrap(), (0, MAX_PAGE));
        assert_eq!(page("since=7&limit=99999").unwrap(), (7, MAX_PAGE));
        assert_eq!(page("limit=3&x=y").unwrap(), (0, 3));
        assert!(page("since=-1").is_err());
    }
}
