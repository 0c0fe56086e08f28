#!/usr/bin/env bash
# The test command (README, .ci/run): formatting, lints, then every test, all
# in the one release profile so the DuckDB build is shared.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/logsentry/target}
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release
