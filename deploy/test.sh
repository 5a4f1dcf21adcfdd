#!/usr/bin/env bash
# Runs every test, as CI does: formatting, lints (warnings fail), the
# deployment files (systemd units, nginx config), the whole workspace's tests,
# the chaos suite, and the web admin's browser tests against a real etcd and MongoDB-wire server that
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
log "deployment files (systemd-analyze verify, nginx -t)"
deploy/check-deploy.sh
log "cargo test against real etcd + MongoDB-wire (chaos suite included)"
rm -f target/chaos-report.md
deploy/test-env.sh cargo test --workspace --all-targets --locked
log "schemathesis against the OpenAPI document"
deploy/test-env.sh deploy/schemathesis.sh
log "web admin in a real browser (chromium + playwright-core)"
deploy/test-env.sh ui/run-e2e.sh
log "chaos suite figures (target/chaos-report.md)"
cat target/chaos-report.md
