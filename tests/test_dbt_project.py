"""End-to-end check of the dbt project on a throw-away DuckDB warehouse.

A small, hand-written set of raw events is loaded, `dbt build` runs on a copy of
include/dbt (so the repo stays clean), and every expected number below was
worked out by hand from those rows - see the comments next to them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.dbt

REPO_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = REPO_ROOT / "include" / "dbt"

RAW_DDL = """
create schema raw;

-- No primary key on event_id: ingest_events drops re-deliveries, but staging
-- must deduplicate on its own, and this test delivers one event twice.
create table raw.raw_events (
    event_id varchar not null,
    schema_version integer,
    stream_id varchar,
    streamer_name varchar,
    stream_start_time timestamp,
    viewer_id varchar,
    viewer_email varchar,
    viewer_state varchar,
    device_type varchar,
    event_time timestamp,
    event_type varchar,
    product_id varchar,
    product_name varchar,
    chat_message varchar,
    price decimal(12, 2),
    quantity integer,
    source varchar,
    source_session_id varchar,
    extra json,
    message_id varchar,
    publish_time timestamp,
    delivery_attempt integer,
    ingested_at timestamp,
    batch_id varchar
);

create table raw.dead_letter_events (
    message_id varchar,
    data blob,
    reason varchar,
    field varchar,
    publish_time timestamp,
    dead_lettered_at timestamp,
    batch_id varchar
);

