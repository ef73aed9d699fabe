"""Replay of real exports as contract events (docs/replay.md).

``read_export`` turns a file into events, in the file's order, checking every row against the
contract; the first bad row raises ``ReplayError`` naming the file, the line (or Parquet row) and
the column. Nothing is published from a file that does not read cleanly to the end.

Event ids are uuid5 of a per-format namespace, the row's values (whitespace-trimmed, in a fixed
column order) and the row's occurrence number among identical rows, so replaying the same file twice
gives the same ids, whatever the time mode.
"""

from __future__ import annotations

import csv
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, BinaryIO

from include.liveshop.contract import (
    EVENT_TYPES,
    MONEY_EVENTS,
    PRODUCT_EVENTS,
    Rejection,
    encode_event,
    parse_message,
)
from include.liveshop.errors import ReplayError
from include.simulator.events import blank_event

FORMATS = ("seed", "rees46", "online_retail")
TIME_MODES = ("as-recorded", "shift-to-now")

SEED_COLUMNS = (
    "stream_id",
    "streamer_name",
    "stream_start_time",
    "viewer_id",
    "viewer_email",
    "viewer_state",
    "device_type",
    "event_time",
    "event_type",
    "product_id",
    "product_name",
    "chat_message",
)
SEED_CATALOG_NAME = "expanded_product_catalog.csv"
REES46_COLUMNS = ("event_time", "event_type", "product_id", "price", "user_id", "user_session")
REES46_EVENT_TYPES = {"view": "product_view", "cart": "add_to_cart", "purchase": "order_completed"}
RETAIL_COLUMNS = ("Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID")
# The columns an event id is derived from, in this order whatever the file's: the published layout
# of each export, so that a re-exported file (columns reordered, one added) gives the same ids.
REES46_ID_COLUMNS = (
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
)
RETAIL_ID_COLUMNS = (*RETAIL_COLUMNS, "Country")

#: The contract's largest quantity (LiveShoppingEvent.quantity); bulk wholesale lines go beyond it.
_MAX_QUANTITY = 10_000
_NAMESPACE = uuid.UUID("0b6f0d5e-7c1a-4d0e-8f4b-3a9e2c71d5a4")


@dataclass
class Replay:
    """Events read from one file, in file order, and the rows skipped on purpose (by reason)."""

    path: Path
    events: list[dict[str, Any]]
    skipped: Counter[str] = field(default_factory=Counter)


def _fail(path: Path, where: str, column: str | None, problem: str) -> ReplayError:
    place = f"{path}, {where}" + (f", column {column}" if column else "")
    return ReplayError(f"{place}: {problem}")


class _Ids:
    """Deterministic event ids: uuid5(namespace, format | row values | occurrence of that row)."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._seen: Counter[str] = Counter()

    def __call__(self, values: tuple[str, ...]) -> str:
        key = "\x1f".join(values)
        occurrence = self._seen[key]
        self._seen[key] += 1
        return str(uuid.uuid5(_NAMESPACE, f"{self._kind}\x1e{key}\x1e{occurrence}"))


def _timestamp(text: str) -> datetime:
    text = text.strip()
    if text.endswith((" UTC", "Z")):
        text = text.removesuffix(" UTC").removesuffix("Z") + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _check(event: dict[str, Any], path: Path, where: str, column_of: Callable[[str], str | None]) -> None:
    """Run the contract's validator on ``event``; a rejection becomes a ReplayError."""
    result = parse_message(encode_event(event))
    if isinstance(result, Rejection):
        column = column_of(result.field) if result.field else None
        raise _fail(path, where, column, f"not a valid event: {result}")


def _text_lines(handle: BinaryIO, path: Path) -> Iterator[str]:
    """The file's lines as text, decoded one line at a time.

    A text-mode file decodes ahead in blocks, so a bad byte would be reported at whichever line
    the reader had reached when its block was decoded; decoding per line names the line it is on.
    """
    for number, raw in enumerate(handle, start=1):
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(
                path,
                f"line {number}",
                None,
                f"not UTF-8 text: 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line "
                "(save the file as UTF-8)",
            ) from None


def _csv_rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each data row; checks the header and the number of fields."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ReplayError(f"{path}: cannot open: {exc.strerror}") from None
    with handle:
        reader = csv.reader(_text_lines(handle, path))
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            raise _fail(path, "line 1", None, "empty file; expected a header row") from None
        except csv.Error as exc:
            raise _fail(path, "line 1", None, f"not readable as CSV: {exc}") from None
        missing = [name for name in required if name not in header]
        if missing:
            raise _fail(
                path,
                "line 1",
                missing[0],
                f"missing column(s) {', '.join(missing)} in the header; expected {', '.join(required)}",
            )
        repeated = [name for name in required if header.count(name) > 1]
        if repeated:
            raise _fail(
                path,
                "line 1",
                repeated[0],
                f"appears {header.count(repeated[0])} times in the header; which one holds the values "
                "is ambiguous",
            )
        line = 1
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise _fail(path, f"line {line + 1}", None, f"not readable as CSV: {exc}") from None
            start, line = line + 1, reader.line_num
            if not values:
                continue
            if len(values) != len(header):
                raise _fail(
                    path, f"line {start}", None, f"{len(values)} fields where the header has {len(header)}"
                )
            yield start, {name: value.strip() for name, value in zip(header, values, strict=True)}


