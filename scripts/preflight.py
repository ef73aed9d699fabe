"""Checks the configuration of `make up` before anything starts, and reports every problem at once.

Each component validates its own settings, but only when it starts: under honcho, a simulator that
refuses its settings stops the others after Airflow is already up, and a bad schedule only shows as
an import error in Airflow's UI. scripts/up.sh runs this first, so that a bad value stops it before
it migrates, prints its banner or starts a process. Checked: every setting `get_settings()` reads,
what the running pipeline needs of them (a DuckDB warehouse, dbt and its manifest where they are
said to be), the dashboard's refresh interval, the simulator's rate, and the ports (valid, distinct
and free; the emulator's only with --pubsub-emulator, the only time it is used).

Usage: python scripts/preflight.py [--pubsub-emulator]
Prints the banner's description of the bus and exits 0, or prints one `error: VARIABLE: problem`
line per problem on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import socket
import sys
from collections.abc import Mapping

from include.liveshop.errors import ConfigError
from include.liveshop.settings import Settings, get_settings

PORTS = ("AIRFLOW__API__PORT", "LIVESHOP_DASHBOARD_PORT")
EMULATOR_PORT = "LIVESHOP_PUBSUB_EMULATOR_PORT"
SIMULATOR_RATE = "LIVESHOP_SIMULATOR_RATE"


def settings_problems(env: Mapping[str, str]) -> tuple[Settings | None, list[ConfigError]]:
    """Every problem `get_settings()` finds, not only the first, and the settings read at the end.

    After each problem the settings are read again as if it were fixed: a bad value back to its
    default, a missing required one set to a stand-in. So the settings returned hold those
    defaults and stand-ins where there were problems; they are None only if that loop got stuck.
    """
    env = dict(env)
    problems: list[ConfigError] = []
    while True:
        try:
            settings = get_settings(env)
        except ConfigError as problem:
            if any(seen.variable == problem.variable for seen in problems):
                return None, problems
            problems.append(problem)
            if not env.pop(problem.variable, "").strip():
                env[problem.variable] = "stand-in"
            continue
        return settings, problems


def pipeline_problems(settings: Settings) -> list[ConfigError]:
    """What the micro-batch DAG would fail on at its first run, although each value is well formed."""
    problems = []
    if settings.warehouse != "duckdb":
        problems.append(
            ConfigError(
                "LIVESHOP_WAREHOUSE",
                f"the platform runs its pipeline on 'duckdb' only so far, not {settings.warehouse!r}: "
                "the dbt project compiles for BigQuery, but loading, scoring and serving there are not "
                "built yet",
            )
        )
    dbt = settings.dbt_executable
    if not (dbt.is_file() and os.access(dbt, os.X_OK)):
        problems.append(
            ConfigError(
                "LIVESHOP_DBT_EXECUTABLE",
                f"{dbt} is not an executable file; `make install` puts dbt in .venv-dbt/bin/dbt",
            )
        )
    if not settings.dbt_manifest.is_file():
        problems.append(
            ConfigError(
                "LIVESHOP_DBT_MANIFEST",
                f"{settings.dbt_manifest} does not exist; `make manifest` builds it (`make up` does too)",
            )
        )
    return problems


def refresh_problem() -> ConfigError | None:
    # The dashboard's module sets up Streamlit's caches as it is imported, and Streamlit warns that
    # outside a running app they live in memory: true, and of no concern here.
    import streamlit.logger

    streamlit.logger.set_log_level("error")
    from dashboard.data import REFRESH_SECONDS_ENV, refresh_seconds

    try:
        refresh_seconds()
    except ValueError as error:
        return ConfigError(REFRESH_SECONDS_ENV, str(error).removeprefix(f"{REFRESH_SECONDS_ENV}="))
    return None


def rate_problem(env: Mapping[str, str]) -> ConfigError | None:
    raw = env.get(SIMULATOR_RATE, "").strip()
    if not raw:
        return None  # the Procfile's default
    try:
        rate = float(raw)
    except ValueError:
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0):
        return ConfigError(SIMULATOR_RATE, f"{raw!r} is not a positive number of events per second (e.g. 10)")
    return None


def port_problems(env: Mapping[str, str], names: tuple[str, ...]) -> list[ConfigError]:
    problems = []
    owners: dict[int, str] = {}
    for name in names:
        raw = env.get(name, "").strip()
        if not re.fullmatch(r"[0-9]+", raw) or not 1 <= int(raw) <= 65535:
            problems.append(ConfigError(name, f"{raw!r} is not a port (a whole number from 1 to 65535)"))
        elif int(raw) in owners:
            problems.append(ConfigError(name, f"{raw} is {owners[int(raw)]} too; give each its own port"))
        else:
            owners[int(raw)] = name
    for port, name in owners.items():
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                problems.append(ConfigError(name, f"port {port} is in use; free it or choose another port"))
    return problems


def bus_description(settings: Settings, env: Mapping[str, str]) -> str:
    if settings.bus == "local":
        return f"local durable bus in {settings.bus_path}"
    where = f"project {settings.gcp_project}, subscription {settings.subscription}"
    if env.get("PUBSUB_EMULATOR_HOST"):
        return f"Pub/Sub emulator at {env['PUBSUB_EMULATOR_HOST']}, {where}"
    return f"Google Pub/Sub, {where}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Check the configuration of `make up`.")
    parser.add_argument("--pubsub-emulator", action="store_true", help="also check the emulator's port")
    emulator = parser.parse_args(argv).pubsub_emulator
    env = os.environ
    settings, problems = settings_problems(env)
    if settings is not None:
        problems += pipeline_problems(settings)
    problems += filter(None, [refresh_problem(), rate_problem(env)])
    problems += port_problems(env, (*PORTS, EMULATOR_PORT) if emulator else PORTS)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems or settings is None:
        return 2
    print(bus_description(settings, env))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
