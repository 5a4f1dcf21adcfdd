#!/usr/bin/env bash
# Starts a local rcron cluster in the foreground on loopback: etcd, a
# MongoDB-wire server, masters and workers. Ctrl-C stops it all.
#
#   deploy/local-cluster.sh              # 1 etcd, 1 master, 1 worker
#   deploy/local-cluster.sh --nodes 3    # 3-member etcd, 3 masters, 3 workers
#
# Installs what is missing (apt: etcd, protoc, make; pip: nx-27017 in a venv
# under ~/.cache/rcron), builds the release binaries, and keeps its data in
# $RCRON_CLUSTER_DIR (default ~/.local/share/rcron/local-cluster[-N]), so
# jobs and logs survive a restart. Ports: etcd from RCRON_ETCD_PORT (2379),
# MongoDB RCRON_MONGO_PORT (27017), masters from RCRON_MASTER_PORT (8070),
# worker metrics from 8071+10i.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"

nodes=1
while [ $# -gt 0 ]; do
  case $1 in
    --nodes) nodes=${2:?--nodes needs a number}; shift 2 ;;
    *) die "unknown argument $1 (usage: deploy/local-cluster.sh [--nodes N])" ;;
  esac
done
[[ $nodes =~ ^[1-9]$ ]] || die "--nodes takes 1 to 9"

etcd_port=${RCRON_ETCD_PORT:-2379}
mongo_port=${RCRON_MONGO_PORT:-27017}
master_port=${RCRON_MASTER_PORT:-8070}
suffix=""; [ "$nodes" -gt 1 ] && suffix="-$nodes"
dir=${RCRON_CLUSTER_DIR:-$HOME/.local/share/rcron/local-cluster$suffix}

ports=("$mongo_port")
for ((i = 0; i < nodes; i++)); do
  ports+=($((etcd_port + 2 * i)) $((etcd_port + 2 * i + 1)) $((master_port + 10 * i)) $((master_port + 10 * i + 1)))
done
for p in "${ports[@]}"; do
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
ETCD_PIDS="" MONGO_PID="" PIDS=()
cleanup() {
  log "stopping"
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  stop_pid "$MONGO_PID"
  for pid in $ETCD_PIDS; do stop_pid "$pid"; done
}
trap cleanup EXIT
trap 'exit 0' INT TERM

if [ "$nodes" -eq 1 ]; then
  start_etcd "$dir/etcd" "$etcd_port"
  ETCD_PIDS=$ETCD_PID
  ETCD_ENDPOINTS="127.0.0.1:$etcd_port"
else
  start_etcd_cluster "$dir/etcd" "$nodes" "$etcd_port"
fi
start_mongo "$dir/mongo" "$mongo_port"

export RCRON_ETCD_ENDPOINTS="$ETCD_ENDPOINTS"
export RCRON_MONGO_URI="mongodb://127.0.0.1:$mongo_port"
urls=()
for ((i = 0; i < nodes; i++)); do
  port=$((master_port + 10 * i))
  RCRON_MASTER_ID="master-$i" RCRON_LISTEN="127.0.0.1:$port" \
    "$root/target/release/rcron-master" >"$dir/master-$i.log" 2>&1 &
  PIDS+=($!)
  RCRON_WORKER_ID="worker-$i" RCRON_SPILL_DIR="$dir/spill-$i" RCRON_METRICS_LISTEN="127.0.0.1:$((port + 1))" \
    "$root/target/release/rcron-worker" >"$dir/worker-$i.log" 2>&1 &
  PIDS+=($!)
  urls+=("http://127.0.0.1:$port")
done
for ((i = 0; i < nodes; i++)); do wait_port 127.0.0.1 $((master_port + 10 * i)) 30 "rcron-master-$i"; done

base=${urls[0]}
cat <<MSG

rcron is running: $nodes master(s), $nodes worker(s), etcd at $ETCD_ENDPOINTS,
MongoDB-wire at 127.0.0.1:$mongo_port (logs and data in $dir).
  masters     ${urls[*]}
  REST API    $base/api/v1/jobs   (OpenAPI: $base/api/v1/openapi.json)
  Swagger UI  $base/docs
  cluster     $base/api/v1/cluster
  metrics     $base/metrics (master), http://127.0.0.1:$((master_port + 1))/metrics (worker)

Add a job that prints hello every 5 seconds, then read its log:
  curl -d 'job={"name":"job1","command":"echo hello","cronExpr":"*/5 * * * * * *"}' $base/job/save
  curl '$base/job/log?name=job1'

Ctrl-C stops the cluster.
MSG
# Exit (and clean up) as soon as any process dies.
# shellcheck disable=SC2086
wait -n $ETCD_PIDS "$MONGO_PID" "${PIDS[@]}" || true
log "a process exited; see the logs in $dir"
