//! A user's typed values: `Username`, `Role`/`Roles`, `UserStatus` and
//! `NewPassword`. Each is built only through `parse`, so a value of one of
//! these types is valid by construction. Error messages are safe to show to
//! clients: they describe the rule, never echo a password.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a user value was refused. The message states the rule that failed and
/// is meant to be shown to the client as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserValueError {
    /// The username breaks the length or character rule.
    #[error(
        "username must be {min}–{max} characters of A–Z a–z 0–9 . _ @ -",
        min = Username::MIN_CHARS,
        max = Username::MAX_CHARS
    )]
    InvalidUsername,
    /// A role name that is none of the known roles.
    #[error("unknown role; expected one of admin, backoffice, esight, user")]
    UnknownRole,
    /// A role list with no role in it.
    #[error("a user needs at least one role")]
    NoRoles,
    /// A status that is neither `active` nor `deactivated`.
    #[error("unknown status; expected active or deactivated")]
    UnknownStatus,
    /// A new password shorter than the configured minimum.
    #[error("password must be at least {min} characters")]
    PasswordTooShort {
        /// The configured minimum length, in characters.
        min: usize,
    },
    /// A new password longer than [`NewPassword::MAX_CHARS`].
    #[error("password must be at most {max} characters", max = NewPassword::MAX_CHARS)]
    PasswordTooLong,
    /// A new password that is too easy to guess (zxcvbn score below the
    /// configured floor). `hint` is zxcvbn's advice, never the password.
    #[error("password is too easy to guess (strength {score} of 4, at least {min} needed){hint}")]
    PasswordTooWeak {
        /// The password's zxcvbn score, 0–4.
        score: u8,
        /// The configured floor (`auth.min_password_score`).
        min: u8,
        /// `: ` and zxcvbn's warning and suggestions, or empty.
        hint: String,
    },
}

/// A login name: 3–64 characters of `A–Z a–z 0–9 . _ @ -`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Username(String);

impl Username {
    /// The fewest characters a username may have.
    pub const MIN_CHARS: usize = 3;
    /// The most characters a username may have.
    pub const MAX_CHARS: usize = 64;

    /// Parses a username, refusing anything outside the allowed length and
    /// character set (so no whitespace, control characters or non-ASCII).
    pub fn parse(raw: &str) -> Result<Self, UserValueError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-');
        // All allowed characters are ASCII, so the byte length is the character count.
        let length_ok = (Self::MIN_CHARS..=Self::MAX_CHARS).contains(&raw.len());
        if length_ok && raw.chars().all(allowed) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(UserValueError::InvalidUsername)
        }
    }

    /// The username as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Username {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Username {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// What a user may do; see the contract's role table. Ordered as declared,
/// which is the order [`Roles`] iterates and serializes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Sends data, reads deliveries and eSight errors.
    Backoffice,
    /// eSight's callback: posts error reports.
    Esight,
    /// Own info and logout only.
    User,
}

impl Role {
    /// Every role, in order.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Backoffice, Role::Esight, Role::User];

    /// Parses a role name as the contract spells it (`admin`, `backoffice`,
    /// `esight`, `user`), exactly.
    pub fn parse(raw: &str) -> Result<Self, UserValueError> {
        Self::ALL.into_iter().find(|role| role.as_str() == raw).ok_or(UserValueError::UnknownRole)
    }

    /// Parses a role name as the original service's user export spells it:
    /// like [`Role::parse`], and also `e_sight` for [`Role::Esight`]. Spaces
    /// around the name are ignored (the export separates roles by `, `).
    pub fn parse_legacy(raw: &str) -> Result<Self, UserValueError> {
        match raw.trim() {
            "e_sight" => Ok(Role::Esight),
            other => Self::parse(other),
        }
    }

    /// The role's name as the contract spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Backoffice => "backoffice",
            Role::Esight => "esight",
            Role::User => "user",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user's roles: a non-empty set without duplicates. Serializes as a JSON
/// array of role names; duplicates in the input are dropped, an empty array
/// or an unknown name is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Roles(BTreeSet<Role>);

impl Roles {
    /// Builds a role set from any roles; refuses an empty one.
    pub fn new(roles: impl IntoIterator<Item = Role>) -> Result<Self, UserValueError> {
        let set: BTreeSet<Role> = roles.into_iter().collect();
        if set.is_empty() { Err(UserValueError::NoRoles) } else { Ok(Self(set)) }
    }

