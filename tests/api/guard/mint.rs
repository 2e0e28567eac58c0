//! Tokens made by the test itself with the app's signing key (read from its
//! data directory, as an attacker who stole it — or an operator — could):
//! valid ones for any user and channel, and each kind of bad one.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::common::TestApp;
use energyload::auth::tokens::TokenChannel;
use energyload::auth::{AccessTokens, SigningKeys, TokenSettings};
use energyload::domain::user::Roles;

/// The claims of a token, decoded without verifying it.
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Signs tokens like the app does, and forges the kinds it must refuse.
pub struct Minter {
    tokens: AccessTokens,
    kid: String,
    stranger: (EncodingKey, tempfile::TempDir),
}

impl Minter {
    /// A minter with `app`'s current signing key.
    pub fn new(app: &TestApp) -> Self {
        let settings = TokenSettings {
            issuer: app.config.auth.issuer.clone(),
            audience: app.config.auth.audience.clone(),
            ttl: Duration::from_secs(3600),
        };
        let keys = SigningKeys::load_or_create(&app.data_dir(), settings.ttl).unwrap();
        let tokens = AccessTokens::new(keys, settings.clone());
        let kid = tokens.keys().current_kid().to_string();
        let dir = tempfile::tempdir().unwrap();
        let other = SigningKeys::load_or_create(dir.path(), settings.ttl).unwrap();
        let stranger = (other.signing_key().1.clone(), dir);
        Self { tokens, kid, stranger }
    }

    fn claims(&self, sub: &str, roles: &str, channel: TokenChannel) -> Value {
        let mut c = self.tokens.claims_for(sub.to_string(), Roles::parse_list(roles).unwrap(), now());
        c.channel = channel;
        serde_json::to_value(c).unwrap()
    }

    fn sign(&self, claims: &Value, key: &EncodingKey) -> String {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, key).unwrap()
    }

    fn own_key(&self) -> &EncodingKey {
        self.tokens.keys().signing_key().1
    }

    /// A valid token for user `sub`, presentable on `channel`.
    pub fn valid(&self, sub: &str, roles: &str, channel: TokenChannel) -> String {
        self.sign(&self.claims(sub, roles, channel), self.own_key())
    }

    /// Expired beyond the leeway.
    pub fn expired(&self, sub: &str, roles: &str) -> String {
        let mut c = self.claims(sub, roles, TokenChannel::Bearer);
        c["iat"] = json!(now() - 7200);
        c["exp"] = json!(now() - 600);
        self.sign(&c, self.own_key())
    }

    /// For another audience.
    pub fn wrong_audience(&self, sub: &str, roles: &str) -> String {
        let mut c = self.claims(sub, roles, TokenChannel::Bearer);
        c["aud"] = json!("another-service");
        self.sign(&c, self.own_key())
    }

    /// The app's key id, but signed by another key.
    pub fn other_key(&self, sub: &str, roles: &str) -> String {
        self.sign(&self.claims(sub, roles, TokenChannel::Bearer), &self.stranger.0)
    }

    /// `alg: none`, no signature.
    pub fn alg_none(&self, sub: &str, roles: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(self.claims(sub, roles, TokenChannel::Bearer).to_string());
        format!("{header}.{claims}.")
    }
}
