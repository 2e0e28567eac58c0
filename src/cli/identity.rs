//! `energyload user …`, `apikey …`, `audit …` and `keys rotate`: identity
//! administration on the data directory, safe while `serve` runs (SQLite
//! serialises writers; the server reloads its in-memory directory within a
//! second; a `user unlock` or `user passwd` lifts a sign-in lock at the
//! user's next login, see `auth/lockout.rs`). Every change is audited with
//! `via: cli`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use rusqlite::Connection;

use crate::audit::{Actor, Event, EventType, RequestFacts, record_blocking};
use crate::auth::NewApiKey;
use crate::auth::signing_keys::SigningKeys;
use crate::clock::{format_millis, now_millis, parse_rfc3339_millis};
use crate::config::LoadedConfig;
use crate::domain::api_key_name::ApiKeyName;
use crate::domain::user::{Roles, UserStatus, Username};
use crate::storage::{Storage, StorageError, audit, identity};
use crate::users::{self, UserChanges, UserError};

/// `energyload user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; with no --password-file a generated password is printed.
    #[command(
        after_help = "Examples:\n  energyload user add alice --role admin\n  energyload user add feed --role backoffice --password-file feed.pw"
    )]
    Add {
        /// Username (3–64 of A–Z a–z 0–9 . _ @ -).
        name: String,
        /// A role: admin, backoffice, esight, user (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// File holding the password (first line).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Set a new password; with no --password-file a generated one is printed.
    #[command(
        after_help = "Examples:\n  energyload user passwd alice\n  energyload user passwd alice --password-file new.pw"
    )]
    Passwd {
        /// Username.
        name: String,
        /// File holding the password.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Lift a user's sign-in lock (after too many failed logins) at once,
    /// also in a running server; a lock of a client network stays.
    #[command(after_help = "Examples:\n  energyload user unlock alice")]
    Unlock {
        /// Username.
        name: String,
    },
    /// Replace a user's roles.
    #[command(after_help = "Examples:\n  energyload user roles alice --role backoffice --role user")]
    Roles {
        /// Username.
        name: String,
        /// A role (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
    /// Deactivate a user (every token of theirs is refused at once).
    #[command(after_help = "Examples:\n  energyload user deactivate alice")]
    Deactivate {
        /// Username.
        name: String,
    },
    /// List users.
    #[command(after_help = "Examples:\n  energyload user list")]
    List,
    /// Import the original service's users export (id,username,password,type,creator,status).
    #[command(after_help = "Examples:\n  energyload user import backoffice_users.csv")]
    Import {
        /// The CSV file.
        file: PathBuf,
    },
}

impl UserCommand {
    /// Whether the command changes users (everything but `list`).
    pub fn changes_state(&self) -> bool {
        !matches!(self, Self::List)
    }
}

/// `energyload apikey …`
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key; the key alone is printed on the last line of stdout.
    #[command(
        after_help = "Examples:\n  energyload apikey create backoffice-feed\n  KEY=$(energyload apikey create feed | tail -n 1)"
    )]
    Create {
        /// A name for people.
        name: String,
        /// Expiry (RFC 3339).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List keys (never the keys themselves).
    #[command(after_help = "Examples:\n  energyload apikey list")]
    List,
    /// Revoke a key by id.
    #[command(after_help = "Examples:\n  energyload apikey revoke 01939c4e-…")]
    Revoke {
        /// Key id.
        id: String,
    },
}

impl ApiKeyCommand {
    /// Whether the command changes keys (everything but `list`).
    pub fn changes_state(&self) -> bool {
        !matches!(self, Self::List)
    }
}

/// `energyload audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the chain (HMAC-SHA256 with the key file, legacy SHA-256 before
    /// the switch); exit 1 naming the first broken event and why.
    #[command(after_help = "Examples:\n  energyload audit verify")]
    Verify,
    /// Print the chain's head (last event id, time and hash) to record it
    /// elsewhere (journal, ticket): a later chain that no longer contains
    /// this head was cut or rewritten.
    #[command(after_help = "Examples:\n  energyload audit head | systemd-cat -t energyload-audit-head")]
    Head,
    /// Print every event (oldest first) as JSON lines or CSV.
    #[command(after_help = "Examples:\n  energyload audit export --format csv > audit.csv")]
    Export {
        /// `json` (lines) or `csv`.
        #[arg(long, default_value = "json")]
        format: String,
    },
}

