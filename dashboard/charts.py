"""Altair charts of the dashboard."""

from __future__ import annotations

import altair as alt
import pandas as pd


def viewers_per_minute(frame: pd.DataFrame) -> alt.Chart:
    """One line per stream; expects ``stream_id, streamer_name, minute_at, viewers``."""
    labelled = frame.assign(stream=frame["streamer_name"] + " · " + frame["stream_id"])
    return (
        alt.Chart(labelled)
        .mark_line(point=alt.OverlayMarkDef(size=20), interpolate="monotone")
        .encode(
            x=alt.X("minute_at:T", title="Minute (UTC)", axis=alt.Axis(format="%H:%M")),
            y=alt.Y("viewers:Q", title="Viewers"),
            color=alt.Color("stream:N", title="Stream"),
            tooltip=[
                alt.Tooltip("streamer_name:N", title="Streamer"),
                alt.Tooltip("stream_id:N", title="Stream"),
                alt.Tooltip("minute_at:T", title="Minute", format="%H:%M"),
                alt.Tooltip("viewers:Q", title="Viewers"),
            ],
        )
    )
