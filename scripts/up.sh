#!/usr/bin/env bash
# Starts the whole platform on this machine: Airflow (API server and UI, scheduler, DAG processor,
# triggerer), the simulator publishing live shows, and the dashboard. Ctrl-C, or `make down` from
# another terminal, stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

pidfile="$LIVESHOP_DATA_DIR/platform.pid"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "the platform is already running (pid $(cat "$pidfile")); stop it with: make down" >&2
  exit 1
fi
for port in "$AIRFLOW__API__PORT" "$LIVESHOP_DASHBOARD_PORT"; do
  if python -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $port)) != 0)"; then
    echo "port $port is in use; free it or set AIRFLOW__API__PORT / LIVESHOP_DASHBOARD_PORT" >&2
    exit 1
  fi
done

mkdir -p "$AIRFLOW_HOME"
if [ ! -s "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" ]; then
  # A random password per installation, never a well-known default.
  python -c 'import json, secrets; print(json.dumps({"admin": secrets.token_urlsafe(12)}))' \
    > "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
  chmod 600 "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
fi
password=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["admin"])' \
  "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")

echo "preparing the Airflow metadata database in $AIRFLOW_HOME"
airflow db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 \
  || { cat "$AIRFLOW_HOME/db-migrate.log" >&2; exit 1; }
airflow pools set duckdb_warehouse 1 "DuckDB allows one writing process" >/dev/null

cat <<BANNER

  Live-shopping analytics is starting (Airflow needs about 30 s, the first micro-batch a few minutes)

    Airflow UI   http://localhost:$AIRFLOW__API__PORT   login: admin / $password
    Dashboard    http://localhost:$LIVESHOP_DASHBOARD_PORT
    Data         $LIVESHOP_DATA_DIR

  Ctrl-C (or \`make down\` in another terminal) stops everything.

BANNER

echo $$ > "$pidfile"
trap 'rm -f "$pidfile"' EXIT
# honcho runs each process in its own process group and stops whole groups when one exits or it is
# signalled, so nothing Airflow forks is left behind. Ctrl-C reaches honcho directly; a TERM from
# `make down` is forwarded to it. Either way this script waits until honcho has finished stopping.
honcho start -f Procfile --no-colour &
honcho_pid=$!
trap 'kill -TERM "$honcho_pid" 2>/dev/null || true' INT TERM
while kill -0 "$honcho_pid" 2>/dev/null; do
  wait "$honcho_pid" || true
done