fn open(loaded: &LoadedConfig) -> Result<Connection, String> {
    let storage = Storage::open(&loaded.config.storage).map_err(|e| e.to_string())?;
    storage.migrate().map_err(|e| e.to_string())?;
    storage.open_connection().map_err(|e| e.to_string())
}

fn cli_event(kind: EventType) -> Event {
    Event::new(kind, Actor::default(), RequestFacts::default()).with("via", "cli")
}

fn read_password(file: Option<&Path>) -> Result<(String, bool), String> {
    match file {
        Some(f) => {
            let text = std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
            Ok((text.lines().next().unwrap_or("").to_string(), false))
        }
        None => {
            use base64::Engine;
            let bytes: [u8; 18] = rand::random();
            Ok((base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes), true))
        }
    }
}

fn roles(names: &[String]) -> Result<Roles, String> {
    Roles::parse(names.iter().map(String::as_str)).map_err(|e| e.to_string())
}

fn find(conn: &Connection, name: &str) -> Result<identity::UserRecord, String> {
    identity::user_by_name(conn, name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no user named {name}"))
}

fn run<T>(result: Result<T, String>) -> ExitCode {
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => super::fail(e),
    }
}

fn user_err(e: UserError) -> String {
    match e {
        UserError::Conflict { existing_id } => format!("username already exists (id {existing_id})"),
        other => other.to_string(),
    }
}

/// Runs a `user` subcommand.
pub fn user(loaded: &LoadedConfig, cmd: UserCommand) -> ExitCode {
    run((|| {
        let mut conn = open(loaded)?;
        let config = &loaded.config;
        match cmd {
            UserCommand::Add { name, roles: names, password_file } => {
                let username = Username::parse(&name).map_err(|e| e.to_string())?;
                let roles = roles(&names)?;
                let (password, generated) = read_password(password_file.as_deref())?;
                let hash = users::hash_new_password(config, username.as_str(), password.clone())
                    .map_err(user_err)?;
                let r = users::create(&conn, &username, hash, &roles, Some("cli")).map_err(user_err)?;
                record_blocking(
                    &mut conn,
                    cli_event(EventType::UserCreated).with("target_user_id", r.id.clone()),
                )
                .map_err(|e| e.to_string())?;
                println!("created user {} (id {}) with roles {}", r.username, r.id, r.roles);
                if generated {
                    println!("password: {password}");
                }
            }
            UserCommand::Passwd { name, password_file } => {
                let u = find(&conn, &name)?;
                let (password, generated) = read_password(password_file.as_deref())?;
                let hash =
                    users::hash_new_password(config, &u.username, password.clone()).map_err(user_err)?;
                let changes = UserChanges { password_hash: Some(hash), ..Default::default() };
                // The new password, the end of every session of the user and
                // the audit event commit together; a running server sees the
                // revocations within a second (auth_generation).
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|e| e.to_string())?;
                users::update(&tx, &u.id, changes).map_err(user_err)?;
                let ended =
                    users::end_sessions_after_password_change(&tx, &u.id, None, None).map_err(user_err)?;
                let unlocked = users::lift_lock(&tx, &u.id).map_err(user_err)?;
                let ev = cli_event(EventType::UserModified)
                    .with("target_user_id", u.id)
                    .with("changed", "password")
                    .with("sessions_ended", ended)
                    .with("unlocked", unlocked);
                crate::audit::record_in(&tx, ev).map_err(|e| e.to_string())?;
                tx.commit().map_err(|e| e.to_string())?;
                let lock = if unlocked { "; sign-in lock lifted" } else { "" };
                println!("password of {name} changed; {ended} session(s) ended{lock}");
                if generated {
                    println!("password: {password}");
                }
            }
            UserCommand::Unlock { name } => {
                let u = find(&conn, &name)?;
                if users::lock_in_force(&u, now_millis()).is_none() {
                    println!("{} is not locked; nothing to do", u.username);
                    return Ok(());
                }
                // The marker and the audit event commit together; a running
                // server reads the marker at the user's next refused login.
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|e| e.to_string())?;
                users::lift_lock(&tx, &u.id).map_err(user_err)?;
                let ev = cli_event(EventType::AccountUnlocked).with("target_user_id", u.id);
                crate::audit::record_in(&tx, ev).map_err(|e| e.to_string())?;
                tx.commit().map_err(|e| e.to_string())?;
                println!("unlocked {}: the next sign-in is checked as a first attempt", u.username);
            }
            UserCommand::Roles { name, roles: names } => {
                let u = find(&conn, &name)?;
                let changes = UserChanges { roles: Some(roles(&names)?), ..Default::default() };
                let r = users::update(&conn, &u.id, changes).map_err(user_err)?;
                let ev =
                    cli_event(EventType::UserModified).with("target_user_id", u.id).with("changed", "roles");
                record_blocking(&mut conn, ev).map_err(|e| e.to_string())?;
                println!("roles of {name}: {}", r.roles);
            }
            UserCommand::Deactivate { name } => {
                let u = find(&conn, &name)?;
                let changes = UserChanges { status: Some(UserStatus::Deactivated), ..Default::default() };
                users::update(&conn, &u.id, changes).map_err(user_err)?;
                record_blocking(
                    &mut conn,
                    cli_event(EventType::UserDeactivated).with("target_user_id", u.id),
                )
                .map_err(|e| e.to_string())?;
                println!("deactivated {name}");
            }
            UserCommand::List => {
                println!("{:<38} {:<24} {:<28} {:<45} created", "id", "username", "roles", "status");
                let now = now_millis();
                for u in identity::all_users(&conn).map_err(|e| e.to_string())? {
                    let created = format_millis(u.created_at);
                    let status = match users::lock_in_force(&u, now) {
                        Some(until) => format!("{} locked until {}", u.status, locked_until_text(until)),
                        None => u.status.clone(),
                    };
                    println!("{:<38} {:<24} {:<28} {status:<45} {created}", u.id, u.username, u.roles);
                }
            }
            UserCommand::Import { file } => {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                let outcomes = users::import_csv(&conn, &text)?;
                let created =
                    outcomes.iter().filter(|o| matches!(o, users::ImportOutcome::Created(_))).count();
                for o in &outcomes {
                    match o {
                        users::ImportOutcome::Created(n) => println!("imported {n}"),
                        users::ImportOutcome::Exists(n) => println!("skipped {n} (exists)"),
                    }
                }
                let ev = cli_event(EventType::UserCreated)
                    .with("import", file.display().to_string())
                    .with("count", created);
                record_blocking(&mut conn, ev).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    })())
}

