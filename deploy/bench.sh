#!/usr/bin/env bash
# Runs every benchmark in one go (figures, not pass/fail): the worker's
# firing lag and memory beside APScheduler's, etcd's write-transaction rate,
# and the end-to-end run rate of two workers against a real etcd and
# MongoDB-wire server that deploy/test-env.sh starts. Extra arguments go to
# rcron-bench (e.g. `--jobs 1000,10000 --seconds 5`). The report lands in
# target/bench-report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

ensure_system_packages
ensure_mongo_wire
ensure_bench_tools
cargo build --release --locked -p rcron-bench -p rcron-master
deploy/test-env.sh target/release/rcron-bench --cluster --api --peer-python "$BENCH_PYTHON" "$@"
