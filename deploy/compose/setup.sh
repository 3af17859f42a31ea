#!/bin/sh
# The compose setup service: creates the log (once), the token issuer, and
# the tokens of the monitor and the demo submitter, on the shared volume.
set -eu
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
echo "setup: log $(cat /shared/verifier.key); tokens minted"
