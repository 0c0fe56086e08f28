#!/usr/bin/env bash
# The docker-compose stack without Docker: make sure RabbitMQ runs locally
# (scripts/setup.sh installs and starts it), then run `logsentry serve`
# (consumer, online detection, dashboard) in the foreground. Extra arguments
# go to `logsentry serve`.
# Example: scripts/run-native.sh --queue logs --db /tmp/live.duckdb
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/logsentry/target}
bash scripts/setup.sh
cargo build --release --quiet
exec "$CARGO_TARGET_DIR/release/logsentry" serve "$@"
