#!/usr/bin/env bash
# The soak: MINUTES (default 10) at half of the single-append peak, with
# proofs, artifact queries and a monitor running beside the appends. Every
# 10 s it samples the server's and the monitor's RSS and open files; every
# minute it reports the appends' latency percentiles, throughput, errors
# and the proofs served. At the end: RSS and open files must not grow
# faster in the second half than in the first (the log itself grows), the
# server must stay under 1 GiB, errors must be zero and the monitor silent,
# else the script fails.
#
# Usage: scripts/soak.sh [MINUTES]
# Output: $CARGO_TARGET_DIR/soak/<time>-<commit>/{samples.csv,minutes.jsonl,report.md}
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
MINUTES="${1:-10}"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
OUT="$CARGO_TARGET_DIR/soak/$(date -u +%Y%m%dT%H%M%SZ)-$COMMIT"
mkdir -p "$OUT"
echo "== building (release)"
cargo build --release --locked --quiet -p tlog-server -p tlog-client -p tlog-monitor -p tlog-bench --bins
BIN="$CARGO_TARGET_DIR/release"
W="$(mktemp -d "${TMPDIR:-/var/tmp}/tlog-soak.XXXXXX")"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT INT TERM

VKEY="$("$BIN/tlog-server" init --data-dir "$W/data" --origin soak.example/log 2>/dev/null)"
"$BIN/tlog-server" serve --data-dir "$W/data" --listen 127.0.0.1:0 --ready-file "$W/ready" >"$W/server.log" 2>&1 &
SPID=$!; PIDS+=("$SPID")
for _ in $(seq 1 300); do [ -s "$W/ready" ] && break; sleep 0.1; done
URL="http://$(head -n1 "$W/ready")"
cat >"$W/monitor.toml" <<CFG
state_dir = "$W/monitor-state"
poll_interval = "1s"
[[log]]
name = "soak"
vkey = "$VKEY"
endpoints = ["$URL"]
timeout = "60s"
CFG
"$BIN/tlog-monitor" run --config "$W/monitor.toml" >"$W/alerts.jsonl" 2>"$W/monitor.err" &
MPID=$!; PIDS+=("$MPID")

echo "== peak (10 s, 64 clients, single appends)"
PEAK="$("$BIN/tlog-bench" run --addr "$URL" --clients 64 --duration 10s --proof-duration 0s --json \
  | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["appends_per_s"]))')"
RATE=$((PEAK / 2))
echo "   peak $PEAK/s; soaking at $RATE/s for $MINUTES min"

sample() { # pid -> "rss_kib fds"
  echo "$(awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0) $(ls "/proc/$1/fd" 2>/dev/null | wc -l)"
}
echo "t_s,server_rss_kib,server_fds,monitor_rss_kib,monitor_fds" >"$OUT/samples.csv"
: >"$OUT/minutes.jsonl"
START=$(date +%s)
(
  while kill -0 "$SPID" 2>/dev/null; do
    echo "$(( $(date +%s) - START )),$(sample "$SPID" | tr ' ' ','),$(sample "$MPID" | tr ' ' ',')" >>"$OUT/samples.csv"
    sleep 10
  done
) &
SAMPLER=$!; PIDS+=("$SAMPLER")
for m in $(seq 1 "$MINUTES"); do
  # A registry's traffic: each client's artifact has 200 versions, each
  # uploaded once and then downloaded (not a new version per event, which
  # would grow the monitor's memory without bound by design).
  "$BIN/tlog-bench" run --addr "$URL" --clients 64 --rate "$RATE" --duration 60s --proof-duration 0s \
    --versions 200 --json >"$W/appends.json" &
  A=$!
  # Readers beside the appends: 2 clients fetching proofs, then queries.
  "$BIN/tlog-bench" run --addr "$URL" --clients 2 --connections 1 --duration 0s --proof-duration 55s \
    --queries 500 --json >"$W/reads.json"
  wait "$A"
  python3 - "$m" "$W/appends.json" "$W/reads.json" >>"$OUT/minutes.jsonl" <<'PY'
