//! Typed configuration: the operator's contract in `config.toml`.
//!
//! Values are layered built-in defaults < config file < `ENERGYLOAD_<SECTION>_<KEY>`
//! environment variables (see [`load`]). Secrets may also come from
//! `<key>_file` paths. Every value is parsed into a typed field here, so the rest
//! of the program never sees raw strings; [`Config::validate`] rejects impossible
//! combinations with an error that names the key.

mod known_keys;
mod load;
mod secure_cookies;
mod values;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use load::{ConfigError, ConfigSource, LoadedConfig, load, load_from_text};
pub use secure_cookies::SecureCookies;
pub use values::{Duration, IpNetwork, Secret, canonical as canonical_ip};

/// The whole configuration, one field per `config.toml` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`: listener and request limits.
    pub server: ServerConfig,
    /// `[storage]`: the data directory and SQLite settings.
    pub storage: StorageConfig,
    /// `[auth]`: API keys, tokens, passwords, lockout.
    pub auth: AuthConfig,
    /// `[esight]`: the eSight endpoints and credentials.
    pub esight: EsightConfig,
    /// `[delivery]`: the background delivery workers.
    pub delivery: DeliveryConfig,
    /// `[inbox]`: the spool directory for file imports.
    pub inbox: InboxConfig,
    /// `[audit]`: the security audit log.
    pub audit: AuditConfig,
    /// `[log]`: application and access logs.
    pub log: LogConfig,
    /// `[retention]`: how long finished messages are kept.
    pub retention: RetentionConfig,
    /// `[replication]`: continuous replication by Litestream.
    pub replication: ReplicationConfig,
}

/// `replication.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationMode {
    /// No replication: every guarantee ends at the local disk.
    #[default]
    Off,
    /// A Litestream process replicates the database (its control socket
    /// is `replication.socket`).
    Litestream,
}

/// `replication.acknowledge`: what `202` (and other changes' answers) wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Acknowledge {
    /// The commit is on the local disk; the replica follows within
    /// Litestream's sync interval (the loss window if the disk is lost).
    #[default]
    Local,
    /// The commit is confirmed on the replica.
    Replicated,
}

impl Acknowledge {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Replicated => "replicated",
        }
    }
}

/// `[replication]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// `off` or `litestream`.
    pub mode: ReplicationMode,
    /// Litestream's control socket (`socket.path` in `litestream.yml`).
    pub socket: Option<PathBuf>,
    /// `local` or `replicated`.
    pub acknowledge: Acknowledge,
    /// How long an answer waits for the replica's confirmation before `503`.
    pub timeout: Duration,
    /// The replica's URL or directory, for display only (credentials and
    /// query strings are removed before it is shown, also from the
    /// effective configuration).
    #[serde(serialize_with = "replica_without_secrets")]
    pub replica: Option<String>,
}

fn replica_without_secrets<S: serde::Serializer>(replica: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    replica.as_deref().map(crate::replication::without_secrets).serialize(s)
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            mode: ReplicationMode::Off,
            socket: None,
            acknowledge: Acknowledge::Local,
            timeout: Duration::from_secs(5),
            replica: None,
        }
    }
}

/// `[retention]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Delivered messages are deleted this many days after delivery.
    pub delivered_days: u32,
    /// Failed and rejected messages are deleted this many days after their
    /// last change, unless retried.
    pub failed_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { delivered_days: 30, failed_days: 90 }
    }
}

