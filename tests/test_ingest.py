"""Ingest: every valid event loaded once, every invalid one dead-lettered, acks after commit."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import duckdb
import pytest

from include.liveshop import ingest, warehouse
from include.liveshop.bus import get_publisher, get_subscriber
from include.liveshop.bus.local import LocalBus
from include.liveshop.contract import encode_event
from include.liveshop.errors import ConfigError
from include.liveshop.settings import Settings


def event(n: int, **change) -> bytes:
    body = {
        "event_id": f"evt-{n}",
        "schema_version": 1,
        "stream_id": "STRM1",
        "viewer_id": f"V{n % 7}",
        "viewer_email": f"viewer{n % 7}@example.com",
        "event_time": "2026-11-20 10:00:00",
        "event_type": "order_completed",
        "product_id": "P001",
        "price": 12.5,
        "quantity": 2,
    }
    return encode_event({**body, **change})


def query(settings: Settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_duplicates_and_resends_count_once(settings: Settings) -> None:
    publisher = get_publisher(settings)
    publisher.publish([event(n) for n in range(300)])
    publisher.publish([event(n) for n in range(0, 300, 3)])  # a publisher resend: new message ids
    report = ingest.run_ingest(settings, get_subscriber(settings))
    assert (report.pulled, report.loaded, report.duplicates, report.dead_lettered) == (400, 300, 100, 0)
    # 300 orders of 2 x 12.50
    assert query(
        settings, "select count(*), count(distinct event_id), sum(price * quantity) from raw.raw_events"
    ) == [(300, 300, 7500)]
    # a later batch with the same events again adds nothing
    publisher.publish([event(n) for n in range(300)])
    again = ingest.run_ingest(settings, get_subscriber(settings))
    assert (again.loaded, again.duplicates) == (0, 300)
    assert query(settings, "select count(*) from raw.raw_events") == [(300,)]


def test_transport_metadata_is_kept(settings: Settings) -> None:
    [message_id] = get_publisher(settings).publish([event(1)])
    ingest.run_ingest(settings, get_subscriber(settings), batch_id="run-1")
    [(mid, attempt, batch, has_publish_time, has_ingested_at)] = query(
        settings,
        "select message_id, delivery_attempt, batch_id, publish_time is not null, ingested_at is not null "
        "from raw.raw_events",
    )
    assert (mid, attempt, batch, has_publish_time, has_ingested_at) == (message_id, 1, "run-1", True, True)


def test_bad_messages_are_dead_lettered_beside_good_ones(settings: Settings) -> None:
    bad = {
        b"": "empty message",
        b"\xc3\x28": "not UTF-8",
        b"{oops": "not JSON",
        b"[]": "where an object was expected",
        event(900, price=-5): "greater than or equal to 0",
        event(901, event_type="teleport"): "got 'teleport'",
        event(902, event_time="not a time"): "unparseable timestamp",
    }
    good = [
        event(n, chat_message="🛍️ '); drop table raw.raw_events; --", event_type="chat_message")
        for n in range(50)
    ]
    get_publisher(settings).publish(good[:25] + list(bad) + good[25:])
    report = ingest.run_ingest(settings, get_subscriber(settings))
    assert (report.loaded, report.dead_lettered) == (50, len(bad))
    rows = query(settings, "select data, reason from raw.dead_letter_events")
    assert len(rows) == len(bad)
    for data, reason in rows:
        assert bad[bytes(data)] in reason, (data, reason)
    assert query(settings, "select distinct chat_message from raw.raw_events") == [
        ("🛍️ '); drop table raw.raw_events; --",)
    ]


def test_batch_is_processed_in_chunks_and_capped(tmp_path: Path, settings: Settings) -> None:
    settings = dataclasses.replace(settings, chunk_size=40, pull_max_messages=15, batch_max_messages=100)
    get_publisher(settings).publish([event(n) for n in range(130)])
    report = ingest.run_ingest(settings, get_subscriber(settings))
    assert (report.pulled, report.chunks) == (100, 3)  # 40 + 40 + 20, then the cap
    assert query(settings, "select chunk, pulled from raw.ingest_batches order by chunk") == [
        (0, 40),
        (1, 40),
        (2, 20),
    ]
    rest = ingest.run_ingest(settings, get_subscriber(settings))
    assert rest.pulled == 30
    assert query(settings, "select count(*) from raw.raw_events") == [(130,)]


def test_failed_load_acks_nothing_and_retry_loads_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = dataclasses.replace(settings, chunk_size=50)
    get_publisher(settings).publish([event(n) for n in range(200)])
    real_load = warehouse.load_chunk
    calls = {"n": 0}

    def load_then_fail(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise duckdb.IOException("disk went away")
        return real_load(*args, **kwargs)

    monkeypatch.setattr(warehouse, "load_chunk", load_then_fail)
    with pytest.raises(duckdb.IOException):
        ingest.run_ingest(settings, get_subscriber(settings))
    assert query(settings, "select count(*) from raw.raw_events") == [(100,)]
    # the failed chunk was handed back at once, not at the deadline
    assert LocalBus(settings.bus_path).backlog(settings.subscription) == 100
    retry = ingest.run_ingest(settings, get_subscriber(settings))
    assert (retry.loaded, retry.duplicates) == (100, 0)
    assert query(settings, "select count(*) from raw.raw_events") == [(200,)]


def test_crash_between_commit_and_ack_counts_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = LocalBus(settings.bus_path)
    bus.create_subscription(settings.topic, settings.subscription, ack_deadline_seconds=1)
    bus.publisher(settings.topic).publish([event(n) for n in range(60)])
    subscriber = bus.subscriber(settings.subscription)

    def lost_ack(ack_ids):
        raise ConnectionError("network dropped the ack")

    monkeypatch.setattr(subscriber, "ack", lost_ack)
    with pytest.raises(ConnectionError):
        ingest.run_ingest(settings, subscriber)
    assert query(settings, "select count(*) from raw.raw_events") == [(60,)]
    time.sleep(1.2)  # the lease expires; the bus redelivers
    again = ingest.run_ingest(settings, bus.subscriber(settings.subscription))
    assert (again.pulled, again.loaded, again.duplicates) == (60, 0, 60)
    assert query(settings, "select max(delivery_attempt) from raw.raw_events") == [(1,)]
    assert bus.backlog(settings.subscription) == 0


def test_ack_deadline_shorter_than_the_load(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a slow load runs, the leases are extended, so no other puller gets the messages."""
    bus = LocalBus(settings.bus_path)
    bus.create_subscription(settings.topic, settings.subscription, ack_deadline_seconds=1)
    bus.publisher(settings.topic).publish([event(n) for n in range(30)])
    real_load = warehouse.load_chunk

    def slow_load(*args, **kwargs):
        time.sleep(3)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(warehouse, "load_chunk", slow_load)
    settings = dataclasses.replace(settings, ack_deadline_seconds=1)
    stolen: list = []

    def rival_puller() -> None:
        rival = bus.subscriber(settings.subscription)
        for _ in range(12):
            time.sleep(0.25)
            stolen.extend(rival.pull(100))

    rival = threading.Thread(target=rival_puller)
    rival.start()
    report = ingest.run_ingest(settings, bus.subscriber(settings.subscription))
    rival.join()
    assert stolen == []
    assert (report.loaded, report.duplicates) == (30, 0)
    assert bus.backlog(settings.subscription) == 0