import json, sys
a = json.load(open(sys.argv[2])); r = json.load(open(sys.argv[3]))
print(json.dumps({"minute": int(sys.argv[1]), "appends_per_s": a["appends_per_s"], "append_errors": a["errors"],
                  "p50_ms": a["p50_ms"], "p99_ms": a["p99_ms"], "p999_ms": a["p999_ms"],
                  "proofs_per_s": r["proofs_per_s"], "proof_errors": r["proof_errors"],
                  "query_p99_ms": r["query_p99_ms"], "tree_size": a["tree_size"]}))
PY
  tail -n1 "$OUT/minutes.jsonl"
done
kill "$SAMPLER" 2>/dev/null || true
sleep 3  # let the monitor catch up with the last minute
python3 - "$OUT" "$W/alerts.jsonl" "$PEAK" "$RATE" "$MINUTES" <<'PY'
import csv, json, sys, os
out, alerts_path, peak, rate, minutes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
mins = [json.loads(l) for l in open(os.path.join(out, "minutes.jsonl"))]
rows = list(csv.DictReader(open(os.path.join(out, "samples.csv"))))
alerts = [l for l in open(alerts_path) if l.strip()]
errors = sum(m["append_errors"] + m["proof_errors"] for m in mins)
def window(key, lo, hi):
    v = [int(r[key]) for r in rows if lo <= int(r["t_s"]) < hi]
    return max(v) if v else 0
# The log grows during the soak (about 3.7M entries in 10 minutes), and
# RocksDB keeps every table's index and filter in memory and one file open
# per table, so memory and files may grow with the data; a leak shows as
# growth that speeds up. The check: growth in the second half of the run no
# faster than in the first half (plus slack for one compaction), and the
# server under its 1 GiB budget.
end = int(rows[-1]["t_s"]) if rows else 0
checks = []
for key, slack, budget in (("server_rss_kib", 32 * 1024, 1024 * 1024), ("monitor_rss_kib", 32 * 1024, None),
                           ("server_fds", 8, None), ("monitor_fds", 4, None)):
    start, mid, last = window(key, 55, 75), window(key, end // 2 - 10, end // 2 + 10), window(key, end - 15, end + 1)
    first_half, second_half = mid - start, last - mid
    ok = second_half <= max(first_half, 0) + slack and (budget is None or last <= budget)
    checks.append((key, start, mid, last, ok))
md = [f"# Soak report ({minutes} min at {rate:,}/s, half of the measured peak {peak:,}/s)", "",
      "| minute | appends/s | p50 / p99 / p999 ms | errors | proofs/s | query p99 ms | tree size |",
      "|---|---|---|---|---|---|---|"]
for m in mins:
    md.append(f"| {m['minute']} | {m['appends_per_s']:,.0f} | {m['p50_ms']:.1f} / {m['p99_ms']:.1f} / {m['p999_ms']:.1f} | "
              f"{m['append_errors'] + m['proof_errors']} | {m['proofs_per_s']:,.0f} | {m['query_p99_ms']:.2f} | {m['tree_size']:,} |")
md += ["", "| resource | at 1 min | at half time | at the end | growth not speeding up |", "|---|---|---|---|---|"]
for key, start, mid, last, ok in checks:
    md.append(f"| {key} | {start:,} | {mid:,} | {last:,} | {'yes' if ok else 'NO'} |")
md += ["", f"Errors: {errors}. Monitor alerts: {len(alerts)}.",
       "", "Samples every 10 s are in samples.csv; one line per minute in minutes.jsonl."]
open(os.path.join(out, "report.md"), "w").write("\n".join(md) + "\n")
print("\n".join(md))
ok = errors == 0 and not alerts and all(c[4] for c in checks)
sys.exit(0 if ok else 1)
PY
echo "report: $OUT/report.md"
