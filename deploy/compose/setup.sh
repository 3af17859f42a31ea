#!/bin/sh
# The compose setup service, run once as root before the others: creates the
# log, the token issuer and the tokens, the release pipeline's signing key,
# copies the TLS key in for the server's user, and writes the server's
# configuration with the pipeline's key as a trusted signer. Everything it
# leaves behind belongs to the image's user (uid 10001), mode 0600 for keys:
# the host's certs/ stays readable by its owner only.
set -eu
U=10001
if [ ! -e /var/lib/tlog/log.key ]; then
  tlog-server init --data-dir /var/lib/tlog --origin compose.tlog.example/models
fi
cp /var/lib/tlog/verifier.key /shared/verifier.key
if [ ! -e /shared/issuer.key ]; then
  tlog-server token keygen --kid setup-1 --key-out /shared/issuer.key --jwks-out /shared/issuer.jwks
fi
mint() { # subject roles...
  sub="$1"; shift
  roles=""
  for r in "$@"; do roles="$roles --role $r"; done
  # shellcheck disable=SC2086
  tlog-server token mint --key /shared/issuer.key --kid setup-1 \
    --issuer https://setup.compose.tlog.example --audience tlog \
    --subject "$sub" $roles --ttl 24h
}
mint monitor.compose monitor >/shared/monitor.token
mint registry.compose registry release-manager >/shared/submitter.token
# The release pipeline's key: the example policy requires its signature on
# every production deploy.
if [ ! -e /shared/release-pipeline.key ]; then
  tlog keygen --name release-pipeline -o /shared/release-pipeline.key >/shared/release-pipeline.vkey
fi
# The server's configuration: the mounted template, with the trusted signer.
sed "/^\[auth\]\$/a trusted_signers = [\"$(cat /shared/release-pipeline.vkey)\"]" \
  /etc/tlog/server.toml.in >/shared/server.toml
# TLS for the server's user; the host's key need not be readable by it.
install -d -m 0700 /shared/tls
install -m 0644 /certs-in/server.pem /shared/tls/server.pem
install -m 0600 /certs-in/server.key /shared/tls/server.key
chown -R "$U:$U" /var/lib/tlog /shared
chmod 0600 /shared/*.key /shared/*.token /var/lib/tlog/log.key
echo "setup: log $(cat /shared/verifier.key); tokens minted; release-pipeline is a trusted signer"
