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
wait_seconds=${LIVESHOP_DOWN_WAIT_SECONDS:-90}  # how long the launcher gets to stop it all
for _ in $(seq 1 "$wait_seconds"); do
  kill -0 "$pid" 2>/dev/null || { echo "stopped"; exit 0; }
  sleep 1
done
# The launcher did not finish stopping: stop what it started directly, then the launcher itself.
echo "the launcher (pid $pid) did not stop within $wait_seconds s; stopping the platform's processes directly" >&2
runfile="$LIVESHOP_DATA_DIR/platform.run"
if [ -f "$runfile" ]; then
  read -r run sessions < "$runfile"
  python scripts/reap.py --terminate "$run" 20 $sessions
fi
kill -KILL "$pid" 2>/dev/null || true
rm -f "$pidfile" "$runfile"
echo "stopped"
