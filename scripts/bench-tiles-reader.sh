#!/usr/bin/env bash
# Reading from tiles against reading from gRPC (BENCHMARKS.md, "Reading
# from tiles"): a release server with ENTRIES entries (default 1M, filled
# by `tlog-bench load`) and its [http] tiles listener;
#   1. the monitor's full audit from scratch (`tlog-monitor check`: every
#      entry fetched, hashed into the tree, decoded, the rules run, the
#      root compared with the signed checkpoint), from gRPC and from tiles;
#   2. verified inclusion proofs as a client makes them (`tlog-bench
#      proofs`: checkpoint, entry and proof, verified), from both.
# Usage: scripts/bench-tiles-reader.sh [ENTRIES] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
N="${1:-1000000}"
SECS="${2:-10}"
cargo build --release --locked --quiet -p tlog-server -p tlog-monitor -p tlog-bench --bins
BIN="$CARGO_TARGET_DIR/release"
W="$(mktemp -d "${TMPDIR:-/var/tmp}/tlog-tiles-reader.XXXXXX")"
PID=""
trap '[ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$W"' EXIT
VKEY="$("$BIN/tlog-server" init --data-dir "$W/data" --origin bench.tiles-reader.example/log 2>/dev/null)"
echo "== filling $N entries"
"$BIN/tlog-bench" load --data-dir "$W/data" --entries "$N" >/dev/null
printf '[http]\nlisten = "127.0.0.1:0"\n' >"$W/server.toml"
RUST_LOG=warn "$BIN/tlog-server" serve --data-dir "$W/data" --config "$W/server.toml" --listen 127.0.0.1:0 \
  --ready-file "$W/ready" >"$W/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 1200); do [ -s "$W/ready" ] && break; sleep 0.1; done
GRPC="http://$(head -n1 "$W/ready")"
TILES="http://$(sed -n 's/^http=//p' "$W/ready")"
echo "== letting compaction settle (10 s)"
sleep 10
for MODE in grpc tiles grpc tiles; do
  if [ "$MODE" = grpc ]; then EP="endpoints = [\"$GRPC\"]"; else EP="tiles = \"$TILES\""; fi
  cat >"$W/monitor.toml" <<CFG
state_dir = "$W/monitor-state"
[[log]]
name = "bench"
vkey = "$VKEY"
$EP
timeout = "600s"
CFG
  rm -rf "$W/monitor-state"
  START=$(date +%s.%N)
  /usr/bin/time -v "$BIN/tlog-monitor" check --config "$W/monitor.toml" >"$W/alerts.jsonl" 2>"$W/monitor.err" || true
  END=$(date +%s.%N)
  SECS_RUN=$(echo "$END - $START" | bc -l)
  RSS=$(grep 'Maximum resident' "$W/monitor.err" | awk '{print $NF}')
  grep -q "nothing found" "$W/monitor.err" || { echo "the audit found something:"; tail -5 "$W/monitor.err"; exit 1; }
  printf 'monitor audit from %-5s: %s entries in %.2f s: %.0f entries/s; max RSS %s KiB\n' \
    "$MODE" "$N" "$SECS_RUN" "$(echo "$N / $SECS_RUN" | bc -l)" "$RSS"
done
for CLIENTS in 1 16; do
  "$BIN/tlog-bench" proofs --addr "$GRPC" --vkey "$VKEY" --clients "$CLIENTS" --duration "${SECS}s"
  "$BIN/tlog-bench" proofs --tiles "$TILES" --vkey "$VKEY" --clients "$CLIENTS" --duration "${SECS}s"
done
