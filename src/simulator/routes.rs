//! Request dispatch and eSight's endpoints: `GET /token` (Basic),
//! `GET /sites` and `GET /meters` (Bearer), `POST /consumption` (Basic).
//! Control requests under `/_sim/` go to `control.rs`.
//!
//! A consumption post is read whole first (body limit: `413`), then passes
//! the capacity gate (`capacity.rs`: `429` with `Retry-After: 1` when the
//! queue is full, else it waits its turn), and only in service plays a
//! `hang` outage, the latency, the credentials check and the status faults.
//! Reading the body before waiting lets hyper notice a client that
//! disconnects while queued (it then drops the request and its place).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::OutageMode;
use super::records::ReceivedMessage;
use super::reports::ReportJob;
use super::{CONSUMPTION_PATH, METERS_PATH, SITES_PATH, Shared, TOKEN_PATH, control};
use crate::http::request::{read_body, request_id};
use crate::http::response::{self, Response};
use crate::http::{ApiError, Body};

/// One of eSight's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Token,
    Sites,
    Meters,
    Consumption,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Self> {
        match path {
            TOKEN_PATH => Some(Self::Token),
            SITES_PATH => Some(Self::Sites),
            METERS_PATH => Some(Self::Meters),
            CONSUMPTION_PATH => Some(Self::Consumption),
            _ => None,
        }
    }

    fn method(self) -> Method {
        if self == Self::Consumption { Method::POST } else { Method::GET }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Sites => "sites",
            Self::Meters => "meters",
            Self::Consumption => "consumption",
        }
    }
}

/// One request, start to finish; every error becomes an answer.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response {
    let request_id = request_id(req.headers());
    let path = req.uri().path().to_string();
    let result = if path.starts_with("/_sim/") {
        shared.records().count_request("control");
        control::dispatch(&shared, req).await
    } else if let Some(endpoint) = Endpoint::from_path(&path) {
        shared.records().count_request(endpoint.label());
        if req.method() == endpoint.method() {
            // Consumption posts play the outage and latency once in service.
            if endpoint != Endpoint::Consumption {
                in_service_delay(&shared).await;
            }
            esight(&shared, endpoint, req).await
        } else {
            let allow = if endpoint == Endpoint::Consumption { "POST" } else { "GET" };
            Err(ApiError::method_not_allowed(HeaderValue::from_static(allow)))
        }
    } else {
        shared.records().count_request("unknown");
        Err(ApiError::not_found("no such path on the eSight simulator"))
    };
    let mut response = result.unwrap_or_else(|e| e.into_response(&request_id));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// What serving takes: a `hang` outage, then the latency.
async fn in_service_delay(shared: &Shared) {
    wait_out_hang(shared).await;
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
}

/// Holds the request while a `hang` outage is on.
async fn wait_out_hang(shared: &Shared) {
    let mut changed = shared.faults.subscribe();
    loop {
        let phase = shared.faults.outage_phase();
        if phase.mode != Some(OutageMode::Hang) {
            return;
        }
        let until = phase.until.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
        tokio::select! {
            () = tokio::time::sleep_until(until.into()) => {}
            _ = changed.changed() => {}
        }
    }
}

async fn esight(shared: &Shared, endpoint: Endpoint, req: Request<Incoming>) -> Result<Response, ApiError> {
    match endpoint {
        Endpoint::Token => issue_token(shared, req.headers()),
        Endpoint::Sites | Endpoint::Meters => {
            let token = bearer_token(req.headers()).unwrap_or_default();
            if !shared.records().check_token(token) {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "unknown or expired token",
                )
                .with_header(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"esight-sim\"")));
            }
            let catalog = shared.catalog();
            let body = if endpoint == Endpoint::Sites { catalog.sites_json() } else { catalog.meters_json() };
            Ok(response::with_body(StatusCode::OK, "application/json", body))
        }
        Endpoint::Consumption => consumption(shared, req).await,
    }
}

fn issue_token(shared: &Shared, headers: &HeaderMap) -> Result<Response, ApiError> {
    let cfg = &shared.config;
    if !basic_matches(headers, &cfg.username, shared.passwords().token.expose()) {
        shared.records().count_token_refused();
        return Err(basic_refusal());
    }
    let token: String = rand::random::<[u8; 32]>().iter().map(|b| format!("{b:02x}")).collect();
    shared.records().issue_token(token.clone(), Instant::now() + cfg.token_ttl);
    Ok(response::json(
        StatusCode::OK,
        &json!({"access_token": token, "token_type": "Bearer", "expires_in": cfg.token_ttl.as_secs()}),
    ))
}

