#!/usr/bin/env bash
# Catch-up speed of the monitor: fill a log with N entries (default 1M)
# through the release server's own load generator, then audit it from
# scratch with `tlog-monitor check`: every entry streamed over gRPC, hashed
# into the tree, decoded and run through the rules, and the root compared
# with the signed checkpoint. Prints entries/s; the hashing limit for the
# same work is `cargo bench -p tlog-monitor --bench audit`.
# Usage: scripts/bench-monitor.sh [entries]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
N="${1:-1000000}"
cargo build --release --locked --quiet -p tlog-server -p tlog-client -p tlog-monitor -p tlog-bench --bins
BIN="$CARGO_TARGET_DIR/release"
W="$(mktemp -d "${TMPDIR:-/tmp}/tlog-bench-monitor.XXXXXX")"
PID=""
trap '[ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$W"' EXIT

VKEY="$("$BIN/tlog-server" init --data-dir "$W/data" --origin bench.example/log 2>/dev/null)"
RUST_LOG=warn "$BIN/tlog-server" serve --data-dir "$W/data" --listen 127.0.0.1:0 \
  --ready-file "$W/ready" >"$W/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do [ -s "$W/ready" ] && break; sleep 0.1; done
URL="http://$(head -n1 "$W/ready")"
size() { "$BIN/tlog" --server "$URL" --vkey "$VKEY" --no-state --json checkpoint | sed 's/.*"size":\([0-9]*\).*/\1/'; }

echo "== filling the log to $N entries (16 clients x AppendBatch(64); each client its own artifact names)"
while [ "$(size)" -lt "$N" ]; do
  "$BIN/tlog-bench" run --addr "$URL" --clients 16 --batch 64 --duration 5s \
    --proof-duration 0s --json >/dev/null
done
TOTAL="$(size)"
echo "log size: $TOTAL"

cat >"$W/monitor.toml" <<CFG
state_dir = "$W/monitor-state"
[[log]]
name = "bench"
vkey = "$VKEY"
endpoints = ["$URL"]
timeout = "600s"
[rules.access_rate]
CFG
echo "== letting the server's background compaction settle (15 s)"
sleep 15
for RUN in 1 2 3; do
  rm -rf "$W/monitor-state"
  START=$(date +%s.%N)
  /usr/bin/time -v "$BIN/tlog-monitor" check --config "$W/monitor.toml" >"$W/alerts.jsonl" 2>"$W/monitor.err" || true
  END=$(date +%s.%N)
  SECS=$(echo "$END - $START" | bc -l)
  RSS=$(grep 'Maximum resident' "$W/monitor.err" | awk '{print $NF}')
  ALERTS=$(wc -l <"$W/alerts.jsonl")
  printf 'run %s: tlog-monitor check from scratch audited %s entries in %.2f s: %.0f entries/s; max RSS %s KiB; %s alerts\n' \
    "$RUN" "$TOTAL" "$SECS" "$(echo "$TOTAL / $SECS" | bc -l)" "$RSS" "$ALERTS"
done
