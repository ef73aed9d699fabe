# Environment of the local platform; sourced by the Makefile's scripts. Every value can be
# overridden by exporting it first. Secrets are generated on first use into .data/ (not in git).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$root/.venv/bin:$PATH"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export SCARF_NO_ANALYTICS=true DO_NOT_TRACK=true DBT_SEND_ANONYMOUS_USAGE_STATS=false

: "${LIVESHOP_DATA_DIR:=$root/.data}"
export LIVESHOP_DATA_DIR
export AIRFLOW_HOME="${AIRFLOW_HOME:-$LIVESHOP_DATA_DIR/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$root/dags}"
export AIRFLOW__CORE__LOAD_EXAMPLES="${AIRFLOW__CORE__LOAD_EXAMPLES:-False}"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-False}"
# Two cores are enough: a handful of task processes, one API worker.
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
export AIRFLOW__API__WORKERS="${AIRFLOW__API__WORKERS:-1}"
# A busy laptop can keep the API server from answering a starting task within the default 5 s.
export AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT="${AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT:-30}"
export AIRFLOW__API__PORT="${AIRFLOW__API__PORT:-8080}"
# A laptop's platform answers this machine only: the dashboard has no login and shows viewer ids.
# Set both to 0.0.0.0 to reach it from elsewhere (behind a firewall or a proxy with a login).
export AIRFLOW__API__HOST="${AIRFLOW__API__HOST:-127.0.0.1}"
export LIVESHOP_DASHBOARD_ADDRESS="${LIVESHOP_DASHBOARD_ADDRESS:-127.0.0.1}"
# Task processes reach the API server through this URL; without it they assume port 8080.
export AIRFLOW__API__BASE_URL="${AIRFLOW__API__BASE_URL:-http://localhost:$AIRFLOW__API__PORT}"
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-30}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-$AIRFLOW_HOME/passwords.json}"
export LIVESHOP_DASHBOARD_PORT="${LIVESHOP_DASHBOARD_PORT:-8501}"
