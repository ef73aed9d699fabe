#!/usr/bin/env bash
# Starts the whole platform on this machine: Airflow (API server and UI, scheduler, DAG processor,
# triggerer), the simulator publishing live shows, and the dashboard. Ctrl-C, or `make down` from
# another terminal, stops everything it started.
#
#   scripts/up.sh                 events travel on the local durable bus (the default)
#   scripts/up.sh --pubsub-emulator
#                                 events travel on Google's Pub/Sub emulator, started here
#                                 (needs the Google Cloud CLI with its pubsub-emulator component)
#
# A bad setting stops it before anything starts (exit 2, every problem named: scripts/preflight.py).
# It exits 0 when stopped on request, and otherwise with the code of the process that stopped the
# platform (1 if that one exited 0). Its processes' output is also kept in
# $LIVESHOP_DATA_DIR/platform.log. The launcher's tests run another Procfile: $LIVESHOP_PROCFILE.
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
  export LIVESHOP_PUBSUB_EMULATOR_PORT="${LIVESHOP_PUBSUB_EMULATOR_PORT:-8085}"
  emulator_port=$LIVESHOP_PUBSUB_EMULATOR_PORT
  export LIVESHOP_BUS=pubsub
  export LIVESHOP_GCP_PROJECT="${LIVESHOP_GCP_PROJECT:-liveshop-local}"
  export PUBSUB_EMULATOR_HOST="127.0.0.1:$emulator_port"
  # The Google provider reaches the emulator through an anonymous connection.
  export AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT="{\"conn_type\": \"google_cloud_platform\", \"extra\": {\"project\": \"$LIVESHOP_GCP_PROJECT\", \"is_anonymous\": true}}"
fi

pidfile="$LIVESHOP_DATA_DIR/platform.pid"
runfile="$LIVESHOP_DATA_DIR/platform.run"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "the platform is already running (pid $(cat "$pidfile")); stop it with: make down" >&2
  exit 1
fi
# Every setting, the ports included, is checked before anything is prepared or started.
bus_description=$(python scripts/preflight.py ${emulator_port:+--pubsub-emulator}) || exit $?
procfile="${LIVESHOP_PROCFILE:-Procfile}"

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
# Every task that writes the warehouse runs in this pool of one slot (LIVESHOP_WAREHOUSE_POOL).
airflow pools set "${LIVESHOP_WAREHOUSE_POOL:-duckdb_warehouse}" 1 "DuckDB allows one writing process" >/dev/null

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
failure=""
cleanup() {
  echo "stopping"
  # The emulator goes last, once nothing publishes or pulls any more.
  env -u LIVESHOP_PLATFORM_RUN python scripts/reap.py "$LIVESHOP_PLATFORM_RUN" 30 $sessions || true
  if [ -n "$emulator_pid" ]; then
    kill -TERM -- "-$emulator_pid" 2>/dev/null || true
    env -u LIVESHOP_PLATFORM_RUN python scripts/reap.py "$LIVESHOP_PLATFORM_RUN" 15 "$emulator_pid" || true
  fi
  rm -f "$pidfile" "$runfile"
  echo "stopped"
  if [ -n "$failure" ]; then echo "$failure" >&2; fi
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
log="$LIVESHOP_DATA_DIR/platform.log"
# The copy to the log ignores the signals that stop the platform: a TERM or HUP sent to the whole
# process group (a closed terminal, a service manager, `timeout`) must not end it before honcho,
# whose handler would then die writing to a closed pipe and leave every process running.
exec 3> >(trap '' INT TERM HUP; exec tee "$log")
tee_pid=$!
honcho start -f "$procfile" --no-colour >&3 &
honcho_pid=$!
exec 3>&-
stop_requested=false
trap 'stop_requested=true; kill -TERM "$honcho_pid" 2>/dev/null || true' INT TERM HUP
# honcho starts each process as the leader of a new session; remember those sessions, since a
# process that renames itself (setproctitle) no longer shows the marker in its environment.
expected=$(grep -c '^[a-z]' "$procfile")
for _ in $(seq 1 50); do
  found=$(python scripts/reap.py --sessions-of "$honcho_pid" 2>/dev/null) || break  # honcho is gone
  sessions=$found
  [ "$(wc -w <<<"$sessions")" -ge "$expected" ] && break
  sleep 0.2
done
# What `make down` needs to stop the run itself if this launcher can no longer do it.
echo "$LIVESHOP_PLATFORM_RUN $sessions" > "$runfile"
while kill -0 "$honcho_pid" 2>/dev/null; do
  wait "$honcho_pid" || true
done
status=0
wait "$honcho_pid" || status=$?
wait "$tee_pid" || true
if ! $stop_requested; then
  # Nobody asked: one process ended and honcho stopped the others. honcho exits with the code of
  # the first to end, and logs it as "NAME.1 stopped (rc=CODE)" (the .1: its first instance).
  first=$(sed -nE 's/^[0-9:]+ system +\| ([^ ]+)\.[0-9]+ stopped \(rc=(-?[0-9]+)\)$/\1 exited with code \2/p' "$log" | head -1)
  failure="the platform stopped because ${first:-honcho exited with code $status}, which nobody asked for"
  exit $((status == 0 ? 1 : status))
fi
