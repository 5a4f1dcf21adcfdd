#!/usr/bin/env bash
# Starts a local rcron cluster in the foreground: etcd, a MongoDB-wire
# server, one master and one worker, all on loopback. Ctrl-C stops it all.
#
#   deploy/local-cluster.sh
#
# Installs what is missing (apt: etcd, protoc; pip: nx-27017 in a venv
# under ~/.cache/rcron), builds the release binaries, and keeps its data in
# $RCRON_CLUSTER_DIR (default ~/.local/share/rcron/local-cluster), so jobs
# and logs survive a restart. Ports: RCRON_ETCD_PORT (2379),
# RCRON_MONGO_PORT (27017), RCRON_MASTER_PORT (8070).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"

etcd_port=${RCRON_ETCD_PORT:-2379}
mongo_port=${RCRON_MONGO_PORT:-27017}
master_port=${RCRON_MASTER_PORT:-8070}
dir=${RCRON_CLUSTER_DIR:-$HOME/.local/share/rcron/local-cluster}

for p in "$etcd_port" "$mongo_port" "$master_port"; do
  if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$p),0.3).close()" 2>/dev/null; then
    die "port $p is already in use (is a cluster already running?); set RCRON_*_PORT to use others"
  fi
done

ensure_system_packages
ensure_mongo_wire
command -v cargo >/dev/null || die "cargo is needed to build rcron (https://rustup.rs)"
log "building rcron-master and rcron-worker (release)"
(cd "$root" && cargo build --release --locked -p rcron-master -p rcron-worker)

mkdir -p "$dir"
ETCD_PID="" MONGO_PID="" MASTER_PID="" WORKER_PID=""
cleanup() {
  log "stopping"
  stop_pid "$WORKER_PID"; stop_pid "$MASTER_PID"; stop_pid "$MONGO_PID"; stop_pid "$ETCD_PID"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

start_etcd "$dir/etcd" "$etcd_port"
start_mongo "$dir/mongo" "$mongo_port"

export RCRON_ETCD_ENDPOINTS="127.0.0.1:$etcd_port"
export RCRON_MONGO_URI="mongodb://127.0.0.1:$mongo_port"
export RCRON_LISTEN="127.0.0.1:$master_port"
export RCRON_SPILL_DIR="$dir/spill"
"$root/target/release/rcron-master" >"$dir/master.log" 2>&1 &
MASTER_PID=$!
"$root/target/release/rcron-worker" >"$dir/worker.log" 2>&1 &
WORKER_PID=$!
wait_port 127.0.0.1 "$master_port" 30 rcron-master

base="http://127.0.0.1:$master_port"
cat <<MSG

rcron is running (logs and data in $dir):
  web admin   $base/
  REST API    $base/api/v1/jobs   (OpenAPI: $base/api/v1/openapi.json)
  Swagger UI  $base/docs
  etcd        127.0.0.1:$etcd_port    MongoDB-wire  127.0.0.1:$mongo_port

Add a job that prints hello every 5 seconds, then read its log:
  curl -d 'job={"name":"job1","command":"echo hello","cronExpr":"*/5 * * * * * *"}' $base/job/save
  curl '$base/job/log?name=job1'

Ctrl-C stops the cluster.
MSG
# Exit (and clean up) as soon as any process dies.
wait -n "$ETCD_PID" "$MONGO_PID" "$MASTER_PID" "$WORKER_PID" || true
log "a process exited; see the logs in $dir"
