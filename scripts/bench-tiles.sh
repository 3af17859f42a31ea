#!/usr/bin/env bash
# Tiles over HTTP from the server (BENCHMARKS.md, "Tiles over HTTP"): a
# release server with ENTRIES entries (default 10M, filled by
# `tlog-bench load`), its `[http]` listener, and two load generators on
# the same two cores: `tlog-bench tiles` (keep-alive clients fetching 256
# hot full level-0 tiles and the checkpoint, every answer checked for its
# status and length) and wrk (Debian's package, installed here if missing;
# a C load generator that takes less of the CPU, so its figure is closer to
# the server's ceiling; every answer must be 2xx, or the run fails).
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
  echo "== tlog-bench tiles, $clients clients, ${SECS}s"
  "$BIN/tlog-bench" tiles --addr "$HTTP" --clients "$clients" --duration "${SECS}s"
done
if ! command -v wrk >/dev/null; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
# The same hot set: 256 level-0 tiles and the checkpoint, round robin.
cat >"$W/tiles.lua" <<'LUA'
local paths = {}
for n = 0, 255 do
  local s, rest = string.format("%03d", n % 1000), math.floor(n / 1000)
  while rest > 0 do
    s = string.format("x%03d/", rest % 1000) .. s
    rest = math.floor(rest / 1000)
  end
  paths[#paths + 1] = wrk.format("GET", "/tile/0/" .. s)
end
paths[#paths + 1] = wrk.format("GET", "/checkpoint")
local i = 0
request = function()
  i = i + 1
  return paths[i % #paths + 1]
end
LUA
for clients in 16 64; do
  echo "== wrk, $clients connections, ${SECS}s"
  out="$(wrk -t 1 -c "$clients" -d "${SECS}s" --latency -s "$W/tiles.lua" "http://$HTTP")"
  echo "$out"
  if grep -q "Non-2xx" <<<"$out"; then echo "wrk saw answers that were not 2xx" >&2; exit 1; fi
done
