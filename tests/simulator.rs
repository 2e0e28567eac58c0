//! The eSight simulator, started in-process on loopback and exercised over
//! HTTP with `ureq`: eSight's endpoints, fault injection, outages, the
//! control API, and error reports posted to a stand-in appliance (a tiny
//! loopback HTTP server in this file that plays the appliance's side).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use energyload::config::Secret;
use energyload::simulator::{ApplianceLink, EsightSim, Faults, Outage, OutageMode, SimConfig, SimError};
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
