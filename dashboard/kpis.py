"""KPI tiles: the stable labels, the values behind them and how they are formatted.

Other tests read the rendered tiles by label (`AppTest.metric`), so ``KPI_LABELS`` is the
contract: change a label only together with every test that looks it up.

Rendered value formats (``st.metric`` value strings):

==================  ===========================  =====================================
key                 label                        value
==================  ===========================  =====================================
sessions            Sessions                     ``"1,234"``
viewers             Unique viewers               ``"987"`` (distinct viewer_id)
avg_duration        Avg session duration         ``"3m 12s"``, ``"45s"``, ``"1h 2m 5s"``
conversion_rate     Conversion rate              ``"25.0%"`` (converted / sessions)
avg_probability     Avg conversion probability   ``"55.0%"`` (latest score per session)
orders              Orders                       ``"12"``
revenue             Revenue                      ``"1,234.50"``
==================  ===========================  =====================================

A value that cannot be computed (no sessions, no scores) renders as ``MISSING`` ("—").
"""

from __future__ import annotations

from dataclasses import dataclass

KPI_LABELS: dict[str, str] = {
    "sessions": "Sessions",
    "viewers": "Unique viewers",
    "avg_duration": "Avg session duration",
    "conversion_rate": "Conversion rate",
    "avg_probability": "Avg conversion probability",
    "orders": "Orders",
    "revenue": "Revenue",
}

KPI_HELP: dict[str, str] = {
    "sessions": "Viewing sessions matching the filters and active in the time window.",
    "viewers": "Distinct viewers across those sessions.",
    "avg_duration": "Mean time from a session's first to its last event.",
    "conversion_rate": "Sessions with at least one order, divided by all sessions.",
    "avg_probability": "Mean of the latest model score of each scored session.",
    "orders": "Orders placed in those sessions.",
    "revenue": "Order revenue of those sessions.",
}

MISSING = "—"


@dataclass(frozen=True)
class Kpis:
    """Aggregates over the filtered sessions, as read from the serving copy."""

    sessions: int
    viewers: int
    avg_duration_seconds: float | None
    converted_sessions: int
    avg_conversion_probability: float | None
    orders: int
    revenue: float

    @property
    def conversion_rate(self) -> float | None:
        return self.converted_sessions / self.sessions if self.sessions else None


def format_duration(seconds: float | None) -> str:
    """Seconds as ``"3m 12s"``; rounded to the nearest second."""
    if seconds is None:
        return MISSING
    total = int(seconds + 0.5)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def format_percent(fraction: float | None) -> str:
    return MISSING if fraction is None else f"{fraction:.1%}"


def tile_values(kpis: Kpis) -> dict[str, str]:
    """The rendered value of each tile, keyed like ``KPI_LABELS``."""
    return {
        "sessions": f"{kpis.sessions:,}",
        "viewers": f"{kpis.viewers:,}",
        "avg_duration": format_duration(kpis.avg_duration_seconds),
        "conversion_rate": format_percent(kpis.conversion_rate),
        "avg_probability": format_percent(kpis.avg_conversion_probability),
        "orders": f"{kpis.orders:,}",
        "revenue": f"{kpis.revenue:,.2f}",
    }
