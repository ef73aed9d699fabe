"""Build small serving copies (``serving.duckdb``) from hand-written rows, for dashboard tests.

``write_serving_db(path, sessions=[session(...), ...], scores=[...])`` creates every table the
dashboard reads, with the serving copy's column types; rows list only the columns that matter
and take defaults for the rest. Like the pipeline, it writes a temporary file and renames it
into place.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

Row = Mapping[str, Any]

# Column name -> DuckDB type, in table order.
SCHEMAS: dict[str, dict[str, str]] = {
    "fct_sessions": {
        "session_id": "varchar",
        "stream_id": "varchar",
        "streamer_name": "varchar",
        "viewer_id": "varchar",
        "viewer_email_hash": "varchar",
        "viewer_state": "varchar",
        "device_type": "varchar",
        "session_number": "integer",
        "started_at": "timestamp",
        "ended_at": "timestamp",
        "duration_seconds": "double",
        "event_count": "integer",
        "product_views": "integer",
        "chat_messages": "integer",
        "add_to_carts": "integer",
        "checkouts": "integer",
        "orders": "integer",
        "revenue": "decimal(18, 2)",
        "is_converted": "boolean",
        "has_exited": "boolean",
        "is_open": "boolean",
    },
    "session_scores": {
        "session_id": "varchar",
        "conversion_probability": "double",
        "model_version": "varchar",
        "scored_at": "timestamp",
    },
    "fct_viewers_per_minute": {
        "stream_id": "varchar",
        "minute_at": "timestamp",
        "viewers": "integer",
    },
    "dim_streams": {
        "stream_id": "varchar",
        "streamer_name": "varchar",
        "stream_start_time": "timestamp",
        "first_event_at": "timestamp",
        "last_event_at": "timestamp",
        "viewers": "integer",
        "sessions": "integer",
        "orders": "integer",
        "buyers": "integer",
        "revenue": "decimal(18, 2)",
    },
    "fct_orders": {
        "order_id": "varchar",
        "session_id": "varchar",
        "stream_id": "varchar",
        "viewer_id": "varchar",
        "viewer_state": "varchar",
        "device_type": "varchar",
        "product_id": "varchar",
        "product_name": "varchar",
        "price": "decimal(12, 2)",
        "quantity": "integer",
        "revenue": "decimal(18, 2)",
        "ordered_at": "timestamp",
    },
    "ingest_batches": {  # one row per (batch_id, chunk), as the ingest task writes it
        "batch_id": "varchar",
        "chunk": "integer",
        "started_at": "timestamp",
        "finished_at": "timestamp",
        "pulled": "integer",
        "loaded": "integer",
        "duplicates": "integer",
        "dead_lettered": "integer",
    },
    "serving_metadata": {
        "published_at": "timestamp",
        "warehouse": "varchar",
    },
}

DEFAULT_PUBLISHED_AT = datetime(2024, 5, 1, 10, 10, 0)


def session(session_id: str, **columns: Any) -> dict[str, Any]:
    """A ``fct_sessions`` row; ``duration_seconds`` follows from started_at/ended_at."""
    started_at = columns.get("started_at", datetime(2024, 5, 1, 10, 0, 0))
    ended_at = columns.get("ended_at", started_at)
    row: dict[str, Any] = {
        "session_id": session_id,
        "stream_id": "stream-1",
        "streamer_name": "alice",
        "viewer_id": f"viewer-of-{session_id}",
        "viewer_email_hash": None,
        "viewer_state": "CA",
        "device_type": "mobile",
        "session_number": 1,
        "started_at": started_at,
        "ended_at": ended_at,
        "duration_seconds": (ended_at - started_at).total_seconds(),
        "event_count": 1,
        "product_views": 0,
        "chat_messages": 0,
        "add_to_carts": 0,
        "checkouts": 0,
        "orders": 0,
        "revenue": Decimal("0.00"),
        "is_converted": False,
        "has_exited": False,
        "is_open": False,
    }
    row.update(columns)
    return row


def write_serving_db(
    path: Path,
    *,
    sessions: Iterable[Row] = (),
    scores: Iterable[Row] = (),
    viewers_per_minute: Iterable[Row] = (),
    streams: Iterable[Row] | None = None,
    orders: Iterable[Row] = (),
    batches: Iterable[Row] = (),
    published_at: datetime = DEFAULT_PUBLISHED_AT,
    warehouse: str = "duckdb",
) -> Path:
    """Write a serving copy at ``path`` and return it.

    ``streams`` defaults to one ``dim_streams`` row per stream seen in ``sessions``. Missing
    columns in any row are NULL (use ``session()`` for sessions with sensible defaults).
    """
    sessions = list(sessions)
    rows: dict[str, list[Row]] = {
        "fct_sessions": sessions,
        "session_scores": list(scores),
        "fct_viewers_per_minute": list(viewers_per_minute),
        "dim_streams": list(streams) if streams is not None else _streams_of(sessions),
        "fct_orders": list(orders),
        "ingest_batches": list(batches),
        "serving_metadata": [{"published_at": published_at, "warehouse": warehouse}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    with duckdb.connect(str(temporary)) as con:
        for table, schema in SCHEMAS.items():
            columns = ", ".join(f"{name} {kind}" for name, kind in schema.items())
            con.execute(f"create table main.{table} ({columns})")
            table_rows = rows[table]
            unknown = {name for row in table_rows for name in row} - schema.keys()
            if unknown:
                raise ValueError(f"{table} has no column(s) {sorted(unknown)}; see SCHEMAS")
            if table_rows:
                placeholders = ", ".join("?" for _ in schema)
                con.executemany(
                    f"insert into main.{table} values ({placeholders})",
                    [[row.get(name) for name in schema] for row in table_rows],
                )
    os.replace(temporary, path)
    return path


def _streams_of(sessions: list[Row]) -> list[Row]:
    streams: dict[str, dict[str, Any]] = {}
    for row in sessions:
        stream = streams.setdefault(
            row["stream_id"],
            {
                "stream_id": row["stream_id"],
                "streamer_name": row.get("streamer_name"),
                "stream_start_time": row.get("started_at"),
            },
        )
        if row.get("started_at") and row["started_at"] < stream["stream_start_time"]:
            stream["stream_start_time"] = row["started_at"]
    return list(streams.values())