    /// A set holding exactly one role.
    pub fn single(role: Role) -> Self {
        Self(BTreeSet::from([role]))
    }

    /// Parses role names as the contract spells them.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, UserValueError> {
        let roles = names.into_iter().map(Role::parse).collect::<Result<Vec<_>, _>>()?;
        Self::new(roles)
    }

    /// Parses a comma-separated list of role names as the contract spells
    /// them (how storage keeps them; see [`Roles::to_list`]).
    pub fn parse_list(list: &str) -> Result<Self, UserValueError> {
        Self::parse(list.split(',').map(str::trim).filter(|name| !name.is_empty()))
    }

    /// The roles as a comma-separated list, in [`Role`] order: `admin,user`.
    pub fn to_list(&self) -> String {
        self.iter().map(Role::as_str).collect::<Vec<_>>().join(",")
    }

    /// Parses the original service's `type` column: role names separated by
    /// commas, where `e_sight` means `esight`.
    pub fn parse_legacy_list(list: &str) -> Result<Self, UserValueError> {
        let roles = list
            .split(',')
            .filter(|name| !name.trim().is_empty())
            .map(Role::parse_legacy)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(roles)
    }

    /// Whether the set holds `role`.
    pub fn contains(&self, role: Role) -> bool {
        self.0.contains(&role)
    }

    /// The roles, in [`Role`] order.
    pub fn iter(&self) -> impl Iterator<Item = Role> + '_ {
        self.0.iter().copied()
    }

    /// How many roles the set holds (at least one).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always `false`: a role set is never empty. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Roles {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for Roles {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(deserializer)?;
        Self::parse(names.iter().map(String::as_str)).map_err(serde::de::Error::custom)
    }
}

/// Whether a user may log in and use tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    /// May log in; tokens are accepted.
    Active,
    /// May not log in; every token of the user is refused.
    Deactivated,
}

impl UserStatus {
    /// Parses `active` or `deactivated`.
    pub fn parse(raw: &str) -> Result<Self, UserValueError> {
        match raw {
            "active" => Ok(UserStatus::Active),
            "deactivated" => Ok(UserStatus::Deactivated),
            _ => Err(UserValueError::UnknownStatus),
        }
    }

    /// The status as the contract spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Deactivated => "deactivated",
        }
    }
}

impl fmt::Display for UserStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rules a new password must meet: a length range and a strength floor
/// (`auth.min_password_length`, `auth.min_password_score`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordRules {
    /// The fewest characters (Unicode scalar values).
    pub min_chars: usize,
    /// The lowest zxcvbn score accepted, 0–4 (0 turns the check off).
    pub min_score: u8,
}

impl PasswordRules {
    /// The highest zxcvbn score.
    pub const MAX_SCORE: u8 = 4;
}

/// A password chosen by a user or admin, checked against the length policy:
/// at least the configured minimum and at most [`NewPassword::MAX_CHARS`]
/// characters (Unicode scalar values, not bytes), and — through
/// [`NewPassword::parse_new`] — against the strength floor. Its `Debug` output
/// is redacted; it has no `Display` and no `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct NewPassword(String);

impl NewPassword {
    /// The most characters a password may have (bounds hashing input).
    pub const MAX_CHARS: usize = 128;

    /// Checks `raw` against the length rules only, with the configured
    /// minimum length (`auth.min_password_length`). For a password that
    /// already verified and is hashed again with the current settings; a
    /// password being set uses [`NewPassword::parse_new`].
    pub fn parse(raw: String, min_chars: usize) -> Result<Self, UserValueError> {
        let chars = raw.chars().count();
        if chars < min_chars {
            Err(UserValueError::PasswordTooShort { min: min_chars })
        } else if chars > Self::MAX_CHARS {
            Err(UserValueError::PasswordTooLong)
        } else {
            Ok(Self(raw))
        }
    }

