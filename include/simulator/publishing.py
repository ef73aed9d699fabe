"""Publishing events in batches, on time.

``Batcher`` encodes events with the contract's ``encode_event`` and hands them to any publisher
with ``publish(list[bytes])`` (``include.liveshop.bus.get_publisher`` returns one) in batches of up
to ``batch_size``, never holding an event longer than ``max_delay`` seconds. ``pump`` feeds it,
optionally waiting until each event is due (live simulation, paced replay).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from include.liveshop.contract import encode_event

BATCH_SIZE = 500


class Publisher(Protocol):
    def publish(self, messages: Sequence[bytes]) -> list[str]: ...


class Batcher:
    def __init__(
        self,
        publisher: Publisher,
        *,
        batch_size: int = BATCH_SIZE,
        max_delay: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.publisher = publisher
        self.batch_size = batch_size
        self.max_delay = max_delay
        self.published = 0
        self._clock = clock
        self._pending: list[bytes] = []
        self.deadline = float("inf")

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, event: dict[str, Any]) -> None:
        if not self._pending:
            self.deadline = self._clock() + self.max_delay
        self._pending.append(encode_event(event))
        if len(self._pending) >= self.batch_size or self._clock() >= self.deadline:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.publisher.publish(self._pending)
            self.published += len(self._pending)
            self._pending = []
        self.deadline = float("inf")


def pump(
    events: Iterable[dict[str, Any]],
    batcher: Batcher,
    *,
    due: Callable[[dict[str, Any]], float] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_event: Callable[[], None] | None = None,
) -> None:
    """Add every event to ``batcher``, first waiting until ``due(event)`` (a ``clock`` reading)."""
    for event in events:
        if due is not None:
            target = due(event)
            while (now := clock()) < target:
                if batcher.pending and now >= batcher.deadline:
                    batcher.flush()
                    continue
                sleep(min(target, batcher.deadline) - now)
        batcher.add(event)
        if on_event is not None:
            on_event()
    batcher.flush()


def real_time(clock: Callable[[], float] = time.monotonic) -> Callable[[dict[str, Any]], float]:
    """Events are due when the wall clock reaches their event_time (naive UTC)."""
    started, wall = clock(), datetime.now(UTC).replace(tzinfo=None)
    return lambda event: started + (event["event_time"] - wall).total_seconds()


def accelerated(
    first: datetime, speed: float, clock: Callable[[], float] = time.monotonic
) -> Callable[[dict[str, Any]], float]:
    """Events are due after their recorded gap from ``first`` divided by ``speed``."""
    started = clock()
    return lambda event: started + (event["event_time"] - first).total_seconds() / speed
