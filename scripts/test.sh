#!/usr/bin/env bash
# The test command (README, .ci/run): formatting, lints, then every unit and
# whole-path test, all in the one release profile so the DuckDB build is shared.
# Ends with one line "N passed, N failed" summed over all test binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/logsentry/target}
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release --lib --bins --tests 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
