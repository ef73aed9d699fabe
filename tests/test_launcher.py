"""The launcher's checks before anything starts (scripts/preflight.py) and how it ends when a
process of the platform stops on its own.

A bad setting must stop `make up` with every problem named, before Airflow's database is
migrated, a banner is printed or any process starts; and a component that dies must not leave a
half platform running, nor a launcher that exits 0 as if asked to stop.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from include.liveshop.settings import PROJECT_ROOT
from scripts import preflight


def _env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVESHOP_", "AIRFLOW", "PUBSUB_"))}
    env.update(
        LIVESHOP_DATA_DIR=str(tmp_path / "data"),
        AIRFLOW__API__PORT=str(_free_port()),
        LIVESHOP_DASHBOARD_PORT=str(_free_port()),
    )
    env.update(overrides)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _preflight(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scripts/preflight.py", *args],
        cwd=PROJECT_ROOT,
        env={**env, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_good_settings_pass_and_describe_the_bus(tmp_path: Path) -> None:
    result = _preflight(_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"local durable bus in {tmp_path / 'data' / 'bus.sqlite3'}"


def test_every_problem_is_named_at_once(tmp_path: Path) -> None:
    env = _env(
        tmp_path,
        LIVESHOP_BATCH_MAX_MESSAGES="lots",
        LIVESHOP_MICROBATCH_SCHEDULE="61 * * * *",
        LIVESHOP_BUS="pubsub",  # without LIVESHOP_GCP_PROJECT
        LIVESHOP_SIMULATOR_RATE="-3",
        LIVESHOP_DASHBOARD_REFRESH_SECONDS="soon",
        AIRFLOW__API__PORT="80800",
    )
    result = _preflight(env)
    assert result.returncode == 2
    errors = result.stderr.splitlines()
    assert all(line.startswith("error: ") for line in errors), result.stderr
    named = {line.removeprefix("error: ").split(":")[0] for line in errors}
    assert named == {
        "LIVESHOP_BATCH_MAX_MESSAGES",
        "LIVESHOP_MICROBATCH_SCHEDULE",
        "LIVESHOP_GCP_PROJECT",
        "LIVESHOP_SIMULATOR_RATE",
        "LIVESHOP_DASHBOARD_REFRESH_SECONDS",
        "AIRFLOW__API__PORT",
    }, result.stderr
    assert "'lots'" in result.stderr and "the minute field '61'" in result.stderr
    assert result.stdout == ""


def test_ports_must_be_free_and_distinct(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        problems = preflight.port_problems(
            {"AIRFLOW__API__PORT": str(busy), "LIVESHOP_DASHBOARD_PORT": str(busy)}, preflight.PORTS
        )
    assert [str(p) for p in problems] == [
        f"LIVESHOP_DASHBOARD_PORT: {busy} is AIRFLOW__API__PORT too; give each its own port",
        f"AIRFLOW__API__PORT: port {busy} is in use; free it or choose another port",
    ]


def test_the_emulator_port_is_checked_only_for_the_emulator(tmp_path: Path) -> None:
    env = _env(tmp_path, LIVESHOP_PUBSUB_EMULATOR_PORT="not-a-port")
    assert _preflight(env).returncode == 0
    result = _preflight(env, "--pubsub-emulator")
    assert result.returncode == 2
    assert "LIVESHOP_PUBSUB_EMULATOR_PORT: 'not-a-port' is not a port" in result.stderr


@pytest.mark.parametrize(
    ("raw", "ok"), [("", True), ("10", True), ("0.5", True), ("0", False), ("nan", False), ("inf", False)]
)
def test_simulator_rate(raw: str, ok: bool) -> None:
    problem = preflight.rate_problem({"LIVESHOP_SIMULATOR_RATE": raw})
    assert (problem is None) is ok, problem


def test_up_refuses_a_bad_setting_before_anything_starts(tmp_path: Path) -> None:
    env = _env(tmp_path, LIVESHOP_CHUNK_SIZE="0")
    result = subprocess.run(
        ["bash", "scripts/up.sh"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error: LIVESHOP_CHUNK_SIZE: 0 is below the minimum of 1" in result.stderr
    assert "Ctrl-C" not in result.stdout, "the banner was printed"
    data = tmp_path / "data"
    assert not (data / "airflow" / "airflow.db").exists(), "Airflow's database was migrated"
    assert not (data / "platform.pid").exists()


def test_a_process_that_dies_stops_the_platform_with_its_code(tmp_path: Path) -> None:
    """Another Procfile: one long-running process and one that fails after a moment."""
    procfile = tmp_path / "Procfile"
    procfile.write_text("steady: sleep 300\nflaky: sleep 2; echo giving up; exit 3\n")
    env = _env(tmp_path, LIVESHOP_PROCFILE=str(procfile))
    result = subprocess.run(
        ["bash", "scripts/up.sh"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "the platform stopped because flaky exited with code 3, which nobody asked for" in result.stderr
    log = (tmp_path / "data" / "platform.log").read_text()
    assert "giving up" in log
    assert not (tmp_path / "data" / "platform.pid").exists()
    leftover = subprocess.run(["pgrep", "-f", "sleep 300"], capture_output=True, text=True)
    mine = [
        pid
        for pid in leftover.stdout.split()
        if Path(f"/proc/{pid}/environ").exists()
        and str(tmp_path).encode() in Path(f"/proc/{pid}/environ").read_bytes()
    ]
    assert not mine, "the steady process outlived the platform"
