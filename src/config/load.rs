//! Layering of configuration sources: built-in defaults < config file <
//! `ENERGYLOAD_<SECTION>_<KEY>` environment variables, with `<key>_file`
//! indirection for secrets. Every error names the key and where its value
//! came from, in one line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{Config, known_keys};

/// Keys whose value may also be read from a file named by `<key>_file`.
const SECRET_KEYS: &[&str] = &[
    "esight.username",
    "esight.password",
    "esight.post_username",
    "esight.post_password",
    "auth.bootstrap_admin_password",
];

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// The built-in default.
    Default,
    /// A config file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A secret read from the file named by a `<key>_file` setting.
    SecretFile(PathBuf),
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("built-in default"),
            Self::File(p) => write!(f, "file {}", p.display()),
            Self::Env(var) => write!(f, "environment variable {var}"),
            Self::SecretFile(p) => write!(f, "secret file {}", p.display()),
        }
    }
}

/// A configuration problem: which key, from which source (and line, when
/// the file's parser gives one), and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("config error: {key}: {message} (from {origin}{})", line.map(|n| format!(", line {n}")).unwrap_or_default())]
pub struct ConfigError {
    /// The dotted key, e.g. `server.listen`.
    pub key: String,
    /// Where the offending value came from.
    pub origin: ConfigSource,
    /// The line in the config file, when known.
    pub line: Option<usize>,
    /// What is wrong, in one line.
    pub message: String,
}

/// The effective configuration and the file it was read from, if any.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The typed, validated configuration.
    pub config: Config,
    /// The config file that was read (none: defaults and environment only).
    pub file: Option<PathBuf>,
    /// Where each key set by a file or the environment came from.
    origins: BTreeMap<String, ConfigSource>,
}

impl LoadedConfig {
    /// Where the value of the dotted `key` (`server.listen`) came from.
    pub fn origin(&self, key: &str) -> ConfigSource {
        self.origins.get(key).cloned().unwrap_or(ConfigSource::Default)
    }
}

/// Loads the configuration: `explicit` if given, else `./config.toml`, else
/// `/etc/energyload/config.toml`, else defaults; then the environment.
pub fn load(
    explicit: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<LoadedConfig, ConfigError> {
    let file = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => ["./config.toml", "/etc/energyload/config.toml"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file()),
    };
    let mut layers = Layers::default();
    if let Some(path) = &file {
        layers.add_file(path)?;
    }
    for (var, value) in env {
        layers.add_env(&var, &value)?;
    }
    layers.resolve_secret_files()?;
    let config = layers.to_config()?;
    Ok(LoadedConfig { config, file, origins: layers.sources })
}

/// Loads the configuration from the text of a config file said to be at
/// `path` (only named in errors, never read) and `env`, through the same
/// steps as [`load`]: parse, layer the environment, resolve `<key>_file`
/// secrets (those files are read), deserialise, validate. For the fuzz
/// target `config_load`, which must not depend on files or the process
/// environment.
pub fn load_from_text(
    text: &str,
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut layers = Layers::default();
    layers.add_text(text, ConfigSource::File(path.to_path_buf()))?;
    for (var, value) in env {
        layers.add_env(&var, &value)?;
    }
    layers.resolve_secret_files()?;
    layers.to_config()
}

/// The merged raw table and the source of every key in it.
#[derive(Default)]
struct Layers {
    table: Table,
    sources: BTreeMap<String, ConfigSource>,
}

