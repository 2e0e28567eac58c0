//! The eSight simulator, started in-process on loopback and exercised over
//! HTTP with `ureq`: eSight's endpoints, fault injection, outages, the
//! control API, the capacity model (queue, `429` past the queue bound,
//! run-time changes), the `esight-sim` command, and error reports posted to
//! a stand-in appliance (a tiny loopback HTTP server in this file that plays
//! the appliance's side).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use energyload::config::Secret;
use energyload::simulator::{
    ApplianceLink, Capacity, EsightSim, Faults, Outage, OutageMode, SimConfig, SimError,
};
use serde_json::{Value, json};

/// A simulator on its own runtime, plus a blocking client.
struct Harness {
    runtime: tokio::runtime::Runtime,
    sim: Option<EsightSim>,
    agent: ureq::Agent,
}

impl Harness {
    fn start(cfg: SimConfig) -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let sim = runtime.block_on(EsightSim::start(cfg)).expect("simulator starts");
        Self { runtime, sim: Some(sim), agent: agent(Duration::from_secs(10)) }
    }

    fn sim(&self) -> &EsightSim {
        self.sim.as_ref().unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim().base_url())
    }

    fn token_auth(&self) -> String {
        let cfg = self.sim().config();
        basic(&cfg.username, cfg.password.expose())
    }

    fn post_auth(&self) -> String {
        let cfg = self.sim().config();
        basic(&cfg.post_username, cfg.post_password.expose())
    }

    fn get(&self, path: &str, authorization: Option<&str>) -> Answer {
        let mut req = self.agent.get(self.url(path));
        if let Some(a) = authorization {
            req = req.header("Authorization", a);
        }
        Answer::from(req.call().expect("the simulator answers"))
    }

    fn token(&self) -> String {
        let answer = self.get("/token", Some(&self.token_auth()));
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()["access_token"].as_str().unwrap().to_string()
    }

    fn try_post(&self, agent: &ureq::Agent, body: &Value, key: &str) -> Result<Answer, ureq::Error> {
        agent
            .post(self.url("/consumption"))
            .header("Authorization", self.post_auth())
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", key)
            .send(body.to_string())
            .map(Answer::from)
    }

    fn post(&self, body: &Value, key: &str) -> Answer {
        self.try_post(&self.agent, body, key).expect("the simulator answers")
    }

    fn control(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let url = self.url(path);
        let result = match (method, body) {
            ("GET", _) => self.agent.get(url).call(),
            ("DELETE", _) => self.agent.delete(url).call(),
            ("POST", Some(b)) => {
                self.agent.post(url).header("Content-Type", "application/json").send(b.to_string())
            }
            ("POST", None) => self.agent.post(url).send_empty(),
            ("PUT", Some(b)) => {
                self.agent.put(url).header("Content-Type", "application/json").send(b.to_string())
            }
            _ => unreachable!("unused in these tests"),
        };
        Answer::from(result.expect("the control API answers"))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(sim) = self.sim.take() {
            self.runtime.block_on(sim.shutdown());
        }
    }
}

/// Status, headers and body of an answer.
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

