#!/usr/bin/env bash
# Creates the project-local environments from the lock files, or brings them up to date:
#   .venv      Airflow, the shared `include` package, simulator, dashboard, tests
#   .venv-dbt  dbt (called by cosmos as a subprocess, so its pins never hold Airflow back)
# uv installs the locked sets without resolving; if uv is not on PATH it is installed into
# .venv-tools first. Nothing is installed outside the project folder.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python=$(command -v "$candidate"); break; fi
  done
fi
if [ -z "$python" ] || ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "error: Python 3.11 is required (the lock files are resolved for it); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

uv=$(command -v uv || true)
if [ -z "$uv" ]; then
  if [ ! -x .venv-tools/bin/uv ]; then
    echo "installing uv into .venv-tools"
    "$python" -m venv .venv-tools
    .venv-tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
  fi
  uv=.venv-tools/bin/uv
fi

sync_env() {  # sync_env DIR LOCKFILE
  local dir=$1 lock=$2 want
  want=$(sha256sum "$lock" | cut -d' ' -f1)
  if [ -f "$dir/.lock-sha256" ] && [ "$(cat "$dir/.lock-sha256")" = "$want" ]; then
    return 0
  fi
  echo "installing $lock into $dir"
  [ -x "$dir/bin/python" ] || "$uv" venv --quiet --no-python-downloads --python "$python" "$dir"
  VIRTUAL_ENV="$PWD/$dir" "$uv" pip sync --quiet --compile-bytecode --no-python-downloads "$lock"
  echo "$want" > "$dir/.lock-sha256"
}

sync_env .venv requirements.lock
sync_env .venv-dbt requirements-dbt.lock
