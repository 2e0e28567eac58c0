//! Asynchronous error reports: for messages drawn at acceptance, after a
//! delay, the simulator logs in to the appliance as an `esight` user
//! (`POST /login` with `X-API-Key` and `Accept: application/json`) and posts
//! `POST /api/v1/service/receive/errorjson` with the Bearer token, the API
//! key and a report whose `header.messageId` is the messageId it received.
//!
//! All of it runs on one dedicated std thread with a blocking `ureq` agent,
//! never on the tokio executor. The token is reused until shortly before it
//! expires; a `401` logs in again once. Connection errors and `5xx` are
//! retried a few times; the thread ends when the simulator is dropped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};

use super::records::{Records, ReportRecord};
use super::{ApplianceLink, SimError, lock};

/// Attempts per report before giving up.
const MAX_ATTEMPTS: u32 = 5;
/// Pause before a retry.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Timeout of each call to the appliance.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A report to post once `due`.
pub(crate) struct ReportJob {
    /// The messageId the simulator received (already `<messageId>_<id>`).
    pub message_id: String,
    /// The message body, to quote its first datapoint in the report.
    pub body: Bytes,
    /// When to post.
    pub due: Instant,
}

/// Hands jobs to the report thread.
pub(crate) struct Reporter {
    jobs: Mutex<mpsc::Sender<ReportJob>>,
}

impl Reporter {
    /// Starts the report thread.
    pub(crate) fn spawn(link: ApplianceLink, records: Arc<Mutex<Records>>) -> Result<Self, SimError> {
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("esight-sim-reports".into())
            .spawn(move || run(&mut ApplianceClient::new(link), &queue, &records))
            .map_err(SimError::ReporterThread)?;
        Ok(Self { jobs: Mutex::new(jobs) })
    }

    /// Queues a report.
    pub(crate) fn schedule(&self, job: ReportJob) {
        let _ = lock(&self.jobs).send(job);
    }
}

/// A queued job with its attempt count, ordered by due time then arrival.
struct Queued {
    due: Instant,
    order: u64,
    attempts: u32,
    esight_id: String,
    job: ReportJob,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.order).cmp(&(other.due, other.order))
    }
}

