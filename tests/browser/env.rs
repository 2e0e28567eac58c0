//! The system under test for the browser flows: an in-process eSight
//! simulator (on its own thread and runtime) configured as the appliance's
//! eSight, an in-process appliance, and seeded identities: an admin for the
//! browser, a backoffice data producer and an `esight` account for the API.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use energyload::config::Secret;
use energyload::simulator::{EsightSim, Faults, SimConfig};
use serde_json::{Value, json};

use crate::common::identity::TestUser;
use crate::common::{TestApp, spawn_app_with};

/// The simulator running on a thread of its own.
pub struct SimThread {
    sim: Option<EsightSim>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SimThread {
    fn start(cfg: SimConfig) -> Self {
        let (tx, rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            let sim = rt.block_on(EsightSim::start(cfg)).expect("simulator starts");
            tx.send(sim).unwrap();
            rt.block_on(async {
                let _ = stopped.await;
            });
        });
        let sim = rx.recv().expect("simulator started");
        Self { sim: Some(sim), stop: Some(stop), thread: Some(thread) }
    }

    /// The running simulator.
    pub fn sim(&self) -> &EsightSim {
        self.sim.as_ref().unwrap()
    }

    /// Replaces the simulator's faults.
    pub fn set_faults(&self, faults: Faults) {
        self.sim().faults().set(faults).unwrap();
    }

    /// The status the simulator answered to the posts of a message (by the
    /// messageId the appliance sends: `<messageId>_<id>`).
    pub fn statuses_for(&self, sent_message_id: &str) -> Vec<u16> {
        self.sim()
            .received()
            .into_iter()
            .filter(|r| r.message_id.as_deref() == Some(sent_message_id))
            .map(|r| r.status)
            .collect()
    }
}

impl Drop for SimThread {
    fn drop(&mut self) {
        drop(self.sim.take());
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Appliance + simulator + identities.
pub struct Env {
    /// The appliance (declared first, so it stops before the simulator).
    pub app: TestApp,
    /// The eSight simulator.
    pub sim: SimThread,
    /// The admin who signs in through the browser.
    pub admin: TestUser,
    /// An API key seeded for API calls.
    pub key: String,
    /// A bearer token of the backoffice data producer.
    pub feeder_token: String,
    /// A bearer token of the `esight` account (error reports).
    pub esight_token: String,
}

impl Env {
    /// Starts everything; the admin's username is `admin`.
    pub fn start() -> Self {
        let sim = SimThread::start(SimConfig::default());
        let s = sim.sim();
        let (token_url, sites_url, meters_url, consumption_url) =
            (s.token_url(), s.sites_url(), s.meters_url(), s.consumption_url());
        let c = s.config().clone();
        let app = spawn_app_with(move |config| {
            config.esight.token_url = Some(token_url);
            config.esight.sites_url = Some(sites_url);
            config.esight.meters_url = Some(meters_url);
            config.esight.consumption_url = Some(consumption_url);
            config.esight.username = Some(Secret::new(c.username.clone()));
            config.esight.password = Some(c.password.clone());
            config.esight.post_username = Some(Secret::new(c.post_username.clone()));
            config.esight.post_password = Some(c.post_password.clone());
            config.delivery.backoff_initial = energyload::config::Duration::from_millis(200);
            config.delivery.backoff_max = energyload::config::Duration::from_secs(2);
        });
        let admin = app.seed_user("admin", "admin");
        let feeder = app.seed_user("feeder", "backoffice");
        let esight = app.seed_user("esight", "esight");
        let key = app.seed_api_key("browser-tests");
        let feeder_token = app.login(&key, &feeder.username, &feeder.password);
        let esight_token = app.login(&key, &esight.username, &esight.password);
        Self { app, sim, admin, key, feeder_token, esight_token }
    }

    /// `http://127.0.0.1:PORT/admin/`.
    pub fn admin_url(&self) -> String {
        format!("{}/admin/", self.app.base())
    }

    /// Posts one valid message (meter `LU_VPC_Elec_1`) through the API as
    /// the data producer; returns its id.
    pub fn post_message(&self, message_id: &str) -> String {
        let r = self.app.authed(
            "POST",
            "/api/v1/service/send/messages",
            &self.key,
            &self.feeder_token,
            Some(&sample_message(message_id)),
        );
        assert_eq!(r.status, 202, "post message: {}", r.text());
        let body = r.json();
        body["accepted"][0]["id"].as_str().unwrap_or_else(|| panic!("accepted id in {body}")).to_string()
    }

    /// The message as the API shows it (to the data producer).
    pub fn message(&self, id: &str) -> Value {
        let r = self.app.authed(
            "GET",
            &format!("/api/v1/service/send/messages/{id}"),
            &self.key,
            &self.feeder_token,
            None,
        );
        assert_eq!(r.status, 200, "get message: {}", r.text());
        r.json()
    }

    /// Waits until the message has `status`; returns it.
    pub fn wait_status(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let m = self.message(id);
            if m["status"] == status {
                return m;
            }
            assert!(Instant::now() < deadline, "message {id} never became {status}: {m}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Posts an eSight error report for a delivered message (by the
    /// messageId eSight saw); returns the report's answer.
    pub fn post_error_report(&self, esight_id: &str, sent_message_id: &str) -> Value {
        let body = json!({
            "_id": esight_id,
            "header": {"messageId": sent_message_id, "received_tsIso8601": "2021-01-31T00:20:00Z"},
            "errors": [{"errorCode": "E102", "errorMessage": "value out of range",
                        "datapointKey": "activeEnergyImport", "value": 10.5, "tsIso8601": "2021-01-31T00:30:00Z"}]
        });
        let r = self.app.authed(
            "POST",
            "/api/v1/service/receive/errorjson",
            &self.key,
            &self.esight_token,
            Some(&body),
        );
        assert_eq!(r.status, 201, "error report: {}", r.text());
        r.json()
    }

    /// Posts a malformed error report (kept in quarantine, answered 400).
    pub fn post_malformed_report(&self) {
        let body = json!({"_id": "quarantined-1", "header": "not an object"});
        let r = self.app.authed(
            "POST",
            "/api/v1/service/receive/errorjson",
            &self.key,
            &self.esight_token,
            Some(&body),
        );
        r.assert_error(400, "InvalidJsonReceived");
    }
}

/// A valid consumption message for meter `LU_VPC_Elec_1` at site `LU_VPC`.
pub fn sample_message(message_id: &str) -> Value {
    json!({
        "messageType": "consumption",
        "header": {
            "messageId": message_id,
            "gatewayTypeUrn": "urn:esight:assets:edm:lu:electricity",
            "gatewayUrn": "urn:esight:gateways:edm:lu:VPC:LU_VPC_Elec_1"
        },
        "gatewayData": {
            "datapointValues": [
                {"datapointKey": "activeEnergyImport", "value": 10.0, "tsIso8601": "2021-01-31T00:00:00Z"},
                {"datapointKey": "activeEnergyImport", "value": 10.25, "tsIso8601": "2021-01-31T00:15:00Z"}
            ]
        }
    })
}