/// The few fields of a consumption message the simulator looks at.
#[derive(Deserialize)]
struct MessageHead {
    header: Option<Value>,
}

/// `POST /consumption`: read, wait for service, then answered as in service.
async fn consumption(shared: &Shared, req: Request<Incoming>) -> Result<Response, ApiError> {
    let cfg = &shared.config;
    let (parts, body) = req.into_parts();
    let body = match read_body(&parts.headers, body, cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            shared.records().count_consumption_status(e.status().as_u16());
            return Err(e);
        }
    };
    let Some(_in_service) = shared.capacity.enter().await else {
        shared.records().count_capacity_rejected();
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            crate::esight::status::error_code_for_status(429),
            "the eSight simulator is at capacity and its queue is full",
        )
        .with_header(RETRY_AFTER, HeaderValue::from_static("1")));
    };
    in_service_delay(shared).await;
    if !basic_matches(&parts.headers, &cfg.post_username, shared.passwords().post.expose()) {
        shared.records().count_consumption_status(401);
        return Err(basic_refusal());
    }
    let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok();
    let status = if is_json { shared.faults.next_consumption_status() } else { 400 };
    let message_id = serde_json::from_slice::<MessageHead>(&body)
        .ok()
        .and_then(|m| m.header)
        .and_then(|h| h.get("messageId").and_then(Value::as_str).map(str::to_string));
    let accepted = (200..300).contains(&status);
    let report_delay = if accepted { shared.faults.draw_report() } else { None };
    let message = ReceivedMessage {
        seq: 0,
        received_at: crate::clock::format_millis(crate::clock::now_millis()),
        idempotency_key: parts
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        message_id: message_id.clone(),
        status,
        duplicate: false,
        report_scheduled: false,
        body: body.clone(),
    };
    let (seq, report_scheduled) = shared.records().record_consumption(message, report_delay.is_some());
    if let (true, Some(delay), Some(reporter), Some(message_id)) =
        (report_scheduled, report_delay, &shared.reporter, message_id)
    {
        reporter.schedule(ReportJob { message_id, body, due: Instant::now() + delay });
    }
    let status_code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if !accepted {
        let message = if is_json { "fault injected by the eSight simulator" } else { "the body is not JSON" };
        let mut error =
            ApiError::new(status_code, crate::esight::status::error_code_for_status(status), message);
        if let (429 | 503, Some(secs)) = (status, shared.faults.retry_after_secs()) {
            error = error.with_header(RETRY_AFTER, HeaderValue::from(secs));
        }
        return Err(error);
    }
    if matches!(status, 204 | 205) {
        let mut r = hyper::Response::new(empty());
        *r.status_mut() = status_code;
        return Ok(r);
    }
    Ok(response::json(status_code, &json!({"accepted": true, "seq": seq})))
}

fn empty() -> Body {
    response::full(bytes::Bytes::new())
}

fn basic_refusal() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", "wrong or missing Basic credentials")
        .with_header(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"esight-sim\""))
}

/// True when `Authorization: Basic` carries exactly `user:password`.
fn basic_matches(headers: &HeaderMap, user: &str, password: &str) -> bool {
    let Some(encoded) = auth_param(headers, "basic") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let expected = format!("{user}:{password}");
    constant_time_eq(&decoded, expected.as_bytes())
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    auth_param(headers, "bearer").map(str::trim)
}

/// The credentials after `scheme ` in the `Authorization` header.
fn auth_param<'h>(headers: &'h HeaderMap, scheme: &str) -> Option<&'h str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_must_match_exactly() {
        let mut h = HeaderMap::new();
        assert!(!basic_matches(&h, "u", "p"));
        let encoded = base64::engine::general_purpose::STANDARD.encode("u:p:x");
        h.insert(AUTHORIZATION, HeaderValue::from_str(&format!("basic {encoded}")).unwrap());
        assert!(basic_matches(&h, "u", "p:x"));
        assert!(!basic_matches(&h, "u", "p"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert!(!basic_matches(&h, "u", "p:x"));
        assert_eq!(bearer_token(&h), Some("abc"));
    }
}
