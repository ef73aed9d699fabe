#!/usr/bin/env bash
# Starts the whole platform on this machine: Airflow (API server and UI, scheduler, DAG processor,
# triggerer), the simulator publishing live shows, and the dashboard. Ctrl-C, or `make down` from
# another terminal, stops everything it started.
#
#   scripts/up.sh                 events travel on the local durable bus (the default)
#   scripts/up.sh --pubsub-emulator
#                                 events travel on Google's Pub/Sub emulator, started here
#                                 (needs the Google Cloud CLI with its pubsub-emulator component)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

emulator=false
case "${1:-}" in
  "") ;;
  --pubsub-emulator) emulator=true ;;
  *) echo "unknown option: $1 (the only option is --pubsub-emulator)" >&2; exit 2 ;;
esac
if $emulator; then
  if ! command -v gcloud >/dev/null; then
    echo "--pubsub-emulator needs gcloud on PATH (the Google Cloud CLI with the pubsub-emulator" >&2
    echo "component); without it, run the platform on the local bus with: make up" >&2
    exit 1
  fi
  if ! command -v java >/dev/null; then
    echo "--pubsub-emulator needs java on PATH: the Pub/Sub emulator is a Java program" >&2
    exit 1
  fi
  emulator_port="${LIVESHOP_PUBSUB_EMULATOR_PORT:-8085}"
  export LIVESHOP_BUS=pubsub
  export LIVESHOP_GCP_PROJECT="${LIVESHOP_GCP_PROJECT:-liveshop-local}"
  export PUBSUB_EMULATOR_HOST="127.0.0.1:$emulator_port"
  # The Google provider reaches the emulator through an anonymous connection.
  export AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT="{\"conn_type\": \"google_cloud_platform\", \"extra\": {\"project\": \"$LIVESHOP_GCP_PROJECT\", \"is_anonymous\": true}}"
fi

pidfile="$LIVESHOP_DATA_DIR/platform.pid"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "the platform is already running (pid $(cat "$pidfile")); stop it with: make down" >&2
  exit 1
fi
for port in "$AIRFLOW__API__PORT" "$LIVESHOP_DASHBOARD_PORT" ${emulator_port:-}; do
  if python -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $port)) != 0)"; then
    echo "port $port is in use; free it or set AIRFLOW__API__PORT / LIVESHOP_DASHBOARD_PORT / LIVESHOP_PUBSUB_EMULATOR_PORT" >&2
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

if $emulator; then
  bus_description="Pub/Sub emulator at $PUBSUB_EMULATOR_HOST, project $LIVESHOP_GCP_PROJECT"
else
  bus_description="local durable bus in ${LIVESHOP_BUS_PATH:-$LIVESHOP_DATA_DIR/bus.sqlite3}"
fi
cat <<BANNER

  Live-shopping analytics is starting (Airflow needs about 30 s, the first micro-batch a few minutes)

    Airflow UI   http://localhost:$AIRFLOW__API__PORT   login: admin / $password
    Dashboard    http://localhost:$LIVESHOP_DASHBOARD_PORT
    Data         $LIVESHOP_DATA_DIR
    Bus          $bus_description

  Ctrl-C (or \`make down\` in another terminal) stops everything.

BANNER

echo $$ > "$pidfile"
# Every process of this run inherits the marker; scripts/reap.py uses it to make sure that
# nothing of the run outlives it.
export LIVESHOP_PLATFORM_RUN="$$-$(date +%s)"
sessions=""
emulator_pid=""
cleanup() {
  echo "stopping"
  # The emulator goes last, once nothing publishes or pulls any more.
  env -u LIVESHOP_PLATFORM_RUN python scripts/reap.py "$LIVESHOP_PLATFORM_RUN" 30 $sessions || true
  if [ -n "$emulator_pid" ]; then
    kill -TERM -- "-$emulator_pid" 2>/dev/null || true
    env -u LIVESHOP_PLATFORM_RUN python scripts/reap.py "$LIVESHOP_PLATFORM_RUN" 15 "$emulator_pid" || true
  fi
  rm -f "$pidfile"
  echo "stopped"
}
trap cleanup EXIT
if $emulator; then
  # In a session of its own, so that it can be stopped as a group (gcloud runs it as a java child).
  env -u LIVESHOP_PLATFORM_RUN setsid gcloud beta emulators pubsub start --host-port="$PUBSUB_EMULATOR_HOST" \
    --project="$LIVESHOP_GCP_PROJECT" >"$LIVESHOP_DATA_DIR/pubsub-emulator.log" 2>&1 &
  emulator_pid=$!
  for _ in $(seq 1 120); do
    python -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $emulator_port)) != 0)" && break
    kill -0 "$emulator_pid" 2>/dev/null || { tail -20 "$LIVESHOP_DATA_DIR/pubsub-emulator.log" >&2; exit 1; }
    sleep 0.5
  done
  # The emulator keeps nothing across restarts: create the topic and the subscription every time.
  python -m include.liveshop.bus setup
fi
# honcho runs each process in its own process group and stops whole groups when one exits or it is
# signalled. Ctrl-C, or the TERM sent by `make down`, reaches this script, which forwards TERM to
# honcho and waits until it has finished stopping; the cleanup then reaps any straggler.
honcho start -f Procfile --no-colour &
honcho_pid=$!
trap 'kill -TERM "$honcho_pid" 2>/dev/null || true' INT TERM
# honcho starts each process as the leader of a new session; remember those sessions, since a
# process that renames itself (setproctitle) no longer shows the marker in its environment.
expected=$(grep -c '^[a-z]' Procfile)
for _ in $(seq 1 50); do
  sessions=$(python scripts/reap.py --sessions-of "$honcho_pid")
  [ "$(wc -w <<<"$sessions")" -ge "$expected" ] && break
  sleep 0.2
done
while kill -0 "$honcho_pid" 2>/dev/null; do
  wait "$honcho_pid" || true
done
