"""The Streamlit dashboard rendered over hand-written serving copies.

Every expected number below is worked out by hand from ``SESSIONS`` and ``SCORES``:

=======  ========  ======  =====  =======  ========  =========  =====  ======  ==========
session  stream    viewer  state  device   duration  converted  open   carts   probability
=======  ========  ======  =====  =======  ========  =========  =====  ======  ==========
s-1      stream-1  v1      CA     mobile   180 s     yes        no     1       0.90
s-2      stream-1  v2      NY     desktop   90 s     no         yes    2       0.40
s-3      stream-2  v1      NY     mobile   240 s     no         no     0       0.70 (was 0.10)
s-4      stream-2  v3      TX     mobile    70 s     no         yes    1       0.20
=======  ========  ======  =====  =======  ========  =========  =====  ======  ==========

s-1 placed the only order (50.00).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboard import data
from dashboard.kpis import KPI_LABELS, format_duration
from tests.helpers_serving import session, write_serving_db

APP_PATH = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2024, 5, 1, hour, minute, second)


SESSIONS = [
    session(
        "s-1",
        stream_id="stream-1",
        streamer_name="alice",
        viewer_id="v1",
        viewer_state="CA",
        device_type="mobile",
        started_at=at(10, 0),
        ended_at=at(10, 3),
        add_to_carts=1,
        orders=1,
        revenue=Decimal("50.00"),
        is_converted=True,
    ),
    session(
        "s-2",
        stream_id="stream-1",
        streamer_name="alice",
        viewer_id="v2",
        viewer_state="NY",
        device_type="desktop",
        started_at=at(10, 1),
        ended_at=at(10, 2, 30),
        add_to_carts=2,
        is_open=True,
    ),
    session(
        "s-3",
        stream_id="stream-2",
        streamer_name="bob",
        viewer_id="v1",
        viewer_state="NY",
        device_type="mobile",
        started_at=at(10, 5),
        ended_at=at(10, 9),
    ),
    session(
        "s-4",
        stream_id="stream-2",
        streamer_name="bob",
        viewer_id="v3",
        viewer_state="TX",
        device_type="mobile",
        started_at=at(10, 6),
        ended_at=at(10, 7, 10),
        add_to_carts=1,
        is_open=True,
    ),
]

SCORES = [
    {"session_id": "s-1", "conversion_probability": 0.90, "scored_at": at(10, 8)},
    {"session_id": "s-2", "conversion_probability": 0.40, "scored_at": at(10, 8)},
    {"session_id": "s-3", "conversion_probability": 0.10, "scored_at": at(10, 4)},  # superseded
    {"session_id": "s-3", "conversion_probability": 0.70, "scored_at": at(10, 8)},
    {"session_id": "s-4", "conversion_probability": 0.20, "scored_at": at(10, 8)},
]

VIEWERS_PER_MINUTE = [
    {"stream_id": "stream-1", "minute_at": at(10, 0), "viewers": 1},
    {"stream_id": "stream-1", "minute_at": at(10, 1), "viewers": 2},
    {"stream_id": "stream-2", "minute_at": at(10, 5), "viewers": 1},
]

# b-7, the latest batch, was loaded in two chunks: 12 pulled, 10 loaded, 2 duplicates in all.
BATCHES = [
    {
        "batch_id": "b-6",
        "chunk": 0,
        "started_at": at(10, 4),
        "finished_at": at(10, 4, 30),
        "pulled": 3,
        "loaded": 3,
        "duplicates": 0,
        "dead_lettered": 0,
    },
    {
        "batch_id": "b-7",
        "chunk": 0,
        "started_at": at(10, 9),
        "finished_at": at(10, 9, 10),
        "pulled": 8,
        "loaded": 7,
        "duplicates": 1,
        "dead_lettered": 0,
    },
    {
        "batch_id": "b-7",
        "chunk": 1,
        "started_at": at(10, 9, 10),
        "finished_at": at(10, 9, 30),
        "pulled": 4,
        "loaded": 3,
        "duplicates": 1,
        "dead_lettered": 0,
    },
]


@pytest.fixture(autouse=True)
def _fresh_query_cache() -> None:
    """Query results are cached per process; start each test without them (conftest resets env)."""
    st.cache_data.clear()


@pytest.fixture
def serving_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = write_serving_db(
        tmp_path / "serving.duckdb",
        sessions=SESSIONS,
        scores=SCORES,
        viewers_per_minute=VIEWERS_PER_MINUTE,
        batches=BATCHES,
        published_at=at(10, 10),
    )
    monkeypatch.setenv(data.SERVING_PATH_ENV, str(path))
    return path


def run_app() -> AppTest:
    app = AppTest.from_file(str(APP_PATH), default_timeout=30).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def kpi_values(app: AppTest) -> dict[str, str]:
    """Rendered KPI tiles keyed like ``KPI_LABELS``."""
    by_label = {metric.label: metric.value for metric in app.metric}
    assert set(by_label) == set(KPI_LABELS.values()), f"KPI tiles changed: {sorted(by_label)}"
    return {key: by_label[label] for key, label in KPI_LABELS.items()}


def retarget_sessions(app: AppTest) -> list[str]:
    (table,) = app.dataframe
    return list(table.value["session_id"])


def test_kpis_match_hand_computed_values(serving_db: Path) -> None:
    assert kpi_values(run_app()) == {
        "sessions": "4",
        "viewers": "3",  # v1, v2, v3
        "avg_duration": "2m 25s",  # (180 + 90 + 240 + 70) / 4 = 145 s
        "conversion_rate": "25.0%",  # 1 of 4
        "avg_probability": "55.0%",  # (0.90 + 0.40 + 0.70 + 0.20) / 4, latest score of s-3
        "orders": "1",
        "revenue": "50.00",
    }


def test_device_filter_narrows_every_kpi(serving_db: Path) -> None:
    app = run_app()
    app.multiselect(key="filter_devices").select("mobile").run()
    assert not app.exception
    assert kpi_values(app) == {
        "sessions": "3",  # s-1, s-3, s-4
        "viewers": "2",  # v1, v3
        "avg_duration": "2m 43s",  # (180 + 240 + 70) / 3 = 163.3 s
        "conversion_rate": "33.3%",  # 1 of 3
        "avg_probability": "60.0%",  # (0.90 + 0.70 + 0.20) / 3
        "orders": "1",
        "revenue": "50.00",
    }
    assert retarget_sessions(app) == ["s-4", "s-3"]


def test_stream_filter_narrows_every_kpi(serving_db: Path) -> None:
    app = run_app()
    app.multiselect(key="filter_streams").select("stream-2").run()
    assert not app.exception
    assert kpi_values(app) == {
        "sessions": "2",  # s-3, s-4
        "viewers": "2",
        "avg_duration": "2m 35s",  # (240 + 70) / 2
        "conversion_rate": "0.0%",
        "avg_probability": "45.0%",  # (0.70 + 0.20) / 2
        "orders": "0",
        "revenue": "0.00",
    }


def test_viewer_filter_binds_its_input(serving_db: Path) -> None:
    app = run_app()
    app.text_input(key="filter_viewers").input("v1, v3").run()
    assert kpi_values(app)["sessions"] == "3"  # s-1, s-3, s-4

    app.text_input(key="filter_viewers").input("v1' or '1'='1").run()
    assert not app.exception
    values = kpi_values(app)
    assert values["sessions"] == "0"
    assert values["conversion_rate"] == values["avg_probability"] == "—"
    assert not app.dataframe


def test_retarget_list_skips_converted_and_puts_open_then_likely_first(serving_db: Path) -> None:
    app = run_app()
    (table,) = app.dataframe
    rows = table.value
    # s-1 converted; open s-2 (0.40) and s-4 (0.20) come before closed s-3 (0.70).
    assert list(rows["session_id"]) == ["s-2", "s-4", "s-3"]
    assert list(rows["conversion_probability"]) == [0.40, 0.20, 0.70]
    assert list(rows["viewer_id"]) == ["v2", "v3", "v1"]
    assert list(rows["add_to_carts"]) == [2, 1, 0]
    assert list(rows["last_activity_at"]) == [at(10, 2, 30), at(10, 7, 10), at(10, 9)]
    (download,) = app.download_button
    assert download.label == "Download CSV"


def test_freshness_caption_shows_publication_and_last_batch(serving_db: Path) -> None:
    captions = " ".join(caption.value for caption in run_app().caption)
    assert "Data published 2024-05-01 10:10:00 UTC" in captions
    assert (
        "Last batch `b-7` (2 chunks) finished 10:09:30 UTC: 12 pulled, 10 loaded, 2 duplicates, "
        "0 dead-lettered." in captions
    )


def test_viewers_per_minute_chart_is_drawn(serving_db: Path) -> None:
    app = run_app()
    assert app.get("vega_lite_chart"), "expected the viewers-per-minute chart"


def test_a_new_serving_copy_is_read_on_the_next_run(serving_db: Path) -> None:
    app = run_app()
    assert kpi_values(app)["sessions"] == "4"
    write_serving_db(serving_db, sessions=SESSIONS[:2], scores=SCORES)
    app.run()
    assert not app.exception
    assert kpi_values(app)["sessions"] == "2"


def test_missing_serving_copy_shows_waiting_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.SERVING_PATH_ENV, str(tmp_path / "not-yet.duckdb"))
    app = run_app()
    (info,) = app.info
    assert info.value.startswith("Waiting for the first micro-batch")
    assert not app.metric


def test_unreadable_serving_copy_shows_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "serving.duckdb"
    broken.write_bytes(b"half-written" * 512)
    monkeypatch.setenv(data.SERVING_PATH_ENV, str(broken))
    app = run_app()
    (warning,) = app.warning
    assert "could not be read" in warning.value
    assert not app.metric


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(None, "—"), (0, "0s"), (44.6, "45s"), (192, "3m 12s"), (3725, "1h 2m 5s")],
)
def test_format_duration(seconds: float | None, expected: str) -> None:
    assert format_duration(seconds) == expected


def test_serving_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert data.serving_path() == data.REPO_ROOT / ".data" / "serving.duckdb"
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    assert data.serving_path() == tmp_path / "serving.duckdb"
    monkeypatch.setenv(data.SERVING_PATH_ENV, str(tmp_path / "elsewhere.duckdb"))
    assert data.serving_path() == tmp_path / "elsewhere.duckdb"


def test_refresh_interval_rejects_a_non_positive_value(monkeypatch: pytest.MonkeyPatch) -> None:
    assert data.refresh_seconds() == data.DEFAULT_REFRESH_SECONDS
    monkeypatch.setenv(data.REFRESH_SECONDS_ENV, "0")
    with pytest.raises(ValueError, match=data.REFRESH_SECONDS_ENV):
        data.refresh_seconds()
