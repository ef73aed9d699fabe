"""The shape of the event dicts the simulator and the replayers build (see docs/event-contract.md)."""

from __future__ import annotations

from typing import Any

from include.liveshop.contract import EVENT_COLUMNS, SCHEMA_VERSION


def blank_event(source: str) -> dict[str, Any]:
    """An event with every contract field present (null unless set), in the contract's order."""
    event: dict[str, Any] = dict.fromkeys(column for column in EVENT_COLUMNS if column != "extra")
    event.update(schema_version=SCHEMA_VERSION, source=source)
    return event
