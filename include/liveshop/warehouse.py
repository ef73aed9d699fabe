"""The DuckDB warehouse: raw-layer loads, the scoring table and the serving copy.

DuckDB lets one process write a database file at a time, so every function here opens the file,
does its work in one transaction and closes it; Airflow runs the tasks that call them in a pool of
one slot. The dashboard never opens this file: ``publish_serving_copy`` writes a separate file and
swaps it into place.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from include.liveshop.contract import EVENT_COLUMNS
from include.liveshop.errors import ConfigError
from include.liveshop.settings import Settings

log = logging.getLogger(__name__)

RAW_SCHEMA = "raw"

_DDL = """
create schema if not exists raw;
create table if not exists raw.raw_events (
    event_id varchar primary key,
    schema_version integer not null,
    stream_id varchar not null,
    streamer_name varchar,
    stream_start_time timestamp,
    viewer_id varchar not null,
    viewer_email varchar,
    viewer_state varchar,
    device_type varchar,
    event_time timestamp not null,
    event_type varchar not null,
    product_id varchar,
    product_name varchar,
    chat_message varchar,
    price decimal(12, 2),
    quantity integer,
    source varchar,
    source_session_id varchar,
    extra json,
    message_id varchar not null,
    publish_time timestamp not null,
    delivery_attempt integer not null,
    ingested_at timestamp not null,
    batch_id varchar not null
);
create table if not exists raw.dead_letter_events (
    message_id varchar not null,
    data blob not null,
    reason varchar not null,
    field varchar,
    publish_time timestamp not null,
    delivery_attempt integer not null,
    dead_lettered_at timestamp not null,
    batch_id varchar not null,
    primary key (message_id, publish_time)
);
create table if not exists raw.ingest_batches (
    batch_id varchar not null,
    chunk integer not null,
    started_at timestamp not null,
    finished_at timestamp not null,
    pulled integer not null,
    loaded integer not null,
    duplicates integer not null,
    dead_lettered integer not null,
    primary key (batch_id, chunk)
);
"""

EVENT_ARROW_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("schema_version", pa.int32()),
        ("stream_id", pa.string()),
        ("streamer_name", pa.string()),
        ("stream_start_time", pa.timestamp("us")),
        ("viewer_id", pa.string()),
        ("viewer_email", pa.string()),
        ("viewer_state", pa.string()),
        ("device_type", pa.string()),
        ("event_time", pa.timestamp("us")),
        ("event_type", pa.string()),
        ("product_id", pa.string()),
        ("product_name", pa.string()),
        ("chat_message", pa.string()),
        ("price", pa.decimal128(12, 2)),
        ("quantity", pa.int32()),
        ("source", pa.string()),
        ("source_session_id", pa.string()),
        ("extra", pa.string()),
        ("message_id", pa.string()),
        ("publish_time", pa.timestamp("us")),
        ("delivery_attempt", pa.int32()),
    ]
)
assert tuple(EVENT_ARROW_SCHEMA.names[: len(EVENT_COLUMNS)]) == EVENT_COLUMNS

DEAD_LETTER_ARROW_SCHEMA = pa.schema(
    [
        ("message_id", pa.string()),
        ("data", pa.binary()),
        ("reason", pa.string()),
        ("field", pa.string()),
        ("publish_time", pa.timestamp("us")),
        ("delivery_attempt", pa.int32()),
    ]
)

#: Tables the dashboard reads, copied into the serving file.
SERVING_TABLES = (
    "main.fct_sessions",
    "main.fct_orders",
    "main.dim_viewers",
    "main.dim_streams",
    "main.fct_viewers_per_minute",
    "main.session_scores",
    "raw.ingest_batches",
)


@dataclass(frozen=True)
class ChunkResult:
    loaded: int
    duplicates: int
    dead_lettered: int


def require_duckdb(settings: Settings, step: str) -> None:
    """Stop with a clear message where a step has no BigQuery implementation yet.

    The dbt project has a ``bigquery`` target, but the raw-layer load, scoring and the serving copy
    run on DuckDB only; a run pointed at BigQuery must fail before it pulls anything.
    """
    if settings.warehouse != "duckdb":
        raise ConfigError(
            "LIVESHOP_WAREHOUSE",
            f"{step} supports only 'duckdb' so far, not {settings.warehouse!r}; the dbt project has a "
            "bigquery target, but loading, scoring and serving on BigQuery are not built yet",
        )


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@contextmanager
def connect(path: Path, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    try:
        yield con
    finally:
        con.close()


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_DDL)
    _rekey_dead_letters(con)


def _rekey_dead_letters(con: duckdb.DuckDBPyConnection) -> None:
    """Move a warehouse whose dead letters are keyed on message_id alone to (message_id, publish_time).

    A message id is unique within one bus only: a recreated local bus, or a restarted Pub/Sub
    emulator, numbers its messages from the start again, and a bad message keyed on its id alone
    would be taken for one already recorded and lost. Its redeliveries keep their publish time.
    """
    keys = con.execute(
        "select constraint_column_names from duckdb_constraints() "
        "where schema_name = 'raw' and table_name = 'dead_letter_events' and constraint_type = 'PRIMARY KEY'"
    ).fetchall()
    if keys != [(["message_id"],)]:
        return
    log.info("re-keying raw.dead_letter_events on (message_id, publish_time)")
    con.begin()
    try:
        con.execute("alter table raw.dead_letter_events rename to dead_letter_events_by_message_id")
        con.execute(_DDL)
        con.execute(
            "insert into raw.dead_letter_events by name select * from raw.dead_letter_events_by_message_id"
        )
        con.execute("drop table raw.dead_letter_events_by_message_id")
        con.commit()
    except BaseException:
        con.rollback()
        raise


def load_chunk(
    con: duckdb.DuckDBPyConnection,
    events: pa.Table,
    dead_letters: pa.Table,
    *,
    batch_id: str,
    chunk: int,
    pulled: int,
    started_at: datetime,
) -> ChunkResult:
    """Append one chunk to the raw layer in a single transaction.

    Events whose ``event_id`` is already loaded (an earlier delivery, or a publisher resend) are
    skipped, as are repeats within the chunk: the first delivery wins. Dead letters are keyed on the
    transport's message id and publish time, so a redelivered bad message is recorded once, and a
    bus that numbers its messages afresh (a new local bus, a restarted emulator) loses none.
    """
    now = utcnow()
    con.begin()
    try:
        con.register("incoming_events", events)
        con.register("incoming_dead_letters", dead_letters)
        loaded = con.execute(
            """
            insert or ignore into raw.raw_events
            select *, ? as ingested_at, ? as batch_id
            from incoming_events
            qualify row_number() over (
                partition by event_id order by publish_time, message_id
            ) = 1
            """,
            [now, batch_id],
        ).fetchone()[0]
        dead_lettered = con.execute(
            """
            insert or ignore into raw.dead_letter_events
            select message_id, data, reason, field, publish_time, delivery_attempt,
                   ? as dead_lettered_at, ? as batch_id
            from incoming_dead_letters
            qualify row_number() over (partition by message_id, publish_time) = 1
            """,
            [now, batch_id],
        ).fetchone()[0]
        result = ChunkResult(loaded, events.num_rows - loaded, dead_lettered)
        con.execute(
            "insert or replace into raw.ingest_batches values (?, ?, ?, ?, ?, ?, ?, ?)",
            [batch_id, chunk, started_at, utcnow(), pulled, loaded, result.duplicates, dead_lettered],
        )
        con.commit()
    except BaseException:
        con.rollback()
        raise
    finally:
        con.unregister("incoming_events")
        con.unregister("incoming_dead_letters")
    return result


def publish_serving_copy(
    warehouse_path: Path, serving_path: Path, tables: Sequence[str] = SERVING_TABLES
) -> None:
    """Copy the tables the dashboard reads into ``serving_path``, replacing it atomically.

    The copy is written to a temporary file beside the target and renamed over it, so a reader
    sees the previous copy or the new one, never a partial file, and never holds a lock the
    pipeline needs.
    """
    serving_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = serving_path.with_name(f".{serving_path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with connect(warehouse_path) as con:
            con.execute("attach ? as serving", [str(tmp)])
            try:
                for qualified in tables:
                    name = qualified.split(".")[-1]
                    # Table names come from the constant above, never from input.
                    con.execute(f"create table serving.main.{name} as select * from {qualified}")
                con.execute(
                    "create table serving.main.serving_metadata as "
                    "select ?::timestamp as published_at, 'duckdb' as warehouse",
                    [utcnow()],
                )
            finally:
                con.execute("detach serving")
        os.replace(tmp, serving_path)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
    log.info("published serving copy %s", serving_path)
