#!/usr/bin/env bash
# The main job, on a fresh data directory: start a log server, submit a
# model's lifecycle events with the tlog CLI (each answer carries an
# inclusion proof that the CLI verifies against the signed checkpoint), prove
# an earlier entry again, show the signed checkpoint, and stop the server.
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
cleanup() {
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

echo "== tlog-server serve"
"$BIN/tlog-server" serve --data-dir "$DATA" --listen 127.0.0.1:0 \
  --ready-file "$WORK/ready" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do [ -s "$WORK/ready" ] && break; sleep 0.1; done
[ -s "$WORK/ready" ] || { echo "server did not start:"; cat "$WORK/server.log"; exit 1; }
URL="http://$(head -n1 "$WORK/ready")"
echo "listening on $URL"
export TLOG_SERVER="$URL" TLOG_VKEY="$VKEY"

DIGEST="sha256:$(printf 'fraud-model 1.4.2 weights' | sha256sum | cut -d' ' -f1)"
submit() {
  local id="$1" action="$2"; shift 2
  echo
  echo "-- tlog submit --action $action $*"
  "$BIN/tlog" submit --source registry.demo --event-id "$id" --action "$action" \
    --artifact team-a/fraud-model --version 1.4.2 --digest "$DIGEST" "$@"
}
submit evt-1 register --actor alice@example.com --interface registry-ui
submit evt-2 upload --actor ci-bot --interface ci-pipeline --uri s3://models/fraud/1.4.2
submit evt-3 approve --actor bob@example.com --justification "passed eval suite"
submit evt-4 promote --actor release-bot --environment staging
submit evt-5 deploy --actor release-bot --environment production --ticket CHG-1234
submit evt-6 download --actor inference-node-7 --interface api
echo
echo "-- a retry of evt-1 returns the original entry"
submit evt-1 register --actor alice@example.com --interface registry-ui

echo
echo "== tlog prove 0 (fetch entry 0 and verify it in the latest checkpoint)"
"$BIN/tlog" prove 0
echo
echo "== tlog checkpoint (signature verified with the pinned key)"
"$BIN/tlog" checkpoint

echo
echo "== stopping the server (SIGTERM: finishes in-flight work, exits 0)"
kill -TERM "$SERVER_PID"
wait "$SERVER_PID"
SERVER_PID=""
echo "done. Server log: $WORK/server.log; data: $DATA"
