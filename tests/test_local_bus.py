"""The local bus keeps Pub/Sub's promises: durable, at least once, leases that expire."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from multiprocessing import get_context
from pathlib import Path

import pytest

from include.liveshop.bus.local import LocalBus
from include.liveshop.errors import BusError
from include.liveshop.settings import PROJECT_ROOT


@pytest.fixture
def bus(tmp_path: Path) -> LocalBus:
    bus = LocalBus(tmp_path / "bus.sqlite3")
    bus.create_subscription("events", "ingest", ack_deadline_seconds=30)
    return bus


def drain(subscriber, ack: bool = True) -> list:
    received = []
    while batch := subscriber.pull(100):
        received.extend(batch)
        if ack:
            subscriber.ack([m.ack_id for m in batch])
    return received


def test_publish_pull_ack(bus: LocalBus) -> None:
    ids = bus.publisher("events").publish([b"a", b"b", b"c"])
    subscriber = bus.subscriber("ingest")
    received = drain(subscriber)
    assert [m.data for m in received] == [b"a", b"b", b"c"]
    assert [m.message_id for m in received] == ids
    assert all(m.delivery_attempt == 1 for m in received)
    assert bus.backlog("ingest") == 0
    assert subscriber.pull(10) == []


def test_leased_messages_are_not_handed_out_twice(bus: LocalBus) -> None:
    bus.publisher("events").publish([b"x"] * 5)
    first = bus.subscriber("ingest").pull(3)
    second = bus.subscriber("ingest").pull(10)
    assert len(first) == 3 and len(second) == 2
    assert {m.message_id for m in first}.isdisjoint({m.message_id for m in second})


def test_unacked_message_comes_back_after_the_deadline(tmp_path: Path) -> None:
    bus = LocalBus(tmp_path / "bus.sqlite3")
    bus.create_subscription("events", "ingest", ack_deadline_seconds=1)
    bus.publisher("events").publish([b"slow"])
    subscriber = bus.subscriber("ingest")
    [first] = subscriber.pull(10)
    assert subscriber.pull(10) == []  # still leased
    time.sleep(1.2)
    [again] = subscriber.pull(10)
    assert (again.message_id, again.delivery_attempt) == (first.message_id, 2)
    subscriber.ack([first.ack_id])  # the expired lease cannot acknowledge ...
    assert bus.backlog("ingest") == 1
    subscriber.ack([again.ack_id])  # ... the current one can
    assert bus.backlog("ingest") == 0


def test_extending_the_deadline_keeps_the_lease(tmp_path: Path) -> None:
    bus = LocalBus(tmp_path / "bus.sqlite3")
    bus.create_subscription("events", "ingest", ack_deadline_seconds=1)
    bus.publisher("events").publish([b"held"])
    subscriber = bus.subscriber("ingest")
    [held] = subscriber.pull(10)
    subscriber.modify_ack_deadline([held.ack_id], 30)
    time.sleep(1.2)
    assert subscriber.pull(10) == []


def test_nack_redelivers_at_once(bus: LocalBus) -> None:
    bus.publisher("events").publish([b"retry me"])
    subscriber = bus.subscriber("ingest")
    [first] = subscriber.pull(10)
    subscriber.modify_ack_deadline([first.ack_id], 0)
    [again] = subscriber.pull(10)
    assert again.delivery_attempt == 2


def test_fan_out_and_topic_without_subscription(bus: LocalBus) -> None:
    bus.create_subscription("events", "audit")
    bus.publisher("events").publish([b"1", b"2"])
    bus.publisher("nobody-listens").publish([b"lost"])
    assert len(drain(bus.subscriber("ingest"))) == 2
    assert len(drain(bus.subscriber("audit"))) == 2


def test_unknown_subscription_and_bad_ack_ids(bus: LocalBus) -> None:
    with pytest.raises(BusError, match="subscription 'nope' does not exist"):
        bus.subscriber("nope")
    with pytest.raises(BusError, match="malformed ack id"):
        bus.subscriber("ingest").ack(["garbage"])
    with pytest.raises(BusError, match="exists on topic 'events'"):
        bus.create_subscription("other-topic", "ingest")


def _publish_many(path: str, worker: int, count: int) -> None:
    publisher = LocalBus(path).publisher("events")
    for start in range(0, count, 50):
        publisher.publish([f"{worker}-{i}".encode() for i in range(start, min(start + 50, count))])


def test_several_processes_publish_while_one_pulls(bus: LocalBus) -> None:
    context = get_context("spawn")
    workers = [context.Process(target=_publish_many, args=(str(bus.path), w, 1000)) for w in range(3)]
    for worker in workers:
        worker.start()
    received: set[bytes] = set()
    subscriber = bus.subscriber("ingest")
    while any(w.is_alive() for w in workers) or bus.backlog("ingest"):
        batch = subscriber.pull(200)
        received.update(m.data for m in batch)
        subscriber.ack([m.ack_id for m in batch])
    for worker in workers:
        worker.join()
        assert worker.exitcode == 0
    assert received == {f"{w}-{i}".encode() for w in range(3) for i in range(1000)}


def test_published_messages_survive_a_killed_publisher(bus: LocalBus, tmp_path: Path) -> None:
    """Every id a publish call returned is delivered, even when the process is killed -9 after."""
    script = textwrap.dedent(
        f"""
        import sys
        from include.liveshop.bus.local import LocalBus
        publisher = LocalBus({str(bus.path)!r}).publisher("events")
        n = 0
        while True:
            ids = publisher.publish([b"m%d" % (n + i) for i in range(20)])
            n += 20
            print(ids[-1], flush=True)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    confirmed = []
    for line in process.stdout:
        confirmed.append(int(line))
        if len(confirmed) == 50:
            break
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    delivered = {int(m.message_id) for m in drain(bus.subscriber("ingest"))}
    assert set(range(1, confirmed[-1] + 1)) <= delivered
