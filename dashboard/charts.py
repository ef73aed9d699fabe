"""Altair charts of the dashboard.

Viewers per minute, one line per stream:

- The x axis labels each tick by its own granularity (Vega-Lite's dynamic time format): times of
  day within a day, the date on a day boundary, the month or the year on theirs, so the labels
  suit any span. A fixed ``%H:%M`` read "00:00" on every tick once a replayed 2019 export sat
  beside today's shows. Vega's own choice would be a 12-hour clock ("01:15" for 13:15); the
  times here are 24-hour, like every other time on the page. Streamlit shifts naive timestamps
  so that they display as stored, which here is UTC; the scale must therefore stay a local-time
  one (a ``utc`` scale would shift them back).
- Lines are told apart by ``stream_label`` (host and start time, see ``dashboard/data.py``), and
  the legend sits below the chart in columns with neither a label length nor an entry limit, so
  no label is cut short and no stream goes missing.
- The newest minute is still filling (events keep arriving until it is over), so its count is
  low. Leaving it out would hide the live edge an analyst watches; drawing it like the others
  reads as a collapse of the audience. It is drawn as a dashed, lighter segment from the last
  complete minute with a hollow point, and the app says so in a caption.
"""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd

# Per tick granularity (https://vega.github.io/vega-lite/docs/format.html#dynamic-time-format).
TIME_AXIS_FORMAT = {
    "year": "%Y",
    "quarter": "%b %Y",
    "month": "%b %Y",
    "week": "%b %d",
    "date": "%b %d",
    "hours": "%H:%M",
    "minutes": "%H:%M",
    "seconds": "%H:%M:%S",
    "milliseconds": "%H:%M:%S.%L",
}
LEGEND_COLUMNS = 3
FILLING_DASH = [4, 4]
FILLING_OPACITY = 0.5


def viewers_per_minute(frame: pd.DataFrame) -> alt.LayerChart:
    """Expects ``stream_id, streamer_name, stream_label, minute_at, viewers, is_current_minute``."""
    streams = sorted(frame["stream_label"].unique())
    color = alt.Color(
        "stream_label:N",
        title="Stream",
        scale=alt.Scale(domain=streams),
        legend=alt.Legend(
            orient="bottom",
            columns=min(LEGEND_COLUMNS, len(streams)),
            labelLimit=0,  # no truncation
            symbolLimit=0,  # every stream
        ),
    )
    x = alt.X("minute_at:T", title="Minute (UTC)", axis=alt.Axis(format=TIME_AXIS_FORMAT))
    y = alt.Y("viewers:Q", title="Viewers")
    tooltip = [
        alt.Tooltip("streamer_name:N", title="Streamer"),
        alt.Tooltip("stream_id:N", title="Stream"),
        alt.Tooltip("minute_at:T", title="Minute (UTC)", format="%Y-%m-%d %H:%M"),
        alt.Tooltip("viewers:Q", title="Viewers"),
    ]

    current = frame["is_current_minute"].astype(bool)
    complete = frame[~current]
    layers = [
        alt.Chart(complete)
        .mark_line(point=alt.OverlayMarkDef(size=20), interpolate="monotone")
        .encode(x=x, y=y, color=color, tooltip=tooltip)
    ]
    filling = frame[current].assign(minute_status="still filling")
    if not filling.empty:
        layers += [
            alt.Chart(filling_segments(frame))
            .mark_line(strokeDash=FILLING_DASH, opacity=FILLING_OPACITY)
            .encode(x=x, y=y, color=color, detail="stream_id:N"),
            alt.Chart(filling)
            .mark_point(filled=False, size=40, opacity=FILLING_OPACITY)
            .encode(
                x=x,
                y=y,
                color=color,
                tooltip=[*tooltip, alt.Tooltip("minute_status:N", title="Minute")],
            ),
        ]
    return alt.layer(*layers)


def filling_segments(frame: pd.DataFrame) -> pd.DataFrame:
    """The current minute of each stream, with the stream's minute before it to join the line."""
    current_rows = frame[frame["is_current_minute"].astype(bool)]
    previous = current_rows[["stream_id", "minute_at"]].assign(
        minute_at=current_rows["minute_at"] - timedelta(minutes=1)
    )
    before = frame.merge(previous, on=["stream_id", "minute_at"])
    return pd.concat([before, current_rows]).sort_values(["stream_id", "minute_at"]).reset_index(drop=True)