    /// Checks a password being set (admin create/edit, `user add`/`passwd`,
    /// a user's own change, the bootstrap admin) against the length rules and
    /// then zxcvbn's strength estimate, which penalises `context` words (the
    /// username, the product name) appearing in it. The error says why and
    /// what would help, never what the password was.
    pub fn parse_new(raw: String, rules: &PasswordRules, context: &[&str]) -> Result<Self, UserValueError> {
        let password = Self::parse(raw, rules.min_chars)?;
        if rules.min_score == 0 {
            return Ok(password);
        }
        let mut inputs = vec!["energyload", "esight"];
        inputs.extend_from_slice(context);
        let estimate = zxcvbn::zxcvbn(password.expose(), &inputs);
        let score = u8::from(estimate.score());
        if score >= rules.min_score {
            return Ok(password);
        }
        let advice: Vec<String> = estimate
            .feedback()
            .map(|f| {
                f.warning()
                    .map(|w| w.to_string())
                    .into_iter()
                    .chain(f.suggestions().iter().map(|s| s.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let hint = if advice.is_empty() { String::new() } else { format!(": {}", advice.join(" ")) };
        Err(UserValueError::PasswordTooWeak { score, min: rules.min_score, hint })
    }

    /// The password itself, for hashing. Never log or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_length_and_character_rule() {
        for ok in ["abc", "admin-legacy", "a.b_c@d-e", "ABC123", &"x".repeat(64)] {
            assert_eq!(Username::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "ab", &"x".repeat(65), "has space", "tab\t", "ünï", "a/b", "a:b", "ab\n"] {
            assert_eq!(Username::parse(bad), Err(UserValueError::InvalidUsername), "{bad:?}");
        }
    }

    #[test]
    fn usernames_serialize_as_strings_and_deserialize_through_parse() {
        let name = Username::parse("backoffice1").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"backoffice1\"");
        assert_eq!(serde_json::from_str::<Username>("\"backoffice1\"").unwrap(), name);
        assert!(serde_json::from_str::<Username>("\"no\"").is_err());
    }

    #[test]
    fn roles_parse_strictly_and_legacy_names_map() {
        assert_eq!(Role::parse("esight"), Ok(Role::Esight));
        assert_eq!(Role::parse("e_sight"), Err(UserValueError::UnknownRole));
        assert_eq!(Role::parse("Admin"), Err(UserValueError::UnknownRole));
        assert_eq!(Role::parse_legacy("e_sight"), Ok(Role::Esight));
        assert_eq!(Role::parse_legacy(" backoffice"), Ok(Role::Backoffice));
        assert_eq!(Role::parse_legacy("root"), Err(UserValueError::UnknownRole));
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{role}\""));
        }
    }

    #[test]
    fn role_sets_are_non_empty_and_deduplicated() {
        let roles = Roles::parse(["user", "admin", "user"]).unwrap();
        assert_eq!(roles.len(), 2);
        assert!(roles.contains(Role::Admin) && roles.contains(Role::User));
        assert!(!roles.contains(Role::Esight));
        assert_eq!(roles.iter().collect::<Vec<_>>(), vec![Role::Admin, Role::User]);
        assert_eq!(Roles::new([]), Err(UserValueError::NoRoles));
        assert_eq!(Roles::parse(["user", "root"]), Err(UserValueError::UnknownRole));
        assert_eq!(Roles::single(Role::Esight).iter().collect::<Vec<_>>(), vec![Role::Esight]);
    }

    #[test]
    fn role_sets_round_trip_through_comma_separated_lists() {
        let roles = Roles::parse_list("user,admin, esight").unwrap();
        assert_eq!(roles.to_list(), "admin,esight,user");
        assert_eq!(Roles::parse_list(&roles.to_list()), Ok(roles));
        assert_eq!(Roles::parse_list(""), Err(UserValueError::NoRoles));
        assert_eq!(Roles::parse_list("e_sight"), Err(UserValueError::UnknownRole));
    }

    #[test]
    fn role_sets_read_the_legacy_type_column() {
        let roles = Roles::parse_legacy_list("backoffice,e_sight").unwrap();
        assert_eq!(roles, Roles::new([Role::Backoffice, Role::Esight]).unwrap());
        assert_eq!(Roles::parse_legacy_list("admin"), Ok(Roles::single(Role::Admin)));
        assert_eq!(Roles::parse_legacy_list(""), Err(UserValueError::NoRoles));
        assert_eq!(Roles::parse_legacy_list("admin,boss"), Err(UserValueError::UnknownRole));
    }

