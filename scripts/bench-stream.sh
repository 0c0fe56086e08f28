#!/usr/bin/env bash
# Streaming benchmark, one run, broker on this machine: for 1-line and for
# 100-line messages, publishes the same volume twice and measures a bare lapin
# consumer that only receives and acks (`logsentry bench-drain`) against
# `logsentry consume` (parse, mine, store in DuckDB, then ack). Rates are from
# the first delivery to the last ack/commit. Usage: scripts/bench-stream.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/logsentry/target}
bash scripts/setup.sh >/dev/null
cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/logsentry"
WORK=$(mktemp -d /tmp/logsentry-stream.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
rate() { sed -E 's/.*\(([0-9]+) msgs\/s, ([0-9]+) lines\/s\).*/\2/' ; }

for spec in "1 200000" "100 2000000"; do
    read -r batch lines <<< "$spec"
    qa="bench-drain-$$-$batch"; qb="bench-consume-$$-$batch"
    "$BIN" produce --queue "$qa" --rate 0 --batch "$batch" --lines "$lines" > /dev/null
    "$BIN" produce --queue "$qb" --rate 0 --batch "$batch" --lines "$lines" > /dev/null
    drain=$("$BIN" bench-drain --queue "$qa" --idle-exit 1)
    cons=$("$BIN" consume --queue "$qb" --db "$WORK/s-$batch.duckdb" --idle-exit 1)
    d=$(echo "$drain" | rate); c=$(echo "$cons" | grep consumed | rate)
    echo "$batch-line messages, $lines lines:"
    echo "  bare drain:        $drain"
    echo "  logsentry consume: $(echo "$cons" | grep consumed)"
    awk -v c="$c" -v d="$d" 'BEGIN { printf "  ratio consume / drain (lines/s): %.2f\n", c / d }'
done
