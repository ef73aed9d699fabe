"""Simulated live shows, as a time-ordered stream of contract events.

``--streams`` shows run side by side, each in its own slot; when a show ends the slot's next show
starts a minute or three later, so the stream of events never runs dry. During a show the host
presents the products of its line-up in turn. Viewers arrive over the show (most near the start),
chat, look at products (mostly the one on show), and some go down the funnel add_to_cart →
checkout_started → order_completed; the odds of each step depend on the device, the state and the
product (``records.funnel_multiplier``). Viewers leave after a while, most with a stream_exit event,
some silently.

Everything random comes from one ``random.Random(seed)``; event ids are uuid5 of the seed, the
simulation start and a counter, so the same seed and start give byte-identical events, and runs
started at different times never share an event id.
"""

from __future__ import annotations

import heapq
import itertools
import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from include.simulator.events import blank_event
from include.simulator.records import (
    HOSTS,
    Product,
    Showcase,
    Stream,
    Viewer,
    catalog,
    funnel_multiplier,
    viewer,
)

#: Start of ``generate_events`` when none is given (a fixed instant keeps the output reproducible).
DEFAULT_START = datetime(2025, 7, 19, 18, 0, 0)
SOURCE = "simulator"

_ID_NAMESPACE = uuid.UUID("6f1c7d3e-5b0a-4c55-9a61-2f0e8d9b7a10")

#: Mean number of events one visit produces with the constants below (measured over long runs);
#: used to turn a target rate of events per second into a rate of viewer arrivals.
EVENTS_PER_VISIT = 13.0

_MEAN_STAY = 9 * 60.0
_MEAN_ACTION_GAP = 40.0
_P_CHAT = 0.3
_P_ON_SHOW = 0.75
_P_CART = 0.12
_P_CHECKOUT = 0.65
_P_ORDER = 0.6
_P_EXIT_EVENT = 0.85
_P_RETURNING = 0.35
_MAX_REMEMBERED_VIEWERS = 50_000

_CHATS = (
    "Love this!",
    "❤️",
    "😍",
    "Need this",
    "Too expensive",
    "What's the price?",
    "Hi from {state}!",
    "First time here",
    "Can you show it again?",
    "Does it ship fast?",
    "🔥🔥🔥",
    "Is there a discount?",
)
_PRODUCT_CHATS = (
    "How much is the {product}?",
    "What colours does the {product} come in?",
    "Is the {product} worth it?",
    "Just bought the {product}!",
)
_AFTER_ORDER_CHATS = ("Ordered!", "Just ordered 🎉", "Can't wait for it to arrive")