    #[test]
    fn role_sets_serialize_as_json_arrays() {
        let roles: Roles = serde_json::from_str(r#"["user","esight","user"]"#).unwrap();
        assert_eq!(serde_json::to_string(&roles).unwrap(), r#"["esight","user"]"#);
        assert!(serde_json::from_str::<Roles>("[]").is_err());
        assert!(serde_json::from_str::<Roles>(r#"["e_sight"]"#).is_err());
        assert!(serde_json::from_str::<Roles>(r#""admin""#).is_err());
    }

    #[test]
    fn statuses_parse_and_serialize_lowercase() {
        assert_eq!(UserStatus::parse("active"), Ok(UserStatus::Active));
        assert_eq!(UserStatus::parse("deactivated"), Ok(UserStatus::Deactivated));
        assert_eq!(UserStatus::parse("Active"), Err(UserValueError::UnknownStatus));
        assert_eq!(serde_json::to_string(&UserStatus::Deactivated).unwrap(), "\"deactivated\"");
        let parsed: UserStatus = serde_json::from_str("\"active\"").unwrap();
        assert_eq!(parsed, UserStatus::Active);
    }

    #[test]
    fn new_passwords_are_counted_in_characters() {
        assert!(NewPassword::parse("x".repeat(12), 12).is_ok());
        assert_eq!(NewPassword::parse("x".repeat(11), 12), Err(UserValueError::PasswordTooShort { min: 12 }));
        assert!(NewPassword::parse("x".repeat(128), 12).is_ok());
        assert_eq!(NewPassword::parse("x".repeat(129), 12), Err(UserValueError::PasswordTooLong));
        // 12 characters of 2 bytes each: long enough by characters, 24 bytes.
        assert!(NewPassword::parse("é".repeat(12), 12).is_ok());
        // 128 four-byte characters: 512 bytes, still within 128 characters.
        assert!(NewPassword::parse("🔑".repeat(128), 12).is_ok());
        assert_eq!(
            NewPassword::parse("é".repeat(11), 12).unwrap_err().to_string(),
            "password must be at least 12 characters"
        );
    }

    #[test]
    fn passwords_never_show_in_debug_or_errors() {
        let password = NewPassword::parse("Very-secret-pass-1".into(), 12).unwrap();
        assert_eq!(password.expose(), "Very-secret-pass-1");
        assert!(!format!("{password:?}").contains("secret"));
        let err = NewPassword::parse("secret".into(), 12).unwrap_err();
        assert!(!err.to_string().contains("secret"));
        assert!(!format!("{err:?}").contains("secret"));
    }

    const RULES: PasswordRules = PasswordRules { min_chars: 12, min_score: 3 };

    #[test]
    fn new_passwords_below_the_strength_floor_are_refused_with_a_reason() {
        for weak in ["password1234", "aaaaaaaaaaaa", "qwertyuiopasdf", "123456789012", "alice-alice-alice"] {
            let err = NewPassword::parse_new(weak.into(), &RULES, &["alice"]).unwrap_err();
            let UserValueError::PasswordTooWeak { score, min: 3, .. } = &err else {
                panic!("{weak}: {err:?}")
            };
            assert!(*score < 3, "{weak}");
            let message = err.to_string();
            assert!(message.starts_with("password is too easy to guess"), "{message}");
            assert!(!message.contains(weak), "the message echoes the password: {message}");
        }
    }

    #[test]
    fn strong_and_generated_passwords_pass_the_floor() {
        for strong in ["correct-horse-battery-staple", "Tr0ub4dor&3-meter-feed", "vN7#q2!xLr9@Wz"] {
            assert!(NewPassword::parse_new(strong.into(), &RULES, &["alice"]).is_ok(), "{strong}");
        }
        // What `user add` and the demo generate: 18 random bytes, base64url.
        use base64::Engine;
        for _ in 0..50 {
            let bytes: [u8; 18] = rand::random();
            let generated = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            let max = PasswordRules { min_chars: 12, min_score: PasswordRules::MAX_SCORE };
            assert!(NewPassword::parse_new(generated, &max, &[]).is_ok());
        }
    }

    #[test]
    fn the_username_counts_against_the_password_and_a_zero_floor_turns_the_check_off() {
        // Strong on its own, weak when it is the username twice over.
        let name = "meterfeed-gateway";
        assert!(NewPassword::parse_new(format!("{name}{name}"), &RULES, &[name]).is_err());
        let off = PasswordRules { min_chars: 12, min_score: 0 };
        assert!(NewPassword::parse_new("password1234".into(), &off, &[]).is_ok());
        // The length rules still come first.
        assert_eq!(
            NewPassword::parse_new("short".into(), &RULES, &[]),
            Err(UserValueError::PasswordTooShort { min: 12 })
        );
    }
}
