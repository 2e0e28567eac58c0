//! What this binary is: version, git commit and build time, embedded by
//! `build.rs`.

use serde_json::{Value, json};

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from, or `unknown`.
pub const COMMIT: &str = env!("ENERGYLOAD_GIT_COMMIT");
/// When the binary was built (RFC 3339 UTC).
pub const BUILT: &str = env!("ENERGYLOAD_BUILD_TIME");

/// `{"version", "commit", "built"}` as served by `GET /version`.
pub fn as_json() -> Value {
    json!({"version": VERSION, "commit": COMMIT, "built": BUILT})
}
