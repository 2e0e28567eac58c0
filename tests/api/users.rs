//! User management through the real server: create (and its validation),
//! duplicates, edit of password/roles/status, deactivate, list and get, the
//! live sessions of a user and ending one, each audited with the admin as
//! actor and the account acted upon in `detail.target_user_id`; and the
//! bootstrap admin from the configuration.

use serde_json::{Value, json};

use crate::common::identity::PASSWORD;
use crate::common::{spawn_app, spawn_app_with};

const USERS: &str = "/api/v1/management/users";
const CREATE: &str = "/api/v1/management/users/user";

#[test]
fn an_admin_creates_a_user_who_can_then_log_in() {
    let app = spawn_app();
    let (key, token, admin) = app.admin_session();
    let body =
        json!({"username": "lea.b@example-1_x", "password": "twelve-chars", "roles": ["backoffice", "user"]});
    let r = app.authed("POST", CREATE, &key, &token, Some(&body));
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let lea = app.login(&key, "lea.b@example-1_x", "twelve-chars");
    let me = app.authed("GET", "/user", &key, &lea, None).json();
    assert_eq!(me["id"], id.as_str());
    assert_eq!(me["roles"], json!(["backoffice", "user"]));

    let got = app.authed("GET", &format!("{CREATE}/{id}"), &key, &token, None);
    assert_eq!(got.status, 200);
    let got = got.json();
    assert_eq!(got["username"], "lea.b@example-1_x");
    assert_eq!(got["status"], "active");
    assert!(got.get("password").is_none() && got.get("password_hash").is_none(), "{got}");
    assert!(!got.to_string().contains("$argon2"), "{got}");
    app.authed("GET", &format!("{CREATE}/no-such-id"), &key, &token, None).assert_error(404, "NotFound");

    let list = app.authed("GET", USERS, &key, &token, None).json();
    let names: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["lea.b@example-1_x", "admin"], "newest first");
    assert!(list.get("next_cursor").is_some());
    assert!(!list.to_string().contains("$argon2"));

    let events = app.audit_events(&key, &token, "type=user_created");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["user_id"], admin.id.as_str());
    assert_eq!(events[0]["detail"]["target_user_id"], id.as_str());
}

#[test]
fn an_existing_username_is_409_with_the_existing_id() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    let mia = app.seed_user("mia", "user");
    let body = json!({"username": "mia", "password": "another-password", "roles": ["admin"]});
    let r = app.authed("POST", CREATE, &key, &token, Some(&body));
    let error = r.assert_error(409, "Conflict");
    assert_eq!(error["id"], mia.id.as_str());
    // Usernames are unique regardless of case.
    let body = json!({"username": "MIA", "password": "another-password", "roles": ["admin"]});
    let error = app.authed("POST", CREATE, &key, &token, Some(&body)).assert_error(409, "Conflict");
    assert_eq!(error["id"], mia.id.as_str());
    // The existing account is unchanged: old password, old roles.
    let t = app.login(&key, "mia", PASSWORD);
    assert_eq!(app.authed("GET", "/user", &key, &t, None).json()["roles"], json!(["user"]));
}

