#!/usr/bin/env bash
# Dependency audit, offline: RustSec advisories, licenses, banned and
# duplicate crates, sources (deny.toml), with cargo-deny against the advisory
# database snapshot kept in .ci/advisory-db.bundle (a git bundle; CI cannot
# reach the database online). Refresh the snapshot with
#   git clone https://github.com/rustsec/advisory-db && git -C advisory-db bundle create ../.ci/advisory-db.bundle main
set -euo pipefail
cd "$(dirname "$0")/.."

# The crate graph needs every package's manifest, also of platform-specific
# crates never built here; crates.io is reachable, only the advisory
# database is not. `--offline` below then keeps cargo-deny from fetching.
cargo fetch --locked --quiet

dbs=$(mktemp -d)
trap 'rm -rf "$dbs"' EXIT
# cargo-deny looks for each of deny.toml's db-urls under db-path, in a
# directory named after the URL (a hash of it: stable for one URL; a run
# without it names the path it expected).
db_dir="$dbs/advisory-db-3157b0e258782691"
git clone --quiet --branch main .ci/advisory-db.bundle "$db_dir"
echo "advisory database snapshot: $(git -C "$db_dir" log -1 --format='%cs %s')"
ENERGYLOAD_ADVISORY_DBS="$dbs" cargo deny --offline --locked check "$@"
