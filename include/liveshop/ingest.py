"""Pull events from the bus into the raw layer: validate, load, then acknowledge.

The batch is processed in chunks of ``LIVESHOP_CHUNK_SIZE`` messages, each its own unit of work:

1. pull in rounds until the chunk is full, the subscription is drained, or the batch must end;
2. validate every message with the event contract; invalid ones become dead letters with a reason;
3. load the chunk's events and dead letters in one warehouse transaction (deduplicated on event_id);
4. acknowledge the chunk's messages only after that transaction committed.

From the round that pulled them until their ack, a background thread keeps extending the ack
deadlines of the chunk's messages, so neither a slow trickle of pulls nor a slow load lets the bus
hand them to another puller. If anything fails before the commit, nothing of the chunk is
acknowledged: the bus redelivers it and the task's retry loads it. If the process dies between the
commit and the ack, the redelivered events are recognised by their event_id and skipped. Memory is
bounded by one chunk, whatever the batch size.

A batch ends at the first of: the subscription is drained; ``LIVESHOP_BATCH_MAX_MESSAGES`` were
pulled; ``LIVESHOP_BATCH_MAX_SECONDS`` have passed; or it has caught up with the live edge (a round
that was not full brought messages published after the batch started). On Pub/Sub a pull waits
for messages rather than answering empty, so a topic that a publisher keeps feeding is never
"drained"; the last two rules let the run finish and hand the events to dbt, and the next run
takes what arrived since.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

from include.liveshop import warehouse
from include.liveshop.bus.base import ReceivedMessage, Subscriber
from include.liveshop.contract import Rejection, parse_message
from include.liveshop.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    batch_id: str
    pulled: int = 0
    loaded: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    chunks: int = 0
    #: Why the batch ended: one of the ``STOP_*`` values.
    stopped: str = ""
    rejection_reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "batch_id": self.batch_id,
            "pulled": self.pulled,
            "loaded": self.loaded,
            "duplicates": self.duplicates,
            "dead_lettered": self.dead_lettered,
            "chunks": self.chunks,
            "stopped": self.stopped,
        }


STOP_DRAINED = "drained"
STOP_FULL = "batch full"
STOP_TIME = "time budget spent"
STOP_LIVE_EDGE = "caught up with the live edge"


class LeaseKeeper:
    """Extends the ack deadline of held messages until they are released."""

    def __init__(self, subscriber: Subscriber, deadline_seconds: int) -> None:
        self._subscriber = subscriber
        self._deadline = deadline_seconds
        self._held: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def hold(self, ack_ids: Sequence[str]) -> None:
        with self._lock:
            self._held.extend(ack_ids)

    def release(self) -> list[str]:
        """Stop extending the held messages' deadlines; returns their ack ids."""
        with self._lock:
            held, self._held = self._held, []
        return held

    def _run(self) -> None:
        interval = max(0.2, self._deadline / 3)
        while not self._stop.wait(interval):
            with self._lock:
                held = list(self._held)
            if not held:
                continue
            try:
                self._subscriber.modify_ack_deadline(held, self._deadline)
            except Exception:  # noqa: BLE001 - a missed extension only risks a redelivery
                log.warning("could not extend the ack deadline of %s messages", len(held), exc_info=True)


def _columns(rows: list[tuple], schema: pa.Schema) -> pa.Table:
    if not rows:
        return schema.empty_table()
    columns = list(zip(*rows, strict=True))
    return pa.Table.from_arrays(
        [pa.array(column, type=f.type) for column, f in zip(columns, schema, strict=True)], schema=schema
    )


def _validate(
    messages: Sequence[ReceivedMessage], settings: Settings, now: datetime, report: IngestReport
) -> tuple[pa.Table, pa.Table]:
    events: list[tuple] = []
    dead: list[tuple] = []
    for message in messages:
        published = message.publish_time.replace(tzinfo=None)
        result = parse_message(message.data, max_bytes=settings.max_message_bytes, now=now)
        if isinstance(result, Rejection):
            key = result.field or result.reason.split(":")[0]
            report.rejection_reasons[key] = report.rejection_reasons.get(key, 0) + 1
            dead.append(
                (
                    message.message_id,
                    message.data,
                    result.reason,
                    result.field,
                    published,
                    message.delivery_attempt,
                )
            )
        else:
            events.append(result.row + (message.message_id, published, message.delivery_attempt))
    return (
        _columns(events, warehouse.EVENT_ARROW_SCHEMA),
        _columns(dead, warehouse.DEAD_LETTER_ARROW_SCHEMA),
    )