impl From<ureq::http::Response<ureq::Body>> for Answer {
    fn from(mut r: ureq::http::Response<ureq::Body>) -> Self {
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        Self { status: r.status().as_u16(), headers, body: r.body_mut().read_to_string().unwrap_or_default() }
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into()
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn message(message_id: &str) -> Value {
    json!({
        "messageType": "consumption",
        "header": {
            "messageId": message_id,
            "gatewayTypeUrn": "urn:esight:assets:edm:lu:electricity",
            "gatewayUrn": "urn:esight:gateways:edm:lu:VPC:LU_VPC_Elec_1"
        },
        "gatewayData": {"datapointValues": [
            {"datapointKey": "activeEnergyImport", "value": 12.5, "tsIso8601": "2021-01-31T00:15:00Z"}
        ]},
        "extra": {"kept": [1, 2, 3]}
    })
}

fn set_faults(h: &Harness, faults: Value) {
    let answer = h.control("POST", "/_sim/faults", Some(faults));
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[test]
fn tokens_need_the_right_basic_credentials() {
    let h = Harness::start(SimConfig::default());
    let answer = h.get("/token", Some(&h.token_auth()));
    assert_eq!(answer.status, 200);
    let token = answer.json();
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 3600);
    assert!(token["access_token"].as_str().unwrap().len() >= 32);
    assert_ne!(h.token(), token["access_token"].as_str().unwrap(), "tokens are random");

    let wrong = h.get("/token", Some(&basic(&h.sim().config().username, "wrong")));
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("www-authenticate").unwrap().starts_with("Basic"));
    assert_eq!(
        h.get("/token", Some(&h.post_auth())).status,
        401,
        "post credentials are not token credentials"
    );
    assert_eq!(h.get("/token", None).status, 401);

    let stats = h.sim().stats();
    assert_eq!((stats.tokens.issued, stats.tokens.refused, stats.tokens.active), (2, 3, 2));
    assert_eq!(stats.requests["token"], 5);
}

#[test]
fn the_catalog_needs_a_valid_bearer_token() {
    let h = Harness::start(SimConfig::default());
    assert_eq!(h.get("/sites", None).status, 401);
    let unknown = h.get("/meters", Some("Bearer not-a-token"));
    assert_eq!(unknown.status, 401);
    assert!(unknown.header("www-authenticate").unwrap().starts_with("Bearer"));

    let bearer = format!("Bearer {}", h.token());
    let sites = h.get("/sites", Some(&bearer)).json();
    assert!(sites.as_array().unwrap().contains(&json!({"SiteCode": "LU_VPC"})));
    let meters = h.get("/meters", Some(&bearer)).json();
    assert!(meters.as_array().unwrap().contains(&json!({"MeterCode": "LU_VPC_Elec_1"})));

    h.sim().expire_tokens();
    assert_eq!(h.get("/sites", Some(&bearer)).status, 401);
    let bearer = format!("Bearer {}", h.token());
    assert_eq!(h.control("POST", "/_sim/tokens/expire", None).json()["expired"], 1);
    assert_eq!(h.get("/meters", Some(&bearer)).status, 401);
    assert_eq!(h.sim().stats().tokens.bearer_rejected, 4);
}

#[test]
fn tokens_expire_after_their_lifetime() {
    let h = Harness::start(SimConfig { token_ttl: Duration::from_secs(1), ..SimConfig::default() });
    let answer = h.get("/token", Some(&h.token_auth()));
    assert_eq!(answer.json()["expires_in"], 1);
    let bearer = format!("Bearer {}", answer.json()["access_token"].as_str().unwrap());
    assert_eq!(h.get("/sites", Some(&bearer)).status, 200);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(h.get("/sites", Some(&bearer)).status, 401);
    let fresh = format!("Bearer {}", h.token());
    assert_eq!(h.get("/sites", Some(&fresh)).status, 200);
}

#[test]
fn consumption_posts_are_recorded_with_body_and_idempotency_key() {
    let h = Harness::start(SimConfig::default());
    let body = message("electricity_lu_20210131T0015_17");
    let answer = h.post(&body, "17");
    assert_eq!(answer.status, 202);
    assert_eq!(answer.json(), json!({"accepted": true, "seq": 1}));

    let wrong =
        h.agent.post(h.url("/consumption")).header("Authorization", h.token_auth()).send(body.to_string());
    assert_eq!(wrong.unwrap().status(), 401, "token credentials are not post credentials");
    let not_json = h.agent.post(h.url("/consumption")).header("Authorization", h.post_auth()).send("{nope");
    assert_eq!(not_json.unwrap().status(), 400);
    assert_eq!(h.post(&body, "17").status, 202);

    let received = h.sim().received();
    assert_eq!(received.len(), 3, "refused credentials are counted, not recorded");
    let first = &received[0];
    assert_eq!(first.json().unwrap(), body);
    assert_eq!(first.idempotency_key.as_deref(), Some("17"));
    assert_eq!(first.message_id.as_deref(), Some("electricity_lu_20210131T0015_17"));
    assert!(!first.duplicate);
    assert!(received[2].duplicate, "the same key accepted twice is flagged");
    assert_eq!(received.iter().map(|m| m.status).collect::<Vec<_>>(), vec![202, 400, 202]);

    let page = h.control("GET", "/_sim/received?since=1&limit=2", None).json();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!((items[0]["seq"].as_u64(), page["next_since"].as_u64()), (Some(2), Some(3)));
    let all = h.control("GET", "/_sim/received", None).json();
    assert_eq!(all["items"][0]["body"], body);
    assert_eq!(all["items"][0]["idempotency_key"], "17");
    assert_eq!(all["items"][1]["body"], "{nope");

    let stats = h.control("GET", "/_sim/stats", None).json();
    assert_eq!(stats["consumption"]["accepted"], 2);
    assert_eq!(stats["consumption"]["duplicates"], 1);
    assert_eq!(stats["consumption"]["by_status"], json!({"202": 2, "400": 1, "401": 1}));

    let wrong_method = h.get("/consumption", Some(&h.post_auth()));
    assert_eq!((wrong_method.status, wrong_method.header("allow")), (405, Some("POST")));
    assert_eq!(h.get("/nowhere", None).status, 404);
}

#[test]
fn a_status_sequence_plays_in_order_then_posts_are_accepted() {
    let h = Harness::start(SimConfig::default());
    set_faults(&h, json!({"sequence": [503, 503, 200]}));
    let statuses: Vec<u16> = (0..4).map(|i| h.post(&message(&format!("m_{i}")), "1").status).collect();
    assert_eq!(statuses, vec![503, 503, 200, 202]);
    let stats = h.sim().stats();
    assert_eq!(stats.consumption.by_status.get(&503), Some(&2));
    assert_eq!(h.sim().received().iter().filter(|m| m.idempotency_key.as_deref() == Some("1")).count(), 4);
}

#[test]
fn error_rates_fail_about_that_share_of_posts() {
    let h = Harness::start(SimConfig::default());
    set_faults(&h, json!({"error_rates": {"500": 1.0}}));
    let failed = h.post(&message("m_1"), "1");
    assert_eq!(failed.status, 500);
    assert_eq!(failed.json()["error"]["code"], "InternalServerError");

    set_faults(&h, json!({"error_rates": {"503": 0.5}}));
    let unavailable =
        (0..100).filter(|i| h.post(&message(&format!("m_{i}")), &i.to_string()).status == 503).count();
    assert!((15..=85).contains(&unavailable), "{unavailable} of 100 answered 503 at a 50% rate");
}

#[test]
fn too_many_requests_carries_retry_after() {
    let h = Harness::start(SimConfig::default());
    h.sim()
        .faults()
        .set(Faults { sequence: vec![429, 503], retry_after_secs: Some(7), ..Faults::default() })
        .unwrap();
    let limited = h.post(&message("m_1"), "1");
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("7"));
    assert_eq!(limited.json()["error"]["code"], "TooManyRequests");
    assert_eq!(h.post(&message("m_1"), "1").header("retry-after"), Some("7"));
    assert_eq!(h.post(&message("m_1"), "1").status, 202);
}

