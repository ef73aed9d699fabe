"""Ingest under faults: killed processes, duplicate deliveries, hostile input, locks, big batches.

Every expected figure comes from a ledger kept on the publishing side (what a publish call
confirmed), never from the ingest code. Figures worth quoting (kills, redeliveries, peak memory) are
printed; run with ``-s`` or ``-rP`` to see them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from include.liveshop import ingest
from include.liveshop.bus.base import ReceivedMessage
from include.liveshop.bus.local import LocalBus, LocalSubscriber
from include.liveshop.settings import PROJECT_ROOT, Settings

TOPIC = "liveshop-events"
SUBSCRIPTION = "liveshop-events-ingest"


def order(event_id: str, n: int, **change: object) -> dict[str, object]:
    """A valid order event; price and quantity follow from ``n`` so a ledger can add them up."""
    return {
        "event_id": event_id,
        "schema_version": 1,
        "stream_id": f"STRM{n % 5}",
        "viewer_id": f"V{n % 97:03d}",
        "event_time": "2026-03-14 18:30:00",
        "event_type": "order_completed",
        "product_id": f"P{n % 40:03d}",
        "price": unit_price(n),
        "quantity": n % 3 + 1,
        **change,
    }


def unit_price(n: int) -> Decimal:
    return Decimal(n % 50) + Decimal("0.99")


def encode(body: dict[str, object]) -> bytes:
    # A two-decimal price as a float prints its exact digits, which the contract parses as Decimal.
    return json.dumps(body, ensure_ascii=False, default=float).encode()


def encode_order(event_id: str, n: int) -> bytes:
    return encode(order(event_id, n))


def rows(path: Path, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def child_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVESHOP_")}
    return {**env, "PYTHONPATH": str(PROJECT_ROOT), "LIVESHOP_DATA_DIR": str(data_dir), **extra}


def local_settings(settings: Settings, **change: object) -> Settings:
    return dataclasses.replace(settings, ack_deadline_seconds=1, **change)


def short_lease_bus(settings: Settings, **kwargs: object) -> LocalBus:
    bus = LocalBus(settings.bus_path, **kwargs)
    bus.create_subscription(TOPIC, SUBSCRIPTION, ack_deadline_seconds=1)
    return bus


# --------------------------------------------------------------------------------------------
# kill -9 at many points of the pull-and-load step

# Runs run_ingest once. Test-side tracing only: it wraps the bus and warehouse calls to announce,
# on an unbuffered stdout, the step it is entering, so the parent knows where a kill landed.
INGEST_CHILD = textwrap.dedent(
    """
    import dataclasses, json, os
    from include.liveshop import warehouse
    from include.liveshop.bus.local import LocalBus
    from include.liveshop.ingest import run_ingest
    from include.liveshop.settings import get_settings

    def mark(step):
        os.write(1, step.encode() + b"\\n")

    def traced(name, call):
        def wrapper(*args, **kwargs):
            mark(name + " begin")
            result = call(*args, **kwargs)
            mark(name + " end")
            return result
        return wrapper

    settings = dataclasses.replace(get_settings(), ack_deadline_seconds=1)
    bus = LocalBus(settings.bus_path)
    bus.create_subscription(settings.topic, settings.subscription, ack_deadline_seconds=1)
    subscriber = bus.subscriber(settings.subscription)
    subscriber.pull = traced("pull", subscriber.pull)
    subscriber.ack = traced("ack", subscriber.ack)
    warehouse.ensure_schema = traced("open", warehouse.ensure_schema)
    warehouse.load_chunk = traced("load", warehouse.load_chunk)
    mark("start")
    report = run_ingest(settings, subscriber)
    mark("done " + json.dumps(report.as_dict()))
    """
)

# Where the child was, from the last step it announced before the kill.
KILL_PHASES = {
    None: "starting (imports, bus)",
    "start": "opening the warehouse (WAL replay)",
    "open begin": "opening the warehouse (WAL replay)",
    "open end": "pulling",
    "pull begin": "pulling",
    "pull end": "validating",
    "load begin": "loading (inside the DuckDB transaction)",
    "load end": "after the commit, before the ack",
    "ack begin": "acknowledging",
    "ack end": "pulling",
}


# Where each run aims its kill: after which announced step (None: after the start of the process),
# and the longest random delay after it, in seconds. The delays are a few times the length of the
# step aimed at, so kills also land in the steps that follow.
KILL_AIMS = [
    (None, 1.5),
    ("start", 0.3),
    ("load begin", 0.03),
    ("pull end", 0.05),
    ("load end", 0.01),
    ("ack begin", 0.01),
]


@dataclass
class Ledger:
    """What the publisher knows: event ids whose publish call returned, and resends."""

    ids: set[str] = field(default_factory=set)
    revenue: Decimal = Decimal(0)
    messages: int = 0
    resends: int = 0


def publish_paced(bus: LocalBus, ledger: Ledger, total: int, slice_size: int, pause: float) -> None:
    publisher = bus.publisher(TOPIC)
    for start in range(0, total, slice_size):
        numbers = range(start, min(start + slice_size, total))
        publisher.publish([encode_order(f"kill-{n:05d}", n) for n in numbers])
        for n in numbers:
            ledger.ids.add(f"kill-{n:05d}")
            ledger.revenue += unit_price(n) * (n % 3 + 1)
        ledger.messages += len(numbers)
        if (start // slice_size) % 5 == 4:
            # A publisher that timed out and sent part of the slice again: new message ids.
            again = numbers[:50]
            publisher.publish([encode_order(f"kill-{n:05d}", n) for n in again])
            ledger.messages += len(again)
            ledger.resends += len(again)
        time.sleep(pause)


def wait_for_line(path: Path, line: str, process: subprocess.Popen, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if line in path.read_text(errors="replace").splitlines():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.005)
    raise AssertionError(f"the ingest child did not print {line!r} within {timeout} s")


def test_kill_9_at_random_points_loses_nothing_and_counts_nothing_twice(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    bus = LocalBus(data_dir / "bus.sqlite3")
    bus.create_subscription(TOPIC, SUBSCRIPTION, ack_deadline_seconds=1)
    env = child_env(data_dir, LIVESHOP_CHUNK_SIZE="500", LIVESHOP_PULL_MAX_MESSAGES="500")
    wal = data_dir / "warehouse.duckdb.wal"
    rng = random.Random(20260314)
    ledger = Ledger()
    publisher = threading.Thread(target=publish_paced, args=(bus, ledger, 30_000, 500, 0.6))
    publisher.start()

    phases: Counter[str] = Counter()
    completed_runs = runs_on_a_left_wal = 0
    try:
        for attempt in range(80):
            if sum(phases.values()) >= 24 and not publisher.is_alive():
                break
            runs_on_a_left_wal += wal.exists()
            out = tmp_path / f"run-{attempt:02d}.log"
            with open(out, "wb") as sink:
                child = subprocess.Popen(
                    [sys.executable, "-c", INGEST_CHILD],
                    cwd=PROJECT_ROOT,
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            try:
                step, late = KILL_AIMS[attempt % len(KILL_AIMS)]
                if step is None:
                    time.sleep(rng.uniform(0.05, late))  # anywhere from the imports on
                elif wait_for_line(out, step, child):
                    time.sleep(rng.uniform(0.0, late))
                alive = child.poll() is None
                if alive:
                    child.send_signal(signal.SIGKILL)
            finally:
                child.kill()
                child.wait()
            steps = out.read_text(errors="replace").splitlines()
            if alive and child.returncode == -signal.SIGKILL:
                last = next((step for step in reversed(steps) if step in KILL_PHASES), None)
                phases[KILL_PHASES[last]] += 1
            else:
                assert child.returncode == 0, f"ingest run {attempt} failed on its own:\n" + "\n".join(
                    steps[-30:]
                )
                completed_runs += 1
            time.sleep(0.3)
    finally:
        publisher.join()

    time.sleep(1.2)  # the leases of the last killed run expire
    runs_on_a_left_wal += wal.exists()
    final = subprocess.run(
        [sys.executable, "-c", INGEST_CHILD],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]

    warehouse_path = data_dir / "warehouse.duckdb"
    loaded_ids = {event_id for (event_id,) in rows(warehouse_path, "select event_id from raw.raw_events")}
    [(count, distinct, revenue, redelivered_first)] = rows(
        warehouse_path,
        "select count(*), count(distinct event_id), sum(price * quantity), "
        "count(*) filter (where delivery_attempt > 1) from raw.raw_events",
    )
    [(pulled, loaded, duplicates, dead, chunks)] = rows(
        warehouse_path,
        "select sum(pulled), sum(loaded), sum(duplicates), sum(dead_lettered), count(*) from raw.ingest_batches",
    )
    kills = sum(phases.values())
    print(
        f"\nkill -9 test: {kills} kills landed ({dict(phases)}), {completed_runs} runs finished "
        f"before their kill, {runs_on_a_left_wal} runs opened a WAL left by a killed run; "
        f"ledger {len(ledger.ids)} events in {ledger.messages} messages ({ledger.resends} resends); "
        f"committed chunks {chunks}: pulled {pulled}, loaded {loaded}, duplicates {duplicates} "
        f"(of which {duplicates - ledger.resends} redeliveries of committed but unacknowledged "
        f"messages), {redelivered_first} events loaded from a delivery_attempt > 1"
    )
    assert not ledger.ids - loaded_ids, f"lost {len(ledger.ids - loaded_ids)} confirmed events"
    assert (count, distinct) == (len(ledger.ids), len(ledger.ids)), "an event was counted twice or invented"
    assert revenue == ledger.revenue
    assert (loaded, dead) == (len(ledger.ids), 0)
    # Each committed chunk's audit row is written in the same transaction as its events.
    assert pulled == loaded + duplicates
    assert duplicates >= ledger.resends
    assert LocalBus(data_dir / "bus.sqlite3").backlog(SUBSCRIPTION) == 0
    # The test only means something if the kills really landed, some of them inside the load.
    assert kills >= 20, phases
    assert phases["loading (inside the DuckDB transaction)"] >= 1, phases


# --------------------------------------------------------------------------------------------
# duplicate deliveries and publisher resends, mixed with bad messages, over several batches


class EchoingSubscriber:
    """Hands out every delivery twice: again, with the same ack id, on the following pull.

    This is what Pub/Sub may do (a delivery repeated after an ack was lost in flight); the echo of
    the last pull of one batch arrives in the next batch.
    """

    def __init__(self, inner: LocalSubscriber) -> None:
        self._inner = inner
        self._echoes: list[ReceivedMessage] = []

    def pull(self, max_messages: int) -> list[ReceivedMessage]:
        out = self._echoes[:max_messages]
        self._echoes = self._echoes[max_messages:]
        fresh = self._inner.pull(max_messages - len(out))
        self._echoes += [dataclasses.replace(m, delivery_attempt=m.delivery_attempt + 1) for m in fresh]
        return out + fresh

    def ack(self, ack_ids: Sequence[str]) -> None:
        self._inner.ack(ack_ids)

    def modify_ack_deadline(self, ack_ids: Sequence[str], seconds: int) -> None:
        self._inner.modify_ack_deadline(ack_ids, seconds)

    def close(self) -> None:
        self._inner.close()


def test_every_message_twice_plus_resends_counts_exactly(settings: Settings) -> None:
    settings = local_settings(settings, chunk_size=64, pull_max_messages=25, batch_max_messages=300)
    bus = short_lease_bus(settings)
    publisher = bus.publisher(TOPIC)
    subscriber = EchoingSubscriber(bus.subscriber(SUBSCRIPTION))
    first_seen: dict[str, Decimal] = {}
    good_messages = 0
    bad_message_ids: list[str] = []
    reports = []
    for round_ in range(3):
        numbers = range(round_ * 400, round_ * 400 + 400)
        resent = range(round_ * 400 - 150, round_ * 400 - 50) if round_ else range(0)
        good = [encode_order(f"dup-{n}", n) for n in [*numbers, *resent]]
        bad = [b"{not json", encode(order(f"bad-{round_}", 0, price=-1)), b""]
        batch = good[:200] + bad[:2] + good[200:] + bad[2:]
        ids = publisher.publish(batch)
        bad_message_ids += [ids[200], ids[201], ids[-1]]
        good_messages += len(good)
        for n in [*numbers, *resent]:
            first_seen.setdefault(f"dup-{n}", unit_price(n) * (n % 3 + 1))
        # the bad messages are resent too, each resend a new message
        bad_message_ids += publisher.publish(bad)
        reports.append(ingest.run_ingest(settings, subscriber))
    while (report := ingest.run_ingest(settings, subscriber)).pulled:
        reports.append(report)

    assert len(reports) >= 8, "the scenario should span several batches"
    path = settings.duckdb_path
    assert rows(
        path, "select count(*), count(distinct event_id), sum(price * quantity) from raw.raw_events"
    ) == [(len(first_seen), len(first_seen), sum(first_seen.values()))]
    assert {i for (i,) in rows(path, "select event_id from raw.raw_events")} == set(first_seen)
    assert sorted(i for (i,) in rows(path, "select message_id from raw.dead_letter_events")) == sorted(
        bad_message_ids
    )
    published = good_messages + len(bad_message_ids)
    assert sum(r.pulled for r in reports) == 2 * published
    assert sum(r.loaded for r in reports) == len(first_seen)
    assert sum(r.duplicates for r in reports) == 2 * good_messages - len(first_seen)
    assert sum(r.dead_lettered for r in reports) == len(bad_message_ids)
    assert rows(
        path, "select sum(pulled), sum(loaded), sum(duplicates), sum(dead_lettered) from raw.ingest_batches"
    ) == [(2 * published, len(first_seen), 2 * good_messages - len(first_seen), len(bad_message_ids))]
    assert bus.backlog(SUBSCRIPTION) == 0


# --------------------------------------------------------------------------------------------
# every class of bad input in one batch, beside good events that must arrive byte for byte

BASE = {
    "event_id": "base",
    "schema_version": 1,
    "stream_id": "STRM1",
    "viewer_id": "V001",
    "event_time": "2026-03-14 18:30:00",
    "event_type": "chat_message",
    "chat_message": "hello",
}
REQUIRED = ("event_id", "schema_version", "stream_id", "viewer_id", "event_time", "event_type")
MAX_BYTES = 4096


def without(name: str) -> bytes:
    return encode({k: v for k, v in {**BASE, "event_id": f"missing-{name}"}.items() if k != name})


def bad(**change: object) -> bytes:
    return encode({**BASE, **change})


def sized(event_id: str, size: int) -> bytes:
    """A valid chat event of exactly ``size`` bytes (two-byte characters keep it under 4000 chars)."""
    body = encode({**BASE, "event_id": event_id, "chat_message": ""})
    room = size - len(body)
    return encode({**BASE, "event_id": event_id, "chat_message": "é" * (room // 2) + "x" * (room % 2)})


# name -> (message, field at fault or None, fragment of the reason)
BAD_INPUT: dict[str, tuple[bytes, str | None, str]] = {
    "not JSON": (b"{event_id: 1", None, "not JSON"),
    "truncated JSON": (bad()[:-5], None, "not JSON"),
    "NaN": (b'{"price": NaN}', None, "not JSON"),
    "array": (b"[1, 2, 3]", None, "list where an object was expected"),
    "string": (b'"event"', None, "str where an object was expected"),
    "number": (b"42", None, "int where an object was expected"),
    "null": (b"null", None, "NoneType where an object was expected"),
    "latin-1": (
        bad(event_id="latin", chat_message="café crème").decode().encode("latin-1"),
        None,
        "not UTF-8",
    ),
    "UTF-16": (bad(event_id="utf16").decode().encode("utf-16"), None, "not UTF-8"),
    "UTF-8 BOM": (b"\xef\xbb\xbf" + bad(event_id="bom"), None, "not JSON"),
    "empty": (b"", None, "empty message"),
    "whitespace": (b" \n\t ", None, "empty message (whitespace only)"),
    "oversized": (sized("oversized", MAX_BYTES + 1), None, f"exceeds the limit of {MAX_BYTES} bytes"),
    **{f"missing {name}": (without(name), name, "required field is missing") for name in REQUIRED},
    "event_id a number": (bad(event_id=17), "event_id", "valid string"),
    "event_id empty": (bad(event_id=""), "event_id", "at least 1 character"),
    "viewer_id null": (bad(event_id="vnull", viewer_id=None), "viewer_id", "valid string"),
    "stream_id an object": (bad(event_id="sobj", stream_id={"id": 1}), "stream_id", "valid string"),
    "schema_version text": (
        bad(event_id="sv-text", schema_version="1"),
        "schema_version",
        "expected a JSON integer, got '1'",
    ),
    "schema_version true": (
        bad(event_id="sv-bool", schema_version=True),
        "schema_version",
        "expected a JSON integer, got True",
    ),
    "schema_version 2": (bad(event_id="sv2", schema_version=2), "schema_version", "Input should be 1"),
    "event_time a number": (bad(event_id="epoch", event_time=1773513000), "event_time", "ISO 8601"),
    "price as text": (encode(order("price-text", 1, price="12.50")), "price", "expected a JSON number"),
    "price true": (encode(order("price-bool", 1, price=True)), "price", "expected a JSON number"),
    "quantity fractional": (encode(order("qty-frac", 1, quantity=1.5)), "quantity", "valid integer"),
    "quantity text": (encode(order("qty-text", 1, quantity="2")), "quantity", "valid integer"),
    "unknown event type": (bad(event_id="teleport", event_type="teleport"), "event_type", "'teleport'"),
    "negative price": (encode(order("neg-price", 1, price=-0.01)), "price", "greater than or equal to 0"),
    "price with 3 decimals": (encode(order("price-3dp", 1, price=1.005)), "price", "2 decimal places"),
    "zero quantity": (encode(order("qty-0", 1, quantity=0)), "quantity", "greater than or equal to 1"),
    "negative quantity": (encode(order("qty-neg", 1, quantity=-3)), "quantity", "greater than or equal to 1"),
    "order without price": (
        encode({k: v for k, v in order("no-price", 1).items() if k != "price"}),
        "price",
        "required for",
    ),
    "order without product": (encode(order("no-product", 1, product_id=None)), "product_id", "required for"),
    "chat without message": (bad(event_id="no-chat", chat_message=None), "chat_message", "required for"),
    "far future": (bad(event_id="future", event_time="2999-01-01 00:00:00"), "event_time", "in the future"),
    "far past": (bad(event_id="past", event_time="1970-01-01 00:00:00"), "event_time", "before 2000-01-01"),
    "stream start far past": (
        bad(event_id="start-past", stream_start_time="1899-12-31T23:00:00Z"),
        "stream_start_time",
        "before",
    ),
    "unparseable time": (bad(event_id="garbled", event_time="yesterday at 5"), "event_time", "unparseable"),
    "impossible date": (bad(event_id="feb30", event_time="2026-02-30 10:00:00"), "event_time", "unparseable"),
    "duplicate key": (
        b'{"event_id": "dup-key", "schema_version": 1, "event_id": "other"}',
        "event_id",
        "duplicate key",
    ),
    "duplicate key nested in extra": (
        b'{"event_id": "dup-nested", "meta": {"a": 1, "a": 2}}',
        "a",
        "duplicate key",
    ),
}

HOSTILE_TEXT = [
    "'); drop table raw.raw_events; --",
    "Robert'); DELETE FROM raw.dead_letter_events WHERE ('1'='1",
    "<script>alert('x')</script>",
    "${jndi:ldap://example.invalid/a} {{7*7}} %s %n",
    "👩‍👩‍👧‍👦 🇫🇷 🛍️💸 — ½ price!",
    "e\u0301 vs é (decomposed vs composed, not normalised)",
    "right-to-left \u202eevil\u202c, zero width \u200b, BOM \ufeff inside",
    'quotes " \\ and a backslash-n \\n, a real\nnewline and a\ttab',
    "nul \u0000 byte inside",
    "",
]


def test_every_bad_input_class_is_dead_lettered_and_good_events_arrive_verbatim(settings: Settings) -> None:
    settings = local_settings(settings, max_message_bytes=MAX_BYTES, chunk_size=25, pull_max_messages=10)
    bus = short_lease_bus(settings)
    good: dict[str, bytes] = {}
    for i, text in enumerate(HOSTILE_TEXT):
        good[f"chat-{i}"] = bad(event_id=f"chat-{i}", chat_message=text, streamer_name=text)
        good[f"product-{i}"] = encode(order(f"product-{i}", i, product_name=text))
    extras = {
        "coupon": {"code": "LIVE10", "stackable": False, "tiers": [1, 2, 3]},
        "ab_group": None,
        "déjà_vu": "🎉 '; select 1; --",
        "count": 7,
    }
    good["extra"] = bad(event_id="extra", **extras)
    good["exactly at the limit"] = sized("at-limit", MAX_BYTES)
    assert len(good["exactly at the limit"]) == MAX_BYTES

    names = list(BAD_INPUT)
    messages = []
    for i, name in enumerate(names):  # interleave good and bad
        messages.append(BAD_INPUT[name][0])
        if i < len(good):
            messages.append(list(good.values())[i])
    messages += list(good.values())[len(names) :]
    ids = bus.publisher(TOPIC).publish(messages)
    message_id_of = dict(zip(messages, ids, strict=True))

    report = ingest.run_ingest(settings, bus.subscriber(SUBSCRIPTION))

    assert (report.pulled, report.loaded, report.dead_lettered) == (len(messages), len(good), len(BAD_INPUT))
    dead = {
        message_id: (bytes(data), reason, field_)
        for message_id, data, reason, field_ in rows(
            settings.duckdb_path, "select message_id, data, reason, field from raw.dead_letter_events"
        )
    }
    problems = []
    for name, (data, expected_field, fragment) in BAD_INPUT.items():
        got = dead.get(message_id_of[data])
        if got is None:
            problems.append(f"{name}: not dead-lettered")
            continue
        stored, reason, got_field = got
        if stored != data:
            problems.append(f"{name}: stored bytes differ from the published ones")
        if got_field != expected_field or fragment not in reason:
            problems.append(
                f"{name}: field {got_field!r}, reason {reason!r}; expected {expected_field!r}, {fragment!r}"
            )
    assert not problems, "\n".join(problems)

    loaded = {
        r[0]: r[1:]
        for r in rows(
            settings.duckdb_path,
            "select event_id, chat_message, streamer_name, product_name, extra from raw.raw_events",
        )
    }
    assert set(loaded) == {json.loads(m)["event_id"] for m in good.values()}
    for i, text in enumerate(HOSTILE_TEXT):
        chat, streamer, _, _ = loaded[f"chat-{i}"]
        assert chat.encode() == text.encode() and streamer.encode() == text.encode(), (i, chat)
        assert loaded[f"product-{i}"][2].encode() == text.encode(), (i, loaded[f"product-{i}"][2])
    assert json.loads(loaded["extra"][3]) == extras
    assert loaded["chat-0"][3] is None  # no unknown fields, no extra


@pytest.mark.parametrize(
    "poison",
    [
        pytest.param(b"[" * 50_000, id="JSON nested 50,000 deep (RecursionError)"),
        pytest.param(
            bad(event_id="min-offset", event_time="0001-01-01T00:00:00+01:00"),
            id="time before year 1 in UTC (OverflowError)",
        ),
        pytest.param(
            bad(event_id="max-offset", event_time="9999-12-31T23:59:59-01:00"),
            id="time after year 9999 in UTC (OverflowError)",
        ),
        pytest.param(
            b'{"event_id": "surrogate", "schema_version": 1, "stream_id": "S", "viewer_id": "V", '
            b'"event_time": "2026-03-14 18:30:00", "event_type": "stream_exit", "note": "\\ud800"}',
            id="lone surrogate escape in an unknown field (UnicodeEncodeError)",
        ),
    ],
)
def test_a_poison_message_is_dead_lettered_not_fatal(settings: Settings, poison: bytes) -> None:
    """One bad message must not fail the batch: a failure there is retried forever, blocking all."""
    settings = local_settings(settings)
    bus = short_lease_bus(settings)
    good = [bad(event_id=f"ok-{n}") for n in range(5)]
    [poison_id] = bus.publisher(TOPIC).publish([poison])
    bus.publisher(TOPIC).publish(good)
    report = ingest.run_ingest(settings, bus.subscriber(SUBSCRIPTION))
    assert (report.loaded, report.dead_lettered) == (5, 1)
    assert rows(settings.duckdb_path, "select message_id, data from raw.dead_letter_events") == [
        (poison_id, poison)
    ]


def test_numbers_in_unknown_fields_stay_numbers(settings: Settings) -> None:
    """The contract keeps unknown fields verbatim in ``extra``; a fraction must not become text."""
    settings = local_settings(settings)
    bus = short_lease_bus(settings)
    bus.publisher(TOPIC).publish(
        [
            b'{"event_id": "x", "schema_version": 1, "stream_id": "S", "viewer_id": "V", '
            b'"event_time": "2026-03-14 18:30:00", "event_type": "stream_exit", '
            b'"discount": 0.15, "rating": 4.5, "visits": 3}'
        ]
    )
    ingest.run_ingest(settings, bus.subscriber(SUBSCRIPTION))
    [(extra,)] = rows(settings.duckdb_path, "select extra from raw.raw_events")
    assert json.loads(extra) == {"discount": 0.15, "rating": 4.5, "visits": 3}


# --------------------------------------------------------------------------------------------
# transient failures are retried, never dead-lettered

LOCK_HOLDER = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1])
    print("locked", flush=True)
    sys.stdin.read()  # hold the lock until the test closes our stdin
    con.close()
    """
)


