//! Access tokens: EdDSA (Ed25519) JWTs with `iss`, `aud`, `sub`, `jti`,
//! `iat`, `exp` and `roles`, and a `kid` header naming the signing key.
//!
//! Verification pins the algorithm to EdDSA before looking at anything else
//! (so `alg: none` and HS256 "signed" with the public key are refused), looks
//! the key up by `kid` among the current and still-valid keys only, checks the
//! signature, `iss`, `aud` and `exp` with at most [`LEEWAY_SECS`] of leeway.
//! Revocation and "is the user still active" are the caller's checks, done in
//! memory after [`AccessTokens::verify`] succeeds.

use std::collections::HashSet;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::signing_keys::{LEEWAY_SECS, SigningKeys};
use crate::domain::user::Roles;

/// Why a token was refused or could not be made. Every refusal is a `401`;
/// the variants exist for audit detail and tests. Messages never contain the
/// token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or a header/claims part that does not decode (this
    /// includes `alg: none`, which is no algorithm at all).
    #[error("token is malformed")]
    Malformed,
    /// A JWT with an algorithm other than EdDSA.
    #[error("token algorithm is not accepted")]
    WrongAlgorithm,
    /// No `kid`, or one that names no current or still-valid key.
    #[error("token is signed by an unknown key")]
    UnknownKey,
    /// The signature does not match the header and claims.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is more than the leeway in the past.
    #[error("token has expired")]
    Expired,
    /// `iss` is not this appliance's issuer.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// `aud` is not this appliance's audience.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// A claim is missing or of the wrong type, or `iat` lies in the future.
    #[error("token claims are invalid")]
    InvalidClaims,
    /// Signing failed (the key could not be used).
    #[error("token could not be signed")]
    Signing,
}

/// What tokens are issued and accepted with: `auth.issuer`, `auth.audience`
/// and `auth.token_ttl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// The `iss` claim written and required.
    pub issuer: String,
    /// The `aud` claim written and required.
    pub audience: String,
    /// How long an issued token lives.
    pub ttl: Duration,
}

/// The claims of an access token. `sub` is the user id; `jti` is unique per
/// token (a UUID v7) and is what logout revokes; times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Subject: the user id.
    pub sub: String,
    /// Token id, unique per token.
    pub jti: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    /// The user's roles when the token was issued (informational: the guard
    /// reads the user's current roles).
    pub roles: Roles,
    /// Where the token may be presented (claim `chn`). Tokens issued before
    /// the claim existed are bearer tokens.
    #[serde(default, rename = "chn")]
    pub channel: TokenChannel,
}

/// Where a token may be presented. A token of the admin page's cookie
/// session waives the API key (the page holds none) and so is accepted only
/// from the `HttpOnly` cookie, with a CSRF token on every state-changing
/// request; every other token is a bearer token and needs the API key.
/// Keeping the two apart means a token obtained with a key and then put into
/// a cookie does not get around the key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenChannel {
    /// `Authorization: Bearer`, together with an API key.
    #[default]
    Bearer,
    /// The admin page's session cookie only.
    AdminPage,
}

/// Issues and verifies access tokens with a set of [`SigningKeys`].
pub struct AccessTokens {
    keys: SigningKeys,
    settings: TokenSettings,
    validation: Validation,
}

impl AccessTokens {
    /// Tokens signed with `keys`' current key and checked against `settings`.
    pub fn new(keys: SigningKeys, settings: TokenSettings) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = false;
        validation.required_spec_claims =
            ["exp", "iss", "aud", "sub"].into_iter().map(String::from).collect::<HashSet<_>>();
        Self { keys, settings, validation }
    }

    /// The signing keys, e.g. for the JWKS document.
    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }

    /// The settings tokens are issued and checked with.
    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// Fresh claims for user `sub` with `roles`, issued at `now_secs` and
    /// expiring after the configured TTL, with a new unique `jti`.
    pub fn claims_for(&self, sub: impl Into<String>, roles: Roles, now_secs: u64) -> Claims {
        Claims {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: sub.into(),
            jti: uuid::Uuid::now_v7().to_string(),
            iat: now_secs,
            exp: now_secs.saturating_add(self.settings.ttl.as_secs()),
            roles,
            channel: TokenChannel::Bearer,
        }
    }

    /// Signs `claims` with the current key; the header carries its `kid`.
    pub fn issue(&self, claims: &Claims) -> Result<String, TokenError> {
        let (kid, key) = self.keys.signing_key();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, key).map_err(|_| TokenError::Signing)
    }

    /// Checks a token's algorithm, key, signature, `iss`, `aud` and `exp`
    /// (and that `iat` is not in the future), and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, unix_now_secs())
    }

    fn verify_at(&self, token: &str, now_secs: u64) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::WrongAlgorithm);
        }
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        let key = self.keys.verifying_key(kid).ok_or(TokenError::UnknownKey)?;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => TokenError::WrongAlgorithm,
                ErrorKind::MissingRequiredClaim(_) | ErrorKind::Json(_) => TokenError::InvalidClaims,
                _ => TokenError::Malformed,
            })?
            .claims;
        if claims.iat > now_secs.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::InvalidClaims);
        }
        Ok(claims)
    }
}

