#!/usr/bin/env bash
# Measures what access control costs: the same append and proof load
#   A) plaintext, no authentication or policy (the issue [2/8] setting),
#   B) TLS, a bearer token on every call, a Cedar policy, the access log,
#   C) B plus ledger auditing (access records appended to the log itself).
# Release build; server and load generator share this machine.
# Usage: scripts/bench-access.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
SECS="${1:-10}"
cargo build --release --locked --quiet -p tlog-server -p tlog-bench --bins
BIN="$CARGO_TARGET_DIR/release/tlog-server"
BENCH="$CARGO_TARGET_DIR/release/tlog-bench"
W="$(mktemp -d "${TMPDIR:-/tmp}/tlog-bench-access.XXXXXX")"
PID=""
trap '[ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null; wait 2>/dev/null || true' EXIT

# TLS material (server certificate for localhost, signed by a test CA).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=bench CA" -keyout "$W/ca.key" -out "$W/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$W/server.key" -out "$W/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$W/ext"
openssl x509 -req -in "$W/server.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial \
  -days 2 -extfile "$W/ext" -out "$W/server.pem" 2>/dev/null
# Token issuer and a token for the load generator.
"$BIN" token keygen --kid bench-1 --key-out "$W/op.key" --jwks-out "$W/op.jwks" 2>/dev/null
TOKEN="$("$BIN" token mint --key "$W/op.key" --kid bench-1 --issuer https://bench.example \
  --audience tlog --subject bench-client --role bench --ttl 30m)"
cat > "$W/policy.cedar" <<'POLICY'
@id("bench-submit")
permit (principal in Tlog::Role::"bench", action in Tlog::Action::"submit", resource is Tlog::Artifact)
when { resource.name like "bench/*" };
@id("bench-read")
permit (principal in Tlog::Role::"bench", action in [Tlog::Action::"read-checkpoints", Tlog::Action::"read-proofs"], resource is Tlog::Log);
POLICY

run() { # name, extra config, bench flags...
  local name="$1" extra="$2"; shift 2
  rm -rf "$W/data"
  "$BIN" init --data-dir "$W/data" --origin bench.example/log >/dev/null 2>&1
  printf 'data_dir = "%s"\nlisten = "127.0.0.1:0"\n%s\n' "$W/data" "$extra" > "$W/server.toml"
  RUST_LOG=warn "$BIN" serve --config "$W/server.toml" --ready-file "$W/ready" >"$W/server-$name.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do [ -s "$W/ready" ] && break; sleep 0.1; done
  local addr; addr="$(head -n1 "$W/ready")"; rm -f "$W/ready"
  echo "== $name: 64 clients, single appends, then proofs"
  "$BENCH" run --duration "${SECS}s" --clients 64 --proof-duration "${SECS}s" "$@" --addr "$(scheme "$name")://$addr"
  echo "== $name: 16 clients, AppendBatch of 64"
  "$BENCH" run --duration "${SECS}s" --clients 16 --batch 64 --proof-duration 0s "$@" --addr "$(scheme "$name")://$addr"
  kill -TERM "$PID"; wait "$PID" || true; PID=""
}
scheme() { [ "$1" = A ] && echo http || echo https; }
auth() { # extra [auth] lines
  printf '[tls]\ncert_file = "%s"\nkey_file = "%s"\n[auth]\npolicy_file = "%s"\naccess_log = "%s"\n%s\n' \
    "$W/server.pem" "$W/server.key" "$W/policy.cedar" "$W/access.log" "$1"
  printf '[[auth.token_issuers]]\nissuer = "https://bench.example"\naudience = "tlog"\njwks_file = "%s"\n' "$W/op.jwks"
}
TLSFLAGS=(--ca-file "$W/ca.pem" --tls-domain localhost --token "$TOKEN")
run A ""
run B "$(auth "")" "${TLSFLAGS[@]}"
run C "$(auth "ledger_audit = true")" "${TLSFLAGS[@]}"
echo "access records written in B and C (with rotated files): $(cat "$W"/access.log* | wc -l)"
