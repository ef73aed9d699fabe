"""Read-only queries against the serving copy (``serving.duckdb``).

The pipeline replaces the serving file atomically (write a temporary file, then ``os.replace``),
so every query opens its own read-only connection and closes it straight away: a cached
connection would keep reading the replaced file. Query *results* are cached for a few seconds,
keyed by the file's modification time so a new copy is read as soon as it lands.

Every SQL text here is a constant; filter values only ever reach DuckDB as bound parameters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import streamlit as st

from dashboard.kpis import Kpis

SERVING_PATH_ENV = "LIVESHOP_SERVING_PATH"
DATA_DIR_ENV = "LIVESHOP_DATA_DIR"
REFRESH_SECONDS_ENV = "LIVESHOP_DASHBOARD_REFRESH_SECONDS"
DEFAULT_REFRESH_SECONDS = 15.0
CACHE_TTL_SECONDS = 5
RETARGET_LIMIT = 50

REPO_ROOT = Path(__file__).resolve().parents[1]


def serving_path() -> Path:
    """Where the serving copy lives.

    ``$LIVESHOP_SERVING_PATH``, else ``serving.duckdb`` in ``$LIVESHOP_DATA_DIR``, else
    ``<repo>/.data/serving.duckdb``: the same precedence the pipeline's settings use.
    """
    configured = os.environ.get(SERVING_PATH_ENV, "").strip()
    if configured:
        return Path(configured).expanduser().resolve()
    data_dir = os.environ.get(DATA_DIR_ENV, "").strip()
    base = Path(data_dir).expanduser().resolve() if data_dir else REPO_ROOT / ".data"
    return base / "serving.duckdb"


def refresh_seconds() -> float:
    """Seconds between refreshes of the live view: ``$LIVESHOP_DASHBOARD_REFRESH_SECONDS``."""
    raw = os.environ.get(REFRESH_SECONDS_ENV, "").strip()
    if not raw:
        return DEFAULT_REFRESH_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise ValueError(
            f"{REFRESH_SECONDS_ENV}={raw!r} is not a positive number of seconds; "
            f"set it to e.g. 15 or unset it for the default of {DEFAULT_REFRESH_SECONDS:g}."
        )
    return seconds


@dataclass(frozen=True)
class Filters:
    """Sidebar selections; an empty tuple means "no restriction"."""

    devices: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    viewers: tuple[str, ...] = ()
    streams: tuple[str, ...] = ()

    @property
    def restricts_sessions(self) -> bool:
        """Whether a filter narrows the audience within a stream (device, location, viewer)."""
        return bool(self.devices or self.states or self.viewers)

    def params(self) -> dict[str, list[str]]:
        return {
            "devices": list(self.devices),
            "states": list(self.states),
            "viewers": list(self.viewers),
            "streams": list(self.streams),
        }


@dataclass(frozen=True)
class FilterOptions:
    devices: tuple[str, ...]
    states: tuple[str, ...]
    streams: tuple[tuple[str, str], ...]  # (stream_id, label), newest stream first


@dataclass(frozen=True)
class Freshness:
    published_at: pd.Timestamp | None
    warehouse: str | None
    last_batch: dict[str, Any] | None


# Sessions matching the sidebar filters, and the newest score of each session. Prefixed to
# every filtered query, which therefore binds $devices, $states, $viewers and $streams.
_FILTERED = """
with
filtered_sessions as (
    select *
    from main.fct_sessions
    where (len($devices::varchar[]) = 0 or list_contains($devices::varchar[], device_type))
      and (len($states::varchar[]) = 0 or list_contains($states::varchar[], viewer_state))
      and (len($viewers::varchar[]) = 0 or list_contains($viewers::varchar[], viewer_id))
      and (len($streams::varchar[]) = 0 or list_contains($streams::varchar[], stream_id))
),

latest_scores as (
    select session_id, conversion_probability
    from main.session_scores
    qualify row_number() over (partition by session_id order by scored_at desc) = 1
)
"""

_KPIS_SQL = (
    _FILTERED
    + """
select
    count(*) as sessions,
    count(distinct s.viewer_id) as viewers,
    avg(s.duration_seconds) as avg_duration_seconds,
    count(*) filter (where s.is_converted) as converted_sessions,
    avg(sc.conversion_probability) as avg_conversion_probability,
    coalesce(sum(s.orders), 0) as orders,
    coalesce(sum(s.revenue), 0)::double as revenue,
from filtered_sessions as s
left join latest_scores as sc using (session_id)
"""
)

# Minutes in which each filtered session was live, counted per stream. Used when the
# filters narrow the audience, which the per-stream model table cannot express.
_VIEWERS_PER_MINUTE_FROM_SESSIONS_SQL = (
    _FILTERED
    + """,

session_minutes as (
    select
        stream_id,
        streamer_name,
        viewer_id,
        unnest(generate_series(
            date_trunc('minute', started_at),
            date_trunc('minute', coalesce(ended_at, started_at)),
            interval 1 minute
        )) as minute_at,
    from filtered_sessions
)

select stream_id, streamer_name, minute_at, count(distinct viewer_id) as viewers,
from session_minutes
group by all
order by minute_at, stream_id
"""
)

_VIEWERS_PER_MINUTE_SQL = """
select
    v.stream_id,
    coalesce(d.streamer_name, v.stream_id) as streamer_name,
    v.minute_at,
    v.viewers,
from main.fct_viewers_per_minute as v
left join main.dim_streams as d using (stream_id)
where len($streams::varchar[]) = 0 or list_contains($streams::varchar[], v.stream_id)
order by v.minute_at, v.stream_id
"""

_RETARGET_SQL = (
    _FILTERED
    + """