fn unix_now_secs() -> u64 {
    u64::try_from(crate::clock::now_millis() / 1000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, EncodingKey};
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::user::Role;

    fn settings() -> TokenSettings {
        TokenSettings {
            issuer: "energyload".into(),
            audience: "energyload".into(),
            ttl: Duration::from_secs(3600),
        }
    }

    fn tokens_in(dir: &tempfile::TempDir) -> AccessTokens {
        AccessTokens::new(SigningKeys::load_or_create(dir.path(), settings().ttl).unwrap(), settings())
    }

    fn setup() -> (tempfile::TempDir, AccessTokens) {
        let dir = tempfile::tempdir().unwrap();
        let tokens = tokens_in(&dir);
        (dir, tokens)
    }

    fn claims(tokens: &AccessTokens) -> Claims {
        tokens.claims_for("0191d0a2-user", Roles::single(Role::Backoffice), unix_now_secs())
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    /// Signs arbitrary claims with the real current key and a chosen header.
    fn sign_raw(tokens: &AccessTokens, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, tokens.keys().signing_key().1).unwrap()
    }

    fn current_header(tokens: &AccessTokens) -> Header {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(tokens.keys().current_kid().to_owned());
        header
    }

    #[test]
    fn issued_tokens_verify_and_carry_their_claims() {
        let (_dir, tokens) = setup();
        let claims = claims(&tokens);
        let token = tokens.issue(&claims).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some(tokens.keys().current_kid()));
        assert_eq!(tokens.verify(&token), Ok(claims.clone()));
        assert_eq!(claims.exp - claims.iat, 3600);
        assert_eq!((claims.iss.as_str(), claims.aud.as_str()), ("energyload", "energyload"));
        let payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap())
                .unwrap();
        assert_eq!(payload["roles"], json!(["backoffice"]));
        assert_ne!(tokens.claims_for("u", Roles::single(Role::User), 0).jti, claims.jti);
    }

    #[test]
    fn alg_none_is_refused() {
        let (_dir, tokens) = setup();
        let payload = b64(&serde_json::to_value(claims(&tokens)).unwrap());
        for alg in ["none", "None", "NONE"] {
            let header = b64(&json!({"alg": alg, "typ": "JWT", "kid": tokens.keys().current_kid()}));
            assert_eq!(tokens.verify(&format!("{header}.{payload}.")), Err(TokenError::Malformed));
        }
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_refused() {
        let (_dir, tokens) = setup();
        let jwks = tokens.keys().jwks();
        let x = jwks["keys"][0]["x"].as_str().unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(tokens.keys().current_kid().to_owned());
        let claims = claims(&tokens);
        for secret in [x.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(x).unwrap()] {
            let forged = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap();
            assert_eq!(tokens.verify(&forged), Err(TokenError::WrongAlgorithm));
        }
    }

    #[test]
    fn unknown_or_missing_kids_are_refused() {
        let (_dir, tokens) = setup();
        let (_other_dir, other) = setup();
        let foreign = other.issue(&claims(&tokens)).unwrap();
        assert_eq!(tokens.verify(&foreign), Err(TokenError::UnknownKey));
        let claims_json = serde_json::to_value(claims(&tokens)).unwrap();
        let no_kid = sign_raw(&tokens, &Header::new(Algorithm::EdDSA), &claims_json);
        assert_eq!(tokens.verify(&no_kid), Err(TokenError::UnknownKey));
    }

    #[test]
    fn another_key_claiming_our_kid_is_a_bad_signature() {
        let (_dir, tokens) = setup();
        let (_other_dir, other) = setup();
        let claims_json = serde_json::to_value(claims(&tokens)).unwrap();
        let forged =
            jsonwebtoken::encode(&current_header(&tokens), &claims_json, other.keys().signing_key().1)
                .unwrap();
        assert_eq!(tokens.verify(&forged), Err(TokenError::BadSignature));
    }

    #[test]
    fn wrong_issuer_or_audience_is_refused() {
        let (_dir, tokens) = setup();
        let mut claims = claims(&tokens);
        claims.iss = "someone-else".into();
        assert_eq!(tokens.verify(&tokens.issue(&claims).unwrap()), Err(TokenError::WrongIssuer));
        claims.iss = "energyload".into();
        claims.aud = "another-service".into();
        assert_eq!(tokens.verify(&tokens.issue(&claims).unwrap()), Err(TokenError::WrongAudience));
    }

    #[test]
    fn expiry_allows_at_most_sixty_seconds_of_leeway() {
        let (_dir, tokens) = setup();
        let now = unix_now_secs();
        let mut claims = claims(&tokens);
        (claims.iat, claims.exp) = (now - 3630, now - 30);
        assert_eq!(tokens.verify(&tokens.issue(&claims).unwrap()), Ok(claims.clone()));
        (claims.iat, claims.exp) = (now - 3662, now - 62);
        assert_eq!(tokens.verify(&tokens.issue(&claims).unwrap()), Err(TokenError::Expired));
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let (_dir, tokens) = setup();
        let token = tokens.issue(&claims(&tokens)).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload["roles"] = json!(["admin"]);
        let elevated = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);
        assert_eq!(tokens.verify(&elevated), Err(TokenError::BadSignature));
        let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        signature[0] ^= 1;
        let bad_signature = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(signature));
        assert_eq!(tokens.verify(&bad_signature), Err(TokenError::BadSignature));
        for junk in ["", "abc", "a.b.c", &format!("{}.{}", parts[0], parts[1])] {
            assert_eq!(tokens.verify(junk), Err(TokenError::Malformed), "{junk}");
        }
    }

    #[test]
    fn missing_claims_and_future_iat_are_refused() {
        let (_dir, tokens) = setup();
        let mut claims_json = serde_json::to_value(claims(&tokens)).unwrap();
        claims_json.as_object_mut().unwrap().remove("sub");
        let no_sub = sign_raw(&tokens, &current_header(&tokens), &claims_json);
        assert_eq!(tokens.verify(&no_sub), Err(TokenError::InvalidClaims));
        let mut claims = claims(&tokens);
        claims.iat = unix_now_secs() + 600;
        claims.exp = claims.iat + 3600;
        assert_eq!(tokens.verify(&tokens.issue(&claims).unwrap()), Err(TokenError::InvalidClaims));
    }

    #[test]
    fn tokens_survive_a_rotation_and_new_ones_use_the_new_key() {
        let (dir, tokens) = setup();
        let before = tokens.issue(&claims(&tokens)).unwrap();
        let rotated = AccessTokens::new(SigningKeys::rotate(dir.path(), settings().ttl).unwrap(), settings());
        assert!(rotated.verify(&before).is_ok());
        let after = rotated.issue(&claims(&rotated)).unwrap();
        assert_ne!(
            jsonwebtoken::decode_header(&after).unwrap().kid,
            jsonwebtoken::decode_header(&before).unwrap().kid
        );
        assert!(rotated.verify(&after).is_ok());
        assert_eq!(tokens.verify(&after), Err(TokenError::UnknownKey), "until it re-loads");
        assert!(tokens_in(&dir).verify(&after).is_ok());
    }

    #[test]
    fn the_published_jwks_verifies_issued_tokens() {
        let (_dir, tokens) = setup();
        let token = tokens.issue(&claims(&tokens)).unwrap();
        let set: JwkSet = serde_json::from_value(tokens.keys().jwks()).unwrap();
        let jwk = set.find(tokens.keys().current_kid()).unwrap();
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["energyload"]);
        assert!(jsonwebtoken::decode::<Claims>(&token, &key, &validation).is_ok());
    }

    #[test]
    fn errors_never_echo_the_token() {
        let (_dir, tokens) = setup();
        let token = tokens.issue(&claims(&tokens)).unwrap();
        let err = tokens.verify(&format!("{token}x")).unwrap_err();
        assert!(!err.to_string().contains(&token[..20]));
    }
}