/// A lock's end for people, in whole seconds rounded up:
/// `2026-12-03T06:14:05Z`.
fn locked_until_text(until: i64) -> String {
    let text = format_millis(until.saturating_add(999));
    match text.split_once('.') {
        Some((seconds, _)) => format!("{seconds}Z"),
        None => text,
    }
}

/// Runs an `apikey` subcommand.
pub fn apikey(loaded: &LoadedConfig, cmd: ApiKeyCommand) -> ExitCode {
    run((|| {
        let mut conn = open(loaded)?;
        match cmd {
            ApiKeyCommand::Create { name, expires } => {
                let expires_at = expires
                    .as_deref()
                    .map(|t| parse_rfc3339_millis(t).ok_or("--expires must be an RFC 3339 timestamp"))
                    .transpose()?;
                let name = ApiKeyName::parse(&name).map_err(|e| e.to_string())?;
                let key = NewApiKey::generate().map_err(|e| e.to_string())?;
                let record =
                    crate::api::new_api_key_record(&key, name.into_string(), Some("cli".into()), expires_at);
                identity::insert_api_key(&conn, &record).map_err(|e| match e {
                    StorageError::ApiKeyNameTaken { name, existing_id } => format!(
                        "an active API key named {name:?} exists; revoke it first \
                         (energyload apikey revoke {existing_id}) or choose another name"
                    ),
                    e => e.to_string(),
                })?;
                let ev = cli_event(EventType::ApikeyCreated).with("target_api_key_id", record.id.clone());
                record_blocking(&mut conn, ev).map_err(|e| e.to_string())?;
                println!(
                    "created API key {} ({}, id {}); it is shown once:",
                    record.name, record.prefix, record.id
                );
                println!("{}", key.expose());
            }
            ApiKeyCommand::List => {
                println!("{:<38} {:<24} {:<14} {:<26} status", "id", "name", "prefix", "created");
                for k in identity::all_api_keys(&conn).map_err(|e| e.to_string())? {
                    let status = match (k.revoked_at, k.expires_at) {
                        (Some(_), _) => "revoked",
                        (None, Some(e)) if e <= now_millis() => "expired",
                        _ => "active",
                    };
                    println!(
                        "{:<38} {:<24} {:<14} {:<26} {status}",
                        k.id,
                        k.name,
                        k.prefix,
                        format_millis(k.created_at)
                    );
                }
            }
            ApiKeyCommand::Revoke { id } => {
                if !identity::revoke_api_key(&conn, &id, now_millis()).map_err(|e| e.to_string())? {
                    return Err(format!("no API key with id {id}"));
                }
                record_blocking(
                    &mut conn,
                    cli_event(EventType::ApikeyRevoked).with("target_api_key_id", id.clone()),
                )
                .map_err(|e| e.to_string())?;
                println!("revoked {id}");
            }
        }
        Ok(())
    })())
}

