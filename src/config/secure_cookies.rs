//! `server.secure_cookies`: whether the admin page's session cookie is
//! `Secure` (and so carries the `__Host-` prefix). Written `"auto"`,
//! `"true"` or `"false"` (TOML booleans are accepted too, and the
//! environment's text is read the same way).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The `server.secure_cookies` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecureCookies {
    /// `Secure` when the browser's scheme is HTTPS as far as this listener
    /// can tell: it serves TLS itself, or a peer in `server.trusted_proxies`
    /// says `X-Forwarded-Proto: https`.
    #[default]
    Auto,
    /// Always `Secure` (behind a TLS-terminating proxy that does not send
    /// `X-Forwarded-Proto`).
    Always,
    /// Never `Secure` (plain HTTP on a trusted network only).
    Never,
}

impl SecureCookies {
    /// The setting as written in the config file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Always => "true",
            Self::Never => "false",
        }
    }

    /// Whether the cookie is `Secure` for a request: `listener_tls` when this
    /// listener serves TLS, `proxy_says_https` when a trusted proxy reported
    /// an HTTPS client.
    pub const fn secure(self, listener_tls: bool, proxy_says_https: bool) -> bool {
        match self {
            Self::Auto => listener_tls || proxy_says_https,
            Self::Always => true,
            Self::Never => false,
        }
    }
}

impl fmt::Display for SecureCookies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SecureCookies {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SecureCookies {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Flag(true) => Ok(Self::Always),
            Raw::Flag(false) => Ok(Self::Never),
            Raw::Text(t) => match t.trim() {
                "auto" => Ok(Self::Auto),
                "true" => Ok(Self::Always),
                "false" => Ok(Self::Never),
                other => Err(serde::de::Error::custom(format!(
                    "expected \"auto\", \"true\" or \"false\", got {other:?}"
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        v: SecureCookies,
    }

    fn parse(text: &str) -> Result<SecureCookies, toml::de::Error> {
        toml::from_str::<Doc>(&format!("v = {text}")).map(|d| d.v)
    }

    #[test]
    fn text_and_booleans_parse_and_anything_else_is_refused() {
        assert_eq!(parse("\"auto\"").unwrap(), SecureCookies::Auto);
        assert_eq!(parse("\"true\"").unwrap(), SecureCookies::Always);
        assert_eq!(parse("true").unwrap(), SecureCookies::Always);
        assert_eq!(parse("false").unwrap(), SecureCookies::Never);
        assert_eq!(parse("\"false\"").unwrap(), SecureCookies::Never);
        assert!(parse("\"yes\"").is_err());
        assert!(parse("1").is_err());
    }

    #[test]
    fn auto_follows_the_scheme_and_the_others_do_not() {
        assert!(!SecureCookies::Auto.secure(false, false));
        assert!(SecureCookies::Auto.secure(true, false));
        assert!(SecureCookies::Auto.secure(false, true));
        assert!(SecureCookies::Always.secure(false, false));
        assert!(!SecureCookies::Never.secure(true, true));
    }
}
