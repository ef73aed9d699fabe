"""Read-only queries against the serving copy (``serving.duckdb``).

The pipeline replaces the serving file atomically (write a temporary file, then ``os.replace``),
so every query opens its own read-only connection and closes it straight away: a cached
connection would keep reading the replaced file. Query *results* are cached for a few seconds,
keyed by the file's modification time so a new copy is read as soon as it lands.

Every SQL text here is a constant; filter values only ever reach DuckDB as bound parameters.

The time window ("Last 6 hours", ...) is measured back from the newest activity in the serving
copy, not from the wall clock: the dashboard is a live view of running shows, yet a replayed
historical export (say the REES46 clickstream of 2019) must still show its last hours instead of
nothing. Every query resolves the window itself (``activity_window``) from the copy it reads, so
the KPIs, the chart and the retarget list of one refresh agree even if a new copy lands between
them. A session belongs to the window when its activity overlaps it, that is when its last event
is at or after the window's start; the chart keeps the minutes from the one holding that start.
"""

from __future__ import annotations

import math
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
# At most this many lines in the viewers-per-minute chart unless streams are picked in the sidebar:
# one per colour of the categorical palette, and few enough to tell apart.
CHART_STREAM_LIMIT = 10

# Sidebar label -> seconds back from the newest activity; None for all time.
WINDOWS: dict[str, int | None] = {
    "Last hour": 3600,
    "Last 6 hours": 6 * 3600,
    "Last 24 hours": 24 * 3600,
    "Last 7 days": 7 * 24 * 3600,
    "All time": None,
}
# Long enough for the shows running now and those of the last hours, short enough to leave out a
# finished historical replay beside them.
DEFAULT_WINDOW = "Last 6 hours"

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
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(
            f"{REFRESH_SECONDS_ENV}={raw!r} is not a positive number of seconds; "
            f"set it to e.g. 15 or unset it for the default of {DEFAULT_REFRESH_SECONDS:g}."
        )
    return seconds


@dataclass(frozen=True)
class Filters:
    """Sidebar selections; an empty tuple or a ``window_seconds`` of None means "no restriction".

    ``window_seconds`` is the length of the time window, back from the newest activity in the
    serving copy (the sidebar's default is ``WINDOWS[DEFAULT_WINDOW]``).
    """

    devices: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    viewers: tuple[str, ...] = ()
    streams: tuple[str, ...] = ()
    window_seconds: int | None = None

    @property
    def restricts_sessions(self) -> bool:
        """Whether a filter narrows the audience within a stream (device, location, viewer)."""
        return bool(self.devices or self.states or self.viewers)

    def params(self) -> dict[str, Any]:
        return {
            "devices": list(self.devices),
            "states": list(self.states),
            "viewers": list(self.viewers),
            "streams": list(self.streams),
            "window_seconds": self.window_seconds,
        }


@dataclass(frozen=True)
class FilterOptions:
    devices: tuple[str, ...]
    states: tuple[str, ...]
    streams: tuple[tuple[str, str], ...]  # (stream_id, label), newest stream first


@dataclass(frozen=True)
class ActivityWindow:
    """The resolved time window: ``since`` is None for all time, both are None without sessions."""

    since: pd.Timestamp | None
    until: pd.Timestamp | None


@dataclass(frozen=True)
class Freshness:
    published_at: pd.Timestamp | None
    warehouse: str | None
    last_batch: dict[str, Any] | None


# The time window of $window_seconds (NULL: all time) up to the newest activity in the serving
# copy, and the minute holding that activity, which is still filling while shows are live. A
# common table expression: every query that restricts to the window starts with it.
_ACTIVITY_WINDOW = """
activity_window as (
    select
        max(coalesce(ended_at, started_at)) as until,
        max(coalesce(ended_at, started_at)) - to_seconds($window_seconds::bigint) as since,
        date_trunc('minute', max(coalesce(ended_at, started_at))) as current_minute,
    from main.fct_sessions
)
"""

# One legend and sidebar label per stream: the host and the stream's start time, which tell two
# shows of one host apart; the stream id is appended only where that still leaves two alike.
_STREAM_LABELS = """
stream_base_labels as (
    select
        stream_id,
        coalesce(streamer_name, stream_id) as streamer_name,
        stream_start_time,
        coalesce(streamer_name, stream_id)
            || coalesce(' · ' || strftime(stream_start_time, '%Y-%m-%d %H:%M'), '') as base_label,
    from main.dim_streams
),

stream_labels as (
    select
        stream_id,
        streamer_name,
        stream_start_time,
        case
            when count(*) over (partition by base_label) > 1 then base_label || ' · ' || stream_id
            else base_label
        end as stream_label,
    from stream_base_labels
)
"""

