#!/usr/bin/env bash
# Sync witnessing (BENCHMARKS.md, "Witnessing"): three local witnesses
# (`tlog-monitor` with a [witness] section, each syncing its state before
# it answers), a release server in `sync` mode with a 2-of-3 policy, and
# `tlog-bench run`. The same runs against the same server without
# witnesses give the reference:
#   1. the single-append peak without witnesses (64 clients);
#   2. p99 submit-to-verified-proof at half that peak, with and without
#      witnesses (every answer a quorum-cosigned checkpoint);
#   3. batched throughput (16 clients x AppendBatch(64)), with and without.
#
# Usage: scripts/bench-witness.sh [SECONDS]
# WITNESS_TMPDIR=DIR puts the witnesses' folders (their synced state) on
# another file system than the log's (TMPDIR), to tell their syncs apart
# from the log's; BENCHMARKS.md shows a run with them on tmpfs.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
SECS="${1:-10}"
cargo build --release --locked --quiet -p tlog-server -p tlog-monitor -p tlog-bench --bins
BIN="$CARGO_TARGET_DIR/release"
W="$(mktemp -d "${TMPDIR:-/var/tmp}/tlog-witness.XXXXXX")"
WD="$(mktemp -d "${WITNESS_TMPDIR:-$W}/tlog-witnesses.XXXXXX")"
PIDS=()
stop_all() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); }
trap 'stop_all; rm -rf "$W" "${WD:-}"' EXIT

wait_ready() { for _ in $(seq 1 600); do [ -s "$1" ] && return 0; sleep 0.1; done; echo "not ready: $1"; exit 1; }

VKEY="$("$BIN/tlog-server" init --data-dir "$W/data" --origin bench.witness.example/log 2>/dev/null)"
POLICY="$W/witnesses.policy"
echo "log $VKEY" >"$POLICY"
for i in 1 2 3; do
  d="$WD/w$i"
  mkdir -p "$d"
  WV="$("$BIN/tlog-monitor" witness keygen --name "w$i.bench.example" --out "$d/key" 2>/dev/null)"
  cat >"$d/monitor.toml" <<EOF
state_dir = "state"
[witness]
name = "w$i.bench.example"
key_file = "key"
listen = "127.0.0.1:0"
[[witness.log]]
vkey = "$VKEY"
EOF
  "$BIN/tlog-monitor" run --config "$d/monitor.toml" --ready-file "$d/ready" 2>"$d/log" &
  PIDS+=($!)
  wait_ready "$d/ready"
  ADDR="$(sed -n 's/^witness=//p' "$d/ready")"
  echo "witness W$i $WV http://$ADDR" >>"$POLICY"
done
echo "group G 2 W1 W2 W3" >>"$POLICY"
echo "quorum G" >>"$POLICY"

serve() { # $1: config file or empty
  rm -f "$W/ready"
  local args=()
  [ -n "$1" ] && args=(--config "$1")
  "$BIN/tlog-server" serve --data-dir "$W/data" "${args[@]}" --listen 127.0.0.1:0 \
    --ready-file "$W/ready" >"$W/server.log" 2>&1 &
  SERVER=$!
  wait_ready "$W/ready"
  URL="http://$(head -n1 "$W/ready")"
}
stop_server() { kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true; }
bench() { "$BIN/tlog-bench" run --addr "$URL" --proof-duration 0s --json "$@"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }

printf '[witnessing]\npolicy_file = "%s"\nmode = "sync"\ntimeout = "5s"\n' "$POLICY" >"$W/sync.toml"

echo "== without witnesses"
serve ""
bench --clients 16 --duration 2s >/dev/null
PEAK_JSON="$(bench --clients 64 --duration "${SECS}s")"
PEAK="$(echo "$PEAK_JSON" | field "['appends_per_s']")"
HALF=$((${PEAK%.*} / 2))
echo "single-append peak (64 clients): $PEAK/s; half: $HALF/s"
PLAIN_HALF="$(bench --clients 64 --rate "$HALF" --duration "${SECS}s")"
PLAIN_BATCH="$(bench --clients 16 --batch 64 --duration "${SECS}s")"
stop_server

echo "== sync witnessing, 2 of 3 local witnesses"
serve "$W/sync.toml"
bench --clients 16 --duration 2s >/dev/null
SYNC_HALF="$(bench --clients 64 --rate "$HALF" --duration "${SECS}s")"
SYNC_BATCH="$(bench --clients 16 --batch 64 --duration "${SECS}s")"
SYNC_PEAK="$(bench --clients 64 --duration "${SECS}s")"
stop_server

show() { echo "$2" | python3 -c "
import json,sys
d=json.load(sys.stdin)
print('%-42s %8.0f/s  p50 %.2f  p99 %.2f  p999 %.2f ms  errors %d' % ('$1', d['appends_per_s'], d['p50_ms'], d['p99_ms'], d['p999_ms'], d['errors']))
"; }
echo
show "unwitnessed, 64 clients at half peak" "$PLAIN_HALF"
show "sync witnessed, 64 clients at half peak" "$SYNC_HALF"
show "unwitnessed, 16 x AppendBatch(64)" "$PLAIN_BATCH"
show "sync witnessed, 16 x AppendBatch(64)" "$SYNC_BATCH"
show "sync witnessed, 64 clients, peak" "$SYNC_PEAK"
python3 - "$PLAIN_BATCH" "$SYNC_BATCH" <<'EOF'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("batched throughput witnessed / unwitnessed: %.0f%%" % (100 * b["appends_per_s"] / a["appends_per_s"]))
EOF
for i in 1 2 3; do
  echo "W$i answers: $(grep -c cosigned "$WD/w$i/log" || true) cosigned log lines"
done
