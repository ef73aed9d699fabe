#!/usr/bin/env bash
# Stops a platform started with `make up` in another terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
pidfile="$LIVESHOP_DATA_DIR/platform.pid"
if [ ! -f "$pidfile" ] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "the platform is not running"
  rm -f "$pidfile"
  exit 0
fi
pid=$(cat "$pidfile")
# The launcher forwards TERM to honcho, which stops each process group it started.
kill -TERM "$pid"
for _ in $(seq 1 90); do
  kill -0 "$pid" 2>/dev/null || { echo "stopped"; exit 0; }
  sleep 1
done
echo "the platform did not stop within 90 s (pid $pid)" >&2
exit 1