def load_catalog(path: Path) -> dict[str, Decimal]:
    """product_id → unit price, from a catalogue CSV with columns product_id and price."""
    prices: dict[str, Decimal] = {}
    for line, row in _csv_rows(path, ("product_id", "price")):
        try:
            price = Decimal(row["price"])
        except InvalidOperation:
            raise _fail(path, f"line {line}", "price", f"{row['price']!r} is not a number") from None
        if not price.is_finite() or price < 0:
            raise _fail(path, f"line {line}", "price", f"{row['price']!r} is not a price")
        prices[row["product_id"]] = price
    return prices


def read_seed(path: Path, *, catalog: Path | None = None) -> Replay:
    """The original LiveShoppingAnalytics export: one event per row, prices from the catalogue."""
    path = Path(path)
    if catalog is None and (path.parent / SEED_CATALOG_NAME).exists():
        catalog = path.parent / SEED_CATALOG_NAME
    prices = load_catalog(Path(catalog)) if catalog is not None else None
    ids = _Ids("seed")
    events = []
    for line, row in _csv_rows(path, SEED_COLUMNS):
        where = f"line {line}"
        for column in ("stream_id", "viewer_id", "event_time", "event_type"):
            if not row[column]:
                raise _fail(path, where, column, "empty; every event needs one")
        event = blank_event("seed_replay")
        event.update({column: row[column] or None for column in SEED_COLUMNS})
        for column in ("stream_start_time", "event_time"):
            if event[column] is not None:
                try:
                    event[column] = _timestamp(row[column])
                except ValueError:
                    raise _fail(
                        path, where, column, f"{row[column]!r} is not a timestamp (YYYY-MM-DD HH:MM:SS)"
                    ) from None
        event_type = row["event_type"]
        if event_type not in EVENT_TYPES:
            raise _fail(path, where, "event_type", f"{event_type!r} is not one of {', '.join(EVENT_TYPES)}")
        if event_type in PRODUCT_EVENTS and event["product_id"] is not None:
            price = prices.get(event["product_id"]) if prices is not None else None
            if price is None and event_type in MONEY_EVENTS:
                known = f"the catalog {catalog}" if catalog is not None else "any catalog (pass --catalog)"
                raise _fail(
                    path,
                    where,
                    "product_id",
                    f"product {event['product_id']!r} of a {event_type} event is not in {known}",
                )
            event["price"] = price
            if event_type in MONEY_EVENTS:
                event["quantity"] = 1
        event["event_id"] = ids(tuple(row[column] for column in SEED_COLUMNS))
        _check(event, path, where, lambda name: name if name in SEED_COLUMNS else None)
        events.append(event)
    return Replay(path, events)


def read_rees46(path: Path) -> Replay:
    """The REES46 clickstream: view/cart/purchase rows as events of one pseudo-stream per day."""
    path = Path(path)
    ids = _Ids("rees46")
    replay = Replay(path, [])
    source_of = {
        "event_time": "event_time",
        "event_type": "event_type",
        "product_id": "product_id",
        "price": "price",
        "viewer_id": "user_id",
        "source_session_id": "user_session",
    }
    for line, row in _csv_rows(path, REES46_COLUMNS):
        where = f"line {line}"
        event_type = REES46_EVENT_TYPES.get(row["event_type"])
        if event_type is None:
            replay.skipped[f"event_type {row['event_type'] or '(empty)'}"] += 1
            continue
        try:
            at = _timestamp(row["event_time"])
        except ValueError:
            raise _fail(path, where, "event_time", f"{row['event_time']!r} is not a timestamp") from None
        try:
            price = Decimal(row["price"])
        except InvalidOperation:
            raise _fail(path, where, "price", f"{row['price']!r} is not a number") from None
        event = blank_event("rees46_replay")
        event.update(
            stream_id=f"rees46-{at:%Y-%m-%d}",
            stream_start_time=datetime.combine(at.date(), datetime.min.time()),
            viewer_id=row["user_id"] or None,
            event_time=at,
            event_type=event_type,
            product_id=row["product_id"] or None,
            product_name=_rees46_name(row),
            price=price,
            quantity=1 if event_type in MONEY_EVENTS else None,
            source_session_id=row["user_session"] or None,
            category_id=row.get("category_id") or None,
            category_code=row.get("category_code") or None,
            brand=row.get("brand") or None,
        )
        event["event_id"] = ids(tuple(row.get(column, "") for column in REES46_ID_COLUMNS))
        _check(event, path, where, lambda name: source_of.get(name, name))
        replay.events.append(event)
    return replay