#[test]
fn invalid_usernames_passwords_and_roles_are_400() {
    let app = spawn_app();
    let (key, token, _) = app.admin_session();
    let ok_password = "x".repeat(12);
    let cases: Vec<Value> = vec![
        json!({"username": "ab", "password": ok_password, "roles": ["user"]}),
        json!({"username": "a".repeat(65), "password": ok_password, "roles": ["user"]}),
        json!({"username": "with space", "password": ok_password, "roles": ["user"]}),
        json!({"username": "slash/name", "password": ok_password, "roles": ["user"]}),
        json!({"username": "bad\r\nname", "password": ok_password, "roles": ["user"]}),
        json!({"username": "nina", "password": "x".repeat(11), "roles": ["user"]}),
        json!({"username": "nina", "password": "x".repeat(129), "roles": ["user"]}),
        json!({"username": "nina", "password": ok_password, "roles": ["root"]}),
        json!({"username": "nina", "password": ok_password, "roles": []}),
        json!({"username": "nina", "password": ok_password, "roles": "user"}),
        json!({"username": "nina", "password": ok_password}),
        json!({"username": "nina", "roles": ["user"]}),
    ];
    for body in &cases {
        let r = app.authed("POST", CREATE, &key, &token, Some(body));
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        r.assert_error(400, "BadRequest");
    }
    // The bounds themselves are accepted.
    // (Strong enough for the default auth.min_password_score as well.)
    let longest: String = "plum-Tractor-57-velvet-Orbit-".repeat(5).chars().take(128).collect();
    for (name, password) in [("abc", "vN7#q2!xLr9@".to_string()), (&*"b".repeat(64), longest)] {
        let body = json!({"username": name, "password": password, "roles": ["user"]});
        assert_eq!(app.authed("POST", CREATE, &key, &token, Some(&body)).status, 201, "{name}");
    }
    let list = app.authed("GET", USERS, &key, &token, None).json();
    assert_eq!(list["items"].as_array().unwrap().len(), 3, "nothing invalid was stored");
}

#[test]
fn edit_changes_password_roles_and_status() {
    let app = spawn_app();
    let (key, token, admin) = app.admin_session();
    let olga = app.seed_user("olga", "user");
    let path = format!("{CREATE}/edit/{}", olga.id);

    let r = app.authed("PATCH", &path, &key, &token, Some(&json!({"password": "brand-new-password"})));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], olga.id.as_str());
    app.login_reply(&key, "olga", PASSWORD, &[]).assert_error(401, "InvalidCredentials");
    let t = app.login(&key, "olga", "brand-new-password");

    let r = app.authed("PATCH", &path, &key, &token, Some(&json!({"roles": ["backoffice", "esight"]})));
    assert_eq!(r.json()["roles"], json!(["backoffice", "esight"]));
    assert_eq!(app.authed("GET", "/api/v1/service/send/stats", &key, &t, None).status, 200);

    let r = app.authed("PATCH", &path, &key, &token, Some(&json!({"status": "deactivated"})));
    assert_eq!(r.json()["status"], "deactivated");
    assert_eq!(app.authed("GET", "/user", &key, &t, None).status, 401);
    app.login_reply(&key, "olga", "brand-new-password", &[]).assert_error(401, "InvalidCredentials");
    let r = app.authed("PATCH", &path, &key, &token, Some(&json!({"status": "active"})));
    assert_eq!(r.json()["status"], "active");
    assert_eq!(app.login_reply(&key, "olga", "brand-new-password", &[]).status, 200);

    for bad in
        [json!({}), json!({"status": "banned"}), json!({"roles": ["god"]}), json!({"password": "short"})]
    {
        app.authed("PATCH", &path, &key, &token, Some(&bad)).assert_error(400, "BadRequest");
    }
    let r =
        app.authed("PATCH", &format!("{CREATE}/edit/nope"), &key, &token, Some(&json!({"status": "active"})));
    r.assert_error(404, "NotFound");

    let events = app.audit_events(&key, &token, "type=user_modified");
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e["user_id"] == admin.id.as_str() && e["detail"]["target_user_id"] == olga.id.as_str())
    );
}

#[test]
fn deactivate_refuses_the_users_tokens_at_once_and_is_audited() {
    let app = spawn_app();
    let (key, token, admin) = app.admin_session();
    let paul = app.seed_user("paul", "backoffice");
    let t = app.login(&key, "paul", PASSWORD);
    let r = app.authed("DELETE", &format!("{CREATE}/deactivate/{}", paul.id), &key, &token, None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "deactivated");
    let r = app.authed("GET", "/user", &key, &t, None);
    r.assert_error(401, "Unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"energyload\""));
    let got = app.authed("GET", &format!("{CREATE}/{}", paul.id), &key, &token, None).json();
    assert_eq!(got["status"], "deactivated");
    let events = app.audit_events(&key, &token, "type=user_deactivated");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["user_id"], admin.id.as_str());
    assert_eq!(events[0]["detail"]["target_user_id"], paul.id.as_str());
    app.authed("DELETE", &format!("{CREATE}/deactivate/nope"), &key, &token, None)
        .assert_error(404, "NotFound");
}