/// `[server]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to serve on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Peers whose `X-Forwarded-For` header is believed.
    pub trusted_proxies: Vec<IpNetwork>,
    /// Largest accepted request body; larger ones get `413`.
    pub max_body_bytes: u64,
    /// Grace for in-flight requests after SIGTERM/SIGINT.
    pub shutdown_timeout: Duration,
    /// Open connections at most; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Longest time a request may take from its head being read to its answer.
    pub request_timeout: Duration,
    /// Longest time a client may take to send a request head.
    pub header_read_timeout: Duration,
    /// Largest request head (request line + headers).
    pub max_header_bytes: usize,
    /// PEM certificate chain for TLS on the listener (with `tls_key`); unset
    /// means plain HTTP. Re-read on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Whether the admin page's session cookie is `Secure` (and then named
    /// `__Host-el_session`): `auto`, `true` or `false`.
    pub secure_cookies: SecureCookies,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            trusted_proxies: Vec::new(),
            max_body_bytes: 8 * 1024 * 1024,
            shutdown_timeout: Duration::from_secs(20),
            max_connections: 4096,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            tls_cert: None,
            tls_key: None,
            secure_cookies: SecureCookies::Auto,
        }
    }
}

/// How hard SQLite syncs each commit to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Every answered write survives power loss (an fsync per commit).
    Full,
    /// Survives a process crash; the last commits may be lost on power loss.
    Normal,
}

/// `[storage]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory holding the database, signing keys and lock file.
    pub data_dir: PathBuf,
    /// SQLite `synchronous` setting.
    pub synchronous: Synchronous,
    /// Free disk below this fails readiness and refuses ingest with `507`.
    pub min_free_bytes: u64,
    /// How long a statement waits for a lock held by another connection.
    pub busy_timeout: Duration,
    /// Pooled read/write connections for request handlers.
    pub pool_size: u32,
    /// Cap on the database's size (file + WAL, less free pages); over it
    /// readiness fails and ingest answers `507`. 0 means no cap.
    pub max_db_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            synchronous: Synchronous::Full,
            min_free_bytes: 1024 * 1024 * 1024,
            busy_timeout: Duration::from_secs(5),
            pool_size: 8,
            max_db_bytes: 0,
        }
    }
}

/// `[auth]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Whether `/login`, `/logout`, `/user` and `/api/` need an API key.
    pub api_key_required: bool,
    /// Lifetime of issued tokens.
    pub token_ttl: Duration,
    /// JWT `iss`.
    pub issuer: String,
    /// JWT `aud`.
    pub audience: String,
    /// Shortest accepted new password.
    pub min_password_length: usize,
    /// Lowest zxcvbn strength score (0–4) a new password must reach; 0 turns
    /// the check off.
    pub min_password_score: u8,
    /// Failed logins per username within the window before `429`.
    pub lockout_failures: u32,
    /// The window for `lockout_failures`.
    pub lockout_window: Duration,
    /// Failed logins per client IP within `lockout_window` before `429`.
    pub lockout_ip_failures: u32,
    /// Default requests per second per API key; 0 means unlimited.
    pub api_key_rate_per_sec: f64,
    /// Default burst per API key (with `api_key_rate_per_sec`).
    pub api_key_burst: u32,
    /// argon2id memory cost (KiB) for new password hashes.
    pub argon2_memory_kib: u32,
    /// argon2id iterations for new password hashes.
    pub argon2_iterations: u32,
    /// argon2id lanes for new password hashes.
    pub argon2_parallelism: u32,
    /// Password hashes computed at once at most; 0 means one per core.
    pub password_hash_concurrency: usize,
    /// How long a login waits for a hashing slot before `503`.
    pub password_queue_timeout: Duration,
    /// Username of an admin created at first start if no admin exists.
    pub bootstrap_admin: Option<String>,
    /// That admin's password (or `bootstrap_admin_password_file`).
    pub bootstrap_admin_password: Option<Secret>,
}

impl AuthConfig {
    /// The rules every new password must meet.
    pub fn password_rules(&self) -> crate::domain::user::PasswordRules {
        crate::domain::user::PasswordRules {
            min_chars: self.min_password_length,
            min_score: self.min_password_score,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            api_key_required: true,
            token_ttl: Duration::from_secs(3600),
            issuer: "energyload".into(),
            audience: "energyload".into(),
            min_password_length: 12,
            min_password_score: 3,
            lockout_failures: 5,
            lockout_window: Duration::from_secs(15 * 60),
            lockout_ip_failures: 50,
            api_key_rate_per_sec: 0.0,
            api_key_burst: 100,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            password_hash_concurrency: 0,
            password_queue_timeout: Duration::from_secs(5),
            bootstrap_admin: None,
            bootstrap_admin_password: None,
        }
    }
}

