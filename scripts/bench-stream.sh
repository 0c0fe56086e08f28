#!/usr/bin/env bash
# Streaming benchmark, one run, broker on this machine: for 1-line and for
# 100-line messages, publishes the same volume twice and measures a bare lapin
# consumer that only receives and acks (`logsentry bench-drain`) against
# `logsentry consume` (parse, mine, store in DuckDB, then ack). Rates are from
# the first delivery to the last ack/commit; then the publish -> visible latency
# at 10k lines/s through `serve`. Usage: scripts/bench-stream.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/logsentry/target}
bash scripts/setup.sh >/dev/null
cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/logsentry"
WORK=$(mktemp -d /tmp/logsentry-stream.XXXXXX)
trap 'kill "${SERVE:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
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

# Freshness at 10k lines/s: `serve` consumes while `produce --rate 10000` publishes for 10 s;
# /metrics is read every 0.5 s, and logsentry_consumer_lag_seconds (now minus the newest stored
# line's time, which `produce` sets to its publish time) bounds publish -> visible in `logs`.
q="bench-latency-$$"
"$BIN" serve --db "$WORK/lat.duckdb" --queue "$q" --listen 127.0.0.1:0 > "$WORK/serve.out" 2> /dev/null &
SERVE=$!
for _ in $(seq 1 50); do grep -q "dashboard on" "$WORK/serve.out" && break; sleep 0.2; done
URL=$(sed -n 's/dashboard on //p' "$WORK/serve.out" | head -1)
"$BIN" produce --queue "$q" --rate 10000 --lines 100000 > /dev/null &
PRODUCER=$!
lags=""
while kill -0 "$PRODUCER" 2> /dev/null; do
    sleep 0.5
    lag=$(curl -s "${URL}metrics" | sed -n 's/^logsentry_consumer_lag_seconds //p')
    [ -n "$lag" ] && lags="$lags $lag"
done
kill "$SERVE"; wait "$SERVE" 2> /dev/null || true
echo "publish -> visible at 10k lines/s, sampled every 0.5 s while publishing:"
echo "$lags" | tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END {
    printf "  %d samples, median %.2f s, max %.2f s\n", NR, v[int((NR + 1) / 2)], v[NR] }'
