#!/usr/bin/env bash
# The benchmark suite (see BENCHMARKS.md): the machine's limits, then at
# each scale (10k, 1M, 10M entries; --quick: 10k, 100k) the server's
# figures, each beside its limit, written as JSON and Markdown.
#
# Usage: scripts/bench-suite.sh [--quick] [--out DIR]
# Needs: a release build (made here), python3 (report), /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh

QUICK=0
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT="$2"; shift ;;
    *) echo "usage: $0 [--quick] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
command -v python3 >/dev/null || { echo "bench-suite: python3 is needed for the report" >&2; exit 2; }
if [ "$QUICK" = 1 ]; then SCALES="10000 100000"; D=3; else SCALES="10000 1000000 10000000"; D=10; fi
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo -dirty)"
OUT="${OUT:-$CARGO_TARGET_DIR/bench-suite/$(date -u +%Y%m%dT%H%M%SZ)-$COMMIT}"
mkdir -p "$OUT"
echo "== building (release)"
cargo build --release --locked --quiet -p tlog-server -p tlog-client -p tlog-monitor -p tlog-bench --bins
BIN="$CARGO_TARGET_DIR/release"
W="$(mktemp -d "${TMPDIR:-/var/tmp}/tlog-suite.XXXXXX")"
PID=""
stop_server() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; fi
  PID=""
}
trap 'stop_server; rm -rf "$W"' EXIT
R="$OUT/results.jsonl"
: >"$R"
emit() { # kind, scale, command, json
  printf '{"kind":"%s","scale":%s,"command":%s,"result":%s}\n' "$1" "$2" \
    "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$3")" "$4" >>"$R"
}
run_json() { # kind scale command...
  local kind="$1" scale="$2"; shift 2
  local out
  out="$("$@")"
  emit "$kind" "$scale" "$*" "$out"
  echo "   $kind: $out"
}

echo "== machine"
CPU="$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
DISK="$(df -h "$W" | tail -1 | awk '{print $1" ("$2", "$5" used)"}')"
ROTA="$(lsblk -dno ROTA "$(df "$W" | tail -1 | awk '{print $1}')" 2>/dev/null || echo "?")"
python3 - "$OUT/machine.json" <<PY
import json, sys, os
json.dump({"cores": os.cpu_count(), "cpu": """$CPU""", "memory_gib": round(os.sysconf('SC_PAGE_SIZE')*os.sysconf('SC_PHYS_PAGES')/2**30, 1),
           "disk": """$DISK""", "rotational": """$ROTA""", "commit": "$COMMIT", "date": "$(date -u +%FT%TZ)",
           "quick": $QUICK, "seconds_per_figure": $D}, open(sys.argv[1], "w"))
PY
cat "$OUT/machine.json"; echo

echo "== limits"
run_json limits 0 "$BIN/tlog-bench" limits --duration 3s --json

