#!/usr/bin/env bash
# What the promise's guards cost (BENCHMARKS.md, "The guards"):
#
# 1. The checkpoint lock. The same release server, with its lock on the
#    data disk (the default) and on /dev/shm (where a sync costs nothing:
#    the lock's I/O taken away, everything else the same), in turns:
#    batched throughput (16 clients x AppendBatch(64)) and the p99 of
#    single appends at half the single-append peak (64 clients).
# 2. The decode bound. 16 clients send the costliest messages they can
#    build (`tlog-bench run --worst-messages`) for 20 s; the server's
#    peak RSS is read beside its idle RSS. Target: under 2 x idle + 256 MiB.
#
# Usage: scripts/bench-guard.sh [ROUNDS] (default 4 turns of each)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
ROUNDS="${1:-4}"
D=10
cargo build --release --locked --quiet -p tlog-server -p tlog-client -p tlog-monitor -p tlog-bench --bins
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

run_config() { # where -> sets B, P, L (L at the fixed $RATE, if set)
  rm -rf "$W/data" "$SHM"/*
  "$BIN/tlog-server" init --data-dir "$W/data" --origin guard.example/log >/dev/null 2>&1
  if [ "$1" = shm ]; then
    echo "checkpoint_lock = \"$SHM/checkpoint.lock\"" >"$W/server.toml"
  else
    : >"$W/server.toml"
  fi
  start "$W/data" "$W/server.toml"
  B="$("$BIN/tlog-bench" run --addr "$URL" --clients 16 --batch 64 --duration "${D}s" \
    --proof-duration 0s --json | field appends_per_s)"
  P="$("$BIN/tlog-bench" run --addr "$URL" --clients 64 --duration "${D}s" \
    --proof-duration 0s --json | field appends_per_s)"
  L=0
  if [ -n "${RATE:-}" ]; then
    L="$("$BIN/tlog-bench" run --addr "$URL" --clients 64 --rate "$RATE" --duration "${D}s" \
      --proof-duration 0s --json | field p99_ms)"
  fi
  stop_server
}

# A warm-up run, not counted, sets the one rate every p99 is measured at
# (half its single-append peak): both placements under the same load. The
# order alternates per turn (disk first, then shm first), because the
# first server of a pair measured slower by itself (BENCHMARKS.md).
echo "== the checkpoint lock: on the data disk vs on /dev/shm, $ROUNDS turns"
RATE=""
run_config disk
RATE="$(python3 -c "print(int($P / 2))")"
echo "warm-up: single-append peak $P/s; p99 is measured at $RATE/s"
printf '%-6s %-10s %12s %12s %12s\n' turn lock batched/s "peak 1/s" "p99@${RATE}/s ms"
: >"$W/lock.tsv"
for turn in $(seq 1 "$ROUNDS"); do
  order="disk shm"
  if [ $((turn % 2)) -eq 0 ]; then order="shm disk"; fi
  for where in $order; do
    run_config "$where"
    printf '%-6s %-10s %12.0f %12.0f %12.2f\n' "$turn" "$where" "$B" "$P" "$L"
    printf '%s\t%s\t%s\t%s\n' "$where" "$B" "$P" "$L" >>"$W/lock.tsv"
  done
done
python3 - "$W/lock.tsv" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
disk = [r for r in rows if r[0] == "disk"]
shm = [r for r in rows if r[0] == "shm"]
# Turn by turn (the two servers of a turn ran minutes apart): the
# differences, their mean and median, and their spread.
db = [100 * (float(d[1]) / float(s[1]) - 1) for d, s in zip(disk, shm)]
dl = [float(d[3]) - float(s[3]) for d, s in zip(disk, shm)]
print("per turn, disk - shm: batched %s %%; p99 %s ms" % (
    " ".join("%+.1f" % x for x in db), " ".join("%+.2f" % x for x in dl)))
print("the lock's I/O costs: batched %+.1f%% mean, %+.1f%% median (budget -10%%); "
      "p99 %+.2f ms mean, %+.2f ms median (budget +1 ms)"
      % (statistics.mean(db), statistics.median(db), statistics.mean(dl), statistics.median(dl)))
PY

echo "== the decode bound: 16 clients, the worst messages, 20 s"
rm -rf "$W/data"
"$BIN/tlog-server" init --data-dir "$W/data" --origin guard.example/log >/dev/null 2>&1
: >"$W/server.toml"
start "$W/data" "$W/server.toml"
sleep 2
IDLE="$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")"
"$BIN/tlog-bench" run --addr "$URL" --clients 16 --duration 20s --worst-messages
PEAK="$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")"
LIMIT=$((2 * IDLE + 256 * 1024))
echo "server RSS: idle $((IDLE / 1024)) MiB, peak $((PEAK / 1024)) MiB; limit 2 x idle + 256 MiB = $((LIMIT / 1024)) MiB"
"$BIN/tlog-bench" run --addr "$URL" --clients 4 --batch 16 --duration 2s --proof-duration 0s |
  head -n 2
stop_server
if [ "$PEAK" -gt "$LIMIT" ]; then echo "bench-guard: peak RSS over the limit" >&2; exit 1; fi
