"""The README's first commands, as a newcomer runs them: `scripts/up.sh` (what `make up` starts) on
a fresh data directory and free ports, once on the local bus and once with `--pubsub-emulator`
(what `make up-emulator` starts; skipped with the reason where gcloud or its emulator is missing).
The platform must come up, the simulator's events must reach the dashboard's serving copy with conversion scores, the UI and the dashboard must answer, and
Ctrl-C must stop every process it started.

How long the first figures take is printed (run with ``-rP``), not asserted: timings belong to the
benchmark, and a shared CI machine is slower than a laptop. The wait is bounded generously.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import psutil
import pytest

from include.liveshop.settings import PROJECT_ROOT
from tests.pubsub_emulator import _missing_requirement as emulator_missing

pytestmark = pytest.mark.e2e

FIRST_FIGURES_TIMEOUT = 600
STOP_TIMEOUT = 150


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def get(url: str, token: str | None = None, timeout: float = 10) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read()


@dataclass
class Platform:
    process: subprocess.Popen
    data_dir: Path
    log: Path
    api_port: int
    dashboard_port: int
    started: float
    bus: str
    emulator_port: int | None = None
    seen: dict[int, float] = field(default_factory=dict)  # pid -> create_time, of every process seen

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def watch(self) -> None:
        """Remember every process of the run so far (they may leave the launcher's tree later)."""
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for child in children:
            try:
                self.seen.setdefault(child.pid, child.create_time())
            except psutil.NoSuchProcess:
                continue

    def survivors(self) -> list[str]:
        found = []
        for pid, created in self.seen.items():
            try:
                process = psutil.Process(pid)
                if process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE:
                    found.append(f"{pid} {' '.join(process.cmdline())[:120]}")
            except psutil.NoSuchProcess:
                continue
        marker = str(self.data_dir)
        for process in psutil.process_iter():
            try:
                if process.pid not in self.seen and process.environ().get("LIVESHOP_DATA_DIR") == marker:
                    found.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def wait_for(self, what: str, check, timeout: float, interval: float = 3.0):
        deadline = time.monotonic() + timeout
        while True:
            self.watch()
            assert self.process.poll() is None, (
                f"the platform exited while waiting for {what}:\n" + (self.output()[-6000:])
            )
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {what} within {timeout:g}s; launcher output:\n{self.output()[-6000:]}"
                )
            time.sleep(interval)


def platform_env(data_dir: Path, api_port: int, dashboard_port: int) -> dict[str, str]:
    # Nothing of the test run's own environment (make test sources scripts/env.sh) may leak in:
    # the launcher must derive everything from the data directory, as on a newcomer's machine.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVESHOP_", "AIRFLOW", "PUBSUB_"))}
    env.update(
        LIVESHOP_DATA_DIR=str(data_dir),
        AIRFLOW__API__PORT=str(api_port),
        LIVESHOP_DASHBOARD_PORT=str(dashboard_port),
        LIVESHOP_DASHBOARD_REFRESH_SECONDS="5",
    )
    return env


@pytest.fixture(scope="module", params=["local", "pubsub-emulator"])
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    bus = request.param
    if bus == "pubsub-emulator" and (missing := emulator_missing()):
        pytest.skip(f"`make up-emulator` needs the Pub/Sub emulator: {missing}")
    if not (PROJECT_ROOT / "include" / "dbt" / "target" / "manifest.json").exists():
        pytest.fail("the dbt manifest is missing: run the suite with `make test`, which builds it")
    data_dir = tmp_path_factory.mktemp("platform") / "data"
    api_port, dashboard_port = free_port(), free_port()
    env = platform_env(data_dir, api_port, dashboard_port)
    command = ["bash", str(PROJECT_ROOT / "scripts" / "up.sh")]
    if bus == "pubsub-emulator":
        command.append("--pubsub-emulator")
        env["LIVESHOP_PUBSUB_EMULATOR_PORT"] = str(free_port())
    log = data_dir.parent / "up.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own process group, as a terminal gives the foreground job: Ctrl-C is sent there.
            start_new_session=True,
            # As from a terminal: a shell that starts a job in the background (CI may) hands it
            # SIGINT ignored, and bash cannot trap a signal ignored on entry.
            preexec_fn=_default_sigint,
        )
    running = Platform(process, data_dir, log, api_port, dashboard_port, time.monotonic(), bus)
    if bus == "pubsub-emulator":
        running.emulator_port = int(env["LIVESHOP_PUBSUB_EMULATOR_PORT"])
    try:
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        for line in running.survivors():  # never leave a stray Airflow behind on a CI machine
            try:
                psutil.Process(int(line.split()[0])).kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(data_dir / "airflow" / "logs", ignore_errors=True)


