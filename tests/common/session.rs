//! An admin session on a test app (key + token) with shortcuts for the
//! message endpoints, and builders for consumption messages.

use std::time::Duration;

use serde_json::{Value, json};

use super::esight::wait_for;
use super::{Reply, TestApp};

/// Path of the ingest endpoint and the message list.
pub const MESSAGES: &str = "/api/v1/service/send/messages";

/// An app with an admin's API key and token.
pub struct Session {
    /// The app.
    pub app: TestApp,
    /// API key.
    pub key: String,
    /// Admin token.
    pub token: String,
}

impl Session {
    /// Seeds an admin and a key on `app` and logs in.
    pub fn new(app: TestApp) -> Self {
        let (key, token, _) = app.admin_session();
        Self { app, key, token }
    }

    /// Stops the app and starts it again on the same data directory; the
    /// key and token stay valid.
    pub fn restart(self) -> Self {
        let Session { app, key, token } = self;
        let (dir, config) = app.stop();
        Self { app: super::start(dir, config), key, token }
    }

    /// Any request with key and token and an optional JSON body.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        self.app.authed(method, path, &self.key, &self.token, body)
    }

    /// A request with key and token, extra headers and raw body bytes.
    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
        let bearer = format!("Bearer {}", self.token);
        let mut all = vec![("X-API-Key", self.key.as_str()), ("Authorization", bearer.as_str())];
        all.extend_from_slice(headers);
        self.app.request(method, path, &all, body)
    }

    /// `GET path`, asserting `200`; the JSON body.
    pub fn get_json(&self, path: &str) -> Value {
        let r = self.call("GET", path, None);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r.json()
    }

    /// Posts raw bytes as `application/json` to the ingest endpoint.
    pub fn post_bytes(&self, body: &[u8]) -> Reply {
        self.raw("POST", MESSAGES, &[("Content-Type", "application/json")], Some(body))
    }

    /// Posts one message (or an array) to the ingest endpoint.
    pub fn post(&self, body: &Value) -> Reply {
        self.call("POST", MESSAGES, Some(body))
    }

    /// Posts one message that must be accepted as new; returns its id.
    pub fn accept(&self, body: &Value) -> String {
        self.accept_bytes(body.to_string().as_bytes())
    }

    /// Posts raw bytes of one message that must be accepted as new; returns its id.
    pub fn accept_bytes(&self, body: &[u8]) -> String {
        let r = self.post_bytes(body);
        assert_eq!(r.status, 202, "{}", r.text());
        let v = r.json();
        assert_eq!(v["accepted"][0]["duplicate"], false, "{v}");
        assert_eq!(v["accepted"][0]["status"], "pending", "{v}");
        v["accepted"][0]["id"].as_str().unwrap().to_string()
    }

    /// The detail of message `id` (asserting `200`).
    pub fn detail(&self, id: &str) -> Value {
        self.get_json(&format!("{MESSAGES}/{id}"))
    }

    /// The list with a query string (without `?`).
    pub fn list(&self, query: &str) -> Value {
        self.get_json(&format!("{MESSAGES}?{query}"))
    }

    /// Waits until message `id` has `status`; returns its detail.
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        wait_for(timeout, &format!("message {id} to be {status}"), || {
            let d = self.detail(id);
            (d["status"] == status).then_some(d)
        })
    }
}

/// A fixture message file as text.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/messages/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A valid message for meter `LU_VPC_Elec_1` (in the sample catalog).
pub fn message(message_id: &str) -> Value {
    message_for(message_id, "lu", "electricity", "VPC", "LU_VPC_Elec_1")
}

/// A valid message for any market, feed type, site and meter.
pub fn message_for(message_id: &str, market: &str, feed: &str, site: &str, meter: &str) -> Value {
    json!({
        "messageType": "consumption",
        "header": {
            "messageId": message_id,
            "gatewayTypeUrn": format!("urn:esight:assets:edm:{market}:{feed}"),
            "gatewayUrn": format!("urn:esight:gateways:edm:{market}:{site}:{meter}"),
        },
        "gatewayData": {
            "datapointValues": [
                {"datapointKey": "activeEnergyImport", "value": 10.5, "tsIso8601": "2021-01-31T00:15:00Z"},
                {"datapointKey": "activeEnergyImport", "value": 10.75, "tsIso8601": "2021-01-31T00:30:00Z"}
            ]
        }
    })
}

/// A message id unique in this process.
pub fn unique_id(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{tag}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}
