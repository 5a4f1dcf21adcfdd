#!/usr/bin/env bash
# Runs a command with a real etcd and a real MongoDB-wire server on free
# loopback ports, then stops them whatever happens.
#
#   deploy/test-env.sh cargo test --workspace
#
# Installs what is missing first (apt: etcd, protoc, make; pip: nx-27017 in a
# venv under ~/.cache/rcron). The command sees:
#   RCRON_TEST_ETCD       127.0.0.1:<port> of the shared etcd
#   RCRON_TEST_MONGO      mongodb://127.0.0.1:<port> of the shared server
#   RCRON_TEST_ETCD_BIN   etcd binary, for tests that run a private etcd
#   RCRON_TEST_MONGO_BIN  nx-27017 binary, for tests that stop/restart MongoDB
#   RCRON_TEST_PYTHON     a python with aiosmtpd, for tests that run an SMTP server
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ $# -gt 0 ] || die "usage: deploy/test-env.sh COMMAND [ARGS...]"

ensure_system_packages
ensure_mongo_wire
ensure_test_tools

work=$(mktemp -d /tmp/rcron-test-env.XXXXXX)
ETCD_PID="" MONGO_PID=""
cleanup() {
  stop_pid "$ETCD_PID"; stop_pid "$MONGO_PID"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

etcd_port=$(free_port)
start_etcd "$work/etcd" "$etcd_port"
mongo_port=$(free_port)
start_mongo "$work/mongo" "$mongo_port"

export RCRON_TEST_ETCD="127.0.0.1:$etcd_port"
export RCRON_TEST_MONGO="mongodb://127.0.0.1:$mongo_port"
export RCRON_TEST_ETCD_BIN="$(command -v etcd)"
export RCRON_TEST_MONGO_BIN="$NX_BIN"
export RCRON_TEST_PYTHON="$TOOLS_PYTHON"
# For benchmarks that account the servers' CPU time.
export RCRON_TEST_ETCD_PID="$ETCD_PID" RCRON_TEST_MONGO_PID="$MONGO_PID"
log "etcd at $RCRON_TEST_ETCD, MongoDB-wire at $RCRON_TEST_MONGO"

"$@"
