#!/usr/bin/env bash
# Dependency audit, offline: RustSec advisories, licenses, banned and
# duplicate crates, sources (deny.toml), with cargo-deny against the advisory
# database snapshot kept in .ci/advisory-db.bundle (a git bundle; CI cannot
# reach the database online). Refresh the snapshot with
#   git clone https://github.com/rustsec/advisory-db && git -C advisory-db bundle create ../.ci/advisory-db.bundle main
set -euo pipefail
cd "$(dirname "$0")/.."

dbs=$(mktemp -d)
trap 'rm -rf "$dbs"' EXIT
# cargo-deny looks for each of deny.toml's db-urls in a directory named after
# the URL under db-path; ask it which (`--format json` of a fetch-less run
# names no path, so the name is derived here the same way: it is printed by
# `cargo deny fetch` as the clone target and stable for one URL).
db_dir="$dbs/advisory-db-3157b0e258782691"
git clone --quiet --branch main .ci/advisory-db.bundle "$db_dir"
echo "advisory database snapshot: $(git -C "$db_dir" log -1 --format='%cs %s')"
ENERGYLOAD_ADVISORY_DBS="$dbs" cargo deny --offline --locked check "$@"
