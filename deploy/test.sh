#!/usr/bin/env bash
# Runs every test, as CI does: formatting, lints (warnings fail), then the
# whole workspace's tests against a real etcd and MongoDB-wire server that
# deploy/test-env.sh starts (and installs first, if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

ensure_system_packages
ensure_mongo_wire
ensure_test_tools

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test against real etcd + MongoDB-wire"
deploy/test-env.sh cargo test --workspace --all-targets --locked
