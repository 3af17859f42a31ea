#!/bin/sh
# The compose demo submitter: one model's lifecycle through the tlog CLI,
# each answer verified (signature, inclusion proof, consistency with the
# trusted checkpoint), then an unexpected second digest for the same
# version, which the monitor reports as digest-conflict.
set -eu
export TLOG_SERVER=https://server:7400
export TLOG_VKEY="$(cat /shared/verifier.key)"
export TLOG_TOKEN="$(cat /shared/submitter.token)"
export TLOG_STATE=/tmp/trusted-checkpoint
CA="--ca-file /etc/tlog/certs/ca.pem"
D1=sha256:$(printf 'fraud-model 1.4.2' | sha256sum | cut -d' ' -f1)
D2=sha256:$(printf 'something else' | sha256sum | cut -d' ' -f1)
n=0
sub() { # action version digest [extra...]
  n=$((n + 1))
  a="$1"; v="$2"; d="$3"; shift 3
  # shellcheck disable=SC2086
  tlog $CA submit --source compose-demo --event-id "compose-$(date +%s)-$n" --action "$a" \
    --artifact team-a/fraud-model --version "$v" --digest "$d" --actor ci@team-a "$@"
}
sub register 1.4.2 "$D1"
sub upload 1.4.2 "$D1"
sub approve 1.4.2 "$D1" --environment production
sub promote 1.4.2 "$D1" --environment production
# Signed by the release pipeline: the example policy forbids an unsigned
# production deploy.
sub deploy 1.4.2 "$D1" --environment production --sign-key /shared/release-pipeline.key
sub download 1.4.2 "$D1"
echo "== planted: the same version with another digest"
sub upload 1.4.2 "$D2"
# shellcheck disable=SC2086
tlog $CA query --artifact team-a/fraud-model