for N in $SCALES; do
  echo "== scale $N"
  rm -rf "$W/data"
  VKEY="$("$BIN/tlog-server" init --data-dir "$W/data" --origin suite.example/log 2>/dev/null)"
  if [ "$N" -gt 0 ]; then
    run_json load "$N" "$BIN/tlog-bench" load --data-dir "$W/data" --entries "$N" --json
    # A log that grew to N entries over months has long been compacted in
    # the background; one bulk-loaded in minutes has not. Compact it, so
    # the reads measure the log and not the loader's leftover compaction.
    "$BIN/tlog-server" stats --data-dir "$W/data" --compact --json >/dev/null
  fi
  rm -f "$W/ready"
  MPORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  RUST_LOG=info "$BIN/tlog-server" serve --data-dir "$W/data" --listen 127.0.0.1:0 \
    --metrics-listen "127.0.0.1:$MPORT" --ready-file "$W/ready" >"$W/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do [ -s "$W/ready" ] && break; sleep 0.1; done
  URL="http://$(head -n1 "$W/ready")"
  # Reads are measured in steady state: after the server has warmed its
  # proof cache (a few seconds at 10M entries; logged).
  for _ in $(seq 1 600); do grep -q 'proof cache warmed' "$W/server.log" && break; sleep 0.1; done
  # Reads first, at exactly this scale.
  run_json reads "$N" "$BIN/tlog-bench" run --addr "$URL" --clients 64 --duration 0s \
    --proof-duration "${D}s" --consistency-duration "${D}s" --stream-entries 200000 --queries 200 --json
  for C in 1 16 64 256; do
    run_json single "$N" "$BIN/tlog-bench" run --addr "$URL" --clients "$C" --duration "${D}s" \
      --proof-duration 0s --json
  done
  # The commits the server makes under the batched load (its metrics
  # before and after): the raw RocksDB limit is then measured for commits
  # of that size, the same synced batches.
  commits() { # "events commits" so far
    curl -s "http://127.0.0.1:$MPORT/metrics" |
      awk '$1 == "tlog_batch_events_sum" {s = $2} $1 == "tlog_batch_events_count" {c = $2} END {print s, c}'
  }
  BEFORE="$(commits)"
  run_json batched "$N" "$BIN/tlog-bench" run --addr "$URL" --clients 16 --batch 64 \
    --duration "${D}s" --proof-duration 0s --json
  AFTER="$(commits)"
  MEAN="$(python3 -c 'import sys; b, a = sys.argv[1].split(), sys.argv[2].split(); print(round((float(a[0]) - float(b[0])) / max(float(a[1]) - float(b[1]), 1)))' "$BEFORE" "$AFTER")"
  emit commits "$N" "tlog_batch_events_sum / _count over the batched run (metrics)" "{\"mean_entries_per_commit\":$MEAN}"
  echo "   the server's commits under that load: $MEAN entries each on average"
  PEAK="$(tail -n 5 "$R" | python3 -c '
import json, sys
print(int(max(json.loads(l)["result"]["appends_per_s"] for l in sys.stdin if json.loads(l)["kind"] == "single")))')"
  for PCT in 25 50 75; do
    RATE=$((PEAK * PCT / 100))
    run_json "latency-$PCT" "$N" "$BIN/tlog-bench" run --addr "$URL" --clients 64 --rate "$RATE" \
      --duration "${D}s" --proof-duration 0s --json
  done
  RSS="$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")"
  emit rss "$N" "grep VmHWM /proc/<server pid>/status" "{\"server_max_rss_kib\":$RSS}"
  echo "   server max RSS: $RSS KiB"
  cat >"$W/monitor.toml" <<CFG
state_dir = "$W/monitor-state"
[[log]]
name = "suite"
vkey = "$VKEY"
endpoints = ["$URL"]
timeout = "900s"
CFG
  rm -rf "$W/monitor-state"
  SIZE="$("$BIN/tlog" --server "$URL" --vkey "$VKEY" --no-state --json checkpoint | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])')"
  START=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$W/monitor.rss" "$BIN/tlog-monitor" check --config "$W/monitor.toml" \
    >"$W/alerts.jsonl" 2>"$W/monitor.err" || true
  END=$(date +%s.%N)
  MRATE="$(python3 -c "print(round($SIZE / ($END - $START), 1))")"
  emit monitor "$N" "tlog-monitor check (from scratch, $SIZE entries)" \
    "{\"entries\":$SIZE,\"entries_per_s\":$MRATE,\"max_rss_kib\":$(tail -n1 "$W/monitor.rss"),\"alerts\":$(wc -l <"$W/alerts.jsonl")}"
  echo "   monitor audit: $MRATE entries/s over $SIZE entries"
  stop_server
  # Proofs with a cold cache (2 tiles): every proof reads its tiles from
  # RocksDB, so its cost follows the number of tile levels, log n.
  cat >"$W/cold.toml" <<CFG