def serving_figures(path: Path) -> dict[str, int] | None:
    if not path.exists():
        return None
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            sessions, viewers, streams = con.execute(
                "select count(*), count(distinct viewer_id), count(distinct stream_id) from fct_sessions"
            ).fetchone()
            scored, in_range = con.execute(
                "select count(*), count(*) filter (where conversion_probability between 0 and 1)"
                " from session_scores"
            ).fetchone()
            open_sessions = con.execute("select count(*) from fct_sessions where is_open").fetchone()[0]
    except duckdb.Error:
        return None  # being swapped in, or not all tables yet
    if not sessions or not scored:
        return None
    return {
        "sessions": sessions,
        "viewers": viewers,
        "streams": streams,
        "scored": scored,
        "scores_in_range": in_range,
        "open_sessions": open_sessions,
    }


def test_up_prints_where_everything_is_and_a_generated_login(platform: Platform) -> None:
    platform.wait_for("the banner", lambda: "Ctrl-C" in platform.output(), timeout=300, interval=1)
    text = platform.output()
    assert f"http://localhost:{platform.api_port}" in text
    assert f"http://localhost:{platform.dashboard_port}" in text
    login = re.search(r"login: (\S+) / (\S+)", text)
    assert login, text
    user, password = login.groups()
    stored = json.loads((platform.data_dir / "airflow" / "passwords.json").read_text())
    assert stored == {user: password}
    assert password not in {"admin", "airflow", "password"} and len(password) >= 12
    if platform.bus == "local":
        assert f"local durable bus in {platform.data_dir / 'bus.sqlite3'}" in text
    else:
        assert f"Pub/Sub emulator at 127.0.0.1:{platform.emulator_port}, project liveshop-local" in text


def test_simulated_shows_reach_the_dashboard_with_scores(platform: Platform) -> None:
    figures = platform.wait_for(
        "sessions with conversion scores in the serving copy",
        lambda: serving_figures(platform.data_dir / "serving.duckdb"),
        timeout=FIRST_FIGURES_TIMEOUT,
    )
    print(
        f"\nfirst figures on the serving copy {time.monotonic() - platform.started:.0f}s after start: {figures}"
    )
    assert figures["scores_in_range"] == figures["scored"] == figures["sessions"] > 0
    assert figures["viewers"] > 1 and figures["streams"] >= 1
    assert figures["open_sessions"] > 0, "the simulated shows are live, so some sessions are still open"
    # On the emulator the events travel on Pub/Sub only: the local bus is never created.
    assert (platform.data_dir / "bus.sqlite3").exists() == (platform.bus == "local")


def test_dashboard_and_airflow_answer(platform: Platform) -> None:
    base = f"http://127.0.0.1:{platform.dashboard_port}"
    status, body = platform.wait_for(
        "dashboard health", lambda: _try(lambda: get(f"{base}/_stcore/health")), timeout=120
    )
    assert (status, body) == (200, b"ok")
    status, page = get(base)
    assert status == 200 and b'<div id="root">' in page

    api = f"http://127.0.0.1:{platform.api_port}"
    password = json.loads((platform.data_dir / "airflow" / "passwords.json").read_text())["admin"]
    request = urllib.request.Request(
        f"{api}/auth/token",
        data=json.dumps({"username": "admin", "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        token = json.loads(response.read())["access_token"]
    runs_url = f"{api}/api/v2/dags/liveshop_microbatch/dagRuns?order_by=-logical_date"

    def run_states() -> list[str]:
        _, body = get(runs_url, token, 30)
        return [run["state"] for run in json.loads(body)["dag_runs"]]

    # The serving copy lands with the last task; the scheduler marks the run a success a moment later.
    platform.wait_for("a successful micro-batch run", lambda: "success" in run_states(), timeout=120)
    assert "failed" not in run_states()
    _, body = get(f"{api}/api/v2/pools/duckdb_warehouse", token, 30)
    assert json.loads(body)["slots"] == 1
    with pytest.raises(urllib.error.HTTPError) as refused:
        get(f"{api}/api/v2/dags", token="not-a-token")
    assert refused.value.code in (401, 403)

    # Both answer this machine only: the dashboard has no login.
    listening = {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections("inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port in (platform.api_port, platform.dashboard_port)
    }
    assert listening == {("127.0.0.1", platform.api_port), ("127.0.0.1", platform.dashboard_port)}


def test_ctrl_c_stops_everything_it_started(platform: Platform) -> None:
    platform.watch()
    assert len(platform.seen) >= 5, "Airflow, the simulator and the dashboard should all be running"
    os.killpg(platform.process.pid, signal.SIGINT)
    assert platform.process.wait(STOP_TIMEOUT) == 0, "Ctrl-C is a stop on request"
    deadline = time.monotonic() + 10
    while (left := platform.survivors()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, "still running after Ctrl-C:\n" + "\n".join(left)
    assert not port_in_use(platform.api_port) and not port_in_use(platform.dashboard_port)
    if platform.emulator_port:
        assert not port_in_use(platform.emulator_port), "the Pub/Sub emulator is still listening"
    assert not (platform.data_dir / "platform.pid").exists()
    assert "stopped" in platform.output().splitlines()[-1]


def _try(call):
    try:
        return call()
    except OSError:
        return None