class SlowRounds:
    """A subscriber whose pulls each take a while and bring a few messages, like a trickle."""

    def __init__(self, inner, *, per_round: int, seconds: float, before_pull=None) -> None:
        self._inner = inner
        self._per_round = per_round
        self._seconds = seconds
        self._before_pull = before_pull
        self.rounds = 0

    def pull(self, max_messages: int):
        self.rounds += 1
        if self._before_pull:
            self._before_pull()
        time.sleep(self._seconds)
        return self._inner.pull(min(max_messages, self._per_round))

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_leases_are_kept_from_the_round_that_pulled_them(settings: Settings) -> None:
    """Filling a chunk takes four ack deadlines; its first messages must not come back meanwhile."""
    bus = LocalBus(settings.bus_path)
    bus.create_subscription(settings.topic, settings.subscription, ack_deadline_seconds=1)
    bus.publisher(settings.topic).publish([event(n) for n in range(30)])
    slow = SlowRounds(bus.subscriber(settings.subscription), per_round=3, seconds=0.4)
    # A budget, so that a regression (leases lapsing, the same messages pulled again and again)
    # fails the assertions below rather than running until the suite times out.
    budgeted = dataclasses.replace(settings, ack_deadline_seconds=1, batch_max_seconds=30)
    report = ingest.run_ingest(budgeted, slow)
    assert (report.pulled, report.loaded, report.duplicates, report.chunks) == (30, 30, 0, 1)
    assert report.stopped == ingest.STOP_DRAINED
    assert bus.backlog(settings.subscription) == 0


def test_a_batch_stops_at_the_live_edge(settings: Settings) -> None:
    """A publisher that never pauses: the batch takes the backlog and what came meanwhile, then ends."""
    bus = LocalBus(settings.bus_path)
    bus.create_subscription(settings.topic, settings.subscription)
    publisher = bus.publisher(settings.topic)
    publisher.publish([event(n) for n in range(50)])
    time.sleep(0.05)  # the backlog is older than the batch
    fresh = iter(range(1_000, 100_000))

    def live_show() -> None:
        publisher.publish([event(next(fresh)) for _ in range(2)])

    subscriber = SlowRounds(
        bus.subscriber(settings.subscription), per_round=20, seconds=0, before_pull=live_show
    )
    report = ingest.run_ingest(dataclasses.replace(settings, pull_max_messages=20), subscriber)
    # Two new messages land before each round. Rounds 1 and 2 are full (old 1-20, 21-40); round 3
    # asks for 20 and gets 16 (old 41-50 and the 6 new ones): not full, and fresh, so it ends.
    assert report.stopped == ingest.STOP_LIVE_EDGE
    assert subscriber.rounds == 3
    assert (report.pulled, report.loaded, report.duplicates) == (56, 56, 0)
    assert bus.backlog(settings.subscription) == 0


