#!/usr/bin/env bash
# Benchmarks `logsentry analyze` against DuckDB's own read_json load of the same
# 1M-line JSON file, in the same run, on this machine. Prints both wall times,
# peak memory and the ratio. Usage: scripts/bench.sh [LINES]   (default 1000000)
# Criterion micro-benchmarks: cargo bench (release-optimised bench profile; parsing, template mining).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/logsentry/target}
LINES=${1:-1000000}
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/logsentry"
WORK=$(mktemp -d /tmp/logsentry-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
LOG="$WORK/big.log"

"$BIN" generate --lines "$LINES" --out "$LOG" --seed 1
echo "input: $LINES lines, $(du -m "$LOG" | cut -f1) MB, $(nproc) cores"
cat "$LOG" > /dev/null   # warm the page cache for both contenders

measure() { # name, command...  → prints "name seconds peakMB"
    local name=$1; shift
    /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" || {
        cat "$WORK/$name.err" >&2; exit 1; }
    read -r secs kb < "$WORK/time.txt"
    echo "$name $secs $((kb / 1024))"
}

# DuckDB's own loader, same DuckDB build (bundled in logsentry), into a fresh file.
read -r _ duck_s duck_mb < <(measure duckdb_read_json "$BIN" sql --write --db "$WORK/duck.duckdb" \
    "CREATE TABLE t AS SELECT * FROM read_json('$LOG', format = 'newline_delimited')")
# logsentry: load only (issue: load <= 1.0x read_json), then the full analyze
# (load + features + forest + report; target <= 1.5x), each into a fresh file.
read -r _ load_s load_mb < <(measure logsentry_load "$BIN" analyze "$LOG" --db "$WORK/load.duckdb" --no-detect --json)
read -r _ ls_s ls_mb < <(measure logsentry_analyze "$BIN" analyze "$LOG" --db "$WORK/ls.duckdb" --json)
stored=$("$BIN" sql --db "$WORK/ls.duckdb" --format csv "SELECT count(*) FROM logs" | tail -1)
rejected=$("$BIN" sql --db "$WORK/ls.duckdb" --format csv "SELECT count(*) FROM rejects" | tail -1)
anomalies=$("$BIN" sql --db "$WORK/ls.duckdb" --format csv "SELECT count(*) FROM anomalies" | tail -1)

printf "%-34s %8s s %8s MB peak\n" "duckdb read_json load" "$duck_s" "$duck_mb"
printf "%-34s %8s s %8s MB peak  (%s rows stored, %s rejected)\n" "logsentry analyze --no-detect" "$load_s" "$load_mb" "$stored" "$rejected"
printf "%-34s %8s s %8s MB peak  (%s anomalous windows)\n" "logsentry analyze (full)" "$ls_s" "$ls_mb" "$anomalies"
awk -v a="$load_s" -v b="$duck_s" 'BEGIN { printf "ratio load / read_json: %.2f\n", a / b }'
awk -v a="$ls_s" -v b="$duck_s" 'BEGIN { printf "ratio full analyze / read_json: %.2f\n", a / b }'