data_dir = "$W/data"
listen = "127.0.0.1:0"
tile_cache_tiles = 2
CFG
  rm -f "$W/ready"
  RUST_LOG=info "$BIN/tlog-server" serve --config "$W/cold.toml" --ready-file "$W/ready" >"$W/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do [ -s "$W/ready" ] && break; sleep 0.1; done
  run_json cold "$N" "$BIN/tlog-bench" run --addr "http://$(head -n1 "$W/ready")" --clients 64 \
    --duration 0s --proof-duration "${D}s" --json
  stop_server
  # The limit for the batched figure: synced commits of the size the
  # server made, for as long as the server's run, with nothing else running.
  run_json limit-batched "$N" "$BIN/tlog-bench" limits --duration "${D}s" --batches "$MEAN" --json
  run_json disk "$N" "$BIN/tlog-server" stats --data-dir "$W/data" --compact --json
done

python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
m = json.load(open(os.path.join(out, "machine.json")))
rows = [json.loads(l) for l in open(os.path.join(out, "results.jsonl"))]
lim = next(r["result"] for r in rows if r["kind"] == "limits")
rocks = {x["batch"]: x["entries_per_s"] for x in lim["rocksdb_synced"]}
def fmt(x, d=0):
    return f"{x:,.{d}f}"
md = [f"# Benchmark report ({m['date']}, commit {m['commit']})", "",
      f"Machine: {m['cores']} cores, {m['cpu']}, {m['memory_gib']} GiB; disk {m['disk']} (rotational: {m['rotational']}). "
      f"Release build; server, load generator and monitor share the machine; {m['seconds_per_figure']} s per figure"
      + (" (quick run)." if m["quick"] else "."), "",
      "## Limits of this machine", "",
      "| limit | rate |", "|---|---|",
      f"| SHA-256 of a {lim['leaf_bytes']}-byte leaf | {fmt(lim['sha256_leaf_per_s'])}/s |",
      f"| SHA-256 of a node (65 bytes) | {fmt(lim['sha256_node_per_s'])}/s |",
      f"| Ed25519 sign / verify (checkpoint) | {fmt(lim['ed25519_sign_per_s'])}/s / {fmt(lim['ed25519_verify_per_s'])}/s |"]
for b, e in sorted(rocks.items()):
    md.append(f"| RocksDB synced WriteBatch of {b} entries (the server's commit) | {fmt(e)} entries/s |")
md.append("")
scales = sorted({r["scale"] for r in rows if r["scale"]})
def get(kind, scale):
    return [r for r in rows if r["kind"] == kind and r["scale"] == scale]
md += ["## Figures by scale", "",
       "| figure | " + " | ".join(f"{s:,} entries" for s in scales) + " | limit |",
       "|---|" + "---|" * len(scales) + "---|"]
def line(name, vals, limit=""):
    md.append(f"| {name} | " + " | ".join(vals) + f" | {limit} |")
for c in (1, 16, 64, 256):
    vals = []
    for s in scales:
        r = next((x["result"] for x in get("single", s) if x["result"]["clients"] == c), None)
        vals.append(f"{fmt(r['appends_per_s'])}/s (p99 {r['p99_ms']:.1f} ms)" if r else "-")
    line(f"durable single appends, {c} clients", vals, f"{fmt(rocks.get(1, 0))}/s at 1 per commit; {fmt(rocks.get(64, 0))}/s at 64")
def same_limit(s):
    """The raw limit for the server's own commits at scale s: size, rate."""
    x = get("limit-batched", s)[0]["result"]["rocksdb_synced"][0]
    return x["batch"], x["entries_per_s"]
vals = []
for s in scales:
    r = get("batched", s)[0]["result"]
    vals.append(f"{fmt(r['appends_per_s'])}/s")
