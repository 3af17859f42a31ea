# Sourced by the scripts: one shared build folder outside the clone, so that
# RocksDB's C++ (most of a clean build) is compiled once per machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tlog-target}"