#[test]
fn latency_delays_every_esight_answer() {
    let h = Harness::start(SimConfig::default());
    set_faults(&h, json!({"latency_ms": 300}));
    let started = Instant::now();
    h.token();
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(h.post(&message("m_1"), "1").status, 202);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn a_refuse_outage_closes_the_port_then_it_opens_again() {
    let h = Harness::start(SimConfig::default());
    assert_eq!(h.post(&message("m_1"), "1").status, 202, "a kept-alive connection exists");
    let window = Duration::from_millis(1500);
    let set_at = Instant::now();
    h.sim()
        .faults()
        .set(Faults {
            outage: Some(Outage {
                mode: OutageMode::Refuse,
                starts_in_ms: 0,
                duration_ms: 1500,
                every_ms: None,
            }),
            ..Faults::default()
        })
        .unwrap();
    let mut refused = false;
    while set_at.elapsed() < Duration::from_millis(700) {
        if h.try_post(&h.agent, &message("m_2"), "2").is_err() {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(refused, "no connection error during the outage");
    let probe = std::net::TcpStream::connect(h.sim().addr());
    assert!(probe.is_err(), "the port is closed during the outage");

    std::thread::sleep(window.saturating_sub(set_at.elapsed()));
    let mut recovered = None;
    while set_at.elapsed() < Duration::from_secs(10) {
        if let Ok(answer) = h.try_post(&h.agent, &message("m_2"), "2") {
            recovered = Some(answer.status);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(recovered, Some(202), "accepting again after the outage");
    assert!(h.sim().stats().connections_dropped >= 1);
}

#[test]
fn a_hang_outage_holds_answers_until_it_ends() {
    let h = Harness::start(SimConfig::default());
    let set_at = Instant::now();
    set_faults(&h, json!({"outage": {"mode": "hang", "duration_ms": 1500}}));
    let impatient = agent(Duration::from_millis(300));
    let timed_out = h.try_post(&impatient, &message("m_1"), "1");
    assert!(timed_out.is_err(), "answered during a hang outage");

    let during = h.control("GET", "/_sim/faults", None).json();
    assert_eq!(during["outage_now"], "hang", "the control API still answers");

    let answer = h.post(&message("m_2"), "2");
    assert_eq!(answer.status, 202);
    assert!(set_at.elapsed() >= Duration::from_millis(1500), "answered before the outage ended");
    assert_eq!(h.control("GET", "/_sim/faults", None).json()["outage_now"], Value::Null);
}

#[test]
fn the_control_api_sets_clears_and_resets() {
    let h = Harness::start(SimConfig {
        faults: Faults { latency_ms: 5, ..Faults::default() },
        ..SimConfig::default()
    });
    let view = h.control("GET", "/_sim/faults", None).json();
    assert_eq!(view["faults"]["latency_ms"], 5);

    let refused = h.control("POST", "/_sim/faults", Some(json!({"error_rates": {"503": 2.0}})));
    assert_eq!(refused.status, 400);
    assert_eq!(h.control("POST", "/_sim/faults", Some(json!({"bogus": 1}))).status, 400);
    let needs_appliance = h.control("POST", "/_sim/faults", Some(json!({"report_fraction": 0.5})));
    assert_eq!(needs_appliance.status, 400);

    let set = h.control("POST", "/_sim/faults", Some(json!({"sequence": [500, 502]}))).json();
    assert_eq!(set["sequence_remaining"], json!([500, 502]));
    assert_eq!(set["faults"]["latency_ms"], 0, "setting faults replaces them all");
    assert_eq!(h.post(&message("m_1"), "1").status, 500);
    assert_eq!(h.control("GET", "/_sim/faults", None).json()["sequence_remaining"], json!([502]));
    let cleared = h.control("DELETE", "/_sim/faults", None).json();
    assert_eq!(cleared["sequence_remaining"], json!([]));
    assert_eq!(h.post(&message("m_1"), "1").status, 202);

    let catalog = json!({"sites": [{"SiteCode": "XX_1"}], "meters": [{"MeterCode": "XX_1_M"}]});
    assert_eq!(h.control("PUT", "/_sim/catalog", Some(catalog)).json(), json!({"sites": 1, "meters": 1}));
    let bearer = format!("Bearer {}", h.token());
    assert_eq!(h.get("/meters", Some(&bearer)).json(), json!([{"MeterCode": "XX_1_M"}]));
    assert_eq!(h.control("PUT", "/_sim/catalog", Some(json!({"sites": {}, "meters": []}))).status, 400);

    assert_eq!(h.control("POST", "/_sim/reset", None).json(), json!({"reset": true}));
    assert!(h.sim().received().is_empty());
    assert_eq!(h.get("/meters", Some(&bearer)).status, 401, "a reset forgets tokens");
    assert_eq!(h.sim().faults().get().latency_ms, 5, "a reset restores the faults given at start");
    let stats = h.control("GET", "/_sim/stats", None).json();
    assert_eq!(stats["consumption"]["accepted"], 0);

    let wrong = h.control("GET", "/_sim/reset", None);
    assert_eq!((wrong.status, wrong.header("allow")), (405, Some("POST")));
    assert_eq!(h.control("GET", "/_sim/nothing", None).status, 404);
}

#[test]
fn error_reports_need_an_appliance() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cfg =
        SimConfig { faults: Faults { report_fraction: 0.1, ..Faults::default() }, ..SimConfig::default() };
    let started = runtime.block_on(EsightSim::start(cfg));
    assert!(matches!(started, Err(SimError::NoAppliance)));
}

/// One request as the stand-in appliance saw it.
#[derive(Debug)]
struct SeenRequest {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

/// A loopback HTTP/1.1 server playing the appliance's `/login` and
/// `errorjson` endpoints; every request it sees goes to the channel.
fn fake_appliance() -> (String, mpsc::Receiver<SeenRequest>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (seen, requests) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let (method, path) =
                (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
            let mut headers = HashMap::new();
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let Some((name, value)) = header.trim_end().split_once(':') else {
                    break;
                };
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
            let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let (status, answer) = if path == "/login" {
                (
                    "200 OK",
                    json!({"access_token": "appliance-jwt", "token_type": "Bearer", "expires_in": 3600}),
                )
            } else {
                ("201 Created", json!({"id": "1", "correlated": true}))
            };
            let answer = answer.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if seen.send(SeenRequest { method, path, headers, body }).is_err() {
                return;
            }
        }
    });
    (url, requests)
}

#[test]
fn error_reports_are_posted_to_the_appliance_after_a_delay() {
    let (appliance_url, requests) = fake_appliance();
    let h = Harness::start(SimConfig {
        appliance: Some(ApplianceLink {
            base_url: format!("{appliance_url}/"),
            api_key: Secret::new("key-123"),
            username: "esight".into(),
            password: Secret::new("eSight-callback-pass-3"),
        }),
        faults: Faults { report_fraction: 1.0, report_delay_ms: 200, ..Faults::default() },
        ..SimConfig::default()
    });
    let posted_at = Instant::now();
    assert_eq!(h.post(&message("electricity_lu_20210131T0015_41"), "41").status, 202);

    let login = requests.recv_timeout(Duration::from_secs(10)).expect("the simulator logs in");
    assert!(posted_at.elapsed() >= Duration::from_millis(200), "the report waited for its delay");
    assert_eq!((login.method.as_str(), login.path.as_str()), ("POST", "/login"));
    assert_eq!(login.headers["x-api-key"], "key-123");
    assert_eq!(login.headers["accept"], "application/json");
    assert_eq!(login.body, json!({"username": "esight", "password": "eSight-callback-pass-3"}));

    let report = requests.recv_timeout(Duration::from_secs(10)).expect("the simulator posts a report");
    assert_eq!((report.method.as_str(), report.path.as_str()), ("POST", "/api/v1/service/receive/errorjson"));
    assert_eq!(report.headers["authorization"], "Bearer appliance-jwt");
    assert_eq!(report.headers["x-api-key"], "key-123");
    assert_eq!(report.body["header"]["messageId"], "electricity_lu_20210131T0015_41");
    let esight_id = report.body["_id"].as_str().unwrap();
    assert!(esight_id.len() == 24 && esight_id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(report.body["errors"][0]["datapointKey"], "activeEnergyImport");
    assert_eq!(report.body["errors"][0]["value"], 12.5);

    assert_eq!(h.post(&message("electricity_lu_20210131T0030_42"), "42").status, 202);
    let second = requests.recv_timeout(Duration::from_secs(10)).expect("a second report");
    assert_eq!(second.path, "/api/v1/service/receive/errorjson", "the token is reused");
    assert_eq!(second.body["header"]["messageId"], "electricity_lu_20210131T0030_42");
    assert_ne!(second.body["_id"], report.body["_id"]);

    assert_eq!(h.post(&message("electricity_lu_20210131T0030_42"), "42").status, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.sim().reports().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let reports = h.control("GET", "/_sim/reports", None).json();
    let items = reports["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|r| r["outcome"] == "posted" && r["http_status"] == 201));
    let stats = h.sim().stats();
    assert_eq!(stats.reports.get("scheduled"), Some(&2), "a duplicate gets no second report");
    assert_eq!(stats.reports.get("posted"), Some(&2));
}

// --- Capacity -------------------------------------------------------------

/// Faults that hold every post in service until the faults change: the
/// tests below fill the service slots and the queue this way, so that what
/// they observe never depends on how fast the machine is.
fn hold_in_service() -> Value {
    json!({"outage": {"mode": "hang", "duration_ms": 3_600_000}})
}

fn capacity(concurrent: u64, queue: Option<u64>) -> Option<Capacity> {
    Some(Capacity::new(concurrent, queue).unwrap())
}

/// A consumption post from its own thread and its own connection.
fn spawn_post(h: &Harness, key: &str) -> std::thread::JoinHandle<Answer> {
    let (url, auth, key) = (h.url("/consumption"), h.post_auth(), key.to_string());
    std::thread::spawn(move || {
        let answer = agent(Duration::from_secs(60))
            .post(url)
            .header("Authorization", auth)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", &key)
            .send(message(&format!("m_{key}")).to_string())
            .expect("the simulator answers");
        Answer::from(answer)
    })
}

fn capacity_view(h: &Harness) -> Value {
    h.control("GET", "/_sim/capacity", None).json()
}

/// Polls `GET /_sim/capacity` until `in_service` and `queued` are these.
fn wait_for_load(h: &Harness, in_service: u64, queued: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = capacity_view(h);
        if view["in_service"] == in_service && view["queued"] == queued {
            return;
        }
        assert!(Instant::now() < deadline, "never {in_service} in service and {queued} queued: {view}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn received_keys(h: &Harness) -> Vec<String> {
    h.sim().received().into_iter().filter_map(|m| m.idempotency_key).collect()
}

#[test]
fn posts_beyond_the_capacity_wait_their_turn() {
    let h = Harness::start(SimConfig { capacity: capacity(4, None), ..SimConfig::default() });
    set_faults(&h, hold_in_service());
    let posts: Vec<_> = (0..12).map(|i| spawn_post(&h, &i.to_string())).collect();
    wait_for_load(&h, 4, 8);
    assert_eq!(capacity_view(&h), json!({"capacity": 4, "queue": 8, "in_service": 4, "queued": 8}));

    set_faults(&h, json!({"latency_ms": 300}));
    for post in posts {
        let answer = post.join().unwrap();
        assert_eq!(answer.status, 202, "{}", answer.body);
    }
    let stats = h.control("GET", "/_sim/stats", None).json();
    assert_eq!(
        (stats["max_in_service"].as_u64(), stats["max_concurrent_posts"].as_u64()),
        (Some(4), Some(12))
    );
    assert_eq!(stats["capacity_rejected"], 0);
    assert_eq!(stats["consumption"]["accepted"], 12);
    assert_eq!(capacity_view(&h), json!({"capacity": 4, "queue": 8, "in_service": 0, "queued": 0}));
}

#[test]
fn posts_past_the_queue_bound_get_429_at_once_and_are_not_recorded() {
    let h = Harness::start(SimConfig { capacity: capacity(2, Some(2)), ..SimConfig::default() });
    set_faults(&h, hold_in_service());
    let admitted: Vec<_> = (0..4).map(|i| spawn_post(&h, &format!("in_{i}"))).collect();
    wait_for_load(&h, 2, 2);

    // Answered while the four above are still held: at once, not queued.
    let over: Vec<_> = (0..6).map(|i| spawn_post(&h, &format!("over_{i}"))).collect();
    let rejected: Vec<Answer> = over.into_iter().map(|p| p.join().unwrap()).collect();
    for answer in &rejected {
        assert_eq!(answer.status, 429, "{}", answer.body);
        assert_eq!(answer.header("retry-after"), Some("1"));
        let error = &answer.json()["error"];
        assert_eq!(error["code"], "TooManyRequests");
        assert!(error["message"].as_str().unwrap().contains("capacity"));
        assert!(!error["request_id"].as_str().unwrap().is_empty());
    }
    assert_eq!(capacity_view(&h)["queued"], 2, "a refused post takes no place in the queue");

    set_faults(&h, json!({"latency_ms": 500}));
    let statuses: Vec<u16> = admitted.into_iter().map(|p| p.join().unwrap().status).collect();
    assert_eq!(statuses, vec![202; 4]);
    let mut keys = received_keys(&h);
    keys.sort();
    assert_eq!(keys, vec!["in_0", "in_1", "in_2", "in_3"], "refused posts are not recorded");
    let stats = h.sim().stats();
    assert_eq!(stats.capacity_rejected, 6);
    assert_eq!(stats.consumption.by_status.get(&429), Some(&6));
    assert_eq!((stats.max_in_service, stats.max_concurrent_posts), (2, 4));
}

#[test]
fn a_cut_holds_new_posts_back_until_below_the_new_capacity_and_a_raise_lets_them_in() {
    let h = Harness::start(SimConfig {
        capacity: capacity(8, None),
        faults: Faults { latency_ms: 3000, ..Faults::default() },
        ..SimConfig::default()
    });
    let old: Vec<_> = (0..8).map(|i| spawn_post(&h, &format!("old_{i}"))).collect();
    wait_for_load(&h, 8, 0);
    // The eight sleep out their latency; posts entering service from now on are held.
    set_faults(&h, hold_in_service());
    let cut = h.control("PUT", "/_sim/capacity", Some(json!({"capacity": 2})));
    assert_eq!(cut.json(), json!({"capacity": 2, "queue": 4, "in_service": 8, "queued": 0}));
    let new: Vec<_> = (0..4).map(|i| spawn_post(&h, &format!("new_{i}"))).collect();
    // The four queue behind the eight (on a machine too slow for that, the
    // eight are gone first and only the end state below is checked).
    let deadline = Instant::now() + Duration::from_secs(30);
    while capacity_view(&h)["queued"] != 4 && !old.iter().all(std::thread::JoinHandle::is_finished) {
        assert!(Instant::now() < deadline, "the new posts never queued: {}", capacity_view(&h));
        std::thread::sleep(Duration::from_millis(10));
    }

    // While the eight finish: once a new post has left the queue, no more
    // than 2 are in service (an old one finishing must not let one in).
    while !old.iter().all(std::thread::JoinHandle::is_finished) {
        let view = capacity_view(&h);
        let (in_service, queued) = (view["in_service"].as_u64().unwrap(), view["queued"].as_u64().unwrap());
        assert!(in_service <= 8, "{view}");
        assert!(queued == 4 || in_service <= 2, "a new post entered above the new capacity: {view}");
    }
    for post in old {
        assert_eq!(post.join().unwrap().status, 202);
    }
    wait_for_load(&h, 2, 2);
    assert_eq!(h.sim().stats().max_in_service, 8, "never above the old capacity");

    let raised = h.control("PUT", "/_sim/capacity", Some(json!({"capacity": 16})));
    assert_eq!(raised.json(), json!({"capacity": 16, "queue": 32, "in_service": 4, "queued": 0}));
    assert_eq!(h.control("DELETE", "/_sim/faults", None).status, 200);
    for post in new {
        assert_eq!(post.join().unwrap().status, 202);
    }
    assert_eq!(received_keys(&h).len(), 12);
    assert_eq!(h.sim().stats().capacity_rejected, 0);
}

#[test]
fn a_queued_post_whose_client_disconnects_gives_its_place_up() {
    let h = Harness::start(SimConfig { capacity: capacity(1, Some(1)), ..SimConfig::default() });
    set_faults(&h, hold_in_service());
    let first = spawn_post(&h, "first");
    wait_for_load(&h, 1, 0);

    let body = message("m_gone").to_string();
    let mut gone = std::net::TcpStream::connect(h.sim().addr()).unwrap();
    write!(
        gone,
        "POST /consumption HTTP/1.1\r\nHost: sim\r\nAuthorization: {}\r\nContent-Type: application/json\r\nIdempotency-Key: gone\r\nContent-Length: {}\r\n\r\n{body}",
        h.post_auth(),
        body.len()
    )
    .unwrap();
    wait_for_load(&h, 1, 1);
    assert_eq!(spawn_post(&h, "refused").join().unwrap().status, 429, "the queue is full");
    drop(gone);
    wait_for_load(&h, 1, 0);

    let next = spawn_post(&h, "next");
    wait_for_load(&h, 1, 1);
    h.sim().faults().clear();
    assert_eq!(first.join().unwrap().status, 202);
    assert_eq!(next.join().unwrap().status, 202);
    assert_eq!(received_keys(&h), vec!["first", "next"], "the disconnected post was never served");
    assert_eq!(capacity_view(&h)["in_service"], 0, "no slot is left taken");
}

#[test]
fn capacity_settings_out_of_range_are_refused_and_change_nothing() {
    let h = Harness::start(SimConfig { capacity: capacity(4, Some(3)), ..SimConfig::default() });
    let before = json!({"capacity": 4, "queue": 3, "in_service": 0, "queued": 0});
    assert_eq!(capacity_view(&h), before);
    let zero = h.control("PUT", "/_sim/capacity", Some(json!({"capacity": 0})));
    assert_eq!(zero.status, 400);
    let error = &zero.json()["error"];
    assert_eq!(error["code"], "BadRequest");
    assert!(error["message"].as_str().unwrap().contains("capacity"));
    assert!(!error["request_id"].as_str().unwrap().is_empty());
    for body in [
        json!({"capacity": 1_000_001}),
        json!({"capacity": 4, "queue": 1_000_001}),
        json!({"capacity": -1}),
        json!({"capacity": 2.5}),
        json!({"capacity": "8"}),
        json!({"queue": 3}),
        json!({"capacity": 4, "bogus": 1}),
    ] {
        let answer = h.control("PUT", "/_sim/capacity", Some(body.clone()));
        assert_eq!(answer.status, 400, "{body} was accepted: {}", answer.body);
        assert!(answer.json()["error"]["code"].is_string());
    }
    assert_eq!(capacity_view(&h), before);
    let wrong = h.control("DELETE", "/_sim/capacity", None);
    assert_eq!((wrong.status, wrong.header("allow")), (405, Some("GET, PUT")));
    assert_eq!(h.sim().capacity().get(), capacity(4, Some(3)));
}

#[test]
fn a_reset_restores_the_capacity_given_at_start() {
    let h = Harness::start(SimConfig { capacity: capacity(3, Some(1)), ..SimConfig::default() });
    let set = h.control("PUT", "/_sim/capacity", Some(json!({"capacity": 10, "queue": 5})));
    assert_eq!(set.json(), json!({"capacity": 10, "queue": 5, "in_service": 0, "queued": 0}));
    let unlimited = h.control("PUT", "/_sim/capacity", Some(json!({"capacity": null})));
    assert_eq!(unlimited.json(), json!({"capacity": null, "queue": null, "in_service": 0, "queued": 0}));
    assert_eq!(h.post(&message("m_1"), "1").status, 202);
    assert_eq!(h.sim().stats().max_in_service, 1, "posts are counted when unlimited too");

    assert_eq!(h.control("POST", "/_sim/reset", None).status, 200);
    assert_eq!(capacity_view(&h), json!({"capacity": 3, "queue": 1, "in_service": 0, "queued": 0}));
    let stats = h.sim().stats();
    assert_eq!((stats.max_in_service, stats.max_concurrent_posts, stats.capacity_rejected), (0, 0, 0));

    h.sim().capacity().set(None);
    assert_eq!(capacity_view(&h)["capacity"], Value::Null, "the handle sets it too");
}

#[test]
fn connections_are_counted_once_however_many_posts_they_carry() {
    let h = Harness::start(SimConfig::default());
    let kept_alive = agent(Duration::from_secs(10));
    for i in 0..3 {
        assert_eq!(h.try_post(&kept_alive, &message("m_1"), &i.to_string()).unwrap().status, 202);
    }
    assert_eq!(h.sim().stats().connections_accepted, 1);
    for i in 3..6 {
        let fresh = agent(Duration::from_secs(10));
        assert_eq!(h.try_post(&fresh, &message("m_1"), &i.to_string()).unwrap().status, 202);
    }
    assert_eq!(h.sim().stats().connections_accepted, 4);
    assert_eq!(h.control("GET", "/_sim/stats", None).json()["connections_accepted"], 5);
}

/// `energyload esight-sim` as a child process, killed when dropped.
struct SimProcess {
    child: std::process::Child,
    base_url: String,
}

impl SimProcess {
    fn start(args: &[&str]) -> Self {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_energyload"))
            .arg("esight-sim")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base_url = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("eSight simulator listening on ").map(str::to_string))
            .expect("the simulator prints its address");
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, base_url }
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_command_takes_a_capacity_and_a_queue() {
    let sim = SimProcess::start(&["--capacity", "3", "--queue", "1"]);
    let client = agent(Duration::from_secs(10));
    let mut answer = client.get(format!("{}/_sim/capacity", sim.base_url)).call().unwrap();
    let view: Value = serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(view, json!({"capacity": 3, "queue": 1, "in_service": 0, "queued": 0}));

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_energyload"))
        .args(["esight-sim", "--listen", "127.0.0.1:0", "--capacity", "0"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("capacity"));
}
