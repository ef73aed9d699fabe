"""The simulator: deterministic, valid, believable events, batched and paced publishing, the CLI."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from include.liveshop.contract import (
    EVENT_TYPES,
    MONEY_EVENTS,
    PRODUCT_EVENTS,
    SCHEMA_VERSION,
    ValidEvent,
    encode_event,
    parse_message,
)
from include.simulator import Batcher, cli, generate_events, iter_events, pump
from include.simulator.records import STATES, catalog

START = datetime(2025, 7, 19, 18, 0, 0)


class FakePublisher:
    """Records every batch it is given."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.closed = False

    def publish(self, messages: Sequence[bytes]) -> list[str]:
        self.batches.append(list(messages))
        return [str(index) for index in range(len(messages))]

    def close(self) -> None:
        self.closed = True

    @property
    def messages(self) -> list[bytes]:
        return [message for batch in self.batches for message in batch]


class FakeClock:
    """A monotonic clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "pump must not sleep for nothing"
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(scope="module")
def sample() -> list[dict[str, Any]]:
    """20,000 events of seed 42: large enough for the statistical checks."""
    return generate_events(42, 20_000, start=START)


def test_same_seed_gives_the_same_bytes() -> None:
    first = [encode_event(event) for event in generate_events(7, 3_000, start=START)]
    second = [encode_event(event) for event in generate_events(7, 3_000, start=START)]
    assert first == second


def test_another_seed_or_start_gives_other_events() -> None:
    base = [encode_event(event) for event in generate_events(7, 500, start=START)]
    assert base != [encode_event(event) for event in generate_events(8, 500, start=START)]
    later = generate_events(7, 500, start=START + timedelta(days=1))
    assert not {event["event_id"] for event in later} & {
        event["event_id"] for event in generate_events(7, 500, start=START)
    }, "runs started at different times must not share event ids (the warehouse dedups on them)"


def test_every_event_is_valid(sample: list[dict[str, Any]]) -> None:
    for event in sample:
        result = parse_message(encode_event(event), now=START + timedelta(days=1))
        assert isinstance(result, ValidEvent), f"{result} in {event}"
        assert event["source"] == "simulator"
        assert event["schema_version"] == SCHEMA_VERSION


def test_every_event_type_occurs(sample: list[dict[str, Any]]) -> None:
    assert set(Counter(event["event_type"] for event in sample)) == set(EVENT_TYPES)


def test_event_ids_are_unique(sample: list[dict[str, Any]]) -> None:
    assert len({event["event_id"] for event in sample}) == len(sample)


def test_fields_each_event_type_needs(sample: list[dict[str, Any]]) -> None:
    for event in sample:
        kind = event["event_type"]
        assert (event["product_id"] is not None) == (kind in PRODUCT_EVENTS), event
        assert (event["price"] is not None and event["quantity"] is not None) == (kind in MONEY_EVENTS), event
        assert (event["chat_message"] is not None) == (kind == "chat_message"), event
        assert event["viewer_email"].endswith("@example.com")
        assert event["device_type"] in {"desktop", "mobile", "tablet"}


def test_events_come_in_time_order_within_their_show(sample: list[dict[str, Any]]) -> None:
    times = [event["event_time"] for event in sample]
    assert times == sorted(times)
    for event in sample:
        assert event["stream_start_time"] <= event["event_time"]
        assert event["event_time"] - event["stream_start_time"] <= timedelta(hours=1)


def test_a_visit_starts_with_stream_view_start_and_ends_with_any_exit(sample: list[dict[str, Any]]) -> None:
    visits: dict[str, list[str]] = defaultdict(list)
    for event in sample:
        visits[event["source_session_id"]].append(event["event_type"])
    for kinds in visits.values():
        assert kinds[0] == "stream_view_start"
        assert kinds.count("stream_view_start") == 1
        assert "stream_exit" not in kinds[:-1]
    exits = sum(1 for kinds in visits.values() if kinds[-1] == "stream_exit")
    assert 0 < exits < len(visits), "most viewers say goodbye, some just go silent"


def test_funnel_is_consistent(sample: list[dict[str, Any]]) -> None:
    """Each checkout and order follows an add_to_cart of the same viewer and product in that show."""
    carted: set[tuple[str, str, str]] = set()
    checked_out: set[tuple[str, str, str]] = set()
    orders = 0
    for event in sample:
        key = (event["stream_id"], event["viewer_id"], event["product_id"])
        if event["event_type"] == "add_to_cart":
            carted.add(key)
        elif event["event_type"] == "checkout_started":
            assert key in carted, f"checkout without add_to_cart: {event}"
            checked_out.add(key)
        elif event["event_type"] == "order_completed":
            assert key in carted and key in checked_out, f"order without add_to_cart/checkout: {event}"
            orders += 1
    assert orders > 100


def test_conversion_depends_on_device(sample: list[dict[str, Any]]) -> None:
    visits: Counter[str] = Counter()
    orders: Counter[str] = Counter()
    for event in sample:
        if event["event_type"] == "stream_view_start":
            visits[event["device_type"]] += 1
        elif event["event_type"] == "order_completed":
            orders[event["device_type"]] += 1
    rate = {device: orders[device] / visits[device] for device in visits}
    assert rate["desktop"] > rate["mobile"] > rate["tablet"], rate


def test_conversion_depends_on_the_viewers_state(sample: list[dict[str, Any]]) -> None:
    # States whose funnel multiplier is high (1.1 and up) against those where it is low (0.9 and
    # under): orders per visit must follow the table, a difference of about a third.
    high = {state for state, (_, multiplier) in STATES.items() if multiplier >= 1.1}
    low = {state for state, (_, multiplier) in STATES.items() if multiplier <= 0.9}
    visits: Counter[str] = Counter()
    orders: Counter[str] = Counter()
    for event in sample:
        group = "high" if event["viewer_state"] in high else "low" if event["viewer_state"] in low else None
        if group and event["event_type"] == "stream_view_start":
            visits[group] += 1
        elif group and event["event_type"] == "order_completed":
            orders[group] += 1
    assert min(orders.values()) > 50, orders
    assert orders["high"] / visits["high"] > 1.2 * orders["low"] / visits["low"], (orders, visits)


def test_carts_depend_on_the_products_appeal(sample: list[dict[str, Any]]) -> None:
    appeal = {product.product_id: product.appeal for product in catalog()}
    median = sorted(appeal.values())[len(appeal) // 2]
    views: Counter[bool] = Counter()
    carts: Counter[bool] = Counter()
    for event in sample:
        if event["event_type"] in ("product_view", "add_to_cart"):
            appealing = appeal[event["product_id"]] >= median
            (views if event["event_type"] == "product_view" else carts)[appealing] += 1
    assert carts[True] / views[True] > 1.2 * carts[False] / views[False], (carts, views)


def test_long_run_rate_is_close_to_the_target() -> None:
    events = list(itertools.islice(iter_events(3, start=START, rate=10.0, streams=2), 40_000))
    seconds = (events[-1]["event_time"] - events[0]["event_time"]).total_seconds()
    assert 7.5 < len(events) / seconds < 12.5
    assert len({event["stream_id"] for event in events}) > 2, "new shows start as old ones end"


def test_batcher_publishes_full_batches_then_the_rest() -> None:
    publisher = FakePublisher()
    batcher = Batcher(publisher, batch_size=500)
    pump(generate_events(1, 1_234, start=START), batcher)
    assert [len(batch) for batch in publisher.batches] == [500, 500, 234]
    assert batcher.published == 1_234
    assert publisher.messages == [encode_event(event) for event in generate_events(1, 1_234, start=START)]


def test_pump_waits_until_each_event_is_due_and_flushes_while_waiting() -> None:
    clock = FakeClock()
    publisher = FakePublisher()
    batcher = Batcher(publisher, batch_size=500, max_delay=1.0, clock=clock)
    events = generate_events(1, 40, start=START)
    started = clock()
    pump(
        events,
        batcher,
        due=lambda event: started + (event["event_time"] - events[0]["event_time"]).total_seconds(),
        clock=clock,
        sleep=clock.sleep,
    )
    span = (events[-1]["event_time"] - events[0]["event_time"]).total_seconds()
    assert clock.now - started == pytest.approx(span)
    assert sum(len(batch) for batch in publisher.batches) == 40
    assert len(publisher.batches) > 1, "events waiting more than max_delay are published, not held"


def test_cli_finite_mode_publishes_valid_batches(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    publisher = FakePublisher()
    monkeypatch.setattr(cli, "_publisher", lambda dry_run: publisher)
    code = cli.main(["simulate", "--seed", "5", "--events", "1200", "--as-fast-as-possible"])
    assert code == 0
    assert [len(batch) for batch in publisher.batches] == [500, 500, 200]
    assert all(isinstance(parse_message(message), ValidEvent) for message in publisher.messages)
    assert publisher.closed
    assert "1200 events published" in capsys.readouterr().out


def test_cli_publishes_onto_the_configured_bus(settings: Any) -> None:
    from include.liveshop.bus import get_subscriber

    assert cli.main(["simulate", "--events", "700", "--as-fast-as-possible"]) == 0
    subscriber = get_subscriber(settings)
    try:
        received = subscriber.pull(1_000)
    finally:
        subscriber.close()
    assert len(received) == 700
    assert all(isinstance(parse_message(message.data), ValidEvent) for message in received)


def test_cli_refuses_an_endless_flood(capsys: Any) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["simulate", "--as-fast-as-possible"])
    assert exit_info.value.code == 2
    assert "--events" in capsys.readouterr().err
