"""An Airflow retry of ``ingest_events`` after a failure in the middle of a batch is idempotent.

The failure lands after the first chunk has been loaded and acknowledged, in the second chunk:
before its commit, after its commit but before its ack (the task dies in between), or in the ack
itself. The retry then runs the DAG's own task code again, with the next try number, as Airflow
does. Every check compares the warehouse and the bus with a ledger kept on the publishing side.

The first test calls the ``python_callable`` of the parsed DAG's ``ingest_events`` task directly,
once per try; the second lets Airflow run the task and its retry (``dag.test()`` in a child process
with its own ``AIRFLOW_HOME``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import types
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from include.liveshop import warehouse
from include.liveshop.bus import local as local_bus
from include.liveshop.bus.local import LocalBus, LocalSubscriber
from include.liveshop.contract import encode_event
from include.liveshop.settings import PROJECT_ROOT, Settings, get_settings

EVENTS = 1_000
CHUNK = 250
PULL = 100
DAG_FILE = PROJECT_ROOT / "dags" / "liveshop_microbatch.py"


@dataclass
class Ledger:
    """What the publisher knows: the event ids whose publish call returned, and their revenue."""

    ids: set[str] = field(default_factory=set)
    revenue: Decimal = Decimal(0)


def publish_orders(settings: Settings, prefix: str) -> Ledger:
    bus = LocalBus(settings.bus_path)
    bus.create_subscription(settings.topic, settings.subscription, settings.ack_deadline_seconds)
    ledger = Ledger()
    publisher = bus.publisher(settings.topic)
    for start in range(0, EVENTS, 200):
        numbers = range(start, start + 200)
        publisher.publish(
            [
                encode_event(
                    {
                        "event_id": f"{prefix}-{n:04d}",
                        "schema_version": 1,
                        "stream_id": f"STRM{n % 4}",
                        "viewer_id": f"V{n % 61:03d}",
                        "event_time": "2026-03-14 18:30:00",
                        "event_type": "order_completed",
                        "product_id": f"P{n % 30:03d}",
                        "price": Decimal(n % 40) + Decimal("0.49"),
                        "quantity": n % 3 + 1,
                    }
                )
                for n in numbers
            ]
        )
        for n in numbers:
            ledger.ids.add(f"{prefix}-{n:04d}")
            ledger.revenue += (Decimal(n % 40) + Decimal("0.49")) * (n % 3 + 1)
    return ledger


def rows(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def assert_loaded_exactly_once(settings: Settings, ledger: Ledger) -> None:
    path = settings.duckdb_path
    [(count, distinct, revenue)] = rows(
        path, "select count(*), count(distinct event_id), sum(price * quantity) from raw.raw_events"
    )
    assert (count, distinct) == (len(ledger.ids), len(ledger.ids)), "an event was lost or counted twice"
    assert {i for (i,) in rows(path, "select event_id from raw.raw_events")} == ledger.ids
    assert revenue == ledger.revenue
    assert rows(path, "select count(*) from raw.dead_letter_events") == [(0,)]
    # The audit rows of the committed chunks add up to the same figures.
    assert rows(path, "select sum(loaded), sum(dead_lettered) from raw.ingest_batches") == [
        (len(ledger.ids), 0)
    ]


# --------------------------------------------------------------------------------------------
# the DAG's task callable, one call per try


class Failure:
    """Makes the second chunk of the first try fail at one point; later tries run untouched."""

    def __init__(self, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.where = where
        self.armed = True
        self.loads = self.acks = 0
        real_load, real_ack = warehouse.load_chunk, LocalSubscriber.ack

        def load_chunk(*args, **kwargs):
            self.loads += 1
            failing = self.armed and self.loads == 2
            if failing and where == "before the commit":
                raise duckdb.IOException("simulated: the warehouse went away during the load")
            result = real_load(*args, **kwargs)
            if failing and where == "after the commit, before the ack":
                raise duckdb.IOException("simulated: the task died after the commit")
            return result

        def ack(subscriber, ack_ids):
            self.acks += 1
            if self.armed and self.acks == 2 and where == "in the ack":
                raise ConnectionError("simulated: the bus dropped the ack")
            return real_ack(subscriber, ack_ids)

        monkeypatch.setattr(warehouse, "load_chunk", load_chunk)
        monkeypatch.setattr(LocalSubscriber, "ack", ack)


@pytest.fixture
def ingest_callable(settings: Settings, monkeypatch: pytest.MonkeyPatch):
    """The ``python_callable`` of ``ingest_events`` in the DAG as Airflow parses it, with its settings."""
    monkeypatch.setenv("LIVESHOP_CHUNK_SIZE", str(CHUNK))
    monkeypatch.setenv("LIVESHOP_PULL_MAX_MESSAGES", str(PULL))
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}, bag.import_errors
    task = bag.dags["liveshop_microbatch"].get_task("ingest_events")
    assert task.retries >= 1, "the retry this test is about must be configured"
    return task.python_callable, get_settings()


def run_try(callable_, run_id: str, try_number: int) -> dict[str, object]:
    return callable_(run_id=run_id, ti=types.SimpleNamespace(try_number=try_number))


# where -> (committed by try 1, retry's (pulled, loaded, duplicates), left leased after the retry)
FAILURES = {
    "before the commit": (CHUNK, (EVENTS - CHUNK, EVENTS - CHUNK, 0), 0),
    "after the commit, before the ack": (2 * CHUNK, (EVENTS - CHUNK, EVENTS - 2 * CHUNK, CHUNK), 0),
    "in the ack": (2 * CHUNK, (EVENTS - 2 * CHUNK, EVENTS - 2 * CHUNK, 0), CHUNK),
}


@pytest.mark.parametrize("where", list(FAILURES))
def test_retry_of_the_dag_ingest_callable_after_a_mid_batch_failure_counts_each_event_once(
    ingest_callable, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    callable_, settings = ingest_callable
    assert (settings.chunk_size, settings.pull_max_messages) == (CHUNK, PULL)
    ledger = publish_orders(settings, "retry")
    bus = LocalBus(settings.bus_path)
    committed, (pulled, loaded, duplicates), still_leased = FAILURES[where]
    failure = Failure(where, monkeypatch)
    run_id = "scheduled__2026-03-14T18:35:00+00:00"

    with pytest.raises((duckdb.IOException, ConnectionError), match="simulated"):
        run_try(callable_, run_id, 1)
    failure.armed = False
    assert rows(settings.duckdb_path, "select count(*) from raw.raw_events") == [(committed,)]
    assert bus.backlog(settings.subscription) == EVENTS - CHUNK  # only the first chunk was acknowledged

    retry = run_try(callable_, run_id, 2)
    assert (retry["pulled"], retry["loaded"], retry["duplicates"], retry["dead_lettered"]) == (
        pulled,
        loaded,
        duplicates,
        0,
    )
    assert retry["batch_id"] == f"{run_id}#2"
    assert_loaded_exactly_once(settings, ledger)
    assert rows(
        settings.duckdb_path,
        "select batch_id, count(*), sum(pulled) from raw.ingest_batches group by 1 order by 1",
    ) == [(f"{run_id}#1", committed // CHUNK, committed), (f"{run_id}#2", -(-pulled // CHUNK), pulled)]

    if still_leased:
        # An ack that failed after its commit leaves the chunk leased to the failed try: the retry
        # does not see it. Once the lease expires, the next run gets it again and skips it.
        assert bus.backlog(settings.subscription) == still_leased
        later = time.time() + settings.ack_deadline_seconds + 1
        monkeypatch.setattr(local_bus, "time", types.SimpleNamespace(time=lambda: later))
        next_run = run_try(callable_, "scheduled__2026-03-14T18:40:00+00:00", 1)
        assert (next_run["pulled"], next_run["loaded"], next_run["duplicates"]) == (
            still_leased,
            0,
            still_leased,
        )
        assert_loaded_exactly_once(settings, ledger)
    assert bus.backlog(settings.subscription) == 0


# --------------------------------------------------------------------------------------------
# Airflow runs the task, fails it, and retries it

# Runs one micro-batch DAG run with Airflow's DAG test runner. The downstream tasks (dbt, scoring,
# serving copy) are marked successful without running. The failure is injected here, in the
# process that runs the task; a marker file makes it happen once. retry_delay is shortened from
# the DAG's 30 s so the test does not wait; the number of retries is the DAG's own.
AIRFLOW_CHILD = textwrap.dedent(
    """
    import json, sys
    from datetime import timedelta
    from pathlib import Path

    import duckdb
    from include.liveshop import warehouse

    marker = Path(sys.argv[1])
    real_load = warehouse.load_chunk
    loads = []

    def load_chunk(*args, **kwargs):
        loads.append(1)
        result = real_load(*args, **kwargs)
        if len(loads) == 2 and not marker.exists():
            marker.write_text("failed once")
            raise duckdb.IOException("simulated: the task died after the second chunk committed")
        return result

    warehouse.load_chunk = load_chunk

    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.pool import Pool
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    Pool.create_or_update_pool(
        "duckdb_warehouse", 1, "DuckDB allows one writing process", include_deferred=False
    )
    bag = DagBag(dag_folder=sys.argv[2])
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["liveshop_microbatch"]
    dag.get_task("ingest_events").retry_delay = timedelta(seconds=1)
    run = dag.test(mark_success_pattern=r"transform\\..*|score_sessions|publish_serving")
    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(run_id=run.run_id, task_id="ingest_events").one()
        print(json.dumps({
            "run_id": run.run_id, "run_state": str(run.state), "state": str(ti.state),
            "try_number": ti.try_number,
        }))
    """
)


def test_airflow_retries_ingest_events_after_a_mid_batch_failure_and_counts_each_event_once(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LIVESHOP_", "AIRFLOW"))},
        "PYTHONPATH": str(PROJECT_ROOT),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "LIVESHOP_DATA_DIR": str(data_dir),
        "LIVESHOP_CHUNK_SIZE": str(CHUNK),
        "LIVESHOP_PULL_MAX_MESSAGES": str(PULL),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FILE.parent),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "SCARF_NO_ANALYTICS": "true",
        "DO_NOT_TRACK": "true",
    }
    settings = get_settings(env)
    ledger = publish_orders(settings, "airflow")

    def run(args: list[str]) -> str:
        result = subprocess.run(args, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{args[:3]} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        return result.stdout

    run(["airflow", "db", "migrate"])
    marker = tmp_path / "failed-once"
    out = run([sys.executable, "-c", AIRFLOW_CHILD, str(marker), str(DAG_FILE.parent)])
    outcome = json.loads(out.strip().splitlines()[-1])

    assert marker.exists(), "the injected failure never fired"
    assert (outcome["run_state"], outcome["state"], outcome["try_number"]) == ("success", "success", 2), (
        outcome
    )
    run_id = outcome["run_id"]
    assert_loaded_exactly_once(settings, ledger)
    # Try 1 committed two chunks (the second without its ack); try 2 got the second chunk back at
    # once (it was released on the failure), skipped it, and loaded the rest.
    assert rows(
        settings.duckdb_path,
        "select batch_id, sum(pulled), sum(loaded), sum(duplicates) from raw.ingest_batches group by 1 order by 1",
    ) == [
        (f"{run_id}#1", 2 * CHUNK, 2 * CHUNK, 0),
        (f"{run_id}#2", EVENTS - CHUNK, EVENTS - 2 * CHUNK, CHUNK),
    ]
    assert LocalBus(settings.bus_path).backlog(settings.subscription) == 0
