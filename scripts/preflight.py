"""Checks the configuration of `make up` before anything starts, and reports every problem at once.

Each component validates its own settings, but only when it starts: under honcho, a simulator that
refuses its settings stops the others after Airflow is already up, and a bad schedule only shows as
an import error in Airflow's UI. scripts/up.sh runs this first, so that a bad value stops it before
it migrates, prints its banner or starts a process. Checked: every setting `get_settings()` reads,
the dashboard's refresh interval, the simulator's rate, and the ports (valid, distinct and free;
the emulator's only with --pubsub-emulator, the only time it is used).

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
    """The settings (None if any is bad), and every problem `get_settings()` finds, not only the first.

    After each problem the settings are read again as if it were fixed: a bad value back to its
    default, a missing required one set to a stand-in.
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
        return (None if problems else settings), problems


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
