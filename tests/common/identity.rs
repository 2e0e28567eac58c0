//! Identity helpers for tests: seed users and API keys directly in a
//! stopped-or-running app's database (as the CLI does), and log in through
//! the real `/login` endpoint.

use energyload::auth::NewApiKey;
use energyload::domain::user::{Roles, Username};
use energyload::storage::identity;

use super::TestApp;

/// Passwords used by seeded test users.
pub const PASSWORD: &str = "correct-horse-battery-staple";

/// A user created for a test, with a token once logged in.
pub struct TestUser {
    /// User id.
    pub id: String,
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
}

impl TestApp {
    fn conn(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(self.data_dir().join("energyload.db")).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        c
    }

    /// Creates a user with `roles` (comma-separated) and the test password,
    /// as `energyload user add` would, and waits until the server sees it.
    pub fn seed_user(&self, username: &str, roles: &str) -> TestUser {
        let conn = self.conn();
        let hash = energyload::auth::passwords::hash_password(
            &energyload::domain::user::NewPassword::parse(PASSWORD.into(), 12).unwrap(),
            &energyload::auth::Argon2Settings::OWASP,
        )
        .unwrap();
        let roles = Roles::parse_list(roles).unwrap();
        let record =
            energyload::users::create(&conn, &Username::parse(username).unwrap(), hash, &roles, Some("test"))
                .unwrap();
        self.wait_for_directory();
        TestUser { id: record.id, username: username.into(), password: PASSWORD.into() }
    }

    /// Creates an API key, as `energyload apikey create` would; returns the key.
    pub fn seed_api_key(&self, name: &str) -> String {
        let key = NewApiKey::generate().unwrap();
        let record = energyload::api::new_api_key_record(&key, name.into(), None, None);
        identity::insert_api_key(&self.conn(), &record).unwrap();
        self.wait_for_directory();
        key.expose().to_string()
    }

    /// Waits until the server has reloaded its identity directory (it polls
    /// the database every 500 ms).
    pub fn wait_for_directory(&self) {
        std::thread::sleep(std::time::Duration::from_millis(1200));
    }

    /// Logs in through `POST /login` (JSON form); returns the token.
    pub fn login(&self, key: &str, username: &str, password: &str) -> String {
        let body = serde_json::json!({"username": username, "password": password}).to_string();
        let r = self.request(
            "POST",
            "/login",
            &[("X-API-Key", key), ("Content-Type", "application/json"), ("Accept", "application/json")],
            Some(body.as_bytes()),
        );
        assert_eq!(r.status, 200, "login failed: {}", r.text());
        r.json()["access_token"].as_str().unwrap().to_string()
    }

    /// A request with an API key and a bearer token.
    pub fn authed(
        &self,
        method: &str,
        path: &str,
        key: &str,
        token: &str,
        body: Option<&serde_json::Value>,
    ) -> super::Reply {
        let bearer = format!("Bearer {token}");
        let text = body.map(|b| b.to_string());
        let mut headers = vec![("X-API-Key", key), ("Authorization", bearer.as_str())];
        if text.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        self.request(method, path, &headers, text.as_deref().map(str::as_bytes))
    }

    /// Seeds an admin and a key, logs in; returns (key, token, admin).
    pub fn admin_session(&self) -> (String, String, TestUser) {
        let admin = self.seed_user("admin", "admin");
        let key = self.seed_api_key("test");
        let token = self.login(&key, &admin.username, &admin.password);
        (key, token, admin)
    }
}

impl TestApp {
    /// `POST /login` (JSON body) with extra headers; returns the raw reply.
    pub fn login_reply(
        &self,
        key: &str,
        username: &str,
        password: &str,
        extra: &[(&str, &str)],
    ) -> super::Reply {
        let body = serde_json::json!({"username": username, "password": password}).to_string();
        let mut headers = vec![("X-API-Key", key), ("Content-Type", "application/json")];
        headers.extend_from_slice(extra);
        self.request("POST", "/login", &headers, Some(body.as_bytes()))
    }

    /// The audit events matching `query` (e.g. `type=logout`), newest first.
    pub fn audit_events(&self, key: &str, token: &str, query: &str) -> Vec<serde_json::Value> {
        let r = self.authed("GET", &format!("/api/v1/management/audit?limit=500&{query}"), key, token, None);
        assert_eq!(r.status, 200, "audit list: {}", r.text());
        r.json()["items"].as_array().unwrap().clone()
    }

    /// A config file for CLI commands on this app's data directory.
    pub fn cli_config(&self) -> std::path::PathBuf {
        super::process::write_config(self.dir.path(), "")
    }

    /// Opens the app's database (as an operator or an attacker with file
    /// access would).
    pub fn db(&self) -> rusqlite::Connection {
        self.conn()
    }
}

/// Polls `check` every 100 ms for up to `limit`; true once it held.
pub fn eventually(limit: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
