//! The names the configuration knows: its sections and each section's keys,
//! read from the serde field lists of the config types themselves (so a new
//! field is known the moment it is declared), and "did you mean …?" for a
//! name that is not among them.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::{
    AuditConfig, AuthConfig, Config, DeliveryConfig, EsightConfig, InboxConfig, LogConfig, ReplicationConfig,
    RetentionConfig, ServerConfig, StorageConfig,
};

/// The sections, in the order of [`Config`]'s fields.
pub fn sections() -> &'static [&'static str] {
    fields_of::<Config>()
}

/// The keys of `section`, or `None` for an unknown section. Secrets'
/// `<key>_file` forms are not listed here (see `load::SECRET_KEYS`).
pub fn keys(section: &str) -> Option<&'static [&'static str]> {
    Some(match section {
        "server" => fields_of::<ServerConfig>(),
        "storage" => fields_of::<StorageConfig>(),
        "auth" => fields_of::<AuthConfig>(),
        "esight" => fields_of::<EsightConfig>(),
        "delivery" => fields_of::<DeliveryConfig>(),
        "inbox" => fields_of::<InboxConfig>(),
        "audit" => fields_of::<AuditConfig>(),
        "log" => fields_of::<LogConfig>(),
        "retention" => fields_of::<RetentionConfig>(),
        "replication" => fields_of::<ReplicationConfig>(),
        _ => return None,
    })
}

/// The known name nearest to `typed`: at most two edits (insert, delete,
/// replace, swap two neighbours; ASCII case ignored), and fewer for short
/// names, so `listn` finds `listen` but `xyz` finds nothing.
pub fn nearest<'a>(typed: &str, known: &[&'a str]) -> Option<&'a str> {
    let typed = typed.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&typed, k), *k))
        .filter(|(d, k)| *d <= (k.chars().count() / 3 + 1).min(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Optimal-string-alignment distance: Levenshtein plus the swap of two
/// neighbouring characters as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1).min(rows[i][j - 1] + 1).min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

/// The field names serde's derive hands to `deserialize_struct`: asked of a
/// deserializer that records them and stops.
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

struct FieldNames<'a>(&'a mut &'static [&'static str]);

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = fields;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_has_its_keys() {
        let sections = sections();
        assert!(sections.contains(&"server") && sections.contains(&"retention"), "{sections:?}");
        for section in sections {
            let keys = keys(section).unwrap_or_else(|| panic!("[{section}] has no key list"));
            assert!(!keys.is_empty(), "[{section}]");
        }
        assert!(keys("server").unwrap().contains(&"tls_cert"), "keys without a default are known too");
        assert!(keys("delivery").unwrap().contains(&"workers"));
        assert_eq!(keys("servr"), None);
    }

    #[test]
    fn near_names_are_suggested_and_far_ones_are_not() {
        let server = keys("server").unwrap();
        assert_eq!(nearest("listn", server), Some("listen"));
        assert_eq!(nearest("LISTEN_", server), Some("listen"));
        assert_eq!(nearest("max_body_byte", server), Some("max_body_bytes"));
        assert_eq!(nearest("lsiten", server), Some("listen"), "a swap is one edit");
        assert_eq!(nearest("port", server), None);
        assert_eq!(nearest("servr", sections()), Some("server"));
        assert_eq!(nearest("lgo", sections()), Some("log"));
        assert_eq!(nearest("xyz", sections()), None);
        assert_eq!(nearest("db", sections()), None);
        assert_eq!(nearest("service", sections()), None, "Kubernetes' ENERGYLOAD_SERVICE_* is not a typo");
    }
}
