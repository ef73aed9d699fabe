"""Live-shopping analytics: audience and conversion KPIs, viewers per minute, and the open
sessions most worth a nudge.

Run with ``streamlit run dashboard/app.py``. The app reads only the serving copy
(``$LIVESHOP_SERVING_PATH``, see ``dashboard/data.py``) and refreshes its live view every
``$LIVESHOP_DASHBOARD_REFRESH_SECONDS`` (default 15) without a page reload.

It is a live view of the running shows: the sidebar's time window (default the last 6 hours,
measured back from the newest activity in the serving copy) keeps finished historical streams,
such as a replayed export beside the live simulator, out of every figure unless asked for.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the repository root. Add the
# root so the app imports its modules as the `dashboard` package, exactly as the tests do.
_REPO_ROOT = str(Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

import duckdb  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from dashboard import charts, data  # noqa: E402
from dashboard.kpis import KPI_HELP, KPI_LABELS, format_duration, tile_values  # noqa: E402

WAITING_MESSAGE = (
    "Waiting for the first micro-batch… the serving copy will appear here once the pipeline has published it."
)
NO_RETARGET_MESSAGE = "No unconverted scored sessions match the filters."
NO_ACTIVITY_MESSAGE = "No viewer activity matches the filters in this time window."
FILLING_CAPTION = (
    "The dashed end of a line is the newest minute ({minute:%H:%M} UTC), which may still be filling "
    "as events arrive: its count is not final yet."
)
TOP_STREAMS_CAPTION = (
    "Showing the {shown} of {total} streams with the most viewers in a minute in this window; "
    "pick streams in the sidebar to see others."
)
WINDOW_HELP = (
    "Only sessions active in this span count, for every figure on the page. It ends at the newest "
    "activity in the serving copy, not at the wall clock, so a replayed historical export still "
    "shows its last hours."
)

_RETARGET_COLUMNS = {
    "session_id": st.column_config.TextColumn("Session"),
    "viewer_id": st.column_config.TextColumn("Viewer"),
    "streamer_name": st.column_config.TextColumn("Streamer"),
    "stream_id": st.column_config.TextColumn("Stream"),
    "device_type": st.column_config.TextColumn("Device"),
    "viewer_state": st.column_config.TextColumn("Location"),
    "conversion_probability": st.column_config.ProgressColumn(
        "Conversion probability", min_value=0.0, max_value=1.0, format="percent"
    ),
    "add_to_carts": st.column_config.NumberColumn("Carts"),
    "is_open": st.column_config.CheckboxColumn("Open"),
    "last_activity_at": st.column_config.DatetimeColumn("Last activity (UTC)", format="YYYY-MM-DD HH:mm:ss"),
}


def sidebar_filters(options: data.FilterOptions | None) -> data.Filters:
    st.sidebar.header("Filters")
    if options is None:
        st.sidebar.caption("Filters appear once the first serving copy is published.")
        return data.Filters()
    windows = list(data.WINDOWS)
    window = st.sidebar.selectbox(
        "Time window",
        windows,
        index=windows.index(data.DEFAULT_WINDOW),
        help=WINDOW_HELP,
        key="filter_window",
    )
    stream_labels = dict(options.streams)
    streams = st.sidebar.multiselect(
        "Stream",
        list(stream_labels),
        format_func=lambda stream_id: stream_labels.get(stream_id, stream_id),
        placeholder="All streams",
        key="filter_streams",
    )
    devices = st.sidebar.multiselect(
        "Device", options.devices, placeholder="All devices", key="filter_devices"
    )
    states = st.sidebar.multiselect(
        "Location", options.states, placeholder="All locations", key="filter_states"
    )
    viewer_text = st.sidebar.text_input(
        "Viewer ID",
        placeholder="All viewers",
        help="One or more viewer ids, separated by commas (exact match).",
        key="filter_viewers",
    )
    viewers = tuple(dict.fromkeys(v.strip() for v in viewer_text.split(",") if v.strip()))
    return data.Filters(
        devices=tuple(devices),
        states=tuple(states),
        viewers=viewers,
        streams=tuple(streams),
        window_seconds=data.WINDOWS[window],
    )


def initial_filter_options(path: Path) -> data.FilterOptions | None:
    """Options for the sidebar, or ``None`` until a readable serving copy exists."""
    if not path.exists():
        return None
    try:
        return data.load_filter_options(path)
    except duckdb.IOException:
        return None  # the live view reports it and retries


@st.fragment(run_every=data.refresh_seconds())
def live_view(path: Path, filters: data.Filters, options: data.FilterOptions | None) -> None:
    """Everything that changes with each micro-batch; reruns on its own every few seconds."""
    if not path.exists():
        st.info(WAITING_MESSAGE)
        return
    try:
        if data.load_filter_options(path) != options:
            st.rerun()  # first copy, or new streams, devices or states: rebuild the sidebar
        freshness = data.load_freshness(path)
        window = data.load_window(path, filters)
        kpis = data.load_kpis(path, filters)
        per_minute = data.load_viewers_per_minute(path, filters)
        retarget = data.load_retarget(path, filters)
    except duckdb.IOException as error:
        st.warning(
            f"The serving copy could not be read just now; retrying in {data.refresh_seconds():g}s. ({error})"
        )
        return

    st.caption(freshness_caption(freshness, now=datetime.now(UTC).replace(tzinfo=None)))
    st.caption(window_caption(window))

    values = tile_values(kpis)
    # Two rows, so that values such as "1h 2m 5s" are never cut off on a laptop screen.
    tiles = list(KPI_LABELS.items())
    for row in (tiles[:4], tiles[4:]):
        for column, (key, label) in zip(st.columns(4), row, strict=False):  # the last row may be short
            column.metric(label, values[key], help=KPI_HELP[key], border=True)

    st.subheader("Viewers per minute")
    if per_minute.empty:
        st.caption(NO_ACTIVITY_MESSAGE)
    else:
        total = per_minute["stream_id"].nunique()
        if not filters.streams:  # streams picked in the sidebar are all drawn
            per_minute = data.top_streams(per_minute)
        st.altair_chart(charts.viewers_per_minute(per_minute), width="stretch")
        shown = per_minute["stream_id"].nunique()
        if shown < total:
            st.caption(TOP_STREAMS_CAPTION.format(shown=shown, total=total))
        current = per_minute.loc[per_minute["is_current_minute"].astype(bool), "minute_at"]
        if not current.empty:
            st.caption(FILLING_CAPTION.format(minute=current.iloc[0]))
        if filters.restricts_sessions:
            st.caption(
                "With device, location or viewer filters set, viewers are counted from the "
                "minutes spanned by the matching sessions."
            )

    st.subheader("Top sessions to retarget")
    st.caption(
        "Scored sessions without an order: open sessions first, then by conversion probability "
        f"(top {data.RETARGET_LIMIT})."
    )
    if retarget.empty:
        st.caption(NO_RETARGET_MESSAGE)
        return
    st.dataframe(retarget, hide_index=True, column_config=_RETARGET_COLUMNS)
    st.download_button(
        "Download CSV",
        retarget.to_csv(index=False),
        file_name="liveshop_retarget_sessions.csv",
        mime="text/csv",
        on_click="ignore",
        key="retarget_csv",
    )


def freshness_caption(freshness: data.Freshness, *, now: datetime) -> str:
    """``now`` and the stored timestamps are naive UTC."""
    if freshness.published_at is None:
        published = "Publication time unknown."
    else:
        age = max((now - freshness.published_at.to_pydatetime()).total_seconds(), 0.0)
        source = f", {freshness.warehouse} warehouse" if freshness.warehouse else ""
        published = (
            f"Data published {freshness.published_at:%Y-%m-%d %H:%M:%S} UTC "
            f"({format_duration(age)} ago{source})."
        )
    batch = freshness.last_batch
    if batch is None:
        batch_text = "No ingest batch recorded yet."
    else:
        finished = batch["finished_at"]
        when = "still running" if pd.isna(finished) else f"finished {finished:%H:%M:%S} UTC"
        chunks = int(batch["chunks"])
        batch_text = (
            f"Last batch `{batch['batch_id']}` ({chunks} chunk{'' if chunks == 1 else 's'}) "
            f"{when}: {_count(batch['pulled'])} pulled, "
            f"{_count(batch['loaded'])} loaded, {_count(batch['duplicates'])} duplicates, "
            f"{_count(batch['dead_lettered'])} dead-lettered."
        )
    return f"{published} {batch_text} Refreshes every {data.refresh_seconds():g}s."


def window_caption(window: data.ActivityWindow) -> str:
    if window.until is None:
        return "No session activity yet."
    until = f"{window.until:%Y-%m-%d %H:%M:%S} UTC"
    if window.since is None:
        return f"All activity up to the newest, at {until}."
    return (
        f"Sessions active from {window.since:%Y-%m-%d %H:%M:%S} to {until}, the newest activity "
        "in the serving copy."
    )


def _count(value: object) -> str:
    return "?" if pd.isna(value) else f"{int(value):,}"


def main() -> None:
    st.set_page_config(page_title="Liveshop analytics", page_icon="🛍️", layout="wide")
    st.title("Live shopping analytics")
    path = data.serving_path()
    options = initial_filter_options(path)
    filters = sidebar_filters(options)
    live_view(path, filters, options)


main()
