#!/usr/bin/env bash
# The long crash test: the real server under concurrent appends, killed
# with SIGKILL at random moments, CYCLES times (default 50), every
# invariant checked after each restart (see tests/tests/crash.rs). The
# normal test run does 5 cycles. TLOG_CRASH_SEED=N replays a run.
#
# Usage: scripts/crash-test.sh [CYCLES]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
cargo build --workspace --bins --locked
TLOG_CRASH_CYCLES="${1:-50}" cargo test --locked -p tlog-e2e --test e2e -- \
  --exact crash::sigkill_under_concurrent_appends_loses_nothing_acknowledged --nocapture
