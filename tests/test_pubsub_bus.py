"""The Pub/Sub bus against the real Pub/Sub emulator (no mocks): delivery, leases and the ingest.

Each test gets its own topic and subscription. The ack deadline is the minimum Pub/Sub allows
(10 s) wherever a test waits for it, so the two lease tests take about 12 s each.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from include.liveshop.bus.pubsub import (
    PubSubPublisher,
    PubSubSubscriber,
    ensure_topic_and_subscription,
)
from include.liveshop.contract import encode_event
from include.liveshop.errors import BusError
from include.liveshop.ingest import STOP_DRAINED, STOP_LIVE_EDGE, run_ingest
from include.liveshop.settings import Settings, get_settings
from tests.pubsub_emulator import PubSubEmulator, pubsub_emulator  # noqa: F401 - the fixture

pytestmark = pytest.mark.pubsub

#: Shorter than the production default so that draining a subscription ends quickly.
PULL_TIMEOUT = 2.0


def _settings(tmp_path: Path, emulator: PubSubEmulator, **extra: str) -> Settings:
    name = f"liveshop-test-{uuid.uuid4().hex[:12]}"
    return get_settings(
        {
            "LIVESHOP_DATA_DIR": str(tmp_path),
            "LIVESHOP_BUS": "pubsub",
            "LIVESHOP_GCP_PROJECT": emulator.project,
            "LIVESHOP_TOPIC": name,
            "LIVESHOP_SUBSCRIPTION": f"{name}-ingest",
            **extra,
        }
    )


@pytest.fixture
def bus(tmp_path: Path, pubsub_emulator: PubSubEmulator):  # noqa: F811 - fixture parameter
    """Settings with a fresh topic and subscription (10 s ack deadline), plus a publisher."""
    settings = _settings(tmp_path, pubsub_emulator, LIVESHOP_ACK_DEADLINE_SECONDS="10")
    ensure_topic_and_subscription(settings)
    publisher = PubSubPublisher(settings)
    subscriber = PubSubSubscriber(settings, pull_timeout_seconds=PULL_TIMEOUT)
    yield settings, publisher, subscriber
    publisher.close()
    subscriber.close()


def _drain(subscriber: PubSubSubscriber, round_size: int = 1_000) -> list:
    got = []
    while batch := subscriber.pull(round_size):
        got.extend(batch)
    return got


def test_publish_pull_ack_leaves_nothing(bus) -> None:
    settings, publisher, subscriber = bus
    payloads = [f"message {i}".encode() for i in range(3_000)]

    ids = publisher.publish(payloads)
    pulled = _drain(subscriber)
    subscriber.ack([m.ack_id for m in pulled])  # 3000 ids: two Acknowledge requests

    assert len(ids) == len(set(ids)) == 3_000
    assert sorted(m.message_id for m in pulled) == sorted(ids)
    assert sorted(m.data for m in pulled) == sorted(payloads)
    first = pulled[0]
    assert first.publish_time.tzinfo == UTC
    assert abs(datetime.now(UTC) - first.publish_time) < timedelta(minutes=1)
    assert {m.delivery_attempt for m in pulled} == {1}, "0 from a subscription without DLQ maps to 1"
    started = time.monotonic()
    assert subscriber.pull(1_000) == [], "acknowledged messages must not come back"
    assert time.monotonic() - started < PULL_TIMEOUT + 2, "an empty pull must return promptly"


def test_unacked_messages_come_back_after_the_deadline(bus, pubsub_emulator) -> None:  # noqa: F811
    settings, publisher, subscriber = bus
    # A second subscription with a dead-letter policy: only there does Pub/Sub count attempts.
    from airflow.providers.google.cloud.hooks.pubsub import PubSubHook

    counted = f"{settings.subscription}-counted"
    hook = PubSubHook()
    hook.create_topic(topic=f"{settings.topic}-dead", project_id=settings.gcp_project)
    hook.create_subscription(
        topic=settings.topic,
        project_id=settings.gcp_project,
        subscription=counted,
        ack_deadline_secs=10,
        dead_letter_policy={
            "dead_letter_topic": f"projects/{settings.gcp_project}/topics/{settings.topic}-dead",
            "max_delivery_attempts": 5,
        },
    )
    counting = PubSubSubscriber(replace(settings, subscription=counted), pull_timeout_seconds=PULL_TIMEOUT)
    ids = publisher.publish([b"one", b"two", b"three"])

    first = {s: _drain(s) for s in (subscriber, counting)}
    leased_at = time.monotonic()
    assert all(s.pull(10) == [] for s in (subscriber, counting)), "leased messages are not handed out"
    time.sleep(max(0.0, 11.0 - (time.monotonic() - leased_at)))
    again = {s: _drain(s) for s in (subscriber, counting)}

    for s in (subscriber, counting):
        assert sorted(m.message_id for m in again[s]) == sorted(ids)
        assert {m.ack_id for m in again[s]}.isdisjoint(m.ack_id for m in first[s])
    assert {m.delivery_attempt for m in first[counting]} == {1}
    assert {m.delivery_attempt for m in again[counting]} == {2}
    assert {m.delivery_attempt for m in again[subscriber]} == {1}, "not counted without a DLQ policy"

    subscriber.ack([m.ack_id for m in first[subscriber]])  # expired leases: ignored, no error
    for s in (subscriber, counting):
        s.ack([m.ack_id for m in again[s]])
        assert s.pull(10) == []
    counting.close()


def test_modify_ack_deadline_extends_and_releases_the_lease(bus) -> None:
    settings, publisher, subscriber = bus
    ids = publisher.publish([f"lease {i}".encode() for i in range(2_600)])
    held = _drain(subscriber)
    leased_at = time.monotonic()
    assert len(held) == 2_600

    time.sleep(5)
    subscriber.modify_ack_deadline([m.ack_id for m in held], 30)  # 2600 ids: two requests
    time.sleep(max(0.0, 12.0 - (time.monotonic() - leased_at)))
    assert subscriber.pull(1_000) == [], "an extended lease must outlive the 10 s deadline"

    subscriber.modify_ack_deadline([m.ack_id for m in held], 0)  # give them back now
    returned = _drain(subscriber)
    assert sorted(m.message_id for m in returned) == sorted(ids)
    subscriber.ack([m.ack_id for m in returned])
    assert subscriber.pull(10) == []


def _event(i: int, now: datetime) -> dict:
    event = {
        "event_id": f"evt-{i:05d}",
        "schema_version": 1,
        "stream_id": f"stream-{i % 7}",
        "viewer_id": f"viewer-{i % 97}",
        "event_time": (now - timedelta(seconds=i)).isoformat(sep=" "),
        "event_type": "product_view",
        "product_id": f"prod-{i % 13}",
        "source": "test",
    }
    if i % 5 == 0:
        event.update(event_type="add_to_cart", price=19.99, quantity=1 + i % 3)
    return event


MALFORMED = [
    b"not json at all",
    b"[1, 2, 3]",
    b'{"event_id": "bad-1", "schema_version": 1}',
    b'{"event_id": "bad-2", "schema_version": 1, "stream_id": "s", "viewer_id": "v", '
    b'"event_time": "2025-07-19 09:00:00", "event_type": "teleport"}',
    b"\xff\xfe not utf-8",
]


def test_run_ingest_loads_each_event_once(tmp_path: Path, pubsub_emulator) -> None:  # noqa: F811
    settings = _settings(tmp_path, pubsub_emulator, LIVESHOP_CHUNK_SIZE="1000")
    ensure_topic_and_subscription(settings)
    now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    events = [encode_event(_event(i, now)) for i in range(1_500)]
    resent = events[:40]  # a publisher resend: same events, new message ids

    publisher = PubSubPublisher(settings)
    published = publisher.publish(events) + publisher.publish(events)
    published += publisher.publish(resent) + publisher.publish(MALFORMED)
    publisher.close()
    subscriber = PubSubSubscriber(settings, pull_timeout_seconds=PULL_TIMEOUT)

    report = run_ingest(settings, subscriber)
    second = run_ingest(settings, subscriber)
    subscriber.close()

    total = 2 * len(events) + len(resent) + len(MALFORMED)
    assert len(set(published)) == total
    assert report.pulled == total
    assert report.loaded == len(events)
    assert report.duplicates == len(events) + len(resent)
    assert report.dead_lettered == len(MALFORMED)
    assert report.chunks >= 4
    assert second.pulled == 0, "everything was acknowledged after the load"
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        raw = con.execute(
            "select count(*), count(distinct event_id), count(distinct message_id), "
            "min(delivery_attempt) from raw.raw_events"
        ).fetchone()
        dead = con.execute(
            "select count(*), count(distinct message_id) from raw.dead_letter_events"
        ).fetchone()
        batches = con.execute(
            "select sum(pulled), sum(loaded), sum(duplicates), sum(dead_lettered) from raw.ingest_batches"
        ).fetchone()
    assert raw == (len(events), len(events), len(events), 1)
    assert dead == (len(MALFORMED), len(MALFORMED))
    assert batches == (total, len(events), len(events) + len(resent), len(MALFORMED))


def test_ingest_while_a_publisher_keeps_publishing(tmp_path: Path, pubsub_emulator) -> None:  # noqa: F811
    # As under `make up-emulator`: a backlog, then a live show publishing a few events a second.
    # Filling a chunk from that trickle takes longer than the ack deadline, and the subscription
    # is never drained; the batch must still end, and nothing may come back as a duplicate.
    settings = _settings(
        tmp_path,
        pubsub_emulator,
        LIVESHOP_ACK_DEADLINE_SECONDS="10",
        LIVESHOP_CHUNK_SIZE="3000",
        # Ends a batch that never caught up soon enough for the assertion below to say so.
        LIVESHOP_BATCH_MAX_SECONDS="60",
    )
    ensure_topic_and_subscription(settings)
    now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    publisher = PubSubPublisher(settings)
    ledger = publisher.publish([encode_event(_event(i, now)) for i in range(2_000)])
    stop = threading.Event()

    def live_show() -> None:
        n = 2_000
        while not stop.is_set():
            ledger.extend(publisher.publish([encode_event(_event(i, now)) for i in range(n, n + 5)]))
            n += 5
            stop.wait(0.25)

    show = threading.Thread(target=live_show)
    show.start()
    try:
        time.sleep(1)
        subscriber = PubSubSubscriber(settings, pull_timeout_seconds=PULL_TIMEOUT)
        live = run_ingest(settings, subscriber)
        # Let the trickle outlast an ack deadline before the next batch, as between two runs.
        time.sleep(12)
    finally:
        stop.set()
        show.join()
    rest = run_ingest(settings, subscriber)
    subscriber.close()
    publisher.close()

    assert live.stopped == STOP_LIVE_EDGE
    assert 2_000 < live.pulled < len(ledger), "it took the backlog and some live events, then stopped"
    assert rest.stopped == STOP_DRAINED
    assert (live.duplicates, rest.duplicates) == (0, 0), "a held message's lease expired"
    assert live.loaded + rest.loaded == len(ledger) == len(set(ledger))
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        assert con.execute("select count(distinct message_id), count(*) from raw.raw_events").fetchone() == (
            len(ledger),
            len(ledger),
        )


def test_missing_topic_and_subscription_raise_bus_errors(tmp_path: Path, pubsub_emulator) -> None:  # noqa: F811
    settings = _settings(tmp_path, pubsub_emulator)  # nothing created
    publisher = PubSubPublisher(settings)
    subscriber = PubSubSubscriber(settings, pull_timeout_seconds=PULL_TIMEOUT)

    with pytest.raises(BusError, match=f"topic projects/test-project/topics/{settings.topic} failed"):
        publisher.publish([b"lost"])
    with pytest.raises(BusError, match=f"subscriptions/{settings.subscription} failed.*setup"):
        subscriber.pull(10)
    publisher.close()
    subscriber.close()