/// Runs an `audit` subcommand.
pub fn audit_cmd(loaded: &LoadedConfig, cmd: AuditCommand) -> ExitCode {
    let conn = match open(loaded) {
        Ok(c) => c,
        Err(e) => return super::fail(e),
    };
    match cmd {
        AuditCommand::Verify => match audit::verify(&conn) {
            Ok(r) => match r.first_broken {
                None => {
                    println!(
                        "audit chain ok: {} events checked, keyed from event {}; head {}",
                        r.checked,
                        r.keyed_from,
                        head_line(r.head.as_ref())
                    );
                    ExitCode::SUCCESS
                }
                Some(b) => {
                    println!(
                        "audit chain BROKEN at event {}: {} ({})",
                        b.id,
                        b.reason.describe(),
                        b.reason.as_str()
                    );
                    ExitCode::FAILURE
                }
            },
            Err(e) => super::fail(e),
        },
        AuditCommand::Head => match audit::head(&conn) {
            Ok(head) => {
                println!("{}", head_line(head.as_ref()));
                ExitCode::SUCCESS
            }
            Err(e) => super::fail(e),
        },
        AuditCommand::Export { format } => {
            let filter = audit::AuditFilter::default();
            let mut rows = match audit::list(&conn, &filter, usize::MAX >> 1) {
                Ok(r) => r,
                Err(e) => return super::fail(e),
            };
            rows.reverse();
            if format == "csv" {
                return match crate::audit::csv_export::write(std::io::stdout().lock(), &rows) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => super::fail(format!("cannot write the CSV: {e}")),
                };
            }
            for r in rows {
                let detail: serde_json::Value = serde_json::from_str(&r.detail).unwrap_or_default();
                println!(
                    "{}",
                    serde_json::json!({"id": r.id.to_string(), "ts": format_millis(r.ts), "type": r.event_type,
                    "ip": r.ip, "msisdn": r.msisdn, "user_id": r.user_id, "username": r.username,
                    "api_key_id": r.api_key_id, "request_id": r.request_id, "path": r.path, "detail": detail})
                );
            }
            ExitCode::SUCCESS
        }
    }
}

/// The head as one line: `id=42 ts=2026-12-02T13:00:00.000Z hash=<hex>`
/// (`ts=-` for the anchor left when every event was pruned).
fn head_line(head: Option<&audit::ChainHead>) -> String {
    match head {
        None => "id=0 ts=- hash=- (no event yet)".to_string(),
        Some(h) => format!(
            "id={} ts={} hash={}",
            h.id,
            h.ts.map_or_else(|| "-".to_string(), format_millis),
            hex::encode(&h.hash)
        ),
    }
}

/// `energyload keys rotate`: a new signing key; the old one stays valid
/// until tokens it signed have expired. A running server picks it up within
/// five seconds.
pub fn rotate_keys(loaded: &LoadedConfig) -> ExitCode {
    let c = &loaded.config;
    if let Err(e) = crate::storage::create_private_dir(&c.storage.data_dir) {
        return super::fail(e);
    }
    match SigningKeys::rotate(&c.storage.data_dir, c.auth.token_ttl.get()) {
        Ok(keys) => {
            println!("new signing key {}; {} key(s) published", keys.current_kid(), keys.kids().count());
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(e),
    }
}
