# Shared helpers for the deploy/ scripts: install what is missing, find free
# loopback ports, start etcd and a MongoDB-wire server, wait for them.
# Sourced, not run.

RCRON_CACHE="${RCRON_CACHE:-$HOME/.cache/rcron}"
# MongoDB itself is not packaged for Debian; nx-27017 is a real MongoDB-wire
# server (SQLite-backed) from PyPI, installed into its own venv.
NX_VERSION="0.8.1"
NX_VENV="$RCRON_CACHE/venv-nx-$NX_VERSION"

log() { printf '[rcron] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $*"; fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} (apt)"
  as_root apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

# etcd, protoc (for etcd-client's build), make (for jemalloc's, the
# master's allocator), python venv support, and openssl (certificates for
# the etcd TLS test).
ensure_system_packages() {
  apt_install etcd-server etcd-client protobuf-compiler libprotobuf-dev make python3-venv curl openssl
}

ensure_mongo_wire() {
  if [ ! -x "$NX_VENV/bin/nx-27017" ]; then
    log "installing nx-27017==$NX_VERSION into $NX_VENV (pip)"
    mkdir -p "$RCRON_CACHE"
    python3 -m venv "$NX_VENV"
    "$NX_VENV/bin/pip" install -q "nx-27017==$NX_VERSION"
  fi
  NX_BIN="$NX_VENV/bin/nx-27017"
}

# A real SMTP server for alert tests (aiosmtpd, from PyPI, in its own venv).
AIOSMTPD_VERSION="1.4.6"
TOOLS_VENV="$RCRON_CACHE/venv-tools-2"
# Schemathesis checks the REST API against its own OpenAPI document.
SCHEMATHESIS_VERSION="4.32.5"
BENCH_VENV="$RCRON_CACHE/venv-bench-1"
APSCHEDULER_VERSION="3.11.0"
ensure_test_tools() {
  if [ ! -x "$TOOLS_VENV/bin/python" ] || ! "$TOOLS_VENV/bin/python" -c 'import aiosmtpd' 2>/dev/null \
    || [ ! -x "$TOOLS_VENV/bin/schemathesis" ]; then
    log "installing aiosmtpd==$AIOSMTPD_VERSION and schemathesis==$SCHEMATHESIS_VERSION into $TOOLS_VENV (pip)"
    mkdir -p "$RCRON_CACHE"
    python3 -m venv "$TOOLS_VENV"
    "$TOOLS_VENV/bin/pip" install -q "aiosmtpd==$AIOSMTPD_VERSION" "schemathesis==$SCHEMATHESIS_VERSION"
  fi
  TOOLS_PYTHON="$TOOLS_VENV/bin/python"
  SCHEMATHESIS="$TOOLS_VENV/bin/schemathesis"
}

# ensure_bench_tools: APScheduler, the peer rcron-bench compares against.
ensure_bench_tools() {
  if [ ! -x "$BENCH_VENV/bin/python" ] || ! "$BENCH_VENV/bin/python" -c 'import apscheduler' 2>/dev/null; then
    log "installing apscheduler==$APSCHEDULER_VERSION into $BENCH_VENV (pip)"
    mkdir -p "$RCRON_CACHE"
    python3 -m venv "$BENCH_VENV"
    "$BENCH_VENV/bin/pip" install -q "apscheduler==$APSCHEDULER_VERSION"
  fi
  BENCH_PYTHON="$BENCH_VENV/bin/python"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() { # host port seconds what
  local deadline=$((SECONDS + $3))
  until python3 -c "import socket,sys; socket.create_connection(('$1',$2),0.5).close()" 2>/dev/null; do
    [ $SECONDS -ge $deadline ] && die "$4 did not open $1:$2 within $3 s"
    sleep 0.2
  done
}

# start_etcd DIR PORT: a single-member etcd on loopback, data in DIR.
start_etcd() {
  local dir=$1 port=$2 peer
  peer=$(free_port)
  mkdir -p "$dir"
  etcd --name rcron-test --data-dir "$dir/data" \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "rcron-test=http://127.0.0.1:$peer" >"$dir/etcd.log" 2>&1 &
  ETCD_PID=$!
  wait_port 127.0.0.1 "$port" 30 etcd
  local deadline=$((SECONDS + 30))
  until ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" endpoint health >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && die "etcd not healthy; see $dir/etcd.log"
    sleep 0.2
  done
}

# start_etcd_cluster DIR N FIRST_PORT: an N-member etcd cluster on loopback;
# member i serves clients on FIRST_PORT+2i and peers on FIRST_PORT+2i+1.
# Sets ETCD_PIDS and ETCD_ENDPOINTS (comma-separated).
start_etcd_cluster() {
  local dir=$1 n=$2 first=$3 i initial="" pids=() eps=()
  for ((i = 0; i < n; i++)); do
    initial+="${initial:+,}e$i=http://127.0.0.1:$((first + 2 * i + 1))"
  done
  for ((i = 0; i < n; i++)); do
    local client=$((first + 2 * i)) peer=$((first + 2 * i + 1))
    mkdir -p "$dir/e$i"
    etcd --name "e$i" --data-dir "$dir/e$i/data" \
      --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "$initial" --initial-cluster-token rcron-local >"$dir/e$i/etcd.log" 2>&1 &
    pids+=($!)
    eps+=("127.0.0.1:$client")
  done
  ETCD_PIDS="${pids[*]}"
  ETCD_ENDPOINTS=$(IFS=,; echo "${eps[*]}")
  local deadline=$((SECONDS + 60))
  until ETCDCTL_API=3 etcdctl --endpoints "$ETCD_ENDPOINTS" endpoint health >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && die "etcd cluster not healthy; see $dir/e*/etcd.log"
    sleep 0.3
  done
}

# start_mongo DIR PORT: nx-27017 on loopback, data in DIR (files, so a
# restart keeps what was written; one file per database, which nx-27017
# needs to keep databases apart).
start_mongo() {
  local dir=$1 port=$2
  mkdir -p "$dir/data"
  "$NX_BIN" --data-dir "$dir/data" --host 127.0.0.1 -p "$port" \
    --log-file "$dir/mongo.log" --pid-file "$dir/mongo.pid" >"$dir/mongo.out" 2>&1 &
  MONGO_PID=$!
  wait_port 127.0.0.1 "$port" 30 "MongoDB-wire server"
}

stop_pid() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