impl Layers {
    fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let source = self.sources.get(key).cloned().unwrap_or(ConfigSource::Default);
        ConfigError { key: key.to_string(), origin: source, line: None, message: message.into() }
    }

    fn add_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let source = ConfigSource::File(path.to_path_buf());
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            key: "(file)".into(),
            origin: source.clone(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        self.add_text(&text, source)
    }

    /// Merges the text of a config file, read from `source`.
    fn add_text(&mut self, text: &str, source: ConfigSource) -> Result<(), ConfigError> {
        let table: Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
            key: "(syntax)".into(),
            origin: source.clone(),
            line: e.span().map(|s| line_of(text, s.start)),
            message: e.message().replace(['\n', '\r'], " "),
        })?;
        let at = |section: &str, key: Option<&str>, message: String| ConfigError {
            key: key.map_or_else(|| shown(section), |k| format!("{}.{}", shown(section), shown(k))),
            origin: source.clone(),
            line: line_of_key(text, section, key),
            message,
        };
        for (section, value) in table {
            let Some(known) = known_keys::keys(&section) else {
                return Err(at(&section, None, unknown_section(&section)));
            };
            let Value::Table(keys) = value else {
                return Err(at(&section, None, "must be a [section] of keys".into()));
            };
            for (key, value) in keys {
                if !is_known_key(&section, &key, known) {
                    let message = match known_keys::nearest(&key, known) {
                        Some(near) => format!("unknown key in [{section}]; did you mean `{near}`?"),
                        None => format!("unknown key in [{section}]; its keys are {}", known.join(", ")),
                    };
                    return Err(at(&section, Some(&key), message));
                }
                self.sources.insert(format!("{section}.{key}"), source.clone());
                self.section(&section).insert(key, value);
            }
        }
        Ok(())
    }

    fn add_env(&mut self, var: &str, raw: &str) -> Result<(), ConfigError> {
        let Some(rest) = var.strip_prefix("ENERGYLOAD_") else {
            return Ok(());
        };
        let source = ConfigSource::Env(var.to_string());
        let lower = rest.to_ascii_lowercase();
        // Variables outside the config sections are not ours to judge:
        // Kubernetes injects ENERGYLOAD_SERVICE_HOST, ENERGYLOAD_PORT, … for a
        // Service named `energyload`. Inside a section, an unknown key is an
        // error (deserialisation rejects it), so typos do not pass silently.
        let Some((section, key)) = lower.split_once('_') else { return Ok(()) };
        let Some(known) = known_keys::keys(section) else {
            // A known key under a near section name is a typo, not
            // someone else's variable: ENERGYLOAD_SERVR_LISTEN.
            let near = known_keys::nearest(section, known_keys::sections());
            if let Some(near) = near.filter(|s| known_keys::keys(s).is_some_and(|k| k.contains(&key))) {
                return Err(ConfigError {
                    key: format!("{section}.{key}"),
                    origin: source,
                    line: None,
                    message: format!("unknown section [{section}]; did you mean `{}`?", env_name(near, key)),
                });
            }
            return Ok(());
        };
        if key.is_empty() {
            return Ok(());
        }
        if !is_known_key(section, key, known) {
            let hint = known_keys::nearest(key, known)
                .map(|k| format!("; did you mean `{}`?", env_name(section, k)));
            return Err(ConfigError {
                key: format!("{section}.{key}"),
                origin: source,
                line: None,
                message: format!("unknown key in [{section}]{}", hint.unwrap_or_default()),
            });
        }
        let value = typed_env_value(section, key, raw);
        self.section(section).insert(key.to_string(), value);
        self.sources.insert(format!("{section}.{key}"), source);
        Ok(())
    }

    fn section(&mut self, name: &str) -> &mut Table {
        let entry = self.table.entry(name).or_insert_with(|| Value::Table(Table::new()));
        match entry {
            Value::Table(t) => t,
            _ => unreachable!("sections are always tables"),
        }
    }

    /// Replaces every `<key>_file` by the content of the file it names.
    fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
        for dotted in SECRET_KEYS {
            let (section, key) = dotted.split_once('.').expect("dotted key");
            let file_key = format!("{key}_file");
            let file_dotted = format!("{dotted}_file");
            let Some(Value::Table(keys)) = self.table.get_mut(section) else { continue };
            let Some(path_value) = keys.remove(&file_key) else { continue };
            let has_value = keys.contains_key(key);
            let Value::String(path) = path_value else {
                return Err(self.error(&file_dotted, "must be a file path"));
            };
            if has_value {
                return Err(
                    self.error(&file_dotted, format!("set either {dotted} or {file_dotted}, not both"))
                );
            }
            let secret = std::fs::read_to_string(&path)
                .map_err(|e| self.error(&file_dotted, format!("cannot read secret file {path}: {e}")))?;
            let secret = secret.trim_end_matches(['\r', '\n']).to_string();
            self.section(section).insert(key.to_string(), Value::String(secret));
            self.sources.insert(dotted.to_string(), ConfigSource::SecretFile(PathBuf::from(path)));
        }
        Ok(())
    }

    fn to_config(&self) -> Result<Config, ConfigError> {
        let value = Value::Table(self.table.clone());
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            let message = e.inner().to_string().replace('\n', " ");
            self.error(&key, message)
        })?;
        config.validate().map_err(|(key, why)| {
            // A key left at its default that clashes with one set elsewhere
            // (`tls_key` unset, `tls_cert` set in the file): the source is
            // where the other was set, not "built-in default".
            let related = self
                .sources
                .iter()
                .find(|(other, _)| other.as_str() != key && mentions(&why, other))
                .map(|(_, source)| source.clone());
            let mut e = self.error(key, why);
            if let (ConfigSource::Default, Some(source)) = (&e.origin, related) {
                e.origin = source;
            }
            e
        })?;
        Ok(config)
    }
}

