#!/usr/bin/env bash
# Backup and restore, end to end, with the real binaries:
#   1. a log with backup_dir set takes 40 events; SIGUSR1 writes an online
#      backup while appends continue; 40 more events;
#   2. `tlog-server restore` copies the backup to a new data directory and
#      checks that its tree gives its signed root;
#   3. the restored log refuses to start without the log's checkpoint
#      lock, and with it (the backup is 40 entries behind what the log
#      signed);
#   4. `tlog-server recover --from` the original data directory re-imports
#      the 40 entries, every one checked against the signed checkpoints;
#   5. the recovered log is served at the original's size, its entries
#      prove, and it appends again.
# Prints each step; exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
cargo build --workspace --bins --locked --quiet
BIN="$CARGO_TARGET_DIR/debug"
W="$(mktemp -d "${TMPDIR:-/tmp}/tlog-backup.XXXXXX")"
PIDS=()
cleanup() {
  # The servers were started inside $(...), so they are not this shell's
  # children and `wait` cannot wait for them: poll until each has exited
  # (a server still flushing RocksDB would race the rm below).
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  rm -rf "$W"
}
trap cleanup EXIT

serve() { # data_dir config ready -> pid
  "$BIN/tlog-server" serve --config "$2" --ready-file "$3" >"$1.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 300); do [ -s "$3" ] && break; sleep 0.1; done
  [ -s "$3" ] || { cat "$1.log"; exit 1; }
  echo "$pid"
}
submit() { # url n tag
  for i in $(seq 1 "$2"); do
    printf '{"source":"backup-test","event_id":"%s-%d","action":"download","artifact":{"name":"team-a/m","version":"1.0.0","digests":["sha256:%064d"]},"actor":"a","interface":"api"}\n' "$3" "$i" 0
  done | "$BIN/tlog" --server "$1" --vkey "$VKEY" --no-state submit --jsonl >/dev/null
}
size() { "$BIN/tlog" --server "$1" --vkey "$VKEY" --no-state --json checkpoint | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])'; }

echo "== a log with backup_dir"
VKEY="$("$BIN/tlog-server" init --data-dir "$W/data" --origin backup.example/log 2>/dev/null)"
cat >"$W/server.toml" <<CFG
data_dir = "$W/data"
listen = "127.0.0.1:0"
backup_dir = "$W/backups"
CFG
PID="$(serve "$W/server" "$W/server.toml" "$W/ready")"; PIDS+=("$PID")
URL="http://$(head -n1 "$W/ready")"
submit "$URL" 40 before
echo "== SIGUSR1: online backup at size $(size "$URL")"
kill -USR1 "$PID"
for _ in $(seq 1 100); do grep -q "backup written" "$W/server.log" && break; sleep 0.1; done
grep -q "backup written" "$W/server.log" || { echo "no backup written"; cat "$W/server.log"; exit 1; }
BACKUP="$(ls -d "$W"/backups/*/ | head -n1)"
submit "$URL" 40 after
ORIGINAL_SIZE="$(size "$URL")"
echo "   backup in $BACKUP; the original log went on to size $ORIGINAL_SIZE"

echo "== tlog-server restore"
"$BIN/tlog-server" restore --from "$BACKUP" --data-dir "$W/restored" --key-file "$W/data/log.key"

echo "== the restored log, alone, refuses to start: it has no checkpoint lock"
cat >"$W/restored.toml" <<CFG
data_dir = "$W/restored"
listen = "127.0.0.1:0"
CFG
if "$BIN/tlog-server" serve --config "$W/restored.toml" --ready-file "$W/ready-refused" >"$W/refused.log" 2>&1; then
  echo "a restored log without its checkpoint lock served"; exit 1
fi
grep -q "no checkpoint lock" "$W/refused.log" || { cat "$W/refused.log"; exit 1; }
[ ! -e "$W/ready-refused" ] || { echo "a refused server wrote its ready file"; exit 1; }

echo "== with the log's checkpoint lock it refuses too: the backup is behind it"
kill -TERM "$PID"; for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
cat >>"$W/restored.toml" <<CFG
checkpoint_lock = "$W/data/checkpoint.lock"
CFG
if "$BIN/tlog-server" serve --config "$W/restored.toml" --ready-file "$W/ready-refused" >"$W/refused.log" 2>&1; then
  echo "a rolled-back log served"; exit 1
fi
grep -q "rolled back" "$W/refused.log" || { cat "$W/refused.log"; exit 1; }
echo "   refused: $(grep -o 'the store holds [0-9]* entries, but the log signed a checkpoint at size [0-9]*' "$W/refused.log")"

echo "== tlog-server recover --from the original data directory"
"$BIN/tlog-server" recover --data-dir "$W/restored" --config "$W/restored.toml" --from "$W/data"

echo "== the restored log, served"
RPID="$(serve "$W/restored" "$W/restored.toml" "$W/ready2")"; PIDS+=("$RPID")
RURL="http://$(head -n1 "$W/ready2")"
RSIZE="$(size "$RURL")"
[ "$RSIZE" -eq "$ORIGINAL_SIZE" ] || { echo "recovered size $RSIZE, the original had $ORIGINAL_SIZE"; exit 1; }
echo "   recovered size $RSIZE"
"$BIN/tlog" --server "$RURL" --vkey "$VKEY" --state "$W/trust" checkpoint >/dev/null
for i in 0 17 39 40 79; do
  "$BIN/tlog" --server "$RURL" --vkey "$VKEY" --no-state prove "$i" >/dev/null
done
echo "   entries 0, 17, 39, 40, 79 prove against its checkpoint"
submit "$RURL" 5 resumed
"$BIN/tlog" --server "$RURL" --vkey "$VKEY" --state "$W/trust" checkpoint >/dev/null
echo "   it appends again, consistently with the checkpoint the original handed out"
echo "backup, restore and recover: OK"
