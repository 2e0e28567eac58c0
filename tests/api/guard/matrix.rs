//! The guard matrix: every route of `api::ROUTES` × every combination of
//! credentials a caller can present (API key: none, valid, valid in the
//! compat query, revoked, expired, rate-limited; bearer token: none, valid
//! for each role, expired, revoked, signed by another key, `alg: none`,
//! wrong audience, an admin-page token; cookie: none, junk, a page session
//! of each role with its CSRF token, one without, a bearer token moved into
//! the cookie, the `__Host-` cookie over plain HTTP), sent to the real server.
//!
//! The expected verdict comes from [`oracle`], written from the contract's
//! access table (API.md, "Authentication and roles") and issue 11's rules for
//! cookie sessions — not from the route table's `access` field, which is what
//! is under test. A route the oracle has no rule for fails the test, so a new
//! route is covered as soon as it is in the table.

use std::collections::BTreeMap;

use energyload::api::ROUTES;
use energyload::auth::tokens::TokenChannel;
use energyload::storage::identity;

use super::mint::{Minter, claims_of};
use crate::common::identity::PASSWORD;
use crate::common::{Reply, TestApp, spawn_app};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Admin,
    Backoffice,
    Esight,
    User,
}

const ROLES: [Role; 4] = [Role::Admin, Role::Backoffice, Role::Esight, Role::User];

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Backoffice => "backoffice",
            Role::Esight => "esight",
            Role::User => "user",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Key {
    None,
    Valid,
    ValidInQuery,
    Revoked,
    Expired,
    RateLimited,
}

#[derive(Debug, Clone, Copy)]
enum Token {
    None,
    Valid(Role),
    Expired,
    Revoked,
    OtherKey,
    AlgNone,
    WrongAudience,
    PageTokenAsBearer,
}

#[derive(Debug, Clone, Copy)]
enum Cookie {
    None,
    Junk,
    Session(Role),
    SessionWithoutCsrf,
    BearerTokenMovedIn,
    SecureNameOverPlainHttp,
}

fn keys() -> Vec<Key> {
    vec![Key::None, Key::Valid, Key::ValidInQuery, Key::Revoked, Key::Expired, Key::RateLimited]
}

fn tokens() -> Vec<Token> {
    let mut t = vec![Token::None];
    t.extend(ROLES.map(Token::Valid));
    t.extend([Token::Expired, Token::Revoked, Token::OtherKey, Token::AlgNone, Token::WrongAudience]);
    t.push(Token::PageTokenAsBearer);
    t
}

fn cookies() -> Vec<Cookie> {
    let mut c = vec![Cookie::None, Cookie::Junk];
    c.extend(ROLES.map(Cookie::Session));
    c.extend([Cookie::SessionWithoutCsrf, Cookie::BearerTokenMovedIn, Cookie::SecureNameOverPlainHttp]);
    c
}

/// What the guard does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The handler ran.
    Pass,
    /// `401 Unauthorized`.
    Unauthorized,
    /// `403 Forbidden`.
    Forbidden,
    /// `429 TooManyRequests` (the key's quota).
    RateLimited,
}

/// The contract's endpoint groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Open,
    KeyOnly,
    AnyRole,
    AdminPage,
    Send,
    ReceivePost,
    ReceiveRead,
    Management,
    Dashboard,
}

mod oracle {
    //! The contract's access rules, restated.
    use super::*;