def test_warehouse_locked_by_another_process_fails_without_dead_letters_or_acks(settings: Settings) -> None:
    settings = local_settings(settings, chunk_size=50)
    bus = short_lease_bus(settings)
    good = [encode_order(f"lock-{n}", n) for n in range(240)]
    bad_messages = [b"{broken", b""]
    bus.publisher(TOPIC).publish(good[:100] + bad_messages + good[100:])
    published = len(good) + len(bad_messages)
    settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(settings.duckdb_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(duckdb.IOException, match="lock"):
            ingest.run_ingest(settings, bus.subscriber(SUBSCRIPTION))
        # Nothing was acknowledged, and nothing is even leased: every message comes straight back
        # as a first delivery.
        assert bus.backlog(SUBSCRIPTION) == published
        probe = bus.subscriber(SUBSCRIPTION)
        seen = probe.pull(1000)
        assert (len(seen), {m.delivery_attempt for m in seen}) == (published, {1})
        probe.modify_ack_deadline([m.ack_id for m in seen], 0)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert rows(
        settings.duckdb_path, "select count(*) from information_schema.tables where table_schema = 'raw'"
    ) == [(0,)], "the failed run must not have written anything"

    retry = ingest.run_ingest(settings, bus.subscriber(SUBSCRIPTION))
    assert (retry.pulled, retry.loaded, retry.duplicates, retry.dead_lettered) == (
        published,
        len(good),
        0,
        len(bad_messages),
    )
    assert rows(settings.duckdb_path, "select count(*), count(distinct event_id) from raw.raw_events") == [
        (len(good), len(good))
    ]
    assert ingest.run_ingest(settings, bus.subscriber(SUBSCRIPTION)).pulled == 0


class LocksTheBusMidBatch:
    """Passes calls to the real subscriber; after the second ack, another connection takes the
    bus's write lock, so the real ``ack`` (or the next real ``pull``) times out as it would if
    another process held it."""

    def __init__(self, inner: LocalSubscriber, bus_path: Path, at: str) -> None:
        self._inner = inner
        self._path = bus_path
        self._at = at
        self._acks = 0
        self.holder: sqlite3.Connection | None = None

    def _lock(self) -> None:
        self.holder = sqlite3.connect(self._path, isolation_level=None)
        self.holder.execute("begin immediate")

    def pull(self, max_messages: int) -> list[ReceivedMessage]:
        return self._inner.pull(max_messages)

    def ack(self, ack_ids: Sequence[str]) -> None:
        self._acks += 1
        if self._acks == 3 and self._at == "ack":
            self._lock()
        self._inner.ack(ack_ids)
        if self._acks == 2 and self._at == "pull":
            self._lock()

    def modify_ack_deadline(self, ack_ids: Sequence[str], seconds: int) -> None:
        self._inner.modify_ack_deadline(ack_ids, seconds)

    def close(self) -> None:
        if self.holder is not None:
            self.holder.execute("rollback")
            self.holder.close()


@pytest.mark.parametrize("at", ["ack", "pull"])
def test_bus_locked_mid_batch_is_retried_and_counts_once(settings: Settings, at: str) -> None:
    settings = local_settings(settings, chunk_size=100, pull_max_messages=100)
    bus = short_lease_bus(settings, busy_timeout_seconds=1)
    ledger = {f"mid-{n}" for n in range(700)}
    bus.publisher(TOPIC).publish([encode_order(f"mid-{n}", n) for n in range(700)])
    flaky = LocksTheBusMidBatch(bus.subscriber(SUBSCRIPTION), settings.bus_path, at)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        ingest.run_ingest(settings, flaky)
    flaky.close()
    committed = 300 if at == "ack" else 200  # the third chunk was committed but its ack failed
    assert rows(settings.duckdb_path, "select count(*) from raw.raw_events") == [(committed,)]
    assert rows(settings.duckdb_path, "select count(*) from raw.dead_letter_events") == [(0,)]
    time.sleep(1.2)  # leases held by the failed run expire
    retry = ingest.run_ingest(settings, bus.subscriber(SUBSCRIPTION))
    assert (retry.loaded, retry.duplicates, retry.dead_lettered) == (700 - committed, committed - 200, 0)
    assert {i for (i,) in rows(settings.duckdb_path, "select event_id from raw.raw_events")} == ledger
    assert rows(settings.duckdb_path, "select count(*) from raw.raw_events") == [(len(ledger),)]
    assert bus.backlog(SUBSCRIPTION) == 0


# --------------------------------------------------------------------------------------------
# memory is bounded by one chunk, not by the batch

MEASURED_CHILD = textwrap.dedent(
    """
    import json, resource
    from include.liveshop.bus import get_subscriber
    from include.liveshop.ingest import run_ingest
    from include.liveshop.settings import get_settings

    settings = get_settings()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = run_ingest(settings, get_subscriber(settings))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"report": report.as_dict(), "before_kib": before, "peak_kib": peak}))
    """
)
EVENTS_FOR_MEMORY = 100_000
PEAK_RSS_LIMIT_MIB = 700


def test_a_100k_batch_stays_well_under_a_gibibyte(tmp_path: Path) -> None:
    # Messages of about 2 KiB: the batch is ~200 MiB on the bus, so a load that held the whole batch
    # (bytes, decoded text, rows, Arrow columns) would pass the limit; one chunk at a time does not.
    data_dir = tmp_path / "data"
    bus = LocalBus(data_dir / "bus.sqlite3")
    bus.create_subscription(TOPIC, SUBSCRIPTION, ack_deadline_seconds=60)
    publisher = bus.publisher(TOPIC)
    published_bytes = 0
    for start in range(0, EVENTS_FOR_MEMORY, 5_000):
        batch = [
            bad(event_id=f"mem-{n:06d}", chat_message=f"{n:06d} " + "chat " * 400)
            for n in range(start, start + 5_000)
        ]
        published_bytes += sum(map(len, batch))
        publisher.publish(batch)
    env = child_env(data_dir, LIVESHOP_BATCH_MAX_MESSAGES=str(EVENTS_FOR_MEMORY))
    result = subprocess.run(
        [sys.executable, "-c", MEASURED_CHILD],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.splitlines()[-1])
    peak_mib = measured["peak_kib"] / 1024
    print(
        f"\n100k batch ({published_bytes / 2**20:.0f} MiB published): peak RSS {peak_mib:.0f} MiB, "
        f"{measured['before_kib'] / 1024:.0f} MiB before run_ingest"
    )
    assert measured["report"]["loaded"] == EVENTS_FOR_MEMORY
    assert rows(data_dir / "warehouse.duckdb", "select count(distinct event_id) from raw.raw_events") == [
        (EVENTS_FOR_MEMORY,)
    ]
    assert peak_mib < PEAK_RSS_LIMIT_MIB, f"peak RSS {peak_mib:.0f} MiB for a {EVENTS_FOR_MEMORY} event batch"