create table raw.ingest_batches (
    batch_id varchar,
    started_at timestamp,
    finished_at timestamp,
    pulled integer,
    loaded integer,
    duplicates integer,
    dead_lettered integer
);
"""

V1_EMAIL = " Viewer.One@Example.COM "
V2_EMAIL = "v2@example.com"
V3_EMAIL = "v3@example.com"

STREAMS = {
    "s1": ("alice_live", "2024-05-01 09:55:00"),
    "s2": ("bob_shop", "2024-05-01 11:58:00"),
}
VIEWERS = {
    # viewer_id: (email, state, device) - v1 moves and switches device in s2.
    "v1": (V1_EMAIL, "CA", "mobile"),
    "v2": (V2_EMAIL, "NY", "desktop"),
    "v3": (V3_EMAIL, "TX", "mobile"),
}
PRODUCTS = {
    "p1": ("Mug", Decimal("10.00")),
    "p2": ("Lamp", Decimal("30.00")),
    "p3": ("Scarf", Decimal("5.50")),
}

# (event_id, stream_id, viewer_id, time on 2024-05-01, event_type, product, qty)
EVENTS = [
    # v1 in s1, session 1: browses, buys 2 x p1 at 10.00, chats.
    ("e01", "s1", "v1", "10:00:00", "stream_view_start", None, None),
    ("e02", "s1", "v1", "10:05:00", "product_view", "p1", None),
    ("e03", "s1", "v1", "10:06:00", "add_to_cart", "p1", 2),
    ("e04", "s1", "v1", "10:07:00", "checkout_started", "p1", 2),
    ("e05", "s1", "v1", "10:08:00", "order_completed", "p1", 2),
    ("e06", "s1", "v1", "10:10:00", "chat_message", None, None),
    # v1 in s1, session 2: 35 minutes of silence (> 30) split the session.
    ("e07", "s1", "v1", "10:45:00", "product_view", "p2", None),
    ("e08", "s1", "v1", "10:50:00", "stream_exit", None, None),
    # v2 in s1, session 1: a gap of exactly 30 minutes does not split.
    ("e09", "s1", "v2", "10:00:00", "stream_view_start", None, None),
    ("e10", "s1", "v2", "10:20:00", "chat_message", None, None),
    ("e11", "s1", "v2", "10:50:00", "product_view", "p2", None),
    ("e12", "s1", "v2", "10:55:00", "stream_exit", None, None),
    # v2 in s1, session 2: comes back one minute after stream_exit.
    ("e13", "s1", "v2", "10:56:00", "stream_view_start", None, None),
    ("e14", "s1", "v2", "11:00:00", "add_to_cart", "p2", 1),
    # v1 in s2 (another stream, so another session): buys 1 x p3 at 5.50.
    ("e15", "s2", "v1", "12:00:00", "stream_view_start", None, None),
    ("e16", "s2", "v1", "12:01:30", "order_completed", "p3", 1),
    ("e17", "s2", "v1", "12:02:00", "chat_message", None, None),
    # v3 in s2.
    ("e18", "s2", "v3", "12:00:30", "stream_view_start", None, None),
    ("e19", "s2", "v3", "12:03:00", "product_view", "p3", None),
]
FIRST_INGEST = "2024-05-01 12:05:00"
# e05 is delivered a second time by a later batch; the first delivery must win.
REDELIVERED_EVENT_ID = "e05"
REDELIVERY_INGEST = "2024-05-01 12:10:00"


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def at(clock: str) -> datetime:
    return ts(f"2024-05-01 {clock}")


def session_id(stream_id: str, viewer_id: str, number: int) -> str:
    return hashlib.md5(f"{stream_id}|{viewer_id}|{number}".encode()).hexdigest()


def email_hash(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def raw_row(event: tuple, ingested_at: str, message_id: str, attempt: int) -> tuple:
    event_id, stream_id, viewer_id, clock, event_type, product_id, quantity = event
    streamer_name, stream_start = STREAMS[stream_id]
    email, state, device = VIEWERS[viewer_id]
    if viewer_id == "v1" and stream_id == "s2":
        state, device = "OR", "tablet"
    product_name, price = PRODUCTS[product_id] if product_id else (None, None)
    return (
        event_id, 1, stream_id, streamer_name, ts(stream_start),
        viewer_id, email, state, device,
        at(clock), event_type,
        product_id, product_name,
        "hello" if event_type == "chat_message" else None,
        price, quantity, "simulator", None, None,
        message_id, at(clock), attempt, ts(ingested_at),
        "b2" if ingested_at == REDELIVERY_INGEST else "b1",
    )  # fmt: skip


def load_raw_events(database: Path) -> None:
    rows = []
    for event in EVENTS:
        if event[0] == REDELIVERED_EVENT_ID:
            # Written before the first delivery so that table order cannot
            # decide which copy staging keeps.
            rows.append(raw_row(event, REDELIVERY_INGEST, "m-e05-retry", 2))
        rows.append(raw_row(event, FIRST_INGEST, f"m-{event[0]}", 1))
    placeholders = ", ".join("?" * len(rows[0]))
    with duckdb.connect(str(database)) as con:
        con.execute(RAW_DDL)
        con.executemany(f"insert into raw.raw_events values ({placeholders})", rows)
        con.execute(
            "insert into raw.ingest_batches values ('b1', ?, ?, 19, 19, 0, 0), ('b2', ?, ?, 1, 1, 0, 0)",
            [ts(FIRST_INGEST), ts(FIRST_INGEST), ts(REDELIVERY_INGEST), ts(REDELIVERY_INGEST)],
        )


def dbt_executable() -> Path:
    configured = os.environ.get("LIVESHOP_DBT_EXECUTABLE")
    return Path(configured) if configured else REPO_ROOT / ".venv-dbt" / "bin" / "dbt"


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    dbt = dbt_executable()
    if not dbt.is_file():
        pytest.skip(
            f"dbt executable not found at {dbt}: create the .venv-dbt virtualenv from "
            "requirements-dbt.lock or set LIVESHOP_DBT_EXECUTABLE"
        )
    work = tmp_path_factory.mktemp("dbt")
    project = work / "project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    database = work / "warehouse.duckdb"
    load_raw_events(database)

    env = {
        **os.environ,
        "LIVESHOP_DUCKDB_PATH": str(database),
        "SCARF_NO_ANALYTICS": "true",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    command = [
        str(dbt), "build",
        "--profiles-dir", str(project),
        "--project-dir", str(project),
        "--target-path", str(work / "target"),
        "--log-path", str(work / "logs"),
        "--target", "duckdb",
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, (
        f"dbt build failed (exit {result.returncode}); fix the model or test named below.\n"
        f"{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    )
    with duckdb.connect(str(database), read_only=True) as con:
        yield con


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    cursor = con.execute(sql)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_staging_deduplicates_and_hashes_email(warehouse: duckdb.DuckDBPyConnection) -> None:
    assert warehouse.execute("select count(*) from raw.raw_events").fetchone() == (20,)
    staged = rows(warehouse, "select * from main.stg_liveshop__events order by event_id")
    assert len(staged) == 19, "the twice-delivered e05 must appear once"
    e05 = next(row for row in staged if row["event_id"] == "e05")
    assert e05["ingested_at"] == ts(FIRST_INGEST), "the earliest delivery must win"
    assert "viewer_email" not in e05
    assert {"price", "quantity", "source", "source_session_id", "ingested_at"} <= set(e05)
    assert not {"message_id", "publish_time", "delivery_attempt", "batch_id"} & set(e05)
    hashes = {row["viewer_id"]: row["viewer_email_hash"] for row in staged}
    assert hashes == {
        "v1": email_hash(V1_EMAIL),
        "v2": email_hash(V2_EMAIL),
        "v3": email_hash(V3_EMAIL),
    }


def test_no_email_in_clear_in_main_schema(warehouse: duckdb.DuckDBPyConnection) -> None:
    columns = warehouse.execute(
        "select table_name, column_name, data_type from information_schema.columns"
        " where table_schema = 'main'"
    ).fetchall()
    assert columns, "dbt build created nothing in schema main"
    email_columns = {c for _, c, _ in columns if "email" in c}
    assert email_columns == {"viewer_email_hash"}
    for table, column, data_type in columns:
        if data_type != "VARCHAR":
            continue
        (leaks,) = warehouse.execute(
            f'select count(*) from main."{table}" where "{column}" like \'%@%\''
        ).fetchone()
        assert leaks == 0, f"main.{table}.{column} holds an email address in clear"


def test_sessions(warehouse: duckdb.DuckDBPyConnection) -> None:
    sessions = {row["session_id"]: row for row in rows(warehouse, "select * from main.fct_sessions")}
    # (stream, viewer, number): events, product_views, chat, carts, checkouts,
    # orders, revenue, duration, exited, open. The latest event is 12:03:00,
    # so only sessions ending at or after 11:33:00 without an exit are open.
    expected = {
        ("s1", "v1", 1): (6, 1, 1, 1, 1, 1, Decimal("20.00"), 600.0, False, False),
        ("s1", "v1", 2): (2, 1, 0, 0, 0, 0, Decimal("0.00"), 300.0, True, False),
        ("s1", "v2", 1): (4, 1, 1, 0, 0, 0, Decimal("0.00"), 3300.0, True, False),
        ("s1", "v2", 2): (2, 0, 0, 1, 0, 0, Decimal("0.00"), 240.0, False, False),
        ("s2", "v1", 1): (3, 0, 1, 0, 0, 1, Decimal("5.50"), 120.0, False, True),
        ("s2", "v3", 1): (2, 1, 0, 0, 0, 0, Decimal("0.00"), 150.0, False, True),
    }
    assert set(sessions) == {session_id(*key) for key in expected}
    for key, values in expected.items():
        row = sessions[session_id(*key)]
        actual = (
            row["event_count"], row["product_views"], row["chat_messages"],
            row["add_to_carts"], row["checkouts"], row["orders"], row["revenue"],
            row["duration_seconds"], row["has_exited"], row["is_open"],
        )  # fmt: skip
        assert actual == values, f"session {key}"
        assert row["is_converted"] is (values[5] > 0), f"session {key}"
        assert (row["stream_id"], row["viewer_id"], row["session_number"]) == key

    v1_in_s2 = sessions[session_id("s2", "v1", 1)]
    assert (v1_in_s2["device_type"], v1_in_s2["viewer_state"]) == ("tablet", "OR")
    assert v1_in_s2["streamer_name"] == "bob_shop"
    assert v1_in_s2["viewer_email_hash"] == email_hash(V1_EMAIL)
    first = sessions[session_id("s1", "v1", 1)]
    assert (first["started_at"], first["ended_at"]) == (at("10:00:00"), at("10:10:00"))
    assert (first["device_type"], first["viewer_state"]) == ("mobile", "CA")


def test_session_features_stop_before_first_order(
    warehouse: duckdb.DuckDBPyConnection,
) -> None:
    features = {
        row.pop("session_id"): row for row in rows(warehouse, "select * from main.fct_session_features")
    }
    assert len(features) == 6
    # Before the 10:08 order: e01 view start, e02 view, e03 cart, e04 checkout.
    assert features[session_id("s1", "v1", 1)] == {
        "device_type": "mobile",
        "viewer_state": "CA",
        "pit_product_views": 1,
        "pit_chat_messages": 0,
        "pit_add_to_carts": 1,
        "pit_checkouts": 1,
        "pit_distinct_products": 1,
        "pit_seconds_active": 420.0,
        "is_converted": True,
        "observed_at": at("10:07:00"),
    }
    # Only the 12:00 stream_view_start precedes the 12:01:30 order.
    v1_in_s2 = features[session_id("s2", "v1", 1)]
    assert v1_in_s2["pit_chat_messages"] == 0, "the chat after the order must not count"
    assert v1_in_s2["pit_seconds_active"] == 0.0
    assert v1_in_s2["observed_at"] == at("12:00:00")
    assert v1_in_s2["is_converted"] is True
    # No order: every event counts.
    v2_first = features[session_id("s1", "v2", 1)]
    assert (v2_first["pit_product_views"], v2_first["pit_chat_messages"]) == (1, 1)
    assert v2_first["pit_seconds_active"] == 3300.0
    assert v2_first["observed_at"] == at("10:55:00")
    assert v2_first["is_converted"] is False


def test_orders(warehouse: duckdb.DuckDBPyConnection) -> None:
    orders = rows(warehouse, "select * from main.fct_orders order by order_id")
    assert orders == [
        {
            "order_id": "e05",
            "session_id": session_id("s1", "v1", 1),
            "stream_id": "s1",
            "viewer_id": "v1",
            "viewer_state": "CA",
            "device_type": "mobile",
            "product_id": "p1",
            "product_name": "Mug",
            "price": Decimal("10.00"),
            "quantity": 2,
            "revenue": Decimal("20.00"),
            "ordered_at": at("10:08:00"),
        },
        {
            "order_id": "e16",
            "session_id": session_id("s2", "v1", 1),
            "stream_id": "s2",
            "viewer_id": "v1",
            "viewer_state": "OR",
            "device_type": "tablet",
            "product_id": "p3",
            "product_name": "Scarf",
            "price": Decimal("5.50"),
            "quantity": 1,
            "revenue": Decimal("5.50"),
            "ordered_at": at("12:01:30"),
        },
    ]


def test_dim_viewers(warehouse: duckdb.DuckDBPyConnection) -> None:
    viewers = rows(warehouse, "select * from main.dim_viewers order by viewer_id")
    assert [
        (v["viewer_id"], v["viewer_state"], v["sessions"], v["orders"], v["revenue"]) for v in viewers
    ] == [
        ("v1", "OR", 3, 2, Decimal("25.50")),  # latest state is from s2
        ("v2", "NY", 2, 0, Decimal("0.00")),
        ("v3", "TX", 1, 0, Decimal("0.00")),
    ]
    v1 = viewers[0]
    assert v1["viewer_email_hash"] == email_hash(V1_EMAIL)
    assert (v1["first_seen_at"], v1["last_seen_at"]) == (at("10:00:00"), at("12:02:00"))


def test_dim_streams(warehouse: duckdb.DuckDBPyConnection) -> None:
    streams = rows(warehouse, "select * from main.dim_streams order by stream_id")
    assert streams == [
        {
            "stream_id": "s1",
            "streamer_name": "alice_live",
            "stream_start_time": ts("2024-05-01 09:55:00"),
            "first_event_at": at("10:00:00"),
            "last_event_at": at("11:00:00"),
            "viewers": 2,
            "sessions": 4,
            "orders": 1,
            "buyers": 1,
            "revenue": Decimal("20.00"),
        },
        {
            "stream_id": "s2",
            "streamer_name": "bob_shop",
            "stream_start_time": ts("2024-05-01 11:58:00"),
            "first_event_at": at("12:00:00"),
            "last_event_at": at("12:03:00"),
            "viewers": 2,
            "sessions": 2,
            "orders": 1,
            "buyers": 1,
            "revenue": Decimal("5.50"),
        },
    ]


def test_viewers_per_minute(warehouse: duckdb.DuckDBPyConnection) -> None:
    per_minute = {
        (row["stream_id"], row["minute_at"]): row["viewers"]
        for row in rows(warehouse, "select * from main.fct_viewers_per_minute")
    }
    # s1 spans 10:00..11:00 (61 minutes), s2 12:00..12:03 (4 minutes).
    assert sum(1 for stream, _ in per_minute if stream == "s1") == 61
    assert sum(1 for stream, _ in per_minute if stream == "s2") == 4
    # Minutes per session: s1 v1 11 + 6, v2 56 + 5; s2 v1 3, v3 4.
    assert sum(v for (stream, _), v in per_minute.items() if stream == "s1") == 78
    assert sum(v for (stream, _), v in per_minute.items() if stream == "s2") == 7
    assert per_minute["s1", at("10:10:00")] == 2  # v1's session ends at 10:10:00
    assert per_minute["s1", at("10:11:00")] == 1
    assert per_minute["s1", at("10:46:00")] == 2
    assert per_minute["s1", at("10:55:00")] == 1  # v2 exits, v1 already gone
    assert per_minute["s2", at("12:00:00")] == 2  # v3 joined at 12:00:30
    assert per_minute["s2", at("12:03:00")] == 1