    pub fn group(method: &str, path: &str) -> Group {
        const OPEN: [&str; 7] = [
            "/health",
            "/healthz",
            "/readyz",
            "/version",
            "/metrics",
            "/openapi.json",
            "/.well-known/jwks.json",
        ];
        match (method, path) {
            (_, p) if OPEN.contains(&p) => Group::Open,
            ("POST", "/admin/session") => Group::Open,
            (_, "/admin/session") => Group::AdminPage,
            ("GET", p) if p.starts_with("/admin/") => Group::Open,
            ("POST", "/login") => Group::KeyOnly,
            (_, "/user" | "/logout" | "/user/password") => Group::AnyRole,
            (_, p) if p.starts_with("/api/v1/service/send/") => Group::Send,
            ("POST", "/api/v1/service/receive/errorjson") => Group::ReceivePost,
            ("GET", p) if p.starts_with("/api/v1/service/receive/") => Group::ReceiveRead,
            // The attention strip is the dashboard's: whoever sees the dashboard.
            ("GET", "/api/v1/management/attention") => Group::Dashboard,
            (_, p) if p.starts_with("/api/v1/management/") => Group::Management,
            _ => {
                panic!("the oracle has no rule for {method} {path}: add one from the contract's access table")
            }
        }
    }

    pub fn allows(group: Group, role: Role) -> bool {
        use Role::*;
        match group {
            Group::Open | Group::KeyOnly | Group::AnyRole => true,
            Group::AdminPage | Group::Send | Group::ReceiveRead | Group::Dashboard => {
                matches!(role, Admin | Backoffice)
            }
            Group::ReceivePost => matches!(role, Admin | Esight),
            Group::Management => role == Admin,
        }
    }

    /// Every method but GET changes state, and so does the compat import
    /// by file name (a GET).
    pub fn changes_state(method: &str, path: &str) -> bool {
        method != "GET" || path.starts_with("/api/v1/service/send/sendJson/")
    }

    /// Which credential the request authenticates with.
    enum Source {
        None,
        Bearer(Token),
        Cookie(Cookie),
    }

    pub fn verdict(method: &str, path: &str, key: Key, token: Token, cookie: Cookie) -> Verdict {
        let group = group(method, path);
        if group == Group::Open {
            return Verdict::Pass;
        }
        let source = match (group, token, cookie) {
            (Group::KeyOnly, _, _) => Source::None,
            (_, Token::None, Cookie::None | Cookie::SecureNameOverPlainHttp) => Source::None,
            (_, Token::None, c) => Source::Cookie(c),
            (_, t, _) => Source::Bearer(t),
        };
        // The key: waived only for a cookie session; a presented key must
        // be good either way.
        let key_waived = matches!(source, Source::Cookie(_));
        match key {
            Key::None if !key_waived => return Verdict::Unauthorized,
            Key::Revoked | Key::Expired => return Verdict::Unauthorized,
            Key::RateLimited => return Verdict::RateLimited,
            Key::None | Key::Valid | Key::ValidInQuery => {}
        }
        if group == Group::KeyOnly {
            return Verdict::Pass;
        }
        let (role, csrf_missing) = match source {
            Source::None => return Verdict::Unauthorized,
            Source::Bearer(Token::Valid(role)) => (role, false),
            Source::Bearer(_) => return Verdict::Unauthorized,
            Source::Cookie(Cookie::Session(role)) => (role, false),
            Source::Cookie(Cookie::SessionWithoutCsrf) => (Role::Admin, true),
            Source::Cookie(_) => return Verdict::Unauthorized,
        };
        if csrf_missing && changes_state(method, path) {
            return Verdict::Forbidden;
        }
        if !allows(group, role) {
            return Verdict::Forbidden;
        }
        Verdict::Pass
    }
}

/// What the server answered, as a verdict: the guard's refusals have their
/// own codes (a handler's failed login is `InvalidCredentials`, not
/// `Unauthorized`).
fn observed(r: &Reply) -> Verdict {
    let code = || r.json()["error"]["code"].as_str().unwrap_or_default().to_string();
    match r.status {
        401 if code() == "Unauthorized" => {
            assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"energyload\""));
            Verdict::Unauthorized
        }
        403 if code() == "Forbidden" => Verdict::Forbidden,
        429 if code() == "TooManyRequests" => Verdict::RateLimited,
        _ => Verdict::Pass,
    }
}

