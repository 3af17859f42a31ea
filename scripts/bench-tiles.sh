#!/usr/bin/env bash
# Tiles over HTTP from the server (BENCHMARKS.md, "Tiles over HTTP"): a
# release server with ENTRIES entries (default 10M, filled by
# `tlog-bench load`), its `[http]` listener, and `tlog-bench tiles`: 64
# keep-alive clients fetching 256 hot full level-0 tiles and the
# checkpoint, every answer checked for its status and length.
#
# Usage: scripts/bench-tiles.sh [ENTRIES] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
ENTRIES="${1:-10000000}"
SECS="${2:-10}"
cargo build --release --locked --quiet -p tlog-server -p tlog-bench --bins
BIN="$CARGO_TARGET_DIR/release"
W="$(mktemp -d "${TMPDIR:-/var/tmp}/tlog-tiles.XXXXXX")"
PID=""
trap '[ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
"$BIN/tlog-server" init --data-dir "$W/data" --origin bench.tiles.example/log >/dev/null 2>&1
echo "== filling $ENTRIES entries"
"$BIN/tlog-bench" load --data-dir "$W/data" --entries "$ENTRIES"
printf '[http]\nlisten = "127.0.0.1:0"\n' >"$W/server.toml"
"$BIN/tlog-server" serve --data-dir "$W/data" --config "$W/server.toml" --listen 127.0.0.1:0 \
  --ready-file "$W/ready" >"$W/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 1200); do [ -s "$W/ready" ] && break; sleep 0.1; done
HTTP="$(sed -n 's/^http=//p' "$W/ready")"
[ -n "$HTTP" ] || { echo "server did not start:"; cat "$W/server.log"; exit 1; }
echo "== warm-up"
"$BIN/tlog-bench" tiles --addr "$HTTP" --clients 16 --duration 2s >/dev/null
for clients in 16 64; do
  echo "== $clients clients, ${SECS}s"
  "$BIN/tlog-bench" tiles --addr "$HTTP" --clients "$clients" --duration "${SECS}s"
done