fn run(client: &mut ApplianceClient, queue: &mpsc::Receiver<ReportJob>, records: &Mutex<Records>) {
    let mut pending: BinaryHeap<Reverse<Queued>> = BinaryHeap::new();
    let mut order = 0u64;
    loop {
        let next = match pending.peek() {
            Some(Reverse(q)) => queue.recv_timeout(q.due.saturating_duration_since(Instant::now())),
            None => queue.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(job) => {
                order += 1;
                let esight_id = fresh_esight_id();
                pending.push(Reverse(Queued { due: job.due, order, attempts: 0, esight_id, job }));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while pending.peek().is_some_and(|Reverse(q)| q.due <= Instant::now()) {
            let Some(Reverse(mut q)) = pending.pop() else {
                break;
            };
            q.attempts += 1;
            let body = report_body(&q.esight_id, &q.job);
            let outcome = client.post_report(&body);
            let (status, error) = match &outcome {
                Ok(status) => (Some(*status), None),
                Err(e) => (e.status(), Some(e.to_string())),
            };
            if outcome.as_ref().is_err_and(ReportError::is_retryable) && q.attempts < MAX_ATTEMPTS {
                tracing::debug!(error = ?error, "eSight simulator: error report will be retried");
                q.due = Instant::now() + RETRY_PAUSE;
                pending.push(Reverse(q));
                continue;
            }
            let outcome_name = if outcome.is_ok() { "posted" } else { "failed" };
            tracing::info!(
                message_id = %q.job.message_id,
                outcome = outcome_name,
                status = ?status,
                "eSight simulator: error report"
            );
            lock(records).record_report(ReportRecord {
                esight_id: q.esight_id,
                message_id: q.job.message_id,
                outcome: outcome_name,
                http_status: status,
                error,
                attempts: q.attempts,
                at: crate::clock::format_millis(crate::clock::now_millis()),
            });
        }
    }
}

/// A 24-hex-digit id, like eSight's (MongoDB) `_id`.
fn fresh_esight_id() -> String {
    rand::random::<[u8; 12]>().iter().map(|b| format!("{b:02x}")).collect()
}

/// The report, shaped like eSight's: one error quoting the message's first
/// datapoint when it has one.
fn report_body(esight_id: &str, job: &ReportJob) -> Value {
    let first = serde_json::from_slice::<Value>(&job.body)
        .ok()
        .and_then(|m| m.pointer("/gatewayData/datapointValues/0").cloned())
        .unwrap_or(Value::Null);
    json!({
        "_id": esight_id,
        "header": {
            "messageId": job.message_id,
            "received_tsIso8601": crate::clock::format_millis(crate::clock::now_millis()),
        },
        "errors": [{
            "errorCode": "E102",
            "errorMessage": "value out of range",
            "datapointKey": first.get("datapointKey").cloned().unwrap_or(json!("activeEnergyImport")),
            "value": first.get("value").cloned().unwrap_or(Value::Null),
            "tsIso8601": first.get("tsIso8601").cloned().unwrap_or(Value::Null),
        }],
    })
}

/// Why a report was not accepted.
#[derive(Debug, thiserror::Error)]
enum ReportError {
    /// The appliance could not be reached or the call timed out.
    #[error("cannot reach the appliance: {0}")]
    Transport(#[from] ureq::Error),
    /// The appliance answered with an unexpected status.
    #[error("{step} answered {status}")]
    Status { step: &'static str, status: u16 },
    /// The login answer had no usable token.
    #[error("the login answer has no access_token")]
    NoToken,
}

impl ReportError {
    fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Self::NoToken => false,
        }
    }
}

/// The appliance's login and errorjson endpoints, with a cached token.
struct ApplianceClient {
    agent: ureq::Agent,
    link: ApplianceLink,
    token: Option<(String, Instant)>,
}

impl ApplianceClient {
    fn new(mut link: ApplianceLink) -> Self {
        link.base_url = link.base_url.trim_end_matches('/').to_string();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(CALL_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Self { agent, link, token: None }
    }

    /// Posts one report; a `401` logs in again and retries once.
    fn post_report(&mut self, body: &Value) -> Result<u16, ReportError> {
        let mut relogged = false;
        loop {
            let token = self.token()?;
            let response = self
                .agent
                .post(format!("{}/api/v1/service/receive/errorjson", self.link.base_url))
                .header("X-API-Key", self.link.api_key.expose())
                .header("Authorization", format!("Bearer {token}"))
                .header("Content-Type", "application/json")
                .send(body.to_string())?;
            let status = response.status().as_u16();
            match status {
                200..=299 => return Ok(status),
                401 if !relogged => {
                    self.token = None;
                    relogged = true;
                }
                _ => {
                    return Err(ReportError::Status { step: "errorjson", status });
                }
            }
        }
    }

    /// The cached token, or a fresh one from `POST /login`.
    fn token(&mut self) -> Result<String, ReportError> {
        if let Some((token, until)) = &self.token
            && *until > Instant::now()
        {
            return Ok(token.clone());
        }
        let credentials = json!({"username": self.link.username, "password": self.link.password.expose()});
        let mut response = self
            .agent
            .post(format!("{}/login", self.link.base_url))
            .header("X-API-Key", self.link.api_key.expose())
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .send(credentials.to_string())?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(ReportError::Status { step: "login", status });
        }
        let answer: Value =
            serde_json::from_str(&response.body_mut().read_to_string()?).map_err(|_| ReportError::NoToken)?;
        let token = answer.get("access_token").and_then(Value::as_str).ok_or(ReportError::NoToken)?;
        let lifetime = answer.get("expires_in").and_then(Value::as_u64).unwrap_or(300);
        // Renew a minute early (or halfway for short-lived tokens).
        let reuse_for = Duration::from_secs(lifetime.saturating_sub(60).max(lifetime / 2));
        self.token = Some((token.to_string(), Instant::now() + reuse_for));
        Ok(token.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_quote_the_first_datapoint_and_the_received_message_id() {
        let job = ReportJob {
            message_id: "electricity_lu_20210131T0015_42".into(),
            body: Bytes::from_static(
                br#"{"gatewayData":{"datapointValues":[{"datapointKey":"k","value":1.5,"tsIso8601":"2021-01-31T00:15:00Z"}]}}"#,
            ),
            due: Instant::now(),
        };
        let id = fresh_esight_id();
        assert_eq!(id.len(), 24);
        let report = report_body(&id, &job);
        assert_eq!(report["_id"], id.as_str());
        assert_eq!(report["header"]["messageId"], "electricity_lu_20210131T0015_42");
        assert_eq!(report["errors"][0]["datapointKey"], "k");
        assert_eq!(report["errors"][0]["value"], 1.5);
    }
}