line("durable appends, 16 clients x AppendBatch(64)", vals, f"{fmt(rocks.get(1024, 0))}/s at 1024 per commit")
line("the server's commits under that load (mean entries per commit)", [fmt(same_limit(s)[0]) for s in scales])
line("RocksDB limit for commits of that size (measured after the run)", [f"{fmt(same_limit(s)[1])}/s" for s in scales])
line("batched appends as a share of that limit (target ≥ 50%)",
     [f"{100 * get('batched', s)[0]['result']['appends_per_s'] / same_limit(s)[1]:.0f}%" for s in scales],
     f"at 1024 per commit: " + " / ".join(f"{100 * get('batched', s)[0]['result']['appends_per_s'] / rocks.get(1024, 1):.0f}%" for s in scales))
for pct in (25, 50, 75):
    vals = []
    for s in scales:
        r = get(f"latency-{pct}", s)[0]["result"]
        vals.append(f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f} / {r['p999_ms']:.1f} ms at {fmt(r['appends_per_s'])}/s")
    line(f"submit to verified proof p50/p99/p999 at {pct}% of the single-append peak", vals)
line("inclusion proofs/s, cold cache (2 tiles; every tile read from RocksDB)", [fmt(get("cold", s)[0]["result"]["proofs_per_s"]) for s in scales])
if len(scales) >= 2:
    import math
    base = get("cold", scales[0])[0]["result"]["proofs_per_s"]
    line("cold proof cost relative to the smallest scale / log2 n relative",
         [f"{base / get('cold', s)[0]['result']['proofs_per_s']:.2f} / {math.log2(s) / math.log2(scales[0]):.2f}" for s in scales])
for key, name in (("proofs_per_s", "inclusion proofs/s (64 clients)"), ("consistency_per_s", "consistency proofs/s (64 clients)"),
                  ("stream_entries_per_s", "entries streamed/s (one GetEntries)")):
    line(name, [fmt(get("reads", s)[0]["result"][key]) for s in scales])
line("artifact query, one page of 100: p50 / p99", [f"{get('reads', s)[0]['result']['query_p50_ms']:.2f} / {get('reads', s)[0]['result']['query_p99_ms']:.2f} ms" for s in scales])
line("monitor audit from scratch (entries/s)", [f"{fmt(get('monitor', s)[0]['result']['entries_per_s'])} (of {fmt(get('monitor', s)[0]['result']['entries'])})" for s in scales],
     f"hashing: {fmt(lim['sha256_leaf_per_s'])}/s leaf hashes")
line("disk per entry beside the leaves (compacted)", [f"{get('disk', s)[0]['result']['overhead_bytes_per_entry']:.1f} B" for s in scales], "target 120 B")
line("leaves as stored (LZ4) per entry", [f"{get('disk', s)[0]['result']['leaf_bytes_stored'] / max(get('disk', s)[0]['result']['entries'], 1):.1f} B" for s in scales])
line("server max RSS", [f"{get('rss', s)[0]['result']['server_max_rss_kib'] / 1024:.0f} MiB" for s in scales], "target < 1 GiB")
line("monitor max RSS", [f"{get('monitor', s)[0]['result']['max_rss_kib'] / 1024:.0f} MiB" for s in scales])
if len(scales) >= 2:
    a = get("batched", scales[0])[0]["result"]["appends_per_s"]
    b = get("batched", scales[-1])[0]["result"]["appends_per_s"]
    md += ["", f"Batched throughput at {scales[-1]:,} is {100 * b / a:.0f}% of that at {scales[0]:,} (target: at least 80%)."]
md += ["", "Reads are measured first at each scale, on exactly that many entries; the append figures then add entries.",
       "", "## Commands", ""]
for r in rows:
    md.append(f"- `{r['command']}`")
open(os.path.join(out, "report.md"), "w").write("\n".join(md) + "\n")
json.dump({"machine": m, "results": rows}, open(os.path.join(out, "report.json"), "w"), indent=1)
print("\n".join(md))
PY
echo
echo "report: $OUT/report.md and $OUT/report.json"
