#!/usr/bin/env bash
# Benchmarks `logsentry analyze` against DuckDB's own read_json load of the same
# 1M-line JSON file, in the same run, on this machine. Runs ROUNDS interleaved
# rounds (read_json, load only, full analyze; each into a fresh database), prints
# every round and the median of each, with the ratios of the medians: single runs
# on shared 2-core machines vary by 10-15 %.
# Usage: scripts/bench.sh [LINES] [ROUNDS]   (default 1000000 lines, 5 rounds)
# Criterion micro-benchmarks: cargo bench (release-optimised bench profile; parsing, template mining).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/logsentry/target}
LINES=${1:-1000000}
ROUNDS=${2:-5}
for v in LINES ROUNDS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: $v must be a positive integer, got '${!v}'" >&2; exit 2; }
done
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/logsentry"
WORK=$(mktemp -d /tmp/logsentry-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
LOG="$WORK/big.log"

"$BIN" generate --lines "$LINES" --out "$LOG" --seed 1
echo "input: $LINES lines, $(du -m "$LOG" | cut -f1) MB, $(nproc) cores"
cat "$LOG" > /dev/null   # warm the page cache for both contenders

measure() { # name, command...  → prints "seconds peakMB"
    local name=$1; shift
    rm -f "$WORK/$name.duckdb" "$WORK/$name.duckdb.wal"
    /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" || {
        cat "$WORK/$name.err" >&2; exit 1; }
    read -r secs kb < "$WORK/time.txt"
    echo "$secs $((kb / 1024))"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf "%-6s %12s %12s %12s %10s %10s\n" round read_json load full load/rj full/rj
for r in $(seq "$ROUNDS"); do
    # DuckDB's own loader, same DuckDB build (bundled in logsentry), into a fresh file.
    read -r duck_s duck_mb < <(measure duck "$BIN" sql --write --db "$WORK/duck.duckdb" \
        "CREATE TABLE t AS SELECT * FROM read_json('$LOG', format = 'newline_delimited')")
    # logsentry: load only (issue: load <= 1.0x read_json), then the full analyze
    # (load + features + forest + report; target <= 1.5x), each into a fresh file.
    read -r load_s load_mb < <(measure load "$BIN" analyze "$LOG" --db "$WORK/load.duckdb" --no-detect --json)
    read -r ls_s ls_mb < <(measure full "$BIN" analyze "$LOG" --db "$WORK/full.duckdb" --json)
    echo "$duck_s $duck_mb $load_s $load_mb $ls_s $ls_mb" >> "$WORK/rounds.txt"
    awk -v r="$r" -v d="$duck_s" -v l="$load_s" -v f="$ls_s" \
        'BEGIN { printf "%-6s %10.2f s %10.2f s %10.2f s %10.2f %10.2f\n", r, d, l, f, l / d, f / d }'
done
stored=$("$BIN" sql --db "$WORK/full.duckdb" --format csv "SELECT count(*) FROM logs" | tail -1)
rejected=$("$BIN" sql --db "$WORK/full.duckdb" --format csv "SELECT count(*) FROM rejects" | tail -1)
anomalies=$("$BIN" sql --db "$WORK/full.duckdb" --format csv "SELECT count(*) FROM anomalies" | tail -1)
col() { cut -d' ' -f"$1" "$WORK/rounds.txt" | median; }
peak() { cut -d' ' -f"$1" "$WORK/rounds.txt" | sort -g | tail -1; }
duck_s=$(col 1); load_s=$(col 3); ls_s=$(col 5)

echo "medians of $ROUNDS rounds:"
printf "%-34s %8s s %8s MB peak\n" "duckdb read_json load" "$duck_s" "$(peak 2)"
printf "%-34s %8s s %8s MB peak  (%s rows stored, %s rejected)\n" "logsentry analyze --no-detect" "$load_s" "$(peak 4)" "$stored" "$rejected"
printf "%-34s %8s s %8s MB peak  (%s anomalous windows)\n" "logsentry analyze (full)" "$ls_s" "$(peak 6)" "$anomalies"
awk -v a="$load_s" -v b="$duck_s" 'BEGIN { printf "ratio load / read_json: %.2f\n", a / b }'
awk -v a="$ls_s" -v b="$duck_s" 'BEGIN { printf "ratio full analyze / read_json: %.2f\n", a / b }'
