#!/usr/bin/env bash
# Runs every test in the workspace (unit, integration, property, end-to-end,
# and the backup-and-restore script),
# after installing what a fresh machine lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --tests
. scripts/env.sh
# The end-to-end tests start the real binaries: build them first.
cargo build --workspace --bins --locked
cargo test --workspace --all-targets --locked "$@"
./scripts/backup-test.sh
