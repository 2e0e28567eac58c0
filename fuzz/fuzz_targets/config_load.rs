//! Config loading (`config::load_from_text`: the steps of `config::load` on
//! a file's text, with an empty environment) on arbitrary text.
//!
//! Properties beyond "no panic":
//! - every error is one line (the contract of `ConfigError`, written to the
//!   journal as is);
//! - an accepted config, printed as TOML (as `energyload config show` does),
//!   loads again to the same printed config: nothing printed is unreadable.
//!
//! Texts that set a `<key>_file` secret are skipped: the loader would read
//! the file they name, and a fuzzer must not read the machine's files.
#![no_main]

use std::path::Path;

use energyload::config::{Config, load_from_text};
use libfuzzer_sys::fuzz_target;

/// Whether any key, at any depth, ends with `_file`.
fn names_a_file(table: &toml::Table) -> bool {
    table.iter().any(|(key, value)| {
        key.ends_with("_file") || matches!(value, toml::Value::Table(t) if names_a_file(t))
    })
}

fn load(text: &str) -> Result<Config, String> {
    load_from_text(text, Path::new("fuzz.toml"), Vec::new()).map_err(|e| {
        let line = e.to_string();
        assert!(!line.contains(['\n', '\r']), "a config error spans lines: {line:?}");
        line
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if text.parse::<toml::Table>().is_ok_and(|t| names_a_file(&t)) {
        return;
    }
    let Ok(config) = load(text) else { return };
    let printed = toml::to_string(&config).expect("a config prints as TOML");
    let again = load(&printed).unwrap_or_else(|e| panic!("a printed config loads again: {e}\n{printed}"));
    assert_eq!(toml::to_string(&again).unwrap(), printed);
});
