#!/usr/bin/env bash
# Dashboard timings on a 1M-line database: generates and analyzes 1M JSON lines
# (or uses DB if given), runs `serve --no-consume`, and times every page with
# curl, best/worst of 5 requests each. Usage: scripts/bench-web.sh [DB]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/logsentry/target}
cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/logsentry"
WORK=$(mktemp -d /tmp/logsentry-web.XXXXXX)
trap 'kill "$SERVE" 2>/dev/null || true; rm -rf "$WORK"' EXIT
DB=${1:-}
if [ -z "$DB" ]; then
    DB="$WORK/web.duckdb"
    "$BIN" generate --lines 1000000 --out "$WORK/big.log" --seed 1 > /dev/null
    "$BIN" analyze "$WORK/big.log" --db "$DB" > /dev/null
fi
echo "database: $("$BIN" sql --db "$DB" --format csv "SELECT count(*) FROM logs" | tail -1) lines"
ID=$("$BIN" sql --db "$DB" --format csv "SELECT min(anomaly_id) FROM anomalies" | tail -1)
"$BIN" serve --no-consume --db "$DB" --listen 127.0.0.1:0 > "$WORK/serve.out" &
SERVE=$!
for _ in $(seq 1 50); do grep -q "dashboard on" "$WORK/serve.out" && break; sleep 0.2; done
URL=$(sed -n 's/dashboard on //p' "$WORK/serve.out" | head -1)
for path in / /api/live "/?service=payments&level=ERROR" /history /api/history /templates /api/templates \
            "/anomalies/$ID" /metrics "/sql?q=SELECT%20level%2C%20count(*)%20FROM%20logs%20GROUP%20BY%201"; do
    times=$(for _ in 1 2 3 4 5; do curl -s -o /dev/null -w "%{time_total}\n" "${URL%/}$path"; done | sort -n)
    printf "%-60s best %4.0f ms  worst %4.0f ms\n" "$path" \
        "$(echo "$times" | head -1 | awk '{print $1 * 1000}')" "$(echo "$times" | tail -1 | awk '{print $1 * 1000}')"
done