impl Config {
    /// The defaults as a TOML table: the known sections and the type of
    /// every key that has a default.
    fn default_table() -> Table {
        match Value::try_from(Config::default()) {
            Ok(Value::Table(t)) => t,
            _ => Table::new(),
        }
    }
}

/// Whether `text` names the dotted `key` as a whole word.
fn mentions(text: &str, key: &str) -> bool {
    text.match_indices(key).any(|(at, _)| {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
        let before = text[..at].chars().next_back().is_none_or(|c| !word(c));
        let after = text[at + key.len()..].chars().next().is_none_or(|c| !word(c) || c == '.');
        before && after
    })
}

/// `ENERGYLOAD_<SECTION>_<KEY>`.
fn env_name(section: &str, key: &str) -> String {
    format!("ENERGYLOAD_{section}_{key}").to_ascii_uppercase()
}

/// Whether `key` belongs in `section`: one of its fields, or the
/// `<key>_file` form of one of its secrets.
fn is_known_key(section: &str, key: &str, known: &[&str]) -> bool {
    known.contains(&key)
        || key.strip_suffix("_file").is_some_and(|k| SECRET_KEYS.contains(&format!("{section}.{k}").as_str()))
}

/// Why a section name is refused, with the nearest known one.
fn unknown_section(section: &str) -> String {
    match known_keys::nearest(section, known_keys::sections()) {
        Some(near) => format!("unknown section; did you mean `[{near}]`?"),
        None => format!("unknown section; the sections are [{}]", known_keys::sections().join("], [")),
    }
}

/// A name from the file as it may be printed in a one-line error: quoted
/// (with escapes) when it holds anything but printable characters.
fn shown(name: &str) -> String {
    if name.chars().all(|c| !c.is_control()) { name.to_string() } else { format!("{name:?}") }
}

/// The 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

/// The line where `section` (or its `key`) is written in `text`, from the
/// parser's spans.
fn line_of_key(text: &str, section: &str, key: Option<&str>) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let (name, value) = doc.get_ref().iter().find(|(k, _)| k.get_ref().as_ref() == section)?;
    let span = match (key, value.get_ref()) {
        (None, _) => name.span(),
        (Some(key), toml::de::DeValue::Table(keys)) => {
            keys.iter().find(|(k, _)| k.get_ref().as_ref() == key)?.0.span()
        }
        (Some(_), _) => return None,
    };
    Some(line_of(text, span.start))
}