#[test]
fn an_admin_lists_a_users_sessions_and_ends_one() {
    let app = spawn_app();
    let (key, token, admin) = app.admin_session();
    let quinn = app.seed_user("quinn", "user");
    let first = app.login(&key, "quinn", PASSWORD);
    let r = app.request(
        "POST",
        "/login",
        &[("X-API-Key", &key), ("Content-Type", "application/json"), ("User-Agent", "quinn-agent/2.0")],
        Some(json!({"username": "quinn", "password": PASSWORD}).to_string().as_bytes()),
    );
    let second = r.text();
    let sessions_path = format!("{CREATE}/{}/sessions", quinn.id);
    let list = app.authed("GET", &sessions_path, &key, &token, None);
    assert_eq!(list.status, 200, "{}", list.text());
    let items = list.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2, "{items:?}");
    let jti_of = |t: &str| -> String {
        use base64::Engine;
        let p =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.split('.').nth(1).unwrap()).unwrap();
        serde_json::from_slice::<Value>(&p).unwrap()["jti"].as_str().unwrap().to_string()
    };
    let second_row =
        items.iter().find(|s| s["jti"] == jti_of(&second).as_str()).expect("second session listed");
    assert_eq!(second_row["ip"], "127.0.0.1");
    assert_eq!(second_row["user_agent"], "quinn-agent/2.0");
    assert!(second_row["expires_at"].as_str().is_some() && second_row["issued_at"].as_str().is_some());

    let jti = jti_of(&first);
    let r = app.authed("DELETE", &format!("/api/v1/management/sessions/{jti}"), &key, &token, None);
    assert_eq!(r.status, 200, "{}", r.text());
    app.authed("GET", "/user", &key, &first, None).assert_error(401, "Unauthorized");
    assert_eq!(app.authed("GET", "/user", &key, &second, None).status, 200);
    let items = app.authed("GET", &sessions_path, &key, &token, None).json()["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1, "the ended session is no longer live: {items}");

    let events = app.audit_events(&key, &token, "type=logout");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["user_id"], admin.id.as_str(), "the admin is the actor");
    assert_eq!(events[0]["detail"]["target_user_id"], quinn.id.as_str());
    let r = app.authed("DELETE", "/api/v1/management/sessions/no-such-jti", &key, &token, None);
    r.assert_error(404, "NotFound");
}

#[test]
fn the_bootstrap_admin_is_created_at_first_start_from_the_configured_password() {
    let app = spawn_app_with(|c| {
        c.auth.bootstrap_admin = Some("root-admin".into());
        c.auth.bootstrap_admin_password = Some(energyload::config::Secret::new("bootstrap-password-1"));
    });
    let key = app.seed_api_key("k");
    let t = app.login(&key, "root-admin", "bootstrap-password-1");
    let me = app.authed("GET", "/user", &key, &t, None).json();
    assert_eq!(me["roles"], json!(["admin"]));
    // A restart with another configured password does not touch the existing admin.
    let (dir, mut config) = app.stop();
    config.auth.bootstrap_admin_password = Some(energyload::config::Secret::new("changed-password-2"));
    let app = crate::common::start(dir, config);
    app.login_reply(&key, "root-admin", "changed-password-2", &[]).assert_error(401, "InvalidCredentials");
    assert_eq!(app.login_reply(&key, "root-admin", "bootstrap-password-1", &[]).status, 200);
}