select
    s.session_id,
    s.viewer_id,
    s.streamer_name,
    s.stream_id,
    s.device_type,
    s.viewer_state,
    sc.conversion_probability,
    s.add_to_carts,
    s.is_open,
    coalesce(s.ended_at, s.started_at) as last_activity_at,
from filtered_sessions as s
inner join latest_scores as sc using (session_id)
where not coalesce(s.is_converted, false)
order by s.is_open desc, sc.conversion_probability desc, last_activity_at desc, s.session_id
limit $limit
"""
)

_OPTIONS_SQL = """
select 'device' as kind, device_type as value, device_type as label, null as sort_at,
from main.fct_sessions
where device_type is not null
group by all

union all

select 'state', viewer_state, viewer_state, null,
from main.fct_sessions
where viewer_state is not null
group by all

union all

select
    'stream',
    stream_id,
    coalesce(streamer_name, stream_id)
        || coalesce(' · ' || strftime(stream_start_time, '%Y-%m-%d %H:%M'), ''),
    stream_start_time,
from main.dim_streams

order by kind, sort_at desc nulls last, label
"""

# The ingest task writes one ingest_batches row per chunk of a batch; add the chunks up.
_FRESHNESS_SQL = """
with
batches as (
    select
        batch_id,
        count(*) as chunks,
        min(started_at) as started_at,
        max(finished_at) as finished_at,
        sum(pulled) as pulled,
        sum(loaded) as loaded,
        sum(duplicates) as duplicates,
        sum(dead_lettered) as dead_lettered,
    from main.ingest_batches
    group by batch_id
),

last_batch as (
    select *
    from batches
    order by finished_at desc nulls last, batch_id desc
    limit 1
)

select
    m.published_at,
    m.warehouse,
    b.batch_id,
    b.chunks,
    b.started_at,
    b.finished_at,
    b.pulled,
    b.loaded,
    b.duplicates,
    b.dead_lettered,
from main.serving_metadata as m
left join last_batch as b on true
"""


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False)
def _query(path: str, version: int, sql: str, params: tuple[tuple[str, Any], ...]) -> pd.DataFrame:
    """Run one query on a fresh read-only connection. ``version`` only keys the cache."""
    del version
    with duckdb.connect(path, read_only=True) as con:
        return con.execute(sql, {name: value for name, value in params}).df()


def _read(path: Path, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    """Query the serving copy at ``path``.

    Raises ``duckdb.IOException`` while the file is unreadable (for example mid-swap), and
    ``FileNotFoundError`` before the first copy is published.
    """
    version = path.stat().st_mtime_ns
    frozen = tuple(
        (name, tuple(value) if isinstance(value, list) else value)
        for name, value in sorted((params or {}).items())
    )
    return _query(str(path), version, sql, frozen)


def load_filter_options(path: Path) -> FilterOptions:
    rows = _read(path, _OPTIONS_SQL)
    by_kind = {kind: group for kind, group in rows.groupby("kind", sort=False)}

    def values(kind: str) -> tuple[str, ...]:
        group = by_kind.get(kind)
        return () if group is None else tuple(group["value"])

    streams = by_kind.get("stream")
    return FilterOptions(
        devices=values("device"),
        states=values("state"),
        streams=() if streams is None else tuple(zip(streams["value"], streams["label"], strict=True)),
    )


def load_kpis(path: Path, filters: Filters) -> Kpis:
    row = _read(path, _KPIS_SQL, filters.params()).iloc[0]
    return Kpis(
        sessions=int(row["sessions"]),
        viewers=int(row["viewers"]),
        avg_duration_seconds=_optional_float(row["avg_duration_seconds"]),
        converted_sessions=int(row["converted_sessions"]),
        avg_conversion_probability=_optional_float(row["avg_conversion_probability"]),
        orders=int(row["orders"]),
        revenue=float(row["revenue"]),
    )


def load_viewers_per_minute(path: Path, filters: Filters) -> pd.DataFrame:
    """Viewers per minute and stream: ``stream_id, streamer_name, minute_at, viewers``.

    Without device, location or viewer filters this is the ``fct_viewers_per_minute`` model;
    with them it is derived from the spans of the matching sessions.
    """
    if filters.restricts_sessions:
        return _read(path, _VIEWERS_PER_MINUTE_FROM_SESSIONS_SQL, filters.params())
    return _read(path, _VIEWERS_PER_MINUTE_SQL, {"streams": list(filters.streams)})


def load_retarget(path: Path, filters: Filters, limit: int = RETARGET_LIMIT) -> pd.DataFrame:
    """Unconverted scored sessions, open ones first, then by conversion probability."""
    return _read(path, _RETARGET_SQL, {**filters.params(), "limit": limit})


def load_freshness(path: Path) -> Freshness:
    rows = _read(path, _FRESHNESS_SQL)
    if rows.empty:
        return Freshness(published_at=None, warehouse=None, last_batch=None)
    row = rows.iloc[0]
    batch_columns = [
        "batch_id",
        "chunks",
        "started_at",
        "finished_at",
        "pulled",
        "loaded",
        "duplicates",
        "dead_lettered",
    ]
    last_batch = None if pd.isna(row["batch_id"]) else {c: row[c] for c in batch_columns}
    return Freshness(
        published_at=None if pd.isna(row["published_at"]) else pd.Timestamp(row["published_at"]),
        warehouse=None if pd.isna(row["warehouse"]) else str(row["warehouse"]),
        last_batch=last_batch,
    )


def _optional_float(value: Any) -> float | None:
    return None if pd.isna(value) else float(value)