/// Everything the cases present, made once.
struct Credentials {
    keys: BTreeMap<&'static str, String>,
    bearer: BTreeMap<Role, String>,
    page: BTreeMap<Role, (String, String)>,
    user_ids: BTreeMap<Role, String>,
    expired: String,
    revoked: String,
    other_key: String,
    alg_none: String,
    wrong_audience: String,
    minter: Minter,
}

fn api_key_record(
    key: &energyload::auth::NewApiKey,
    name: &str,
    change: impl FnOnce(&mut identity::ApiKeyRecord),
) -> identity::ApiKeyRecord {
    let mut r = energyload::api::new_api_key_record(key, name.into(), None, None);
    change(&mut r);
    r
}

fn sign_in(app: &TestApp, username: &str) -> (String, String) {
    let body = serde_json::json!({"username": username, "password": PASSWORD}).to_string();
    let r =
        app.request("POST", "/admin/session", &[("Content-Type", "application/json")], Some(body.as_bytes()));
    assert_eq!(r.status, 200, "sign-in: {}", r.text());
    let cookie = r.header("set-cookie").unwrap();
    let token = cookie.split(';').next().unwrap().strip_prefix("el_session=").unwrap().to_string();
    (token, r.json()["csrf_token"].as_str().unwrap().to_string())
}

fn credentials(app: &TestApp) -> Credentials {
    let mut user_ids = BTreeMap::new();
    for role in ROLES {
        user_ids.insert(role, app.seed_user(&format!("matrix-{}", role.name()), role.name()).id);
    }
    let db = app.db();
    let now = energyload::clock::now_millis();
    let mut keys = BTreeMap::new();
    let mut add = |name: &'static str, change: &dyn Fn(&mut identity::ApiKeyRecord)| {
        let key = energyload::auth::NewApiKey::generate().unwrap();
        identity::insert_api_key(&db, &api_key_record(&key, name, change)).unwrap();
        keys.insert(name, key.expose().to_string());
    };
    add("valid", &|_| {});
    add("revoked", &|r| r.revoked_at = Some(now - 1000));
    add("expired", &|r| r.expires_at = Some(now - 1000));
    add("rate-limited", &|r| {
        r.rate_per_sec = Some(0.001);
        r.burst = Some(1);
    });
    app.wait_for_directory();
    // Use up the rate-limited key's one request.
    let spent = app.request("POST", "/login", &[("X-API-Key", &keys["rate-limited"])], None);
    assert_ne!(spent.status, 429, "the burst of one is there at first");
    assert_eq!(app.request("POST", "/login", &[("X-API-Key", &keys["rate-limited"])], None).status, 429);

    let mut bearer = BTreeMap::new();
    for role in ROLES {
        bearer.insert(role, app.login(&keys["valid"], &format!("matrix-{}", role.name()), PASSWORD));
    }
    let revoked = app.login(&keys["valid"], "matrix-admin", PASSWORD);
    assert_eq!(app.authed("POST", "/logout", &keys["valid"], &revoked, None).status, 200);

    let minter = Minter::new(app);
    let mut page = BTreeMap::new();
    for role in [Role::Admin, Role::Backoffice] {
        page.insert(role, sign_in(app, &format!("matrix-{}", role.name())));
    }
    // The page refuses to sign in esight and user accounts; their page
    // tokens are made with the app's key, to check the role rule behind it.
    for role in [Role::Esight, Role::User] {
        let token = minter.valid(&user_ids[&role], role.name(), TokenChannel::AdminPage);
        let csrf = energyload::auth::guard::csrf_token(claims_of(&token)["jti"].as_str().unwrap());
        page.insert(role, (token, csrf));
    }
    let admin = &user_ids[&Role::Admin];
    Credentials {
        expired: minter.expired(admin, "admin"),
        other_key: minter.other_key(admin, "admin"),
        alg_none: minter.alg_none(admin, "admin"),
        wrong_audience: minter.wrong_audience(admin, "admin"),
        keys,
        bearer,
        page,
        user_ids,
        revoked,
        minter,
    }
}