/// `[esight]` section. URLs have no default: delivery waits until they are set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EsightConfig {
    /// `GET` with HTTP Basic → access token.
    pub token_url: Option<String>,
    /// `GET` with Bearer → site catalog.
    pub sites_url: Option<String>,
    /// `GET` with Bearer → meter catalog.
    pub meters_url: Option<String>,
    /// `POST` with HTTP Basic → deliver one message.
    pub consumption_url: Option<String>,
    /// Basic-auth user for `token_url`.
    pub username: Option<Secret>,
    /// Basic-auth password for `token_url`.
    pub password: Option<Secret>,
    /// Basic-auth user for `consumption_url`.
    pub post_username: Option<Secret>,
    /// Basic-auth password for `consumption_url`.
    pub post_password: Option<Secret>,
    /// How long the site/meter catalog is reused.
    pub catalog_ttl: Duration,
    /// Timeout of one call to eSight.
    pub timeout: Duration,
}

impl Default for EsightConfig {
    fn default() -> Self {
        Self {
            token_url: None,
            sites_url: None,
            meters_url: None,
            consumption_url: None,
            username: None,
            password: None,
            post_username: None,
            post_password: None,
            catalog_ttl: Duration::from_secs(600),
            timeout: Duration::from_secs(15),
        }
    }
}

/// `[delivery]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Deprecated and without effect since deliveries run concurrently
    /// (`max_in_flight`); still accepted so old files load, with a warning
    /// at start.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "count_or_numeric_text")]
    pub workers: Option<usize>,
    /// Most consumption posts outstanding at eSight at once; the adaptive
    /// limit moves between 1 and this.
    pub max_in_flight: usize,
    /// Attempts per message before `RetriesExhausted`.
    pub max_attempts: u32,
    /// Age after which a message is no longer retried.
    pub max_age: Duration,
    /// First retry delay.
    pub backoff_initial: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
    /// Messages waiting (`pending` or `delivering`) at most; beyond it ingest
    /// answers `503` with `Retry-After`.
    pub max_pending: u64,
}

/// A count given as a number (TOML) or as numeric text: an environment
/// variable is text, and a key without a default (like the deprecated
/// `delivery.workers`) gives `typed_env_value` no type to follow.
fn count_or_numeric_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Count {
        Number(usize),
        Text(String),
    }
    match Option::<Count>::deserialize(d)? {
        None => Ok(None),
        Some(Count::Number(n)) => Ok(Some(n)),
        Some(Count::Text(t)) => t
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("expected a whole number, got {t:?}"))),
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            workers: None,
            max_in_flight: 1536,
            max_attempts: 20,
            max_age: Duration::from_secs(24 * 3600),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
            max_pending: 1_000_000,
        }
    }
}

/// `[inbox]` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboxConfig {
    /// Spool directory; unset means `<storage.data_dir>/inbox`.
    pub dir: Option<PathBuf>,
    /// How often the inbox is imported automatically; `"0s"` is off.
    pub poll_interval: Duration,
}

