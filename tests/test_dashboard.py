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

s-1 placed the only order (50.00). The newest activity is s-3's last event at 10:09, so the default
window (the 6 hours up to it) holds every session, and the chart's newest minute is 10:09.

``LIVE_SESSIONS`` (below, from "Time window" on) put a finished historical replay of 2019 beside
three live shows, two of them by one host; its own table lists the hand-worked figures.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
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


@pytest.mark.parametrize("raw", ["0", "-5", "soon", "nan", "inf"])
def test_refresh_interval_rejects_what_is_not_a_positive_number(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    assert data.refresh_seconds() == data.DEFAULT_REFRESH_SECONDS
    monkeypatch.setenv(data.REFRESH_SECONDS_ENV, raw)
    with pytest.raises(ValueError, match=data.REFRESH_SECONDS_ENV):
        data.refresh_seconds()


# --- Time window, chart labels and the newest minute ----------------------------------------------
#
# Three live shows on 2026-12-04, two of them by Carlos, beside a finished REES46 replay of 2019
# (no host name, like the real replay). The newest activity is d-a's last event at 10:20:30.
#
# =======  ============  ======  ===================  ========  =========  ====  ===========
# session  stream        viewer  activity (UTC)       duration  converted  open  probability
# =======  ============  ======  ===================  ========  =========  ====  ===========
# c1-a     CARLOS_EARLY  v1      04:15:00-04:45:00    1800 s    no         no    0.30
# c1-b     CARLOS_EARLY  v2      04:16:00-04:20:00     240 s    no         no    0.50
# c2-a     CARLOS_LATE   v1      09:30:00-09:40:00     600 s    30.00      no    0.80
# d-a      DANA          v3      10:18:00-10:20:30     150 s    no         yes   0.60
# d-b      DANA          v4      10:19:10-10:19:50      40 s    no         yes   0.20
# h-1      REES46        512345  2019-10-01 08:00-08:10 600 s   99.00      no    0.90
# =======  ============  ======  ===================  ========  =========  ====  ===========
#
# Window starts (newest activity 10:20:30 minus the span) and the sessions whose last event is at
# or after them:
#   Last hour      09:20:30             c2-a, d-a, d-b
#   Last 6 hours   04:20:30             + c1-a (started before, still active after the start);
#                                       c1-b ended at 04:20:00, 30 s too early
#   Last 24 hours  2026-12-03 10:20:30  + c1-b
#   Last 7 days    2026-11-27 10:20:30  the same five
#   All time       -                    + h-1


def live(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 12, 4, hour, minute, second)


def in_2019(hour: int, minute: int) -> datetime:
    return datetime(2019, 10, 1, hour, minute)


CARLOS_EARLY = "SIM-202612040415-aaaaaa"
CARLOS_LATE = "SIM-202612040930-bbbbbb"
DANA = "SIM-202612040950-cccccc"
REES46 = "rees46-2019-10-01"

LABELS = {
    CARLOS_EARLY: "Carlos · 2026-12-04 04:15",
    CARLOS_LATE: "Carlos · 2026-12-04 09:30",
    DANA: "Dana · 2026-12-04 09:50",
    REES46: "rees46-2019-10-01 · 2019-10-01 00:00",  # no host: the stream id stands in
}

LIVE_STREAMS = [
    {"stream_id": CARLOS_EARLY, "streamer_name": "Carlos", "stream_start_time": live(4, 15)},
    {"stream_id": CARLOS_LATE, "streamer_name": "Carlos", "stream_start_time": live(9, 30)},
    {"stream_id": DANA, "streamer_name": "Dana", "stream_start_time": live(9, 50)},
    {"stream_id": REES46, "streamer_name": None, "stream_start_time": in_2019(0, 0)},
]

LIVE_SESSIONS = [
    session("c1-a", stream_id=CARLOS_EARLY, streamer_name="Carlos", viewer_id="v1",
            started_at=live(4, 15), ended_at=live(4, 45)),
    session("c1-b", stream_id=CARLOS_EARLY, streamer_name="Carlos", viewer_id="v2",
            started_at=live(4, 16), ended_at=live(4, 20)),
    session("c2-a", stream_id=CARLOS_LATE, streamer_name="Carlos", viewer_id="v1",
            started_at=live(9, 30), ended_at=live(9, 40),
            orders=1, revenue=Decimal("30.00"), is_converted=True),
    session("d-a", stream_id=DANA, streamer_name="Dana", viewer_id="v3",
            started_at=live(10, 18), ended_at=live(10, 20, 30), is_open=True),
    session("d-b", stream_id=DANA, streamer_name="Dana", viewer_id="v4",
            started_at=live(10, 19, 10), ended_at=live(10, 19, 50), is_open=True),
    session("h-1", stream_id=REES46, streamer_name=None, viewer_id="512345",
            started_at=in_2019(8, 0), ended_at=in_2019(8, 10),
            orders=1, revenue=Decimal("99.00"), is_converted=True),
]  # fmt: skip

LIVE_SCORES = [
    {"session_id": session_id, "conversion_probability": probability, "scored_at": live(10, 20)}
    for session_id, probability in [
        ("c1-a", 0.30), ("c1-b", 0.50), ("c2-a", 0.80), ("d-a", 0.60), ("d-b", 0.20), ("h-1", 0.90)
    ]
]  # fmt: skip

# Some of the model's rows (it zero-fills every minute of a stream; the dashboard needs no more),
# counted from the sessions above: at 04:20 v2 is still in (until 04:20:00); at 10:19 both Dana's
# viewers are in; 10:20 is the minute of the newest activity and only d-a has reached it so far.
LIVE_VIEWERS_PER_MINUTE = [
    {"stream_id": stream_id, "minute_at": minute_at, "viewers": viewers}
    for stream_id, minute_at, viewers in [
        (CARLOS_EARLY, live(4, 15), 1),
        (CARLOS_EARLY, live(4, 16), 2),
        (CARLOS_EARLY, live(4, 20), 2),
        (CARLOS_EARLY, live(4, 21), 1),
        (CARLOS_EARLY, live(4, 45), 1),
        (CARLOS_LATE, live(9, 30), 1),
        (CARLOS_LATE, live(9, 40), 1),
        (DANA, live(10, 18), 1),
        (DANA, live(10, 19), 2),
        (DANA, live(10, 20), 1),
        (REES46, in_2019(8, 0), 1),
        (REES46, in_2019(8, 10), 1),
    ]
]

KPIS_BY_WINDOW = {
    "Last hour": {
        "sessions": "3",  # c2-a, d-a, d-b
        "viewers": "3",  # v1, v3, v4
        "avg_duration": "4m 23s",  # (600 + 150 + 40) / 3 = 263.3 s
        "conversion_rate": "33.3%",  # 1 of 3
        "avg_probability": "53.3%",  # (0.80 + 0.60 + 0.20) / 3
        "orders": "1",
        "revenue": "30.00",
    },
    "Last 6 hours": {
        "sessions": "4",  # + c1-a
        "viewers": "3",  # v1 again
        "avg_duration": "10m 48s",  # (1800 + 600 + 150 + 40) / 4 = 647.5 s, rounded up
        "conversion_rate": "25.0%",  # 1 of 4
        "avg_probability": "47.5%",  # (0.30 + 0.80 + 0.60 + 0.20) / 4
        "orders": "1",
        "revenue": "30.00",
    },
    "Last 24 hours": {
        "sessions": "5",  # + c1-b
        "viewers": "4",  # + v2
        "avg_duration": "9m 26s",  # (2590 + 240) / 5 = 566 s
        "conversion_rate": "20.0%",  # 1 of 5
        "avg_probability": "48.0%",  # (1.90 + 0.50) / 5
        "orders": "1",
        "revenue": "30.00",
    },
    "All time": {
        "sessions": "6",  # + h-1
        "viewers": "5",  # + 512345
        "avg_duration": "9m 32s",  # (2830 + 600) / 6 = 571.7 s
        "conversion_rate": "33.3%",  # 2 of 6
        "avg_probability": "55.0%",  # (2.40 + 0.90) / 6
        "orders": "2",
        "revenue": "129.00",  # 30.00 + 99.00
    },
}
KPIS_BY_WINDOW["Last 7 days"] = KPIS_BY_WINDOW["Last 24 hours"]

# Unconverted scored sessions, open first, then by probability.
RETARGET_BY_WINDOW = {
    "Last hour": ["d-a", "d-b"],
    "Last 6 hours": ["d-a", "d-b", "c1-a"],
    "Last 24 hours": ["d-a", "d-b", "c1-b", "c1-a"],
    "Last 7 days": ["d-a", "d-b", "c1-b", "c1-a"],
    "All time": ["d-a", "d-b", "c1-b", "c1-a"],  # h-1 converted
}


@pytest.fixture
def live_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = write_serving_db(
        tmp_path / "serving.duckdb",
        sessions=LIVE_SESSIONS,
        scores=LIVE_SCORES,
        viewers_per_minute=LIVE_VIEWERS_PER_MINUTE,
        streams=LIVE_STREAMS,
        published_at=live(10, 21),
    )
    monkeypatch.setenv(data.SERVING_PATH_ENV, str(path))
    return path


def choose_window(app: AppTest, label: str) -> AppTest:
    app.selectbox(key="filter_window").select(label).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def captions(app: AppTest) -> str:
    return " ".join(caption.value for caption in app.caption)


def chart_layers(app: AppTest) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Each layer of the viewers-per-minute chart (a plain chart is one layer) with its rows."""
    from streamlit import dataframe_util

    (chart,) = app.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    rows = {
        dataset.name: dataframe_util.convert_arrow_bytes_to_pandas_df(dataset.data.data)
        for dataset in chart.proto.datasets
    }
    # Altair moves data that every layer shares to the top.
    return [(layer, rows[layer.get("data", spec.get("data"))["name"]]) for layer in spec.get("layer", [spec])]


def mark_of(layer: dict[str, Any]) -> dict[str, Any]:
    mark = layer["mark"]
    return mark if isinstance(mark, dict) else {"type": mark}


def solid_lines(app: AppTest) -> pd.DataFrame:
    """The rows drawn as solid lines."""
    (rows,) = [
        r
        for layer, r in chart_layers(app)
        if mark_of(layer)["type"] == "line" and "strokeDash" not in mark_of(layer)
    ]
    return rows


def points(rows: pd.DataFrame, stream_id: str) -> list[tuple[datetime, int]]:
    """(minute, viewers) of one stream, in time order."""
    mine = rows[rows["stream_id"] == stream_id].sort_values("minute_at")
    return [
        (minute.to_pydatetime(), int(viewers))
        for minute, viewers in zip(mine["minute_at"], mine["viewers"], strict=True)
    ]


def test_time_window_defaults_to_the_last_six_hours_before_the_newest_activity(live_db: Path) -> None:
    app = run_app()
    window = app.selectbox(key="filter_window")
    assert window.options == ["Last hour", "Last 6 hours", "Last 24 hours", "Last 7 days", "All time"]
    assert window.value == "Last 6 hours"
    assert "not at the wall clock" in window.help  # it is 2026 in the fixture, whatever the date
    assert kpi_values(app) == KPIS_BY_WINDOW["Last 6 hours"]
    assert retarget_sessions(app) == RETARGET_BY_WINDOW["Last 6 hours"]
    assert (
        "Sessions active from 2026-12-04 04:20:30 to 2026-12-04 10:20:30 UTC, the newest activity "
        "in the serving copy." in captions(app)
    )


@pytest.mark.parametrize("label", ["Last hour", "Last 24 hours", "Last 7 days", "All time"])
def test_time_window_restricts_every_kpi_and_the_retarget_list(live_db: Path, label: str) -> None:
    app = choose_window(run_app(), label)
    assert kpi_values(app) == KPIS_BY_WINDOW[label]
    assert retarget_sessions(app) == RETARGET_BY_WINDOW[label]


def test_all_time_names_the_newest_activity(live_db: Path) -> None:
    app = choose_window(run_app(), "All time")
    assert "All activity up to the newest, at 2026-12-04 10:20:30 UTC." in captions(app)


def test_time_window_combines_with_the_other_filters(live_db: Path) -> None:
    app = run_app()
    app.text_input(key="filter_viewers").input("v1").run()
    assert kpi_values(app)["sessions"] == "2"  # c1-a and c2-a in the last 6 hours
    choose_window(app, "Last hour")
    assert kpi_values(app)["sessions"] == "1"  # c2-a


def test_chart_spans_the_window_only(live_db: Path) -> None:
    app = run_app()
    minutes = pd.concat([rows["minute_at"] for _, rows in chart_layers(app)])
    # Minutes from 04:20, the one holding the window's start (04:20:30), to 10:20; no 2019.
    assert (minutes.min(), minutes.max()) == (live(4, 20), live(10, 20))
    assert points(solid_lines(app), CARLOS_EARLY) == [(live(4, 20), 2), (live(4, 21), 1), (live(4, 45), 1)]

    choose_window(app, "All time")
    minutes = pd.concat([rows["minute_at"] for _, rows in chart_layers(app)])
    assert (minutes.min(), minutes.max()) == (in_2019(8, 0), live(10, 20))


def test_chart_spans_the_window_with_session_filters_too(live_db: Path) -> None:
    app = run_app()
    app.text_input(key="filter_viewers").input("v1").run()
    rows = solid_lines(app)
    # c1-a from 04:15 is clipped to 04:20 (26 minutes to 04:45); c2-a 09:30 to 09:40 (11 minutes).
    early = points(rows, CARLOS_EARLY)
    assert (early[0], early[-1], len(early)) == ((live(4, 20), 1), (live(4, 45), 1), 26)
    assert len(points(rows, CARLOS_LATE)) == 11
    assert set(rows["stream_id"]) == {CARLOS_EARLY, CARLOS_LATE}


def test_chart_axis_labels_each_tick_by_its_granularity(live_db: Path) -> None:
    """A fixed %H:%M read 00:00 on every tick of a 2019-2026 axis."""
    app = choose_window(run_app(), "All time")
    for layer, _ in chart_layers(app):
        x = layer["encoding"]["x"]
        assert x["field"] == "minute_at" and x["type"] == "temporal"
        labels = x.get("axis", {}).get("format")
        # Not one fixed pattern but one per granularity: years on year ticks, dates on day
        # ticks, 24-hour times within a day.
        assert isinstance(labels, dict), labels
        assert (labels["year"], labels["date"], labels["hours"], labels["minutes"]) == (
            "%Y",
            "%b %d",
            "%H:%M",
            "%H:%M",
        )
        assert x.get("scale", {}).get("type") != "utc"  # Streamlit already shows naive times as stored


def test_legend_tells_two_shows_of_one_host_apart_and_lists_every_stream(live_db: Path) -> None:
    app = choose_window(run_app(), "All time")
    layers = chart_layers(app)
    labels = set(pd.concat([rows["stream_label"] for _, rows in layers]))
    assert labels == set(LABELS.values())
    for layer, _ in layers:
        color = layer["encoding"]["color"]
        assert color["field"] == "stream_label"
        assert color["legend"]["labelLimit"] == 0  # no label is cut short
        assert color["legend"]["symbolLimit"] == 0  # no entry is dropped
    # The sidebar uses the same labels, newest stream first.
    assert app.multiselect(key="filter_streams").options == [
        LABELS[DANA],
        LABELS[CARLOS_LATE],
        LABELS[CARLOS_EARLY],
        LABELS[REES46],
    ]


def test_the_default_window_leaves_the_historical_stream_out_of_the_legend(live_db: Path) -> None:
    labels = set(pd.concat([rows["stream_label"] for _, rows in chart_layers(run_app())]))
    assert labels == {LABELS[CARLOS_EARLY], LABELS[CARLOS_LATE], LABELS[DANA]}


def test_streams_alike_in_host_and_start_get_their_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = "SIM-202612041000-eeeeee", "SIM-202612041000-ffffff"
    path = write_serving_db(
        tmp_path / "serving.duckdb",
        sessions=[
            session(
                "e-1", stream_id=first, streamer_name="Eve", started_at=live(10, 0), ended_at=live(10, 2)
            ),
            session(
                "e-2", stream_id=second, streamer_name="Eve", started_at=live(10, 0), ended_at=live(10, 3)
            ),
        ],
        viewers_per_minute=[
            {"stream_id": first, "minute_at": live(10, 1), "viewers": 1},
            {"stream_id": second, "minute_at": live(10, 1), "viewers": 1},
        ],
    )
    monkeypatch.setenv(data.SERVING_PATH_ENV, str(path))
    app = run_app()
    expected = {
        "Eve · 2026-12-04 10:00 · SIM-202612041000-eeeeee",
        "Eve · 2026-12-04 10:00 · SIM-202612041000-ffffff",
    }
    assert set(solid_lines(app)["stream_label"]) == expected
    assert set(app.multiselect(key="filter_streams").options) == expected


@pytest.fixture
def twelve_streams_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Streams S01..S12, one session each from 10:00 to 10:05; S<n> peaks at n viewers at 10:01."""
    ids = [f"S{n:02d}" for n in range(1, 13)]
    path = write_serving_db(
        tmp_path / "serving.duckdb",
        sessions=[
            session(
                f"s-{i}", stream_id=i, streamer_name=f"host {i}", started_at=live(10, 0), ended_at=live(10, 5)
            )
            for i in ids
        ],
        viewers_per_minute=[
            {"stream_id": i, "minute_at": live(10, 1), "viewers": n} for n, i in enumerate(ids, start=1)
        ],
    )
    monkeypatch.setenv(data.SERVING_PATH_ENV, str(path))
    return path


def test_chart_draws_the_ten_largest_audiences_and_says_so(twelve_streams_db: Path) -> None:
    app = run_app()
    assert set(solid_lines(app)["stream_id"]) == {f"S{n:02d}" for n in range(3, 13)}  # not S01, S02
    assert (
        "Showing the 10 of 12 streams with the most viewers in a minute in this window; "
        "pick streams in the sidebar to see others." in captions(app)
    )


def test_chart_draws_every_stream_picked_in_the_sidebar(twelve_streams_db: Path) -> None:
    app = run_app()
    picked = [f"S{n:02d}" for n in range(1, 12)]  # eleven, S01 and S02 among them
    streams = app.multiselect(key="filter_streams")
    for stream_id in picked:
        streams.select(stream_id)
    app.run()
    assert set(solid_lines(app)["stream_id"]) == set(picked)
    assert "Showing the" not in captions(app)


def test_top_streams_breaks_ties_by_viewer_minutes_then_id() -> None:
    frame = pd.DataFrame(
        {
            "stream_id": ["a", "a", "b", "c", "c", "d"],
            "viewers": [5, 1, 5, 5, 3, 9],
        }
    )
    # Peaks: d 9, then a, b and c 5 each; viewer-minutes a 6, b 5, c 8: so d, c, a, then b.
    assert list(data.top_streams(frame, limit=3)["stream_id"].unique()) == ["a", "c", "d"]
    assert set(data.top_streams(frame, limit=1)["stream_id"]) == {"d"}


def test_newest_minute_is_dashed_instead_of_a_drop(live_db: Path) -> None:
    app = run_app()
    layers = chart_layers(app)
    # Dana's solid line stops at 10:19, the last complete minute; Carlos's lines end where they
    # ended hours ago, complete.
    assert points(solid_lines(app), DANA) == [(live(10, 18), 1), (live(10, 19), 2)]
    assert points(solid_lines(app), CARLOS_LATE) == [(live(9, 30), 1), (live(9, 40), 1)]
    (dashed,) = [rows for layer, rows in layers if "strokeDash" in mark_of(layer)]
    assert points(dashed, DANA) == [(live(10, 19), 2), (live(10, 20), 1)]
    assert set(dashed["stream_id"]) == {DANA}
    (filling,) = [rows for layer, rows in layers if mark_of(layer)["type"] == "point"]
    assert points(filling, DANA) == [(live(10, 20), 1)]
    assert "The dashed end of a line is the newest minute (10:20 UTC)" in captions(app)


def test_newest_minute_is_dashed_with_session_filters_too(live_db: Path) -> None:
    app = run_app()
    app.text_input(key="filter_viewers").input("v3").run()
    # d-a alone: 10:18, 10:19 and the filling 10:20, one viewer each.
    assert points(solid_lines(app), DANA) == [(live(10, 18), 1), (live(10, 19), 1)]
    (dashed,) = [rows for layer, rows in chart_layers(app) if "strokeDash" in mark_of(layer)]
    assert points(dashed, DANA) == [(live(10, 19), 1), (live(10, 20), 1)]


def test_no_dashed_minute_when_the_newest_minute_is_not_drawn(live_db: Path) -> None:
    app = run_app()
    app.multiselect(key="filter_streams").select(CARLOS_LATE).run()
    layers = chart_layers(app)
    assert [mark_of(layer)["type"] for layer, _ in layers] == ["line"]
    assert "newest minute" not in captions(app)
