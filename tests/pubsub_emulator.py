"""A session-scoped Google Pub/Sub emulator for tests marked ``pubsub``.

``pubsub_emulator`` starts ``gcloud beta emulators pubsub start`` on a free local port, in a process
group of its own (gcloud runs the emulator as a java child), waits until it accepts connections, and
points both the google clients (``PUBSUB_EMULATOR_HOST``) and the Airflow Google connection
(``AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT``, anonymous) at it. Afterwards it stops the whole group and
checks that nothing of it is left running.

Tests are skipped, with the reason, when gcloud, its pubsub-emulator component or java is missing.
Use it from a test module with ``from tests.pubsub_emulator import pubsub_emulator``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = "test-project"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class PubSubEmulator:
    host: str
    project: str
    pid: int


def _missing_requirement() -> str | None:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return "gcloud is not on PATH; install the Google Cloud CLI to run the Pub/Sub tests"
    sdk_root = Path(gcloud).resolve().parent.parent
    if not (sdk_root / "platform" / "pubsub-emulator").is_dir():
        return (
            f"the pubsub-emulator component is not installed in {sdk_root}; run "
            "'gcloud components install pubsub-emulator' (or apt-get install "
            "google-cloud-cli-pubsub-emulator)"
        )
    if shutil.which("java") is None:
        return "java is not on PATH; the Pub/Sub emulator needs a Java runtime (JRE 8 or later)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group; via /proc where there is one."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state, ppid, pgrp, ...
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def _stop_group(process: subprocess.Popen[bytes]) -> list[int]:
    """Stop the emulator's process group; returns the pids still alive (empty on success)."""
    pgid = process.pid  # start_new_session=True made the child a group leader
    for sig, grace in ((signal.SIGTERM, STOP_TIMEOUT_SECONDS), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if process.poll() is None:
                try:
                    process.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    continue
            if not _group_members(pgid):
                return []
            time.sleep(0.2)
    return _group_members(pgid)


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    missing = _missing_requirement()
    if missing:
        pytest.skip(missing)
    port = _free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="pubsub-emulator-"))
    log_path = log_dir / "emulator.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                "gcloud",
                "beta",
                "emulators",
                "pubsub",
                "start",
                f"--host-port=127.0.0.1:{port}",
                f"--project={PROJECT}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _accepts_connections(port):
            if process.poll() is not None:
                pytest.fail(
                    f"the Pub/Sub emulator exited with code {process.returncode} before accepting "
                    f"connections on 127.0.0.1:{port}; its output:\n{_log_tail(log_path)}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the Pub/Sub emulator did not accept connections on 127.0.0.1:{port} within "
                    f"{START_TIMEOUT_SECONDS:.0f} s; its output:\n{_log_tail(log_path)}",
                    pytrace=False,
                )
            time.sleep(0.1)
        connection = {
            "conn_type": "google_cloud_platform",
            "extra": {"project": PROJECT, "is_anonymous": True},
        }
        with pytest.MonkeyPatch.context() as env:
            env.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{port}")
            env.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(connection))
            yield PubSubEmulator(host=f"127.0.0.1:{port}", project=PROJECT, pid=process.pid)
    finally:
        leftovers = _stop_group(process)
        if leftovers:
            raise RuntimeError(
                f"Pub/Sub emulator processes {leftovers} (group {process.pid}) survived SIGKILL; "
                f"stop them by hand. Emulator log: {log_path}"
            )
        shutil.rmtree(log_dir, ignore_errors=True)
