//! The name of an API key, for people: trimmed, inner runs of whitespace
//! made one space, 1–100 characters, no control characters. Two active keys
//! may not share a name; names are compared ignoring ASCII case (like
//! usernames), so `Feed`, ` feed ` and `FEED` are the same name.

use std::fmt;

/// A parsed API key name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyName(String);

/// Why a text is not an API key name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyNameError {
    /// Empty (after trimming) or longer than [`ApiKeyName::MAX_CHARS`].
    #[error("name must be 1 to 100 characters")]
    Length,
    /// Holds a control character (line break, tab inside, escape, …).
    #[error("name must not contain control characters")]
    Control,
}

impl ApiKeyName {
    /// The most characters a name may have.
    pub const MAX_CHARS: usize = 100;

    /// Parses a name: whitespace at the ends dropped and inner runs of
    /// spaces and tabs made one space, then checked.
    pub fn parse(raw: &str) -> Result<Self, ApiKeyNameError> {
        let name = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        if name.is_empty() || name.chars().count() > Self::MAX_CHARS {
            return Err(ApiKeyNameError::Length);
        }
        if name.chars().any(char::is_control) {
            return Err(ApiKeyNameError::Control);
        }
        Ok(Self(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ApiKeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_normalised_and_the_rest_kept() {
        assert_eq!(ApiKeyName::parse("  backoffice   feed\t").unwrap().as_str(), "backoffice feed");
        assert_eq!(ApiKeyName::parse("Feed\u{a0}Zähler").unwrap().as_str(), "Feed Zähler");
        assert_eq!(ApiKeyName::parse("FEED").unwrap().as_str(), "FEED", "case is kept for display");
        assert_eq!(ApiKeyName::parse(" \t\n"), Err(ApiKeyNameError::Length));
        assert_eq!(ApiKeyName::parse(&"x".repeat(101)), Err(ApiKeyNameError::Length));
        assert!(ApiKeyName::parse(&"ä".repeat(100)).is_ok(), "characters, not bytes");
        assert_eq!(ApiKeyName::parse("a\u{1b}[2Jb"), Err(ApiKeyNameError::Control));
        assert_eq!(ApiKeyName::parse("a\u{0}b"), Err(ApiKeyNameError::Control));
    }
}