/// Environment variables are text; give them the type the key's default has,
/// so `ENERGYLOAD_SERVER_MAX_BODY_BYTES=100` is a number and
/// `ENERGYLOAD_ESIGHT_PASSWORD=1234` stays a string.
fn typed_env_value(section: &str, key: &str, raw: &str) -> Value {
    let default = Config::default_table().get(section).and_then(|s| s.get(key)).cloned();
    let text = || Value::String(raw.to_string());
    match default {
        Some(Value::Integer(_)) => raw.trim().parse().map(Value::Integer).unwrap_or_else(|_| text()),
        Some(Value::Float(_)) => raw.trim().parse().map(Value::Float).unwrap_or_else(|_| text()),
        Some(Value::Boolean(_)) => match raw.trim() {
            "true" => Value::Boolean(true),
            "false" => Value::Boolean(false),
            _ => text(),
        },
        Some(Value::Array(_)) => {
            let items = raw.split(',').map(str::trim).filter(|s| !s.is_empty());
            Value::Array(items.map(|s| Value::String(s.to_string())).collect())
        }
        _ => text(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn environment_overrides_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "c.toml", "[server]\nlisten = \"0.0.0.0:9000\"\nmax_body_bytes = 10\n");
        let vars =
            env(&[("ENERGYLOAD_SERVER_MAX_BODY_BYTES", "20"), ("ENERGYLOAD_AUTH_API_KEY_REQUIRED", "false")]);
        let loaded = load(Some(&f), vars).unwrap();
        assert_eq!(loaded.origin("server.listen"), ConfigSource::File(f.clone()));
        assert_eq!(
            loaded.origin("server.max_body_bytes"),
            ConfigSource::Env("ENERGYLOAD_SERVER_MAX_BODY_BYTES".into())
        );
        assert_eq!(loaded.origin("log.level"), ConfigSource::Default);
        let c = loaded.config;
        assert_eq!(c.server.listen.port(), 9000);
        assert_eq!(c.server.max_body_bytes, 20);
        assert!(!c.auth.api_key_required);
        assert_eq!(c.delivery.workers, None);
        assert_eq!(c.delivery.max_in_flight, 1536);
    }

    #[test]
    fn bad_values_name_key_and_source() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "c.toml", "[server]\nlisten = \"127.0.0.1:70000\"\n");
        let e = load(Some(&f), env(&[])).unwrap_err();
        assert_eq!(e.key, "server.listen");
        assert_eq!(e.origin, ConfigSource::File(f.clone()));
        let line = e.to_string();
        assert!(!line.contains('\n'), "{line}");

        // The ceiling of posts in flight: 0 and absurd values are refused,
        // as number or as text.
        for bad in ["0", "10001", "-1", "lots"] {
            let e = load(None, env(&[("ENERGYLOAD_DELIVERY_MAX_IN_FLIGHT", bad)])).unwrap_err();
            assert_eq!(e.key, "delivery.max_in_flight", "{bad}");
        }
        assert_eq!(
            load(None, env(&[("ENERGYLOAD_DELIVERY_WORKERS", " 7 ")])).unwrap().config.delivery.workers,
            Some(7)
        );

        let e = load(None, env(&[("ENERGYLOAD_DELIVERY_WORKERS", "many")])).unwrap_err();
        assert_eq!(e.key, "delivery.workers");
        assert_eq!(e.origin, ConfigSource::Env("ENERGYLOAD_DELIVERY_WORKERS".into()));

        let f = write(dir.path(), "u.toml", "[server]\nlisten_port = 1\n");
        let e = load(Some(&f), env(&[])).unwrap_err();
        assert!(e.to_string().contains("listen_port"), "{e}");

        let e = load(None, env(&[("ENERGYLOAD_SERVER_LISTN", "1")])).unwrap_err();
        assert!(e.to_string().contains("ENERGYLOAD_SERVER_LISTN"), "{e}");
        assert!(load(None, env(&[("ENERGYLOAD_SERVICE_HOST", "10.0.0.1")])).is_ok());
    }

    #[test]
    fn unknown_names_say_where_they_were_written_and_what_was_meant() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "c.toml", "# mine\n\n[servr]\nlisten = \"127.0.0.1:0\"\n");
        let e = load(Some(&f), env(&[])).unwrap_err();
        assert_eq!((e.key.as_str(), &e.origin, e.line), ("servr", &ConfigSource::File(f.clone()), Some(3)));
        assert_eq!(e.message, "unknown section; did you mean `[server]`?");

        let f = write(dir.path(), "k.toml", "[server]\nmax_body_bytes = 10\nlistn = \"127.0.0.1:0\"\n");
        let e = load(Some(&f), env(&[])).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("server.listn", Some(3)));
        assert_eq!(e.message, "unknown key in [server]; did you mean `listen`?");

        // Dotted keys at the top level and keys in a sub-table are found too.
        let f = write(dir.path(), "d.toml", "log.levle = \"info\"\n");
        assert_eq!(load(Some(&f), env(&[])).unwrap_err().line, Some(1));
        let f = write(dir.path(), "t.toml", "[server]\n[server.tls]\ncert = 1\n");
        let e = load(Some(&f), env(&[])).unwrap_err();
        assert_eq!(e.key, "server.tls");
        assert!(e.message.starts_with("unknown key in [server]; its keys are listen, "), "{e}");

        // A secret's `_file` form is a known key; a key with a line break
        // is printed escaped, so the error stays one line.
        let secret = write(dir.path(), "pw", "x\n");
        let f =
            write(dir.path(), "s.toml", &format!("[esight]\npassword_file = {secret:?}\n\"a\\nb\" = 1\n"));
        let e = load(Some(&f), env(&[])).unwrap_err();
        assert_eq!(e.key, "esight.\"a\\nb\"");
        assert!(!e.to_string().contains('\n'), "{e}");

        let e = load(None, env(&[("ENERGYLOAD_SERVER_LISTN", "1")])).unwrap_err();
        assert_eq!(e.origin, ConfigSource::Env("ENERGYLOAD_SERVER_LISTN".into()));
        assert_eq!(e.message, "unknown key in [server]; did you mean `ENERGYLOAD_SERVER_LISTEN`?");
        let e = load(None, env(&[("ENERGYLOAD_SERVR_LISTEN", "1")])).unwrap_err();
        assert_eq!(e.message, "unknown section [servr]; did you mean `ENERGYLOAD_SERVER_LISTEN`?");
        // Near a section but not one of its keys: someone else's variable.
        assert!(load(None, env(&[("ENERGYLOAD_SERVR_HOST", "x"), ("ENERGYLOAD_LGO", "x")])).is_ok());
    }

    #[test]
    fn secrets_come_from_files_and_stay_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let secret = write(dir.path(), "pw", "s3cret-value\n");
        let vars = env(&[("ENERGYLOAD_ESIGHT_PASSWORD_FILE", secret.to_str().unwrap())]);
        let c = load(None, vars).unwrap().config;
        assert_eq!(c.esight.password.as_ref().unwrap().expose(), "s3cret-value");
        let printed = toml::to_string(&c).unwrap();
        assert!(!printed.contains("s3cret-value"));
        assert!(printed.contains("<redacted>"));

        let both = env(&[
            ("ENERGYLOAD_ESIGHT_PASSWORD_FILE", secret.to_str().unwrap()),
            ("ENERGYLOAD_ESIGHT_PASSWORD", "x"),
        ]);
        assert!(load(None, both).unwrap_err().to_string().contains("not both"));
    }

    #[test]
    fn tls_certificate_and_key_come_together() {
        let e = load(None, env(&[("ENERGYLOAD_SERVER_TLS_CERT", "/etc/tls/cert.pem")])).unwrap_err();
        assert_eq!(e.key, "server.tls_key");
        // Not "(from built-in default)": the clash comes from where tls_cert was set.
        assert_eq!(e.origin, ConfigSource::Env("ENERGYLOAD_SERVER_TLS_CERT".into()));
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "c.toml", "[server]\ntls_key = \"/etc/tls/key.pem\"\n");
        let e = load(Some(&f), env(&[])).unwrap_err();
        assert_eq!((e.key.as_str(), e.origin), ("server.tls_cert", ConfigSource::File(f)));
        assert!(mentions("must be set when server.tls_cert is", "server.tls_cert"));
        assert!(!mentions("see server.tls_cert_x", "server.tls_cert"));
        assert!(!mentions("see xserver.tls_cert", "server.tls_cert"));
        let e = load(None, env(&[("ENERGYLOAD_SERVER_TLS_KEY", "/etc/tls/key.pem")])).unwrap_err();
        assert_eq!(e.key, "server.tls_cert");
        let both = env(&[
            ("ENERGYLOAD_SERVER_TLS_CERT", "/etc/tls/cert.pem"),
            ("ENERGYLOAD_SERVER_TLS_KEY", "/etc/tls/key.pem"),
            ("ENERGYLOAD_STORAGE_MAX_DB_BYTES", "1000000"),
        ]);
        let c = load(None, both).unwrap().config;
        assert_eq!(c.server.tls_key.as_deref(), Some(Path::new("/etc/tls/key.pem")));
        assert_eq!(c.storage.max_db_bytes, 1_000_000);
    }

    #[test]
    fn semantic_checks_name_the_key() {
        let vars = env(&[("ENERGYLOAD_DELIVERY_BACKOFF_MAX", "10ms")]);
        let e = load(None, vars).unwrap_err();
        assert_eq!(e.key, "delivery.backoff_max");
        let e = load(None, env(&[("ENERGYLOAD_LOG_FORMAT", "xml")])).unwrap_err();
        assert_eq!(e.key, "log.format");
    }

    #[test]
    fn the_access_log_keys_load_and_out_of_range_samples_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "c.toml", "[log]\naccess = false\naccess_sample = 0.25\n");
        let c = load(Some(&f), vec![]).unwrap().config;
        assert!(!c.log.access);
        assert_eq!(c.log.access_sample, 0.25);
        let c = load(None, env(&[("ENERGYLOAD_LOG_ACCESS_SAMPLE", "0.0")])).unwrap().config;
        assert_eq!(c.log.access_sample, 0.0);
        assert!(c.log.access, "on by default");
        for raw in ["2", "NaN", "half"] {
            let e = load(None, env(&[("ENERGYLOAD_LOG_ACCESS_SAMPLE", raw)])).unwrap_err();
            assert_eq!(e.key, "log.access_sample", "{raw}");
        }
        for (name, text) in [("high.toml", "1.5"), ("low.toml", "-0.1"), ("nan.toml", "nan")] {
            let f = write(dir.path(), name, &format!("[log]\naccess_sample = {text}\n"));
            let e = load(Some(&f), vec![]).unwrap_err();
            assert_eq!(e.key, "log.access_sample", "{text}");
        }
        let f = write(dir.path(), "word.toml", "[log]\naccess = \"sometimes\"\n");
        assert_eq!(load(Some(&f), vec![]).unwrap_err().key, "log.access");
    }

    #[test]
    fn the_replication_keys_load_and_inconsistent_ones_are_refused_by_name() {
        use crate::config::{Acknowledge, ReplicationMode};
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "r.toml",
            "[replication]\nmode = \"litestream\"\nsocket = \"/run/litestream.sock\"\nacknowledge = \
             \"replicated\"\ntimeout = \"3s\"\nreplica = \"sftp://u:p@host/x\"\n",
        );
        let r = load(Some(&f), vec![]).unwrap().config.replication;
        assert_eq!(
            (r.mode, r.acknowledge, r.timeout.get().as_secs()),
            (ReplicationMode::Litestream, Acknowledge::Replicated, 3)
        );
        let shown = serde_json::to_string(&load(Some(&f), vec![]).unwrap().config).unwrap();
        assert!(
            shown.contains("sftp://host/x") && !shown.contains("u:p@"),
            "credentials never shown: {shown}"
        );
        let off = load(None, vec![]).unwrap().config.replication;
        assert_eq!((off.mode, off.acknowledge), (ReplicationMode::Off, Acknowledge::Local), "off by default");
        // Each way around a check: a value it does not know, a missing
        // socket, "replicated" without Litestream, a timeout under a second.
        for (vars, key) in [
            (vec![("ENERGYLOAD_REPLICATION_MODE", "rsync")], "replication.mode"),
            (vec![("ENERGYLOAD_REPLICATION_ACKNOWLEDGE", "eventually")], "replication.acknowledge"),
            (vec![("ENERGYLOAD_REPLICATION_MODE", "litestream")], "replication.socket"),
            (vec![("ENERGYLOAD_REPLICATION_ACKNOWLEDGE", "replicated")], "replication.acknowledge"),
            (
                vec![
                    ("ENERGYLOAD_REPLICATION_MODE", "litestream"),
                    ("ENERGYLOAD_REPLICATION_SOCKET", "/run/l.sock"),
                    ("ENERGYLOAD_REPLICATION_TIMEOUT", "500ms"),
                ],
                "replication.timeout",
            ),
        ] {
            let e = load(None, env(&vars)).unwrap_err();
            assert_eq!(e.key, key, "{vars:?}: {e}");
        }
        let e = load(None, env(&[("ENERGYLOAD_REPLICATION_SOKET", "/x")])).unwrap_err();
        assert!(e.message.contains("ENERGYLOAD_REPLICATION_SOCKET"), "{e}");
    }
}