/// `[audit]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Request header carrying the caller's MSISDN.
    pub msisdn_header: String,
    /// Audit events older than this are pruned (the chain stays verifiable).
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { msisdn_header: "X-MSISDN".into(), retention_days: 365 }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Directory of the daily log files; unset means `<storage.data_dir>/logs`.
    pub dir: Option<PathBuf>,
    /// Daily files kept.
    pub keep_files: usize,
    /// A `tracing` filter: `info`, `debug`, `energyload=debug,hyper=warn`, ….
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
    /// Whether `serve` also writes the daily files under `dir`; `false` logs
    /// to stdout only (containers, where the runtime collects stdout).
    pub files: bool,
    /// Whether `serve` writes the access log (one line per request, target
    /// `energyload::access`; a `level` that hides it turns it off too).
    pub access: bool,
    /// The share (0.0–1.0) of 2xx access lines kept; other statuses are
    /// always logged.
    pub access_sample: f64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            dir: None,
            keep_files: 14,
            level: "info".into(),
            format: LogFormat::Text,
            files: true,
            access: true,
            access_sample: 1.0,
        }
    }
}

impl Config {
    /// The inbox directory, resolved against the data directory.
    pub fn inbox_dir(&self) -> PathBuf {
        self.inbox.dir.clone().unwrap_or_else(|| self.storage.data_dir.join("inbox"))
    }

    /// The log directory, resolved against the data directory.
    pub fn log_dir(&self) -> PathBuf {
        self.log.dir.clone().unwrap_or_else(|| self.storage.data_dir.join("logs"))
    }

