//! The upgrade fixtures' generator: a database as each earlier binary left
//! it. A fixture of schema version N applies migrations 1..N one at a time
//! and, right after migration k, runs the seed step of k (if any) in plain
//! SQL written against the schema as it stood at k. A seed step therefore
//! never needs to change when later migrations arrive; a new migration may
//! add its own step to `SEEDS`. Passwords are argon2id with fixed salts and
//! all times and ids are constants, so a regenerated fixture holds the same
//! rows. Audit rows carry hashes computed by `storage::audit::chain_hash`,
//! the function the real code appends and verifies with.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use energyload::storage::audit::{AuditRow, GENESIS, chain_hash};
use rusqlite::{Connection, params};
use serde_json::json;
use sha2::{Digest, Sha256};

/// One seed step: the rows added right after migration `version`.
pub struct Seed {
    /// The migration it follows.
    pub version: u32,
    /// Inserts the rows.
    pub seed: fn(&Connection),
}

/// Every seed step, by migration.
pub const SEEDS: &[Seed] = &[
    Seed { version: 1, seed: seed_meta },
    Seed { version: 2, seed: seed_identity },
    Seed { version: 3, seed: seed_messages },
    Seed { version: 5, seed: seed_user_locks },
];

/// 2026-01-01T00:00:00Z, the fixtures' clock (Unix ms).
const T0: i64 = 1_767_225_600_000;
/// 2100-01-01, when the fixtures' session expires.
const FAR_FUTURE: i64 = 4_102_444_800_000;

/// The value of `meta('fixture')`.
pub const META_MARKER: &str = "seeded at schema version 1";

/// A seeded user: (id, username, roles, status, password).
pub struct FixtureUser {
    /// User id.
    pub id: &'static str,
    /// Username.
    pub username: &'static str,
    /// Comma-separated roles.
    pub roles: &'static str,
    /// `active` or `deactivated`.
    pub status: &'static str,
    /// The password its hash was made from.
    pub password: &'static str,
}

/// The users seeded after migration 2.
pub const USERS: [FixtureUser; 3] = [
    FixtureUser {
        id: "0190d5a0-0000-7000-8000-00000000a11c",
        username: "alice",
        roles: "admin",
        status: "active",
        password: "alice-fixture-password",
    },
    FixtureUser {
        id: "0190d5a0-0000-7000-8000-000000000b0b",
        username: "bob",
        roles: "backoffice,user",
        status: "active",
        password: "bob-fixture-password",
    },
    FixtureUser {
        id: "0190d5a0-0000-7000-8000-0000000ca401",
        username: "carol",
        roles: "user",
        status: "deactivated",
        password: "carol-fixture-password",
    },
];

/// Audit events seeded after migration 2.
pub const AUDIT_EVENTS: u64 = 7;

/// Messages seeded after migration 3, by status.
pub const MESSAGES_BY_STATUS: [(&str, u64); 4] =
    [("delivered", 1), ("failed", 1), ("pending", 1), ("rejected", 1)];

/// The usable API key seeded after migration 2 (id part `f1c7a0e1`).
pub fn api_key() -> String {
    key("f1c7a0e1", "energyload upgrade fixture key")
}

/// The revoked API key seeded after migration 2.
pub fn revoked_api_key() -> String {
    key("deadbeef", "energyload upgrade fixture revoked key")
}

fn key(id: &str, seed: &str) -> String {
    format!("el_{id}_{}", URL_SAFE_NO_PAD.encode(Sha256::digest(seed.as_bytes())))
}

/// Builds the fixture of schema version `version` at `path` (replacing it).
pub fn build(path: &Path, version: u32) {
    let _ = std::fs::remove_file(path);
    let mut conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    for step in 1..=version {
        let status = energyload::storage::migrate_up_to(&mut conn, step).unwrap();
        assert_eq!(status.current, step, "migration {step} applied");
        if let Some(seed) = SEEDS.iter().find(|s| s.version == step) {
            let tx = conn.transaction().unwrap();
            (seed.seed)(&tx);
            tx.commit().unwrap();
        }
    }
    conn.execute_batch("VACUUM").unwrap();
}

fn seed_meta(conn: &Connection) {
    conn.execute("INSERT INTO meta (key, value) VALUES ('fixture', ?1)", [META_MARKER]).unwrap();
}

