//! Browser tests: the admin page in real headless Chromium (Debian's
//! `chromium` + `chromium-driver`) over WebDriver, against an in-process
//! appliance and eSight simulator. Skipped with a message when Chromium is
//! not installed, unless `ENERGYLOAD_REQUIRE_BROWSER=1` (CI). Screenshots of
//! every page go to `$CARGO_TARGET_DIR/screenshots/` (default
//! `target/screenshots/`).

#[path = "../common/mod.rs"]
mod common;

mod admin_flow;
mod attention;
mod demo_pages;
mod driver;
mod env;
mod keyboard;
mod replication;
mod security;
mod session_probe;
mod unlock;