    /// Checks what types alone cannot: ranges and relations between keys.
    /// Returns the offending key and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let s = &self.server;
        check(s.max_body_bytes >= 1, "server.max_body_bytes", "must be at least 1")?;
        check(s.max_connections >= 1, "server.max_connections", "must be at least 1")?;
        check(s.max_header_bytes >= 8192, "server.max_header_bytes", "must be at least 8192")?;
        check(!s.request_timeout.is_zero(), "server.request_timeout", "must be above 0s")?;
        check(!s.header_read_timeout.is_zero(), "server.header_read_timeout", "must be above 0s")?;
        check(
            s.tls_cert.is_some() || s.tls_key.is_none(),
            "server.tls_cert",
            "must be set when server.tls_key is",
        )?;
        check(
            s.tls_key.is_some() || s.tls_cert.is_none(),
            "server.tls_key",
            "must be set when server.tls_cert is",
        )?;
        let st = &self.storage;
        check(st.pool_size >= 1, "storage.pool_size", "must be at least 1")?;
        check(!st.data_dir.as_os_str().is_empty(), "storage.data_dir", "must not be empty")?;
        let a = &self.auth;
        check(!a.token_ttl.is_zero(), "auth.token_ttl", "must be above 0s")?;
        check((8..=128).contains(&a.min_password_length), "auth.min_password_length", "must be 8 to 128")?;
        check(a.min_password_score <= 4, "auth.min_password_score", "must be 0 to 4")?;
        check(a.lockout_failures >= 1, "auth.lockout_failures", "must be at least 1")?;
        check(!a.lockout_window.is_zero(), "auth.lockout_window", "must be above 0s")?;
        check(!a.issuer.is_empty(), "auth.issuer", "must not be empty")?;
        check(a.lockout_ip_failures >= 1, "auth.lockout_ip_failures", "must be at least 1")?;
        check(
            crate::auth::rate_limit::KeyRate::parse(Some(a.api_key_rate_per_sec), None).is_ok(),
            "auth.api_key_rate_per_sec",
            "must be 0 (unlimited) or from 0.001 to 1000000",
        )?;
        check(a.api_key_burst >= 1, "auth.api_key_burst", "must be at least 1")?;
        check(
            a.argon2_memory_kib >= 8 * a.argon2_parallelism,
            "auth.argon2_memory_kib",
            "must be at least 8 × parallelism",
        )?;
        check(a.argon2_iterations >= 1, "auth.argon2_iterations", "must be at least 1")?;
        // Hashes made above the verify cap could never log in.
        let (max_m, max_t) =
            (crate::auth::passwords::MAX_VERIFY_MEMORY_KIB, crate::auth::passwords::MAX_VERIFY_ITERATIONS);
        check(
            a.argon2_memory_kib <= max_m,
            "auth.argon2_memory_kib",
            &format!("must be at most {max_m} (the verify cap)"),
        )?;
        check(
            a.argon2_iterations <= max_t,
            "auth.argon2_iterations",
            &format!("must be at most {max_t} (the verify cap)"),
        )?;
        check((1..=16).contains(&a.argon2_parallelism), "auth.argon2_parallelism", "must be 1 to 16")?;
        check(
            a.bootstrap_admin.is_none() || a.bootstrap_admin_password.is_some(),
            "auth.bootstrap_admin_password",
            "must be set (or bootstrap_admin_password_file) when auth.bootstrap_admin is",
        )?;
        if let Some(name) = &a.bootstrap_admin {
            check(
                crate::domain::user::Username::parse(name).is_ok(),
                "auth.bootstrap_admin",
                "is not a valid username",
            )?;
        }
        check(!a.audience.is_empty(), "auth.audience", "must not be empty")?;
        let e = &self.esight;
        for (key, url) in [
            ("esight.token_url", &e.token_url),
            ("esight.sites_url", &e.sites_url),
            ("esight.meters_url", &e.meters_url),
            ("esight.consumption_url", &e.consumption_url),
        ] {
            if let Some(url) = url {
                let ok = url.starts_with("http://") || url.starts_with("https://");
                check(ok, key, "must be an http:// or https:// URL")?;
            }
        }
        check(!e.timeout.is_zero(), "esight.timeout", "must be above 0s")?;
        let d = &self.delivery;
        check(d.workers.is_none_or(|w| (1..=256).contains(&w)), "delivery.workers", "must be 1 to 256")?;
        check((1..=10_000).contains(&d.max_in_flight), "delivery.max_in_flight", "must be 1 to 10000")?;
        check(d.max_attempts >= 1, "delivery.max_attempts", "must be at least 1")?;
        check(d.max_pending >= 1, "delivery.max_pending", "must be at least 1")?;
        check(self.retention.delivered_days >= 1, "retention.delivered_days", "must be at least 1")?;
        check(self.retention.failed_days >= 1, "retention.failed_days", "must be at least 1")?;
        check(!d.backoff_initial.is_zero(), "delivery.backoff_initial", "must be above 0s")?;
        check(
            d.backoff_initial <= d.backoff_max,
            "delivery.backoff_max",
            "must not be shorter than delivery.backoff_initial",
        )?;
        check(!self.audit.msisdn_header.is_empty(), "audit.msisdn_header", "must not be empty")?;
        check(
            hyper::header::HeaderName::from_bytes(self.audit.msisdn_header.as_bytes()).is_ok(),
            "audit.msisdn_header",
            "must be a valid HTTP header name",
        )?;
        check(self.audit.retention_days >= 1, "audit.retention_days", "must be at least 1")?;
        check(self.log.keep_files >= 1, "log.keep_files", "must be at least 1")?;
        check(
            (0.0..=1.0).contains(&self.log.access_sample),
            "log.access_sample",
            "must be between 0.0 and 1.0",
        )?;
        let r = &self.replication;
        check(
            r.mode == ReplicationMode::Off || r.socket.is_some(),
            "replication.socket",
            "must be set (Litestream's control socket, `socket.path` in litestream.yml) when replication.mode \
             is \"litestream\"",
        )?;
        check(
            r.acknowledge == Acknowledge::Local || r.mode == ReplicationMode::Litestream,
            "replication.acknowledge",
            "\"replicated\" needs replication.mode = \"litestream\"",
        )?;
        check(
            r.timeout.get() >= std::time::Duration::from_secs(1),
            "replication.timeout",
            "must be at least 1s",
        )?;
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            return Err(("log.level", format!("is not a valid filter: {e}")));
        }
        Ok(())
    }
}

fn check(ok: bool, key: &'static str, why: &str) -> Result<(), (&'static str, String)> {
    if ok { Ok(()) } else { Err((key, why.to_string())) }
}