def _rees46_name(row: dict[str, str]) -> str | None:
    parts = [row.get("brand", ""), (row.get("category_code") or "").rsplit(".", 1)[-1]]
    return " ".join(part for part in parts if part) or None


def read_online_retail(path: Path) -> Replay:
    """UCI Online Retail II (Parquet): one order_completed per invoice line, one stream per day."""
    import pyarrow.parquet as pq  # heavy; only this format needs it

    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise ReplayError(f"{path}: not readable as Parquet: {exc}") from None
    missing = [name for name in RETAIL_COLUMNS if name not in table.column_names]
    if missing:
        raise _fail(path, "schema", missing[0], f"missing column(s) {', '.join(missing)}")
    ids = _Ids("online_retail")
    replay = Replay(path, [])
    source_of = {
        "event_time": "InvoiceDate",
        "product_id": "StockCode",
        "product_name": "Description",
        "price": "Price",
        "quantity": "Quantity",
        "viewer_id": "Customer ID",
        "source_session_id": "Invoice",
    }
    names = table.column_names
    for number, values in enumerate(
        zip(*(table.column(name).to_pylist() for name in names), strict=True), start=1
    ):
        row = dict(zip(names, values, strict=True))
        where = f"row {number}"
        invoice = str(row["Invoice"] or "").strip()
        if invoice.upper().startswith("C"):
            replay.skipped["cancellation"] += 1
            continue
        if row["Customer ID"] is None:
            replay.skipped["no customer id"] += 1
            continue
        quantity, price, at = row["Quantity"], row["Price"], row["InvoiceDate"]
        if quantity is None or quantity <= 0:
            replay.skipped["quantity not positive"] += 1
            continue
        if quantity > _MAX_QUANTITY:
            replay.skipped[f"quantity above the contract's {_MAX_QUANTITY:,}"] += 1
            continue
        if price is None or price < 0:
            replay.skipped["negative price"] += 1
            continue
        if not isinstance(at, datetime):
            try:
                at = _timestamp(str(at))
            except ValueError:
                raise _fail(path, where, "InvoiceDate", f"{at!r} is not a timestamp") from None
        customer = row["Customer ID"]
        if isinstance(customer, float) and customer.is_integer():
            customer = int(customer)
        event = blank_event("online_retail_replay")
        event.update(
            stream_id=f"retail-{at:%Y-%m-%d}",
            stream_start_time=datetime.combine(at.date(), datetime.min.time()),
            viewer_id=str(customer),
            event_time=at.replace(tzinfo=None),
            event_type="order_completed",
            product_id=str(row["StockCode"]).strip() or None,
            product_name=str(row["Description"] or "").strip() or None,
            price=Decimal(str(price)).quantize(Decimal("0.01")),
            quantity=int(quantity),
            source_session_id=invoice,
            country=row.get("Country"),
        )
        event["event_id"] = ids(tuple(_id_value(row.get(column)) for column in RETAIL_ID_COLUMNS))
        _check(event, path, where, lambda name: source_of.get(name, name))
        replay.events.append(event)
    return replay


def _id_value(value: Any) -> str:
    return "" if value is None else str(value).strip()


def read_export(path: Path, *, format: str = "seed", catalog: Path | None = None) -> Replay:
    """Read ``path`` as ``format`` (one of FORMATS)."""
    if format == "seed":
        return read_seed(path, catalog=catalog)
    if catalog is not None:
        raise ReplayError(f"--catalog applies to the seed format only, not {format}")
    if format == "rees46":
        return read_rees46(path)
    if format == "online_retail":
        return read_online_retail(path)
    raise ReplayError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")


def in_time_order(
    events: list[dict[str, Any]], *, time_mode: str = "as-recorded", now: datetime | None = None
) -> list[dict[str, Any]]:
    """The events sorted by event_time (ties keep file order), shifted if ``time_mode`` asks.

    ``shift-to-now`` moves every timestamp by the same amount so that the last event is ``now``
    (naive UTC; default the current time). Event ids do not change.
    """
    if time_mode not in TIME_MODES:
        raise ReplayError(f"unknown time mode {time_mode!r}; expected one of {', '.join(TIME_MODES)}")
    ordered = sorted(events, key=lambda event: event["event_time"])
    if time_mode == "as-recorded" or not ordered:
        return ordered
    now = now or datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    delta: timedelta = now - ordered[-1]["event_time"]
    shifted = []
    for event in ordered:
        moved = dict(event)
        for column in ("event_time", "stream_start_time"):
            if moved[column] is not None:
                moved[column] = moved[column] + delta
        shifted.append(moved)
    return shifted


def replay_events(
    path: Path,
    *,
    format: str = "seed",
    catalog: Path | None = None,
    time_mode: str = "as-recorded",
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The events of ``path`` ready to publish: validated, in event_time order, in ``time_mode``."""
    replay = read_export(path, format=format, catalog=catalog)
    return in_time_order(replay.events, time_mode=time_mode, now=now)
