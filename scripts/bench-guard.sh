#!/usr/bin/env bash
# What the promise's guards cost (BENCHMARKS.md, "The guards"):
#
# 1. The checkpoint lock. The same release server, with its lock on the
#    data disk (the default) and on /dev/shm (where a sync costs nothing:
#    the lock's I/O taken away, everything else the same), in turns:
#    batched throughput (16 clients x AppendBatch(64)) and the p99 of
#    single appends at half the single-append peak (64 clients).
# 2. The decode bound. 16 clients send the costliest messages they can
#    build (`tlog-server bench --worst-messages`) for 20 s; the server's
#    peak RSS is read beside its idle RSS. Target: under 2 x idle + 256 MiB.
#
# Usage: scripts/bench-guard.sh [ROUNDS] (default 3 turns of each)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
ROUNDS="${1:-3}"
D=10
cargo build --release --locked --quiet -p tlog-server -p tlog-client -p tlog-monitor --bins
BIN="$CARGO_TARGET_DIR/release"
W="$(mktemp -d "${TMPDIR:-/var/tmp}/tlog-guard.XXXXXX")"
SHM="$(mktemp -d /dev/shm/tlog-guard.XXXXXX)"
PID=""
stop_server() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; fi
  PID=""
}
trap 'stop_server; rm -rf "$W" "$SHM"' EXIT
field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$1"; }
start() { # data-dir config
  rm -f "$W/ready"
  "$BIN/tlog-server" serve --data-dir "$1" --config "$2" --listen 127.0.0.1:0 \
    --ready-file "$W/ready" >"$W/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do [ -s "$W/ready" ] && break; sleep 0.1; done
  URL="http://$(head -n1 "$W/ready")"
}

echo "== the checkpoint lock: on the data disk vs on /dev/shm, $ROUNDS turns"
printf '%-6s %-10s %12s %12s %12s\n' turn lock batched/s "peak 1/s" "p99@50% ms"
for turn in $(seq 1 "$ROUNDS"); do
  for where in disk shm; do
    rm -rf "$W/data" "$SHM"/*
    "$BIN/tlog-server" init --data-dir "$W/data" --origin guard.example/log >/dev/null 2>&1
    if [ "$where" = shm ]; then
      echo "checkpoint_lock = \"$SHM/checkpoint.lock\"" >"$W/server.toml"
    else
      : >"$W/server.toml"
    fi
    start "$W/data" "$W/server.toml"
    B="$("$BIN/tlog-server" bench --addr "$URL" --clients 16 --batch 64 --duration "${D}s" \
      --proof-duration 0s --json | field appends_per_s)"
    P="$("$BIN/tlog-server" bench --addr "$URL" --clients 64 --duration "${D}s" \
      --proof-duration 0s --json | field appends_per_s)"
    RATE="$(python3 -c "print(int($P / 2))")"
    L="$("$BIN/tlog-server" bench --addr "$URL" --clients 64 --rate "$RATE" --duration "${D}s" \
      --proof-duration 0s --json | field p99_ms)"
    printf '%-6s %-10s %12.0f %12.0f %12.2f\n' "$turn" "$where" "$B" "$P" "$L"
    stop_server
  done
done

echo "== the decode bound: 16 clients, the worst messages, 20 s"
rm -rf "$W/data"
"$BIN/tlog-server" init --data-dir "$W/data" --origin guard.example/log >/dev/null 2>&1
: >"$W/server.toml"
start "$W/data" "$W/server.toml"
sleep 2
IDLE="$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")"
"$BIN/tlog-server" bench --addr "$URL" --clients 16 --duration 20s --worst-messages
PEAK="$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")"
LIMIT=$((2 * IDLE + 256 * 1024))
echo "server RSS: idle $((IDLE / 1024)) MiB, peak $((PEAK / 1024)) MiB; limit 2 x idle + 256 MiB = $((LIMIT / 1024)) MiB"
"$BIN/tlog-server" bench --addr "$URL" --clients 4 --batch 16 --duration 2s --proof-duration 0s |
  head -n 2
stop_server
if [ "$PEAK" -gt "$LIMIT" ]; then echo "bench-guard: peak RSS over the limit" >&2; exit 1; fi
