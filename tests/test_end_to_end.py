"""The whole path on real input: replay the original export onto the local bus, run the micro-batch
DAG with Airflow's own DAG test runner (`airflow dags test`), and check the warehouse, the serving
copy and the dashboard against figures worked out here from the CSV alone."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from include.liveshop.settings import PROJECT_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.shared_data]

SESSION_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Expected:
    events: int
    viewers: int
    streams: int
    orders: int
    buyers: int
    revenue: Decimal
    sessions: int
    converted_sessions: int


def expected_from_csv(events_csv: Path) -> Expected:
    """Figures from the export and its catalogue, computed without any of the project's code."""
    with open(events_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(events_csv.with_name("expanded_product_catalog.csv"), newline="") as f:
        price = {r["product_id"]: Decimal(r["price"]) for r in csv.DictReader(f)}
    orders = [r for r in rows if r["event_type"] == "order_completed"]

    # Sessions as documented: per viewer and stream, a new one after a gap of more than 30
    # minutes or after a stream_exit.
    by_presence: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        by_presence[(r["stream_id"], r["viewer_id"])].append(r)
    sessions = converted = 0
    for events in by_presence.values():
        events.sort(key=lambda r: r["event_time"])
        previous = None
        has_order = False
        for r in events:
            at = datetime.fromisoformat(r["event_time"])
            if previous is None or at - previous[0] > SESSION_TIMEOUT or previous[1] == "stream_exit":
                converted += has_order
                sessions += 1
                has_order = False
            has_order |= r["event_type"] == "order_completed"
            previous = (at, r["event_type"])
        converted += has_order
    return Expected(
        events=len(rows),
        viewers=len({r["viewer_id"] for r in rows}),
        streams=len({r["stream_id"] for r in rows}),
        orders=len(orders),
        buyers=len({r["viewer_id"] for r in orders}),
        revenue=sum(price[r["product_id"]] for r in orders),
        sessions=sessions,
        converted_sessions=converted,
    )


def run(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


@pytest.fixture(scope="module")
def pipeline_run(seed_events_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    data_dir = tmp_path_factory.mktemp("e2e")
    airflow_home = data_dir / "airflow"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LIVESHOP_", "AIRFLOW"))},
        "PYTHONPATH": str(PROJECT_ROOT),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "LIVESHOP_DATA_DIR": str(data_dir),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "SCARF_NO_ANALYTICS": "true",
        "DO_NOT_TRACK": "true",
    }
    run(
        [sys.executable, "-m", "include.simulator", "replay", str(seed_events_csv), "--as-fast-as-possible"],
        env,
    )
    # Replaying the same file again must not count anything twice.
    run(
        [sys.executable, "-m", "include.simulator", "replay", str(seed_events_csv), "--as-fast-as-possible"],
        env,
    )
    run(["airflow", "db", "migrate"], env)
    run(["airflow", "pools", "set", "duckdb_warehouse", "1", "DuckDB allows one writing process"], env)
    run(["airflow", "dags", "test", "liveshop_microbatch"], env, timeout=1200)
    return {"warehouse": data_dir / "warehouse.duckdb", "serving": data_dir / "serving.duckdb"}


@pytest.fixture(scope="module")
def expected(seed_events_csv: Path) -> Expected:
    return expected_from_csv(seed_events_csv)


def test_the_export_matches_its_published_figures(expected: Expected) -> None:
    # The figures the original project reports for this file, checked against our own reading.
    assert (expected.events, expected.viewers, expected.streams) == (5000, 100, 10)
    assert (expected.orders, expected.buyers, expected.revenue) == (323, 95, Decimal(20335))


def test_warehouse_holds_every_event_once(pipeline_run: dict[str, Path], expected: Expected) -> None:
    with duckdb.connect(str(pipeline_run["warehouse"]), read_only=True) as con:
        assert con.execute("select count(*), count(distinct event_id) from raw.raw_events").fetchone() == (
            expected.events,
            expected.events,
        )
        assert con.execute("select count(*) from raw.dead_letter_events").fetchone() == (0,)
        pulled, loaded, duplicates = con.execute(
            "select sum(pulled), sum(loaded), sum(duplicates) from raw.ingest_batches"
        ).fetchone()
        assert (pulled, loaded, duplicates) == (2 * expected.events, expected.events, expected.events)
        assert con.execute(
            "select count(*), count(distinct viewer_id), count(distinct stream_id) from main.stg_liveshop__events"
        ).fetchone() == (expected.events, expected.viewers, expected.streams)
        assert con.execute(
            "select count(*), count(distinct viewer_id), sum(revenue) from main.fct_orders"
        ).fetchone() == (expected.orders, expected.buyers, expected.revenue)
        assert con.execute(
            "select count(*), count(*) filter (where is_converted) from main.fct_sessions"
        ).fetchone() == (expected.sessions, expected.converted_sessions)


def test_every_session_is_scored(pipeline_run: dict[str, Path], expected: Expected) -> None:
    with duckdb.connect(str(pipeline_run["serving"]), read_only=True) as con:
        count, low, high, versions = con.execute(
            "select count(*), min(conversion_probability), max(conversion_probability), "
            "list(distinct model_version) from session_scores"
        ).fetchone()
        assert count == expected.sessions
        assert 0.0 <= low <= high <= 1.0
        assert len(versions) == 1 and versions[0].startswith("logreg-")
        assert con.execute(
            "select count(*) from fct_sessions left join session_scores using (session_id) "
            "where conversion_probability is null"
        ).fetchone() == (0,)


def test_no_email_leaves_the_raw_layer(pipeline_run: dict[str, Path]) -> None:
    with duckdb.connect(str(pipeline_run["serving"]), read_only=True) as con:
        columns = con.execute("select table_name, column_name from information_schema.columns").fetchall()
        assert not [c for c in columns if "email" in c[1] and c[1] != "viewer_email_hash"]
        for table, column in columns:
            found = con.execute(
                f'select count(*) from "{table}" where cast("{column}" as varchar) like \'%@example.com%\''
            ).fetchone()[0]
            assert found == 0, f"{table}.{column} holds a clear email"


def test_dashboard_renders_the_pipeline_output(
    pipeline_run: dict[str, Path], expected: Expected, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    from dashboard.kpis import KPI_LABELS

    monkeypatch.setenv("LIVESHOP_SERVING_PATH", str(pipeline_run["serving"]))
    app = AppTest.from_file(str(PROJECT_ROOT / "dashboard" / "app.py"), default_timeout=60).run()
    assert not app.exception
    tiles = {metric.label: metric.value for metric in app.metric}
    assert tiles[KPI_LABELS["sessions"]] == f"{expected.sessions:,}"
    assert tiles[KPI_LABELS["viewers"]] == str(expected.viewers)
    assert tiles[KPI_LABELS["orders"]] == str(expected.orders)
    assert tiles[KPI_LABELS["revenue"]] == "20,335.00"
    rate = 100 * expected.converted_sessions / expected.sessions
    assert tiles[KPI_LABELS["conversion_rate"]] == f"{rate:.1f}%"
    assert tiles[KPI_LABELS["avg_probability"]].endswith("%")