/// argon2id (OWASP settings) with a salt fixed per user, as a PHC string
/// in the form `auth::passwords` writes.
fn password_hash(username: &str, password: &str) -> String {
    let salt: [u8; 16] =
        Sha256::digest(format!("fixture salt {username}").as_bytes())[..16].try_into().unwrap();
    let params = argon2::Params::new(19_456, 2, 1, Some(32)).unwrap();
    let mut out = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(password.as_bytes(), &salt, &mut out)
        .unwrap();
    format!("$argon2id$v=19$m=19456,t=2,p=1${}${}", STANDARD_NO_PAD.encode(salt), STANDARD_NO_PAD.encode(out))
}

fn seed_identity(conn: &Connection) {
    for (n, u) in USERS.iter().enumerate() {
        let at = T0 + n as i64 * 1000;
        conn.execute(
            "INSERT INTO users (id, username, password_hash, roles, status, creator, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'cli', ?6, ?6)",
            params![u.id, u.username, password_hash(u.username, u.password), u.roles, u.status, at],
        )
        .unwrap();
    }
    let keys = [
        ("f1c7a0e1", "fixture-feed", api_key(), None),
        ("deadbeef", "fixture-old", revoked_api_key(), Some(T0 + 9000)),
    ];
    for (id, name, key, revoked_at) in &keys {
        conn.execute(
            "INSERT INTO api_keys (id, name, prefix, key_hash, created_by, created_at, revoked_at)
             VALUES (?1, ?2, ?3, ?4, 'cli', ?5, ?6)",
            params![
                format!("0190d5a0-0000-7000-8000-0000{id}"),
                name,
                &key[..11],
                Sha256::digest(key.as_bytes()).to_vec(),
                T0 + 4000,
                revoked_at
            ],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO sessions (jti, user_id, issued_at, expires_at, ip, user_agent, revoked_at, revoked_by)
         VALUES ('0190d5a0-0000-7000-8000-00000000face', ?1, ?2, ?3, '127.0.0.1', 'fixture', ?2, ?1)",
        params![USERS[0].id, T0 + 5000, FAR_FUTURE],
    )
    .unwrap();
    seed_audit(conn);
}

fn seed_audit(conn: &Connection) {
    let (alice, carol) = (USERS[0].id, USERS[2].id);
    let cli = |kind: &str, (target_key, target): (&str, &str)| {
        let mut detail = serde_json::Map::new();
        detail.insert("via".into(), "cli".into());
        detail.insert(target_key.into(), target.into());
        (kind.to_string(), None, serde_json::Value::Object(detail).to_string())
    };
    let events = [
        cli("user_created", ("target_user_id", alice)),
        cli("user_created", ("target_user_id", USERS[1].id)),
        cli("user_created", ("target_user_id", carol)),
        cli("apikey_created", ("target_api_key_id", "0190d5a0-0000-7000-8000-0000f1c7a0e1")),
        ("login_success".to_string(), Some(alice), "{}".to_string()),
        cli("user_deactivated", ("target_user_id", carol)),
        cli("apikey_revoked", ("target_api_key_id", "0190d5a0-0000-7000-8000-0000deadbeef")),
    ];
    assert_eq!(events.len() as u64, AUDIT_EVENTS);
    let mut prev = GENESIS.to_vec();
    for (n, (kind, actor, detail)) in events.into_iter().enumerate() {
        let row = AuditRow {
            id: n as i64 + 1,
            ts: T0 + 10_000 + n as i64 * 1000,
            event_type: kind,
            ip: actor.map(|_| "127.0.0.1".to_string()),
            user_id: actor.map(str::to_string),
            username: actor.map(|_| "alice".to_string()),
            path: actor.map(|_| "/login".to_string()),
            detail,
            ..AuditRow::default()
        };
        let hash = chain_hash(&prev, &row);
        conn.execute(
            "INSERT INTO audit_events (id, ts, type, ip, msisdn, user_id, username, api_key_id,
                                       request_id, path, detail, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6, NULL, NULL, ?7, ?8, ?9, ?10)",
            params![
                row.id,
                row.ts,
                row.event_type,
                row.ip,
                row.user_id,
                row.username,
                row.path,
                row.detail,
                prev,
                &hash[..]
            ],
        )
        .unwrap();
        prev = hash.to_vec();
    }
}

