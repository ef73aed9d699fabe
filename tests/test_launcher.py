"""The launcher's checks before anything starts (scripts/preflight.py) and how it ends when a
process of the platform stops on its own.

A bad setting must stop `make up` with every problem named, before Airflow's database is
migrated, a banner is printed or any process starts; and a component that dies must not leave a
half platform running, nor a launcher that exits 0 as if asked to stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from include.liveshop.settings import PROJECT_ROOT
from scripts import preflight


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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


def _up(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """scripts/up.sh run to its end (these tests' platforms stop on their own)."""
    return subprocess.run(
        ["bash", "scripts/up.sh"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
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


def test_a_warehouse_the_pipeline_cannot_run_on_is_refused_with_the_other_problems(tmp_path: Path) -> None:
    env = _env(
        tmp_path,
        LIVESHOP_WAREHOUSE="bigquery",  # well formed, with its project, but not runnable yet
        LIVESHOP_GCP_PROJECT="my-project",
        LIVESHOP_CHUNK_SIZE="none",
        LIVESHOP_DBT_EXECUTABLE=str(tmp_path / "no-dbt-here"),
        LIVESHOP_DBT_MANIFEST=str(tmp_path / "no-manifest.json"),
    )
    result = _preflight(env)
    assert result.returncode == 2
    errors = sorted(result.stderr.splitlines())
    assert errors == sorted(
        [
            "error: LIVESHOP_CHUNK_SIZE: 'none' is not a whole number",
            "error: LIVESHOP_WAREHOUSE: the platform runs its pipeline on 'duckdb' only so far, not "
            "'bigquery': the dbt project compiles for BigQuery, but loading, scoring and serving there "
            "are not built yet",
            f"error: LIVESHOP_DBT_EXECUTABLE: {tmp_path / 'no-dbt-here'} is not an executable file; "
            "`make install` puts dbt in .venv-dbt/bin/dbt",
            f"error: LIVESHOP_DBT_MANIFEST: {tmp_path / 'no-manifest.json'} does not exist; "
            "`make manifest` builds it (`make up` does too)",
        ]
    ), result.stderr


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
    result = _up(_env(tmp_path, LIVESHOP_CHUNK_SIZE="0"))
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
    result = _up(_env(tmp_path, LIVESHOP_PROCFILE=str(procfile)))
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


def _start_fake_platform(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """up.sh on a Procfile of two long sleeps, in its own process group as a terminal would run it."""
    procfile = tmp_path / "Procfile"
    procfile.write_text("steady: sleep 300\nsteadier: sleep 301\n")
    env = _env(tmp_path, LIVESHOP_PROCFILE=str(procfile))
    out = tmp_path / "up.out"
    with open(out, "wb") as handle:
        process = subprocess.Popen(
            ["bash", "scripts/up.sh"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            # As from a terminal: a shell that starts a job in the background (CI may) hands it
            # SIGINT ignored, and bash cannot trap a signal ignored on entry.
            preexec_fn=_default_sigint,
        )
    run_file = tmp_path / "data" / "platform.run"
    deadline = time.monotonic() + 240
    while not run_file.exists():  # written once honcho has started both processes
        assert process.poll() is None, out.read_text()
        assert time.monotonic() < deadline, out.read_text()
        time.sleep(0.5)
    return process, out


def _left_running(tmp_path: Path) -> list[str]:
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if process.environ().get("LIVESHOP_DATA_DIR") == str(tmp_path / "data"):
                found.append(f"{process.pid} {' '.join(process.info['cmdline'] or [])}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signal_to_the_whole_process_group_stops_everything(tmp_path: Path, signal_name: str) -> None:
    """What a closed terminal (HUP), a service manager or `timeout` (TERM) and Ctrl-C (INT) send."""
    process, out = _start_fake_platform(tmp_path)
    os.killpg(process.pid, getattr(signal, signal_name))
    assert process.wait(120) == 0, out.read_text()
    assert out.read_text().splitlines()[-1] == "stopped"
    assert not _left_running(tmp_path)
    assert not (tmp_path / "data" / "platform.pid").exists()
    assert not (tmp_path / "data" / "platform.run").exists()


def test_make_down_stops_a_platform_whose_launcher_is_stuck(tmp_path: Path) -> None:
    process, out = _start_fake_platform(tmp_path)
    os.kill(process.pid, signal.SIGSTOP)  # a launcher that can no longer act on the TERM it is sent
    try:
        env = _env(tmp_path, LIVESHOP_DOWN_WAIT_SECONDS="5")
        down = subprocess.run(
            ["bash", "scripts/down.sh"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=200,
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "did not stop within 5 s; stopping the platform's processes directly" in down.stderr
    process.wait(30)
    assert not _left_running(tmp_path), out.read_text()
    again = subprocess.run(
        ["bash", "scripts/down.sh"], cwd=PROJECT_ROOT, env=_env(tmp_path), capture_output=True, text=True
    )
    assert again.stdout.strip() == "the platform is not running"
