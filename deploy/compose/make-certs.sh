#!/usr/bin/env sh
# TLS material for the compose demo: a CA and the server's certificate
# (names "server" and "localhost"), written to ./certs. Run once before
# `docker compose up` (or `podman compose up`). Demo only: for production
# use your own CA and keep the keys out of the repository. Keys are ECDSA
# P-256: every mainstream gRPC client takes them (gRPC C-core, behind Python,
# C++ and Ruby, cannot use an Ed25519 server key).
#
# Usage: deploy/compose/make-certs.sh [OUT_DIR]
set -eu
OUT="${1:-$(dirname "$0")/certs}"
mkdir -p "$OUT"
cd "$OUT"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
  -subj "/CN=tlog compose demo CA" \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=server" \
  -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:server,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \
  -extfile server.ext -out server.pem 2>/dev/null
rm -f server.csr server.ext ca.srl
# The server runs as uid 10001 in the image and must read its key.
chmod 0644 ca.pem server.pem
chmod 0600 server.key ca.key
echo "wrote $(pwd)/ca.pem, server.pem, server.key"