impl Credentials {
    /// A fresh token for the routes that end the session they are called
    /// with (`POST /logout`, `DELETE /admin/session`), so one case cannot
    /// spend the next one's credentials.
    fn fresh(&self, role: Role, channel: TokenChannel) -> String {
        self.minter.valid(&self.user_ids[&role], role.name(), channel)
    }
}

fn concrete_path(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|seg| match seg {
            "{*path}" => "index.html".to_string(),
            "{file_name}" => "no-such-file".to_string(),
            s if s.starts_with('{') => "01936f5e-0000-7000-8000-000000000000".to_string(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn send(
    app: &TestApp,
    creds: &Credentials,
    method: &str,
    path: &str,
    key: Key,
    token: Token,
    cookie: Cookie,
) -> Reply {
    let ends_session = matches!((method, path), ("POST", "/logout") | ("DELETE", "/admin/session"));
    let mut url = path.to_string();
    let mut headers: Vec<(String, String)> = Vec::new();
    match key {
        Key::None => {}
        Key::Valid => headers.push(("X-API-Key".into(), creds.keys["valid"].clone())),
        Key::ValidInQuery => url = format!("{url}?key={}", creds.keys["valid"]),
        Key::Revoked => headers.push(("X-API-Key".into(), creds.keys["revoked"].clone())),
        Key::Expired => headers.push(("X-API-Key".into(), creds.keys["expired"].clone())),
        Key::RateLimited => headers.push(("X-API-Key".into(), creds.keys["rate-limited"].clone())),
    }
    let bearer = match token {
        Token::None => None,
        Token::Valid(role) if ends_session => Some(creds.fresh(role, TokenChannel::Bearer)),
        Token::Valid(role) => Some(creds.bearer[&role].clone()),
        Token::Expired => Some(creds.expired.clone()),
        Token::Revoked => Some(creds.revoked.clone()),
        Token::OtherKey => Some(creds.other_key.clone()),
        Token::AlgNone => Some(creds.alg_none.clone()),
        Token::WrongAudience => Some(creds.wrong_audience.clone()),
        Token::PageTokenAsBearer => Some(creds.page[&Role::Admin].0.clone()),
    };
    if let Some(t) = bearer {
        headers.push(("Authorization".into(), format!("Bearer {t}")));
    }
    let page = |role: Role| {
        if ends_session {
            let t = creds.fresh(role, TokenChannel::AdminPage);
            let csrf = energyload::auth::guard::csrf_token(claims_of(&t)["jti"].as_str().unwrap());
            (t, csrf)
        } else {
            creds.page[&role].clone()
        }
    };
    match cookie {
        Cookie::None => {}
        Cookie::Junk => headers.push(("Cookie".into(), "el_session=x".into())),
        Cookie::Session(role) => {
            let (t, csrf) = page(role);
            headers.push(("Cookie".into(), format!("theme=dark; el_session={t}")));
            headers.push(("X-CSRF-Token".into(), csrf));
        }
        Cookie::SessionWithoutCsrf => {
            let (t, _) = page(Role::Admin);
            headers.push(("Cookie".into(), format!("el_session={t}")));
        }
        Cookie::BearerTokenMovedIn => {
            let t = creds.bearer[&Role::Admin].clone();
            let csrf = energyload::auth::guard::csrf_token(claims_of(&t)["jti"].as_str().unwrap());
            headers.push(("Cookie".into(), format!("el_session={t}")));
            headers.push(("X-CSRF-Token".into(), csrf));
        }
        Cookie::SecureNameOverPlainHttp => {
            let (t, csrf) = page(Role::Admin);
            headers.push(("Cookie".into(), format!("__Host-el_session={t}")));
            headers.push(("X-CSRF-Token".into(), csrf));
        }
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    app.request(method, &url, &headers, None)
}

#[test]
fn every_route_answers_every_credential_combination_as_the_contract_says() {
    let app = spawn_app();
    let creds = credentials(&app);
    let routes: Vec<(&str, String)> =
        ROUTES.iter().map(|r| (r.verb.as_str(), concrete_path(r.path))).collect();
    // Every route the oracle knows; panics name the first one it does not.
    for (method, path) in &routes {
        oracle::group(method, path);
    }
    let cases: Vec<(Key, Token, Cookie)> = keys()
        .into_iter()
        .flat_map(|k| tokens().into_iter().flat_map(move |t| cookies().into_iter().map(move |c| (k, t, c))))
        .collect();
    let chunks: Vec<Vec<(&str, String)>> =
        routes.chunks(routes.len().div_ceil(4)).map(<[_]>::to_vec).collect();
    let results: Vec<(usize, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                let (app, creds, cases) = (&app, &creds, &cases);
                s.spawn(move || {
                    let mut checked = 0;
                    let mut mismatches = Vec::new();
                    for (method, path) in chunk {
                        for &(key, token, cookie) in cases {
                            let expected = oracle::verdict(method, path, key, token, cookie);
                            let reply = send(app, creds, method, path, key, token, cookie);
                            let got = observed(&reply);
                            checked += 1;
                            if got != expected || reply.status >= 500 {
                                mismatches.push(format!(
                                    "{method} {path} key={key:?} token={token:?} cookie={cookie:?}: \
                                     expected {expected:?}, got {} {}",
                                    reply.status,
                                    reply.text().chars().take(160).collect::<String>()
                                ));
                            }
                        }
                    }
                    (checked, mismatches)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let checked: usize = results.iter().map(|(n, _)| n).sum();
    let mismatches: Vec<&String> = results.iter().flat_map(|(_, m)| m).collect();
    assert_eq!(checked, routes.len() * cases.len());
    assert!(checked > 10_000, "only {checked} cases");
    assert!(
        mismatches.is_empty(),
        "{} of {checked} cases differ from the contract, e.g.:\n{}",
        mismatches.len(),
        mismatches.iter().take(25).map(|m| m.as_str()).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_oracle_itself_follows_the_contract_table() {
    // A few rows of API.md's table, spelled out, so a wrong oracle cannot
    // make the matrix agree with a wrong guard.
    use oracle::verdict as v;
    let (k, none) = (Key::Valid, Cookie::None);
    assert_eq!(
        v("GET", "/api/v1/management/users", k, Token::Valid(Role::Backoffice), none),
        Verdict::Forbidden
    );
    assert_eq!(v("GET", "/api/v1/management/users", k, Token::Valid(Role::Admin), none), Verdict::Pass);
    assert_eq!(
        v("POST", "/api/v1/service/receive/errorjson", k, Token::Valid(Role::Esight), none),
        Verdict::Pass
    );
    assert_eq!(
        v("GET", "/api/v1/service/receive/errors", k, Token::Valid(Role::Esight), none),
        Verdict::Forbidden
    );
    assert_eq!(v("GET", "/user", k, Token::Valid(Role::User), none), Verdict::Pass);
    assert_eq!(
        v("POST", "/login", Key::None, Token::None, Cookie::Session(Role::Admin)),
        Verdict::Unauthorized
    );
    assert_eq!(
        v("GET", "/api/v1/management/users", Key::None, Token::Valid(Role::Admin), Cookie::Junk),
        Verdict::Unauthorized
    );
    assert_eq!(
        v("GET", "/api/v1/management/users", Key::None, Token::None, Cookie::Session(Role::Admin)),
        Verdict::Pass
    );
    assert_eq!(
        v("GET", "/api/v1/service/send/sendJson/x", Key::None, Token::None, Cookie::SessionWithoutCsrf),
        Verdict::Forbidden
    );
    assert_eq!(v("GET", "/health", Key::Revoked, Token::AlgNone, Cookie::Junk), Verdict::Pass);
}
