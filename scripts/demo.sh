#!/usr/bin/env bash
# The main job, on a fresh data directory, with access control on: start a
# log server under the example policy (deploy/policy/policy.cedar) with
# tokens for its roles (registry, CI, release manager, auditor, monitor),
# submit two models' lifecycles with the tlog CLI (each answer carries an
# inclusion proof that the CLI verifies against the signed checkpoint, and
# each checkpoint is proven consistent with the one trusted before), see a
# refusal and where it is recorded, query and report one model's history
# as an auditor, export it as an evidence bundle, stop the server, and
# verify the bundle offline.
# Everything it starts is stopped on exit or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh

echo "== building (the first build compiles RocksDB: about 11 minutes on 2 cores)"
cargo build --workspace --bins --locked --quiet
BIN="$CARGO_TARGET_DIR/debug"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tlog-demo.XXXXXX")"
SERVER_PID=""
MONITOR_PID=""
cleanup() {
  if [ -n "$MONITOR_PID" ] && kill -0 "$MONITOR_PID" 2>/dev/null; then
    kill -TERM "$MONITOR_PID" 2>/dev/null || true
    wait "$MONITOR_PID" 2>/dev/null || true
  fi
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DATA="$WORK/data"
echo "== tlog-server init (fresh data directory $DATA)"
VKEY="$("$BIN/tlog-server" init --data-dir "$DATA" --origin demo.tlog.example/models)"
echo "verifier key: $VKEY"

echo "== access control: a token issuer, and a token for each role of the example policy"
"$BIN/tlog-server" token keygen --kid demo-1 --key-out "$WORK/issuer.key" \
  --jwks-out "$WORK/issuer.jwks" >/dev/null 2>&1
mint() { # subject role
  "$BIN/tlog-server" token mint --key "$WORK/issuer.key" --kid demo-1 \
    --issuer https://issuer.demo.example --audience tlog --subject "$1" --role "$2" --ttl 1h
}
REGISTRY="$(mint registry.demo registry)"
CI="$(mint ci-bot ci)"
RELEASE="$(mint release-manager@example.com release-manager)"
AUDITOR="$(mint auditor-ann@example.com auditor)"
(umask 077; mint tlog-monitor monitor >"$WORK/monitor.token")
echo "tokens minted for registry.demo (registry), ci-bot (ci),"
echo "  release-manager@example.com (release-manager), auditor-ann@example.com (auditor), tlog-monitor (monitor)"
echo "-- the release pipeline's signing key: the policy requires its signature on production deploys"
PIPELINE_VKEY="$("$BIN/tlog" keygen --name release-pipeline -o "$WORK/release-pipeline.key")"
cat >"$WORK/server.toml" <<EOF
[auth]
policy_file = "$PWD/deploy/policy/policy.cedar"
access_log = "$WORK/access.log"
ledger_audit = true
ledger_flush = "100ms"
trusted_signers = ["$PIPELINE_VKEY"]
[[auth.token_issuers]]
issuer = "https://issuer.demo.example"
audience = "tlog"
jwks_file = "$WORK/issuer.jwks"
max_lifetime = "2h"
EOF

echo
echo "== tlog-server serve (the example policy; every decision goes to $WORK/access.log and into the log itself)"
"$BIN/tlog-server" serve --data-dir "$DATA" --config "$WORK/server.toml" --listen 127.0.0.1:0 \
  --ready-file "$WORK/ready" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do [ -s "$WORK/ready" ] && break; sleep 0.1; done
[ -s "$WORK/ready" ] || { echo "server did not start:"; cat "$WORK/server.log"; exit 1; }
URL="http://$(head -n1 "$WORK/ready")"
echo "listening on $URL (plain HTTP on 127.0.0.1 for the demo; deploy/ has the TLS set-up)"
export TLOG_SERVER="$URL" TLOG_VKEY="$VKEY" TLOG_STATE="$WORK/trusted-checkpoint"

echo
echo "== tlog-monitor run (audits every checkpoint in full, runs the artifact rules)"
cat >"$WORK/monitor.toml" <<EOF
state_dir = "$WORK/monitor-state"
poll_interval = "500ms"
save_interval = "1s"
listen = "127.0.0.1:0"
[[log]]
name = "demo"
vkey = "$VKEY"
endpoints = ["$URL"]
token_file = "$WORK/monitor.token"
[[rules.require_approval]]
environments = ["production"]
[[rules.version_patterns]]
namespace = "team-*"
pattern = '\d+\.\d+\.\d+'
EOF
"$BIN/tlog-monitor" run --config "$WORK/monitor.toml" --ready-file "$WORK/monitor.ready" \
  >"$WORK/alerts.jsonl" 2>"$WORK/monitor.log" &
MONITOR_PID=$!
for _ in $(seq 1 300); do [ -s "$WORK/monitor.ready" ] && break; sleep 0.1; done
[ -s "$WORK/monitor.ready" ] || { echo "monitor did not start:"; cat "$WORK/monitor.log"; exit 1; }
MONITOR_ADDR="$(head -n1 "$WORK/monitor.ready")"
echo "monitor: alerts to $WORK/alerts.jsonl, metrics and gossip on http://$MONITOR_ADDR"

DIGEST="sha256:$(printf 'fraud-model 1.4.2 weights' | sha256sum | cut -d' ' -f1)"
submit() { # token id action [flags]
  local token="$1" id="$2" action="$3"; shift 3
  echo
  echo "-- tlog submit --action $action $*"
  TLOG_TOKEN="$token" "$BIN/tlog" submit --source registry.demo --event-id "$id" --action "$action" \
    --artifact team-a/fraud-model --version 1.4.2 --digest "$DIGEST" "$@"
}
submit "$REGISTRY" evt-1 register --actor alice@example.com --interface registry-ui
# A size the log signed early on, to prove later trees extend it.
EARLY="$("$BIN/tlog" --json checkpoint | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])')"
submit "$CI" evt-2 upload --actor ci-bot --interface ci-pipeline --uri s3://models/fraud/1.4.2
submit "$RELEASE" evt-3 approve --actor bob@example.com --reason "passed eval suite"
submit "$CI" evt-4 promote --actor ci-bot --environment staging
echo
echo "== a refusal: a production deploy without the release pipeline's signature"
set +e
submit "$RELEASE" evt-5 deploy --actor release-bot --environment production --ticket CHG-1234
CODE=$?
set -e
echo "(exit code $CODE: refused by access control; nothing was appended, the refusal was recorded)"
submit "$RELEASE" evt-5 deploy --actor release-bot --environment production --ticket CHG-1234 \
  --sign-key "$WORK/release-pipeline.key"
submit "$REGISTRY" evt-6 download --actor inference-node-7 --interface api
echo
echo "-- a retry of evt-1 returns the original entry"
submit "$REGISTRY" evt-1 register --actor alice@example.com --interface registry-ui
FIRST="$(TLOG_TOKEN="$REGISTRY" "$BIN/tlog" --json submit --source registry.demo --event-id evt-1 \
  --action register --artifact team-a/fraud-model --version 1.4.2 --digest "$DIGEST" \
  --actor alice@example.com --interface registry-ui |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["index"])')"

echo
echo "== a second model arrives as JSONL: the registry's events, then the release manager's, signed with the pipeline's key"
RANKER="sha256:$(printf 'ranker 2.0.0 weights' | sha256sum | cut -d' ' -f1)"
cat >"$WORK/ranker-registry.jsonl" <<EOF
{"source":"ci.demo","event_id":"r-1","action":"register","artifact":{"name":"team-a/ranker","version":"2.0.0","digests":["$RANKER"]},"actor":"ci-bot","interface":"ci-pipeline","provenance":{"source_repo":"git@example.com:team-a/ranker","source_commit":"4f2a9c1","builder":"ci.demo/train-job/812"}}
{"source":"ci.demo","event_id":"r-2","action":"upload","artifact":{"name":"team-a/ranker","version":"2.0.0","digests":["$RANKER"],"uri":"s3://models/ranker/2.0.0"},"actor":"ci-bot","interface":"ci-pipeline"}
EOF
cat >"$WORK/ranker-release.jsonl" <<EOF
{"source":"ci.demo","event_id":"r-3","action":"approve","artifact":{"name":"team-a/ranker","version":"2.0.0","digests":["$RANKER"]},"actor":"carol@example.com","interface":"registry-ui","justification":"offline eval +2.1% NDCG"}
{"source":"ci.demo","event_id":"r-4","action":"deploy","environment":"production","artifact":{"name":"team-a/ranker","version":"2.0.0","digests":["$RANKER"]},"actor":"release-bot","interface":"ci-pipeline","ticket":"CHG-1301"}
EOF
echo "-- tlog submit --jsonl < ranker-registry.jsonl   (as registry.demo)"
TLOG_TOKEN="$REGISTRY" "$BIN/tlog" submit --jsonl <"$WORK/ranker-registry.jsonl"
echo "-- tlog submit --jsonl --sign-key ... < ranker-release.jsonl   (as release-manager@example.com)"
TLOG_TOKEN="$RELEASE" "$BIN/tlog" submit --jsonl --sign-key "$WORK/release-pipeline.key" \
  <"$WORK/ranker-release.jsonl"

# The reads, as the auditor: every query says why, and that is recorded.
export TLOG_TOKEN="$AUDITOR" TLOG_JUSTIFICATION="INC-1042: fraud-model review"
echo
echo "== tlog get $FIRST (as the auditor: fetch evt-1's entry, verify it, show what it records and who submitted it)"
"$BIN/tlog" get "$FIRST"
echo
echo "== tlog consistency $EARLY (the log as signed at size $EARLY is a prefix of the latest)"
"$BIN/tlog" consistency "$EARLY"
echo
echo "== tlog checkpoint (signature verified with the pinned key, consistent with the trusted state)"
"$BIN/tlog" checkpoint
echo
echo "== tlog query --artifact team-a/fraud-model (each entry proven in one checkpoint; the claimed actor beside the authenticated submitter)"
"$BIN/tlog" query --artifact team-a/fraud-model
echo
echo "== gossip: the client hands the checkpoint it verified to the monitor"
"$BIN/tlog" checkpoint 2>/dev/null >"$WORK/seen.checkpoint"
curl -sS --data-binary @"$WORK/seen.checkpoint" "http://$MONITOR_ADDR/gossip"

echo
echo "== planting an unexpected version: fraud-model 1.4.2 uploaded again with another digest"
TLOG_TOKEN="$CI" TLOG_JUSTIFICATION="" "$BIN/tlog" submit --source registry.demo --event-id evt-7 --action upload \
  --artifact team-a/fraud-model --version 1.4.2 --actor mallory --interface api \
  --digest "sha256:$(printf 'tampered weights' | sha256sum | cut -d' ' -f1)" >/dev/null
for _ in $(seq 1 100); do grep -q digest-conflict "$WORK/alerts.jsonl" 2>/dev/null && break; sleep 0.1; done
echo "-- the monitor's alert:"
grep digest-conflict "$WORK/alerts.jsonl" || { echo "no alert"; cat "$WORK/monitor.log"; exit 1; }

echo
echo "== the access log: every decision, allowed or denied ($WORK/access.log)"
echo "-- the refused deploy:"
grep '"decision":"deny"' "$WORK/access.log" | grep Append | head -n 1
echo "-- the newest two:"
tail -n 2 "$WORK/access.log"
echo
echo "== the same records in the log itself (ledger auditing): the newest entry, proven like any other"
sleep 0.3
SIZE="$("$BIN/tlog" --json checkpoint | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])')"
"$BIN/tlog" get "$((SIZE - 1))"

echo
echo "== tlog export: an evidence bundle for the fraud model, and the investigator's report"
"$BIN/tlog" export --artifact team-a/fraud-model -o "$WORK/fraud-model.bundle.json"
"$BIN/tlog" report --artifact team-a/fraud-model --format html -o "$WORK/fraud-model.report.html"

echo
echo "== stopping the monitor and the server (SIGTERM: both finish and exit 0)"
kill -TERM "$MONITOR_PID"
wait "$MONITOR_PID"
MONITOR_PID=""
kill -TERM "$SERVER_PID"
wait "$SERVER_PID"
SERVER_PID=""

echo
echo "== tlog verify-bundle, with the server gone: no network needed"
"$BIN/tlog" verify-bundle "$WORK/fraud-model.bundle.json" --vkey "$VKEY"
echo
echo "done."
echo "  investigator's report (one self-contained page): $WORK/fraud-model.report.html"
echo "  evidence bundle: $WORK/fraud-model.bundle.json"
echo "  monitor alerts: $WORK/alerts.jsonl"
echo "  server log: $WORK/server.log; data: $DATA"
