"""Pull events from the bus into the raw layer: validate, load, then acknowledge.

The batch is processed in chunks of ``LIVESHOP_CHUNK_SIZE`` messages, each its own unit of work:

1. pull in rounds until the chunk is full or the subscription is drained;
2. validate every message with the event contract; invalid ones become dead letters with a reason;
3. load the chunk's events and dead letters in one warehouse transaction (deduplicated on event_id);
4. acknowledge the chunk's messages only after that transaction committed.

While a chunk is held, a background thread keeps extending its ack deadlines, so a slow load does
not let the bus hand the same messages to another puller. If anything fails before the commit,
nothing of the chunk is acknowledged: the bus redelivers it and the task's retry loads it. If the
process dies between the commit and the ack, the redelivered events are recognised by their
event_id and skipped. Memory is bounded by one chunk, whatever the batch size.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

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
    rejection_reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "batch_id": self.batch_id,
            "pulled": self.pulled,
            "loaded": self.loaded,
            "duplicates": self.duplicates,
            "dead_lettered": self.dead_lettered,
            "chunks": self.chunks,
        }


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

    def release(self) -> None:
        with self._lock:
            self._held = []

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


def _pull_chunk(subscriber: Subscriber, want: int, round_size: int) -> list[ReceivedMessage]:
    chunk: list[ReceivedMessage] = []
    while len(chunk) < want:
        got = subscriber.pull(min(round_size, want - len(chunk)))
        if not got:
            break
        chunk.extend(got)
    return chunk


def run_ingest(settings: Settings, subscriber: Subscriber, *, batch_id: str | None = None) -> IngestReport:
    """Move up to ``settings.batch_max_messages`` messages from the bus into the raw layer."""
    warehouse.require_duckdb(settings, "ingest")
    report = IngestReport(batch_id=batch_id or uuid.uuid4().hex)
    with (
        warehouse.connect(settings.duckdb_path) as con,
        LeaseKeeper(subscriber, settings.ack_deadline_seconds) as keeper,
    ):
        warehouse.ensure_schema(con)
        while report.pulled < settings.batch_max_messages:
            started = warehouse.utcnow()
            want = min(settings.chunk_size, settings.batch_max_messages - report.pulled)
            messages = _pull_chunk(subscriber, want, settings.pull_max_messages)
            if not messages:
                break
            ack_ids = [m.ack_id for m in messages]
            keeper.hold(ack_ids)
            try:
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
                keeper.release()
                try:
                    subscriber.modify_ack_deadline(ack_ids, 0)
                except Exception:  # noqa: BLE001 - they come back at the deadline anyway
                    log.warning("could not release %s messages early", len(ack_ids), exc_info=True)
                raise
            subscriber.ack(ack_ids)
            keeper.release()
            report.pulled += len(messages)
            report.loaded += result.loaded
            report.duplicates += result.duplicates
            report.dead_lettered += result.dead_lettered
            report.chunks += 1
            log.info(
                "chunk %s: pulled %s, loaded %s, duplicates %s, dead-lettered %s",
                report.chunks,
                len(messages),
                result.loaded,
                result.duplicates,
                result.dead_lettered,
            )
    if report.rejection_reasons:
        log.warning("dead-lettered by field or reason: %s", report.rejection_reasons)
    return report