# Sessions matching the sidebar filters and overlapping the time window, and the newest score of
# each session. Prefixed to every filtered query, which therefore binds $devices, $states,
# $viewers, $streams and $window_seconds.
_FILTERED = (
    "with"
    + _ACTIVITY_WINDOW
    + """,

filtered_sessions as (
    select s.*
    from main.fct_sessions as s
    cross join activity_window as w
    where (len($devices::varchar[]) = 0 or list_contains($devices::varchar[], s.device_type))
      and (len($states::varchar[]) = 0 or list_contains($states::varchar[], s.viewer_state))
      and (len($viewers::varchar[]) = 0 or list_contains($viewers::varchar[], s.viewer_id))
      and (len($streams::varchar[]) = 0 or list_contains($streams::varchar[], s.stream_id))
      and (w.since is null or coalesce(s.ended_at, s.started_at) >= w.since)
),

latest_scores as (
    select session_id, conversion_probability
    from main.session_scores
    qualify row_number() over (partition by session_id order by scored_at desc) = 1
)
"""
)

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

# Both viewers-per-minute queries return: stream_id, streamer_name, stream_label, minute_at,
# viewers, is_current_minute; the minutes from the one holding the window's start.

# Minutes in which each filtered session was live, counted per stream. Used when the
# filters narrow the audience, which the per-stream model table cannot express.
_VIEWERS_PER_MINUTE_FROM_SESSIONS_SQL = (
    _FILTERED
    + ","
    + _STREAM_LABELS
    + """,

session_minutes as (
    select
        stream_id,
        viewer_id,
        unnest(generate_series(
            date_trunc('minute', started_at),
            date_trunc('minute', coalesce(ended_at, started_at)),
            interval 1 minute
        )) as minute_at,
    from filtered_sessions
)

select
    m.stream_id,
    coalesce(l.streamer_name, m.stream_id) as streamer_name,
    coalesce(l.stream_label, m.stream_id) as stream_label,
    m.minute_at,
    count(distinct m.viewer_id) as viewers,
    m.minute_at = w.current_minute as is_current_minute,
from session_minutes as m
cross join activity_window as w
left join stream_labels as l on l.stream_id = m.stream_id
where w.since is null or m.minute_at >= date_trunc('minute', w.since)
group by all
order by m.minute_at, m.stream_id
"""
)

_VIEWERS_PER_MINUTE_SQL = (
    "with"
    + _ACTIVITY_WINDOW
    + ","
    + _STREAM_LABELS
    + """
select
    v.stream_id,
    coalesce(l.streamer_name, v.stream_id) as streamer_name,
    coalesce(l.stream_label, v.stream_id) as stream_label,
    v.minute_at,
    v.viewers,
    v.minute_at = w.current_minute as is_current_minute,
from main.fct_viewers_per_minute as v
cross join activity_window as w
left join stream_labels as l on l.stream_id = v.stream_id
where (len($streams::varchar[]) = 0 or list_contains($streams::varchar[], v.stream_id))
  and (w.since is null or v.minute_at >= date_trunc('minute', w.since))
order by v.minute_at, v.stream_id
"""
)

_WINDOW_SQL = (
    "with"
    + _ACTIVITY_WINDOW
    + """
select since, until from activity_window
"""
)

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

_OPTIONS_SQL = (
    "with"
    + _STREAM_LABELS
    + """
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

select 'stream', stream_id, stream_label, stream_start_time,
from stream_labels

order by kind, sort_at desc nulls last, label
"""
)

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
    """Viewers per minute and stream in the time window.

    Columns ``stream_id, streamer_name, stream_label, minute_at, viewers, is_current_minute``;
    ``is_current_minute`` marks the minute of the newest activity, which is still filling.
    Without device, location or viewer filters this is the ``fct_viewers_per_minute`` model;
    with them it is derived from the spans of the matching sessions.
    """
    if filters.restricts_sessions:
        return _read(path, _VIEWERS_PER_MINUTE_FROM_SESSIONS_SQL, filters.params())
    return _read(
        path,
        _VIEWERS_PER_MINUTE_SQL,
        {"streams": list(filters.streams), "window_seconds": filters.window_seconds},
    )


def top_streams(per_minute: pd.DataFrame, limit: int = CHART_STREAM_LIMIT) -> pd.DataFrame:
    """The rows of the ``limit`` streams with the largest audience in the frame.

    Audience is the peak of viewers in one minute; ties go to more viewer-minutes in all, then
    to the smaller stream id, so the choice is stable from one refresh to the next.
    """
    audience = (
        per_minute.groupby("stream_id")["viewers"]
        .agg(peak="max", total="sum")
        .reset_index()
        .sort_values(["peak", "total", "stream_id"], ascending=[False, False, True])
    )
    kept = set(audience["stream_id"].head(limit))
    return per_minute[per_minute["stream_id"].isin(kept)].reset_index(drop=True)


def load_window(path: Path, filters: Filters) -> ActivityWindow:
    """The time window the other queries resolve for ``filters.window_seconds``."""
    row = _read(path, _WINDOW_SQL, {"window_seconds": filters.window_seconds}).iloc[0]
    return ActivityWindow(since=_optional_timestamp(row["since"]), until=_optional_timestamp(row["until"]))


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


def _optional_timestamp(value: Any) -> pd.Timestamp | None:
    return None if pd.isna(value) else pd.Timestamp(value)