fn message_body(message_id: &str) -> Vec<u8> {
    json!({
        "messageType": "consumption",
        "header": {
            "messageId": message_id,
            "gatewayTypeUrn": "urn:esight:assets:edm:lu:electricity",
            "gatewayUrn": "urn:esight:gateways:edm:lu:VPC:LU_VPC_Elec_1",
        },
        "gatewayData": {"datapointValues": [
            {"datapointKey": "activeEnergyImport", "value": 10.5, "tsIso8601": "2021-01-31T00:15:00Z"},
            {"datapointKey": "activeEnergyImport", "value": 10.75, "tsIso8601": "2021-01-31T00:30:00Z"}
        ]}
    })
    .to_string()
    .into_bytes()
}

fn seed_messages(conn: &Connection) {
    let rows = [
        ("pending", None, None),
        ("delivered", Some(T0 + 60_000), None),
        ("failed", None, Some(("NoMeterId", "meter not in eSight's catalog"))),
        (
            "rejected",
            Some(T0 + 60_000),
            Some(("E102", "eSight reported 1 error(s) in report fixture-report")),
        ),
    ];
    for (n, (status, delivered_at, error)) in rows.into_iter().enumerate() {
        let id = ((T0 + 20_000) << 16) | n as i64;
        let message_id = format!("fixture-{status}");
        let attempts = i64::from(delivered_at.is_some());
        conn.execute(
            "INSERT INTO messages (id, message_id, status, meter_id, site_id, local_market, data_feed_type,
                                   datapoints, attempts, cycle_started, body, created_at, updated_at,
                                   delivered_at, next_attempt_at, error_code, error_message)
             VALUES (?1, ?2, ?3, 'LU_VPC_Elec_1', 'VPC', 'lu', 'electricity', 2, ?4, ?5, ?6, ?5, ?7, ?8, ?9, ?10, ?11)",
            params![
                id,
                message_id,
                status,
                attempts,
                T0 + 20_000,
                message_body(&message_id),
                T0 + 60_000,
                delivered_at,
                (status == "pending").then_some(T0 + 20_000),
                error.map(|e| e.0),
                error.map(|e| e.1)
            ],
        )
        .unwrap();
        if delivered_at.is_some() {
            conn.execute(
                "INSERT INTO delivery_attempts (message, at, outcome, http_status, duration_ms)
                 VALUES (?1, ?2, 'delivered', 200, 12)",
                params![id, T0 + 60_000],
            )
            .unwrap();
        }
        if status == "rejected" {
            let report = json!({
                "_id": "fixture-report",
                "header": {"messageId": format!("{message_id}_{id}"), "received_tsIso8601": "2026-01-01T00:01:00Z"},
                "errors": [{"errorCode": "E102", "errorMessage": "value out of range",
                            "datapointKey": "activeEnergyImport", "value": 10.5, "tsIso8601": "2021-01-31T00:15:00Z"}]
            });
            conn.execute(
                "INSERT INTO esight_errors (esight_id, message_ref, message, received_at, error_count, body)
                 VALUES ('fixture-report', ?1, ?2, ?3, 1, ?4)",
                params![format!("{message_id}_{id}"), id, T0 + 70_000, report.to_string().into_bytes()],
            )
            .unwrap();
        }
    }
    conn.execute(
        "INSERT INTO quarantine (received_at, request_id, code, reason, size, body)
         VALUES (?1, 'fixture-request', 'InvalidJsonReceived', 'missing field `_id`', 2, X'7B7D')",
        [T0 + 80_000],
    )
    .unwrap();
}

/// Recorded username locks seeded after migration 5: bob's lock, recorded
/// as in force until the far future, and carol's, lifted by an unlock.
pub const USER_LOCKS: [(&str, Option<i64>, Option<i64>); 2] =
    [("bob", Some(FAR_FUTURE), None), ("carol", None, Some(T0 + 95_000))];

fn seed_user_locks(conn: &Connection) {
    for (username, locked_until, unlocked_at) in USER_LOCKS {
        let user = USERS.iter().find(|u| u.username == username).unwrap();
        conn.execute(
            "INSERT INTO user_locks (user_id, locked_at, locked_until, unlocked_at) VALUES (?1, ?2, ?3, ?4)",
            params![user.id, T0 + 90_000, locked_until, unlocked_at],
        )
        .unwrap();
    }
}
