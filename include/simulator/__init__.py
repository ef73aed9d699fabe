"""Simulated live shows and replay of real exports, published onto the event bus.

Run as ``python -m include.simulator simulate ...`` or ``python -m include.simulator replay FILE``
(docs/replay.md). The names below are the programmatic API; tests use them directly.
"""

from include.simulator.generator import DEFAULT_START, Simulation, generate_events, iter_events
from include.simulator.publishing import Batcher, pump
from include.simulator.replay import Replay, in_time_order, read_export, replay_events

__all__ = [
    "DEFAULT_START",
    "Batcher",
    "Replay",
    "Simulation",
    "generate_events",
    "in_time_order",
    "iter_events",
    "pump",
    "read_export",
    "replay_events",
]
