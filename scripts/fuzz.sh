#!/usr/bin/env bash
# Fuzzing. Two parts:
#  1. cargo-fuzz (libFuzzer, nightly, AddressSanitizer) on every parser in
#     tlog-core: signed notes, checkpoints, verifier keys, proofs, leaves,
#     events as JSON, evidence bundles, tile paths and entry bundles,
#     tlog-proof files. SECONDS per target (default 60).
#  2. The property tests that feed hostile input to the other parsers
#     (server and monitor configuration, Cedar policy, the witness's
#     state file), with many more
#     cases than the normal test run (PROPTEST_CASES, default 20000).
# Findings are kept in fuzz/artifacts/<target>/ (a crash fails the script);
# fixed ones are kept in fuzz/regressions/<target>/ and replayed every run.
#
# Usage: scripts/fuzz.sh [SECONDS] [PROPTEST_CASES]   (TARGETS="leaf bundle" for some)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
SECS="${1:-60}"
CASES="${2:-20000}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
cd fuzz
for t in ${TARGETS:-note checkpoint vkey proof leaf event_json bundle tiles tlog_proof policy witness}; do
  echo "== fuzz $t ($SECS s)"
  # Crashes of earlier runs are fixed and kept in regressions/: start clean.
  rm -rf "artifacts/$t"
  mkdir -p "corpus/$t" "regressions/$t"
  # regressions/<target> holds every input that once crashed: replayed first.
  cargo +nightly fuzz run "$t" "corpus/$t" "regressions/$t" -- -max_total_time="$SECS" -print_final_stats=1 2>&1 \
    | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==.*ERROR|SUMMARY|Done)' || true
  if ls "artifacts/$t"/crash-* >/dev/null 2>&1; then
    echo "fuzz: $t crashed; inputs in fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
cd ..
echo "== property tests with PROPTEST_CASES=$CASES"
PROPTEST_CASES="$CASES" cargo test --locked -p tlog-core --test tests -- properties
PROPTEST_CASES="$CASES" cargo test --locked -p tlog-server --test tests -- parsers
PROPTEST_CASES="$CASES" cargo test --locked -p tlog-monitor --lib -- config
# The witness's slot-file reader (monitor/src/slots.rs): any bytes on disk.
PROPTEST_CASES="$CASES" cargo test --locked -p tlog-monitor --lib -- slots
