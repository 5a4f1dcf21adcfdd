#!/usr/bin/env bash
# Runs the browser tests of the web admin: starts a master and a worker on
# the etcd and MongoDB-wire server of deploy/test-env.sh, then
# `node --test ui/tests/` with Debian's chromium. Screenshots go to
# target/ui-artifacts/.
#   deploy/test-env.sh ui/run-e2e.sh [tests/FILE.test.mjs ...]
# (files relative to ui/; all of tests/ by default).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$root/deploy/lib.sh"
[ -n "${RCRON_TEST_ETCD:-}" ] || die "RCRON_TEST_ETCD is not set: run through deploy/test-env.sh"

apt_install chromium
# The machine image ships node and npm; Debian's packages only when they are missing.
command -v npm >/dev/null || apt_install nodejs npm
command -v node >/dev/null || die "node is needed"
(cd "$here" && [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --silent)
(cd "$root" && cargo build -q -p rcron-master -p rcron-worker)
# Cargo's own target directory (CARGO_TARGET_DIR when set), so the binaries
# run are the ones just built.
target=${CARGO_TARGET_DIR:-$root/target}
case $target in /*) ;; *) target=$root/$target ;; esac

work=$(mktemp -d /tmp/rcron-ui-e2e.XXXXXX)
MASTER_PID="" WORKER_PID=""
cleanup() { stop_pid "$WORKER_PID"; stop_pid "$MASTER_PID"; rm -rf "$work"; }
trap cleanup EXIT

port=$(free_port)
export RCRON_ETCD_ENDPOINTS="$RCRON_TEST_ETCD" RCRON_ETCD_PREFIX="/rcron-ui-$$-$RANDOM/"
export RCRON_MONGO_URI="$RCRON_TEST_MONGO" RCRON_MONGO_DB="rcron_ui_$$_$RANDOM"
RCRON_LISTEN="127.0.0.1:$port" "$target/debug/rcron-master" >"$work/master.log" 2>&1 &
MASTER_PID=$!
# The worker carries labels, so the tests can place jobs on it (and on
# labels it lacks); jobs without a target run on it as before.
export RCRON_UI_WORKER_LABELS="role=ui-e2e,zone=e2e-1"
# Its HTTP listener serves the live output of its runs to the master (on
# loopback no cluster secret is needed); METRICS_LISTEN is the older name.
wport=$(free_port)
RCRON_WORKER_LABELS="$RCRON_UI_WORKER_LABELS" RCRON_SPILL_DIR="$work/spill" \
  RCRON_HTTP_LISTEN="127.0.0.1:$wport" RCRON_METRICS_LISTEN="127.0.0.1:$wport" RCRON_DRAIN_SECS=1 \
  "$target/debug/rcron-worker" >"$work/worker.log" 2>&1 &
WORKER_PID=$!
wait_port 127.0.0.1 "$port" 30 rcron-master

export RCRON_UI_URL="http://127.0.0.1:$port" RCRON_UI_ARTIFACTS="$root/target/ui-artifacts"
# One file at a time, in name order: the tests share the master, and some
# need its job list to themselves (an empty list, a count of 130 jobs).
log "screenshots: $RCRON_UI_ARTIFACTS/"
if ! (cd "$here" && node --test --test-concurrency=1 "${@:-tests/}"); then
  log "master log:"; tail -20 "$work/master.log" >&2
  log "worker log:"; tail -20 "$work/worker.log" >&2
  exit 1
fi