def test_a_batch_stops_when_its_time_is_spent(settings: Settings) -> None:
    """A backlog larger than one run can take in its time budget is taken over several runs."""
    get_publisher(settings).publish([event(n) for n in range(100)])
    now = [0.0]

    def clock() -> float:
        return now[0]

    class Ticking:
        def __init__(self, inner) -> None:
            self._inner = inner

        def pull(self, max_messages: int):
            now[0] += 10  # each round takes ten seconds on this clock
            return self._inner.pull(max_messages)

        def __getattr__(self, name):
            return getattr(self._inner, name)

    budgeted = dataclasses.replace(settings, batch_max_seconds=25, pull_max_messages=10, chunk_size=20)
    first = ingest.run_ingest(budgeted, Ticking(get_subscriber(settings)), clock=clock)
    # Rounds at t=10, 20, 30: the third passes the 25 s budget, so the chunk of 30 is the last.
    assert (first.stopped, first.pulled, first.loaded, first.chunks) == (ingest.STOP_TIME, 30, 30, 2)
    rest = ingest.run_ingest(settings, get_subscriber(settings))
    assert (rest.stopped, rest.loaded, rest.duplicates) == (ingest.STOP_DRAINED, 70, 0)
    assert query(settings, "select count(distinct event_id) from raw.raw_events") == [(100,)]


def test_a_bigquery_warehouse_is_refused_before_anything_is_pulled(settings: Settings) -> None:
    """Only the dbt project runs on BigQuery so far; ingest must say so, not load into DuckDB."""
    get_publisher(settings).publish([event(1)])
    on_bigquery = dataclasses.replace(settings, warehouse="bigquery", gcp_project="some-project")
    with pytest.raises(ConfigError, match="LIVESHOP_WAREHOUSE: ingest supports only 'duckdb'"):
        ingest.run_ingest(on_bigquery, get_subscriber(settings))
    assert not settings.duckdb_path.exists()
    # the message is still on the bus for a correctly configured run
    assert ingest.run_ingest(settings, get_subscriber(settings)).loaded == 1


def test_a_new_bus_that_reuses_message_ids_loses_no_dead_letter(settings: Settings) -> None:
    """A recreated local bus (or a restarted emulator) numbers its messages from 1 again."""
    [first_id] = get_publisher(settings).publish([b"not json"])
    assert ingest.run_ingest(settings, get_subscriber(settings)).dead_lettered == 1
    settings.bus_path.unlink()
    time.sleep(0.01)  # a later publish time, as any real restart gives
    [second_id] = get_publisher(settings).publish([b'{"also": "not an event"}'])
    assert second_id == first_id
    assert ingest.run_ingest(settings, get_subscriber(settings)).dead_lettered == 1
    assert query(settings, "select message_id, data from raw.dead_letter_events order by publish_time") == [
        (first_id, b"not json"),
        (second_id, b'{"also": "not an event"}'),
    ]


def test_a_bad_message_delivered_again_is_dead_lettered_once(settings: Settings) -> None:
    bus = LocalBus(settings.bus_path)
    bus.create_subscription(settings.topic, settings.subscription, ack_deadline_seconds=10)
    bus.publisher(settings.topic).publish([b"not json", event(1)])
    subscriber = bus.subscriber(settings.subscription)
    first = subscriber.pull(10)
    subscriber.modify_ack_deadline([m.ack_id for m in first], 0)  # as if the puller had died
    ingest.run_ingest(settings, subscriber)
    bus.publisher(settings.topic).publish([b"not json"])  # a resend: a new message, recorded too
    ingest.run_ingest(settings, subscriber)
    assert query(settings, "select count(*), count(distinct message_id) from raw.dead_letter_events") == [
        (2, 2)
    ]
    assert query(settings, "select max(delivery_attempt) from raw.dead_letter_events") == [(2,)]


def test_a_warehouse_keyed_on_message_id_alone_is_rekeyed_with_its_dead_letters(settings: Settings) -> None:
    settings.duckdb_path.parent.mkdir(parents=True)
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute(
            "create schema raw; create table raw.dead_letter_events (message_id varchar primary key, "
            "data blob not null, reason varchar not null, field varchar, publish_time timestamp not null, "
            "delivery_attempt integer not null, dead_lettered_at timestamp not null, batch_id varchar not null)"
        )
        con.execute(
            "insert into raw.dead_letter_events values "
            "('1', 'old'::blob, 'not JSON', null, '2026-12-01 10:00:00', 1, '2026-12-01 10:05:00', 'b1')"
        )
    get_publisher(settings).publish([b"still not json"])  # message id 1 again, on a fresh bus
    assert ingest.run_ingest(settings, get_subscriber(settings)).dead_lettered == 1
    assert query(settings, "select message_id, data from raw.dead_letter_events order by publish_time") == [
        ("1", b"old"),
        ("1", b"still not json"),
    ]
    assert query(
        settings,
        "select constraint_column_names from duckdb_constraints() "
        "where table_name = 'dead_letter_events' and constraint_type = 'PRIMARY KEY'",
    ) == [(["message_id", "publish_time"],)]
