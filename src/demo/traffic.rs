//! Sample traffic for the demo: a few messages per second built like the
//! sample documents (LU and HU meters of the simulator's catalog), about one
//! in ten invalid and one in twenty naming a meter eSight does not know,
//! posted through the real API with an API key and a token, as a data
//! producer would. Runs on its own thread (blocking HTTP client).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

/// How the traffic thread reaches the appliance.
pub struct TrafficPlan {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// API key.
    pub api_key: String,
    /// The data producer's username and password.
    pub username: String,
    /// Password.
    pub password: String,
    /// Pause between messages.
    pub interval: Duration,
}

/// Counts of what was posted.
#[derive(Default)]
pub struct TrafficStats {
    /// Answered 202.
    pub accepted: AtomicU64,
    /// Answered 422: invalid on purpose, refused at ingest ("rejected" is
    /// kept for eSight's reports).
    pub invalid: AtomicU64,
    /// Transport or unexpected errors.
    pub errors: AtomicU64,
}

/// One sample message; `n` picks the meter and whether it is broken.
pub fn sample_message(n: u64, now_rfc3339: &str) -> Value {
    let (market, site, meter) = match n % 4 {
        0 => ("lu", "VPC", format!("LU_VPC_Elec_{}", n % 11 + 1)),
        1 => ("lu", "VPC", format!("LU_VPC_Temp_{}", n % 62 + 1)),
        2 => ("hu", "1001", format!("HU_1001_Elec_{}", n % 2 + 1)),
        _ => ("hu", "1002", format!("HU_1002_Elec_{}", n % 2 + 1)),
    };
    let meter = if n % 20 == 7 { "LU_VPC_Elec_99".to_string() } else { meter };
    let values: Vec<Value> = (0..4)
        .map(|i| {
            json!({"datapointKey": "activeEnergyImport", "value": 10.0 + f64::from(i) * 0.25 + (n % 7) as f64,
                   "tsIso8601": now_rfc3339})
        })
        .collect();
    let mut header = json!({
        "messageId": format!("demo_{market}_{n}_{}", now_rfc3339.replace([':', '-', '.'], "")),
        "gatewayTypeUrn": format!("urn:esight:assets:edm:{market}:electricity"),
        "gatewayUrn": format!("urn:esight:gateways:edm:{market}:{site}:{meter}"),
    });
    if n % 10 == 3 {
        header.as_object_mut().map(|h| h.remove("gatewayUrn"));
    }
    json!({"messageType": "consumption", "header": header, "gatewayData": {"datapointValues": values}})
}

/// Posts sample messages until `stop` is set.
pub fn run(plan: TrafficPlan, stop: Arc<AtomicBool>, stats: Arc<TrafficStats>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut token: Option<String> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(plan.interval);
        if token.is_none() {
            token = login(&agent, &plan);
            if token.is_none() {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        n += 1;
        let now = crate::clock::format_millis(crate::clock::now_millis());
        let body = sample_message(n, &now).to_string();
        let resp = agent
            .post(&format!("{}/api/v1/service/send/messages", plan.base_url))
            .header("X-API-Key", &plan.api_key)
            .header("Authorization", &format!("Bearer {}", token.as_deref().unwrap_or_default()))
            .content_type("application/json")
            .send(body.as_bytes());
        match resp.map(|r| r.status().as_u16()) {
            Ok(202) => stats.accepted.fetch_add(1, Ordering::Relaxed),
            Ok(422) => stats.invalid.fetch_add(1, Ordering::Relaxed),
            Ok(401) => {
                token = None;
                stats.errors.fetch_add(1, Ordering::Relaxed)
            }
            _ => stats.errors.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn login(agent: &ureq::Agent, plan: &TrafficPlan) -> Option<String> {
    let body = json!({"username": plan.username, "password": plan.password}).to_string();
    let mut resp = agent
        .post(&format!("{}/login", plan.base_url))
        .header("X-API-Key", &plan.api_key)
        .content_type("application/json")
        .send(body.as_bytes())
        .ok()?;
    if resp.status().as_u16() != 200 {
        return None;
    }
    resp.body_mut().read_to_string().ok()
}