def _published_since(message: ReceivedMessage, moment: datetime) -> bool:
    published = message.publish_time
    if published.tzinfo is None:
        published = published.replace(tzinfo=UTC)
    return published >= moment


@dataclass
class _Budget:
    """When the batch must stop pulling: its time budget and the live edge."""

    started: datetime  # aware UTC; messages published from here on belong to the next batch
    deadline: float  # on ``clock``
    clock: Callable[[], float]

    def spent(self) -> bool:
        return self.clock() >= self.deadline


def _pull_chunk(
    subscriber: Subscriber, keeper: LeaseKeeper, want: int, round_size: int, budget: _Budget
) -> tuple[list[ReceivedMessage], str | None]:
    """Pull up to ``want`` messages; returns them and why the batch must end after them, if it must.

    Each round's messages are handed to the lease keeper at once: on a slowly fed subscription a
    chunk takes longer to fill than the ack deadline lasts.
    """
    chunk: list[ReceivedMessage] = []
    while len(chunk) < want:
        asked = min(round_size, want - len(chunk))
        got = subscriber.pull(asked)
        if not got:
            return chunk, STOP_DRAINED
        keeper.hold([m.ack_id for m in got])
        chunk.extend(got)
        if len(got) < asked and any(_published_since(m, budget.started) for m in got):
            return chunk, STOP_LIVE_EDGE
        if budget.spent():
            return chunk, STOP_TIME
    return chunk, None


def run_ingest(
    settings: Settings,
    subscriber: Subscriber,
    *,
    batch_id: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> IngestReport:
    """Move up to ``settings.batch_max_messages`` messages from the bus into the raw layer."""
    warehouse.require_duckdb(settings, "ingest")
    report = IngestReport(batch_id=batch_id or uuid.uuid4().hex)
    budget = _Budget(datetime.now(UTC), clock() + settings.batch_max_seconds, clock)
    with (
        warehouse.connect(settings.duckdb_path) as con,
        LeaseKeeper(subscriber, settings.ack_deadline_seconds) as keeper,
    ):
        warehouse.ensure_schema(con)
        while not report.stopped:
            if report.pulled >= settings.batch_max_messages:
                report.stopped = STOP_FULL
                break
            if budget.spent():
                report.stopped = STOP_TIME
                break
            started = warehouse.utcnow()
            want = min(settings.chunk_size, settings.batch_max_messages - report.pulled)
            try:
                messages, stop = _pull_chunk(subscriber, keeper, want, settings.pull_max_messages, budget)
                if not messages:
                    report.stopped = STOP_DRAINED
                    break
                events, dead = _validate(messages, settings, started, report)
                result = warehouse.load_chunk(
                    con,
                    events,
                    dead,
                    batch_id=report.batch_id,
                    chunk=report.chunks,
                    pulled=len(messages),
                    started_at=started,
                )
            except BaseException:
                # Give the messages back now rather than at the deadline; the task retry reloads them.
                held = keeper.release()
                try:
                    subscriber.modify_ack_deadline(held, 0)
                except Exception:  # noqa: BLE001 - they come back at the deadline anyway
                    log.warning("could not release %s messages early", len(held), exc_info=True)
                raise
            subscriber.ack([m.ack_id for m in messages])
            keeper.release()
            report.pulled += len(messages)
            report.loaded += result.loaded
            report.duplicates += result.duplicates
            report.dead_lettered += result.dead_lettered
            report.chunks += 1
            report.stopped = stop or ""
            log.info(
                "chunk %s: pulled %s, loaded %s, duplicates %s, dead-lettered %s",
                report.chunks,
                len(messages),
                result.loaded,
                result.duplicates,
                result.dead_lettered,
            )
    log.info("batch %s ended: %s after %s chunks", report.batch_id, report.stopped, report.chunks)
    if report.rejection_reasons:
        log.warning("dead-lettered by field or reason: %s", report.rejection_reasons)
    return report
