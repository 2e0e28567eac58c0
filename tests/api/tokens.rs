//! Bearer tokens through the real server: every forged, expired, revoked or
//! orphaned token is `401 Unauthorized` with `WWW-Authenticate`, also after a
//! restart; roles come from the contract's table and from the user's current
//! record (a demoted admin is refused at once); refusals are audited.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::common::identity::PASSWORD;
use crate::common::{Reply, TestApp, spawn_app, start};
use energyload::auth::{AccessTokens, Claims, SigningKeys, TokenSettings};
use energyload::domain::user::Roles;

fn settings() -> TokenSettings {
    TokenSettings {
        issuer: "energyload".into(),
        audience: "energyload".into(),
        ttl: Duration::from_secs(3600),
    }
}

/// The app's own signing keys, read from `<data_dir>/signing-keys/`.
fn app_tokens(app: &TestApp) -> AccessTokens {
    AccessTokens::new(
        SigningKeys::load_or_create(&app.data_dir(), Duration::from_secs(3600)).unwrap(),
        settings(),
    )
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn assert_refused(r: &Reply, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    r.assert_error(401, "Unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"energyload\""), "{what}");
}

#[test]
fn forged_expired_and_tampered_tokens_are_refused() {
    let app = spawn_app();
    let (key, admin_token, admin) = app.admin_session();
    let tokens = app_tokens(&app);
    let kid = tokens.keys().current_kid().to_string();
    let (_, signing) = tokens.keys().signing_key();
    let roles = Roles::parse_list("admin").unwrap();
    let fresh = || tokens.claims_for(admin.id.clone(), roles.clone(), now());
    let header = || {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(kid.clone());
        h
    };
    let sign = |claims: &Value| jsonwebtoken::encode(&header(), claims, signing).unwrap();
    let as_value = |c: &Claims| serde_json::to_value(c).unwrap();

    // Control: a token we sign with the app's key and fresh claims is accepted,
    // so every refusal below is for the one thing changed.
    let control = sign(&as_value(&fresh()));
    assert_eq!(app.authed("GET", "/user", &key, &control, None).status, 200);

    let mut cases: Vec<(&str, String)> = Vec::new();
    let mut expired = fresh();
    (expired.iat, expired.exp) = (now() - 7200, now() - 120);
    cases.push(("expired beyond the leeway", sign(&as_value(&expired))));
    let mut c = as_value(&fresh());
    c["iss"] = json!("someone-else");
    cases.push(("wrong iss", sign(&c)));
    let mut c = as_value(&fresh());
    c["aud"] = json!("another-service");
    cases.push(("wrong aud", sign(&c)));
    let mut c = as_value(&fresh());
    c.as_object_mut().unwrap().remove("exp");
    cases.push(("no exp", sign(&c)));

    // Tampered: the real token with another subject, signature kept.
    let mut parts: Vec<String> = admin_token.split('.').map(str::to_string).collect();
    let mut payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    payload["exp"] = json!(payload["exp"].as_u64().unwrap() + 10);
    parts[1] = b64(&payload);
    cases.push(("tampered claims", parts.join(".")));
    let mut sig = URL_SAFE_NO_PAD.decode(admin_token.rsplit('.').next().unwrap()).unwrap();
    sig[0] ^= 1;
    let (head, _) = admin_token.rsplit_once('.').unwrap();
    cases.push(("tampered signature", format!("{head}.{}", URL_SAFE_NO_PAD.encode(&sig))));

    // alg none, in several spellings, with and without a signature part.
    let claims = b64(&as_value(&fresh()));
    for alg in ["none", "None", "NONE"] {
        let h = b64(&json!({"alg": alg, "typ": "JWT", "kid": kid}));
        cases.push(("alg none", format!("{h}.{claims}.")));
        cases.push(("alg none without signature", format!("{h}.{claims}")));
    }

    // HS256 "signed" with the public key (as text and as raw bytes).
    let jwks = app.get("/.well-known/jwks.json").json();
    let x = jwks["keys"][0]["x"].as_str().unwrap();
    for secret in [x.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(x).unwrap()] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid.clone());
        let forged =
            jsonwebtoken::encode(&h, &as_value(&fresh()), &EncodingKey::from_secret(&secret)).unwrap();
        cases.push(("HS256 with the public key", forged));
    }

    // Signed by an unknown Ed25519 key: with its own kid, with the app's kid, with none.
    let other_dir = tempfile::tempdir().unwrap();
    let other = AccessTokens::new(
        SigningKeys::load_or_create(other_dir.path(), Duration::from_secs(3600)).unwrap(),
        settings(),
    );
    cases.push(("unknown key", other.issue(&fresh()).unwrap()));
    let (_, other_key) = other.keys().signing_key();
    cases.push((
        "unknown key with the app's kid",
        jsonwebtoken::encode(&header(), &as_value(&fresh()), other_key).unwrap(),
    ));
    cases.push((
        "no kid",
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &as_value(&fresh()), signing).unwrap(),
    ));
    // Valid signature, but for a user that does not exist.
    cases
        .push(("unknown subject", sign(&as_value(&tokens.claims_for("no-such-user", roles.clone(), now())))));
    cases.push(("garbage", "not.a.jwt".into()));

    for (what, token) in &cases {
        assert_refused(&app.authed("GET", "/user", &key, token, None), what);
        assert_refused(&app.authed("GET", "/api/v1/management/users", &key, token, None), what);
    }
    // No token, an empty one, another scheme.
    for auth in [None, Some("Bearer "), Some("Basic YWRtaW46eA=="), Some(control.as_str())] {
        let mut headers = vec![("X-API-Key", key.as_str())];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        assert_refused(&app.request("GET", "/user", &headers, None), &format!("authorization {auth:?}"));
    }

    let denied = app.audit_events(&key, &admin_token, "type=access_denied");
    // Repeats of a client and reason are coalesced (flood protection): each
    // reason is audited at once, and every refusal is counted.
    for reason in ["invalid_token", "missing_token"] {
        assert!(denied.iter().any(|e| e["detail"]["reason"] == reason), "{reason}: {denied:?}");
    }
    let counted: u64 = app
        .get("/metrics")
        .text()
        .lines()
        .filter(|l| l.starts_with("energyload_access_denied_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(counted >= 2 * cases.len() as u64 + 4, "every refusal is counted: {counted}");
    assert!(denied.iter().all(|e| e["detail"]["status"] == 401 && e["ip"] == "127.0.0.1"));
}

#[test]
fn a_token_expiring_within_the_leeway_still_works() {
    let app = spawn_app();
    let (key, _, admin) = app.admin_session();
    let tokens = app_tokens(&app);
    let mut claims = tokens.claims_for(admin.id.clone(), Roles::parse_list("admin").unwrap(), now() - 600);
    claims.exp = now() - 5;
    let token = tokens.issue(&claims).unwrap();
    assert_eq!(app.authed("GET", "/user", &key, &token, None).status, 200, "≤60 s leeway");
}

#[test]
fn revoked_tokens_stay_refused_after_a_restart_and_live_ones_keep_working() {
    let app = spawn_app();
    let (key, admin_token, _) = app.admin_session();
    app.seed_user("ivy", "user");
    let revoked = app.login(&key, "ivy", PASSWORD);
    let live = app.login(&key, "ivy", PASSWORD);
    assert_eq!(app.authed("POST", "/logout", &key, &revoked, None).status, 200);
    assert_refused(&app.authed("GET", "/user", &key, &revoked, None), "revoked");

    let (dir, config) = app.stop();
    let app = start(dir, config);
    assert_refused(&app.authed("GET", "/user", &key, &revoked, None), "revoked, after restart");
    assert_eq!(app.authed("GET", "/user", &key, &live, None).status, 200, "signing key survives a restart");
    assert_eq!(app.authed("GET", "/api/v1/management/users", &key, &admin_token, None).status, 200);
}

#[test]
fn a_deactivated_users_tokens_are_refused_at_once_and_after_a_restart() {
    let app = spawn_app();
    let (key, admin_token, _) = app.admin_session();
    let jack = app.seed_user("jack", "backoffice");
    let token = app.login(&key, "jack", PASSWORD);
    assert_eq!(app.authed("GET", "/user", &key, &token, None).status, 200);
    let path = format!("/api/v1/management/users/user/edit/{}", jack.id);
    let r = app.authed("PATCH", &path, &key, &admin_token, Some(&json!({"status": "deactivated"})));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_refused(&app.authed("GET", "/user", &key, &token, None), "deactivated");
    assert_refused(&app.authed("GET", "/api/v1/service/send/messages", &key, &token, None), "deactivated");
    let (dir, config) = app.stop();
    let app = start(dir, config);
    assert_refused(&app.authed("GET", "/user", &key, &token, None), "deactivated, after restart");
}

/// The contract's role table, endpoint group by endpoint group.
#[test]
fn roles_follow_the_contract_table() {
    let app = spawn_app();
    let (key, admin_token, _) = app.admin_session();
    let mut tokens = vec![("admin", admin_token.clone())];
    for role in ["backoffice", "esight", "user"] {
        app.seed_user(&format!("r-{role}"), role);
    }
    for role in ["backoffice", "esight", "user"] {
        tokens.push((role, app.login(&key, &format!("r-{role}"), PASSWORD)));
    }
    let report = json!({"_id": "x1", "header": {"messageId": "m_1"}, "errors": []});
    // (method, path, body, roles allowed)
    let table: Vec<(&str, &str, Option<Value>, &[&str])> = vec![
        ("GET", "/user", None, &["admin", "backoffice", "esight", "user"]),
        ("GET", "/api/v1/service/send/messages", None, &["admin", "backoffice"]),
        ("GET", "/api/v1/service/send/stats", None, &["admin", "backoffice"]),
        ("POST", "/api/v1/service/receive/errorjson", Some(report), &["admin", "esight"]),
        ("GET", "/api/v1/service/receive/errors", None, &["admin", "backoffice"]),
        ("GET", "/api/v1/service/receive/quarantine", None, &["admin", "backoffice"]),
        ("GET", "/api/v1/management/users", None, &["admin"]),
        ("GET", "/api/v1/management/apikeys", None, &["admin"]),
        ("GET", "/api/v1/management/audit", None, &["admin"]),
    ];
    for (method, path, body, allowed) in &table {
        for (role, token) in &tokens {
            let r = app.authed(method, path, &key, token, body.as_ref());
            if allowed.contains(role) {
                assert!(!matches!(r.status, 401 | 403), "{role} {method} {path}: {} {}", r.status, r.text());
            } else {
                r.assert_error(403, "Forbidden");
            }
        }
    }
    for (_, token) in &tokens[1..] {
        assert_eq!(app.authed("POST", "/logout", &key, token, None).status, 200);
    }
    let denied = app.audit_events(&key, &admin_token, "type=access_denied");
    assert!(denied.iter().any(|e| e["detail"]["status"] == 403 && e["username"] == "r-user"), "{denied:?}");
}

#[test]
fn a_demoted_admins_next_admin_call_is_forbidden() {
    let app = spawn_app();
    let (key, admin_token, _) = app.admin_session();
    let kim = app.seed_user("kim", "admin");
    let kim_token = app.login(&key, "kim", PASSWORD);
    assert_eq!(app.authed("GET", "/api/v1/management/users", &key, &kim_token, None).status, 200);
    let path = format!("/api/v1/management/users/user/edit/{}", kim.id);
    let r = app.authed("PATCH", &path, &key, &admin_token, Some(&json!({"roles": ["user"]})));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["roles"], json!(["user"]));
    app.authed("GET", "/api/v1/management/users", &key, &kim_token, None).assert_error(403, "Forbidden");
    assert_eq!(app.authed("GET", "/user", &key, &kim_token, None).json()["roles"], json!(["user"]));
    // And promoted back: the same token is an admin's again.
    app.authed("PATCH", &path, &key, &admin_token, Some(&json!({"roles": ["admin"]})));
    assert_eq!(app.authed("GET", "/api/v1/management/users", &key, &kim_token, None).status, 200);
}

#[test]
fn the_signing_key_is_private_on_disk_and_only_its_public_half_is_published() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app();
    let dir = app.data_dir().join("signing-keys");
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].metadata().unwrap().permissions().mode() & 0o777, 0o600);
    let jwks = app.get("/.well-known/jwks.json").json();
    let k = &jwks["keys"][0];
    assert_eq!(
        (k["kty"].as_str(), k["crv"].as_str(), k["alg"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    assert!(k.get("d").is_none(), "no private part: {k}");
    let kid = k["kid"].as_str().unwrap();
    assert!(files[0].file_name().to_str().unwrap().starts_with(kid));
}