class Simulation:
    """An endless, deterministic sequence of live shows starting at ``start`` (naive UTC).

    ``rate`` is the target number of events per second over all shows (reached on average over a
    show: audiences build up at the start and thin out at the end); ``streams`` is how many shows
    run at the same time.
    """

    def __init__(self, seed: int, *, start: datetime, rate: float = 20.0, streams: int = 3) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if streams < 1:
            raise ValueError(f"streams must be at least 1, got {streams}")
        self.seed = seed
        self.start = start.replace(microsecond=0, tzinfo=None)
        self.streams = streams
        self._rng = random.Random(seed)
        self._arrivals_per_second = rate / (streams * EVENTS_PER_VISIT)
        self._next_viewer = 1
        self._remembered: list[int] = []
        self._shows_started = 0
        self._order = itertools.count()

    def events(self) -> Iterator[dict[str, Any]]:
        """Yield events for ever, in event_time order, each with its event_id."""
        pending: list[tuple[float, int, dict[str, Any]]] = []
        # slots start a minute apart so the first shows do not all open at once
        upcoming = [(slot * 60.0, slot) for slot in range(self.streams)]
        heapq.heapify(upcoming)
        for counter in itertools.count():
            while not pending or pending[0][0] >= upcoming[0][0]:
                offset, slot = heapq.heappop(upcoming)
                stream = self._schedule_show(offset)
                for at, event in self._show(stream):
                    heapq.heappush(pending, (offset + at, next(self._order), event))
                gap = self._rng.randint(1, 3) * 60.0
                heapq.heappush(upcoming, (offset + stream.duration + gap, slot))
            _, _, event = heapq.heappop(pending)
            event["event_id"] = str(
                uuid.uuid5(_ID_NAMESPACE, f"sim|{self.seed}|{self.start.isoformat()}|{counter}")
            )
            yield event

    def _schedule_show(self, offset: float) -> Stream:
        rng = self._rng
        number = self._shows_started
        self._shows_started += 1
        start = self.start + timedelta(seconds=int(offset))
        duration = rng.randint(30, 60) * 60
        products = rng.sample(catalog(), rng.randint(4, 8))
        slot_length = duration / len(products)
        lineup = tuple(
            Showcase(product, index * slot_length, (index + 1) * slot_length)
            for index, product in enumerate(products)
        )
        tag = uuid.uuid5(_ID_NAMESPACE, f"stream|{self.seed}|{self.start.isoformat()}|{number}").hex[:6]
        return Stream(
            stream_id=f"SIM-{start:%Y%m%d%H%M}-{tag}",
            streamer_name=rng.choice(HOSTS),
            start=start,
            end=start + timedelta(seconds=duration),
            lineup=lineup,
        )

    def _show(self, stream: Stream) -> list[tuple[float, dict[str, Any]]]:
        """All events of one show, as (seconds since the show started, event)."""
        rng = self._rng
        events: list[tuple[float, dict[str, Any]]] = []
        present: set[int] = set()
        # arrivals: an inhomogeneous Poisson process (thinning), intensity falling from 1.6x to
        # 0.4x the mean over the show; nobody arrives in the last minute
        peak = 1.6 * self._arrivals_per_second
        at = 0.0
        while True:
            at += rng.expovariate(peak)
            if at >= stream.duration - 60:
                break
            if rng.random() * 1.6 > 1.6 - 1.2 * at / stream.duration:
                continue
            number = self._pick_viewer(present)
            present.add(number)
            events.extend(self._visit(stream, viewer(number), at))
        return events

    def _pick_viewer(self, present: set[int]) -> int:
        rng = self._rng
        if self._remembered and rng.random() < _P_RETURNING:
            number = rng.choice(self._remembered)
            if number not in present:
                return number
        number = self._next_viewer
        self._next_viewer += 1
        if len(self._remembered) < _MAX_REMEMBERED_VIEWERS:
            self._remembered.append(number)
        else:
            self._remembered[rng.randrange(_MAX_REMEMBERED_VIEWERS)] = number
        return number

    def _visit(self, stream: Stream, who: Viewer, arrive: float) -> list[tuple[float, dict[str, Any]]]:
        """One viewer's visit to one show."""
        rng = self._rng
        session = str(uuid.uuid5(_ID_NAMESPACE, f"session|{stream.stream_id}|{who.viewer_id}|{arrive}"))
        out: list[tuple[float, dict[str, Any]]] = []

        def event(at: float, event_type: str, product: Product | None = None, **fields: Any) -> None:
            record = blank_event(SOURCE)
            record.update(
                stream_id=stream.stream_id,
                streamer_name=stream.streamer_name,
                stream_start_time=stream.start,
                viewer_id=who.viewer_id,
                viewer_email=who.email,
                viewer_state=who.state,
                device_type=who.device,
                event_time=stream.start + timedelta(seconds=int(at)),
                event_type=event_type,
                source_session_id=session,
                **fields,
            )
            if product is not None:
                record.update(product_id=product.product_id, product_name=product.name)
            out.append((at, record))

        event(arrive, "stream_view_start")
        leave = min(arrive + max(30.0, rng.expovariate(1 / _MEAN_STAY)), stream.duration)
        at = arrive
        while True:
            at += rng.expovariate(1 / _MEAN_ACTION_GAP)
            if at >= leave:
                break
            on_show = stream.showcased_at(at)
            if rng.random() < _P_CHAT:
                event(at, "chat_message", chat_message=self._chat(who, on_show))
                continue
            product = on_show if rng.random() < _P_ON_SHOW else rng.choice(stream.lineup).product
            event(at, "product_view", product)
            boost = funnel_multiplier(who, product) * (1.3 if product is on_show else 0.6)
            at = self._funnel(stream, product, boost, at, event)
        if rng.random() < _P_EXIT_EVENT:
            event(min(max(leave, at + 1), stream.duration), "stream_exit")
        return out

    def _funnel(self, stream: Stream, product: Product, boost: float, at: float, event: Any) -> float:
        """Maybe add ``product`` to the cart, check out and order; returns the time of the last step."""
        rng = self._rng
        steps = (
            ("add_to_cart", min(0.9, _P_CART * boost), (5, 60)),
            ("checkout_started", min(0.95, _P_CHECKOUT * boost**0.5), (10, 120)),
            ("order_completed", min(0.95, _P_ORDER * boost**0.5), (10, 90)),
        )
        quantity = 1 if rng.random() < 0.85 else rng.randint(2, 3)
        for event_type, probability, (shortest, longest) in steps:
            if rng.random() >= probability:
                return at
            step_at = at + rng.uniform(shortest, longest)
            if step_at >= stream.duration:
                return at
            at = step_at
            event(at, event_type, product, price=product.price, quantity=quantity)
        if rng.random() < 0.3:
            at = min(at + rng.uniform(2, 20), stream.duration)
            event(at, "chat_message", chat_message=rng.choice(_AFTER_ORDER_CHATS))
        return at

    def _chat(self, who: Viewer, on_show: Product) -> str:
        rng = self._rng
        if rng.random() < 0.3:
            return rng.choice(_PRODUCT_CHATS).format(product=on_show.name)
        return rng.choice(_CHATS).format(state=who.state)


def iter_events(
    seed: int, *, start: datetime = DEFAULT_START, rate: float = 20.0, streams: int = 3
) -> Iterator[dict[str, Any]]:
    """Endless simulated events from ``start`` (naive UTC), in event_time order."""
    return Simulation(seed, start=start, rate=rate, streams=streams).events()


def generate_events(
    seed: int,
    n_events: int,
    *,
    start: datetime = DEFAULT_START,
    rate: float = 20.0,
    streams: int = 3,
) -> list[dict[str, Any]]:
    """The first ``n_events`` simulated events from ``start``; the same arguments give the same list."""
    return list(itertools.islice(iter_events(seed, start=start, rate=rate, streams=streams), n_events))
