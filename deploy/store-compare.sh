#!/usr/bin/env bash
# Measures the embedded MongoDB-wire servers side by side on the run log's
# queries (BENCHMARKS.md §10): nx-27017 (the deploy/ default, as lib.sh
# starts it) and SecantusDB's Python server, each on a free loopback port
# with a fresh data dir, one after the other. Figures, not pass/fail.
#
#   deploy/store-compare.sh                         # 1M records, ~1.5 h on 2 cores
#   deploy/store-compare.sh --records 100000 --servers secantusdb
#
# Extra arguments go to bench/store_compare.py (--help). The JSON report
# lands in target/store-compare.json, the table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

SECANTUS_VERSION="0.7.0b3"
SECANTUS_VENV="$RCRON_CACHE/venv-secantus-$SECANTUS_VERSION"

ensure_system_packages
ensure_mongo_wire
if [ ! -x "$SECANTUS_VENV/bin/secantusd-py" ]; then
  log "installing SecantusDB==$SECANTUS_VERSION into $SECANTUS_VENV (pip)"
  mkdir -p "$RCRON_CACHE"
  python3 -m venv "$SECANTUS_VENV"
  "$SECANTUS_VENV/bin/pip" install -q "SecantusDB==$SECANTUS_VERSION"
fi
mkdir -p target
# nx-27017's python: it has pymongo, and neosqlite for the SQL plans.
exec "$NX_VENV/bin/python" bench/store_compare.py \
  --nx-bin "$NX_BIN" --secantus-bin "$SECANTUS_VENV/bin/secantusd-py" \
  --out target/store-compare.json "$@"
