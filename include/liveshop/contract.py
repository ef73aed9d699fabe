"""The live-shopping event contract, and the one validator every consumer uses.

An event is a JSON object published as UTF-8 bytes. Its fields are those of the original
LiveShoppingAnalytics export plus ``event_id`` (unique; redeliveries and resends of one event share
it), ``schema_version``, and ``price`` / ``quantity`` where money moves. Unknown fields are kept in
``extra``, never rejected. docs/event-contract.md describes every field; ``event_json_schema()`` gives
the machine-readable form (written to docs/event.schema.json by ``make schema``).

``parse_message(data)`` returns either a ``ValidEvent`` (a flat row ready for the raw table) or a
``Rejection`` naming the field at fault and what was wrong; it never raises on bad input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

SCHEMA_VERSION = 1

EVENT_TYPES = (
    "stream_view_start",
    "product_view",
    "chat_message",
    "add_to_cart",
    "checkout_started",
    "order_completed",
    "stream_exit",
)
#: Event types that concern one product and must name it.
PRODUCT_EVENTS = frozenset({"product_view", "add_to_cart", "checkout_started", "order_completed"})
#: Event types where money moves: they carry a unit price and a quantity.
MONEY_EVENTS = frozenset({"add_to_cart", "checkout_started", "order_completed"})

#: Oldest event time accepted; anything earlier is a broken clock or a unit mistake.
EARLIEST_EVENT_TIME = datetime(2000, 1, 1)
#: How far in the future an event may claim to be (publisher clock skew).
FUTURE_TOLERANCE = timedelta(hours=24)

#: Columns of a valid event as loaded into raw.raw_events, in order.
EVENT_COLUMNS = (
    "event_id",
    "schema_version",
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
    "price",
    "quantity",
    "source",
    "source_session_id",
    "extra",
)


def _timestamp(value: Any) -> datetime:
    """Accept ISO 8601 text only (``2025-07-19 09:00:23`` or with ``T`` and an offset)."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith((" UTC", "Z")):
            text = text.removesuffix(" UTC").removesuffix("Z") + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"unparseable timestamp {value!r}; expected ISO 8601") from None
    else:
        raise ValueError(f"expected an ISO 8601 timestamp string, got {type(value).__name__}")
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise ValueError(f"timestamp {value!r} falls outside years 1-9999 in UTC") from None
    return parsed


def _number(value: Any) -> Decimal:
    """JSON numbers only (parsed as Decimal so 19.99 stays exact); text and booleans are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValueError(f"expected a JSON number, got {type(value).__name__}")
    return Decimal(value)


def _whole_number(value: Any) -> Any:
    """JSON integers only: a bool is an int in Python and 1.0 compares equal to 1, so both would pass."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a JSON integer, got {value!r}")
    return value


# The JSON Schema of each type says what the validators above accept, not what pydantic would
# infer from the Python type: timestamps are text only, money is a JSON number only.
Timestamp = Annotated[
    datetime,
    BeforeValidator(_timestamp),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 10,
            "description": "ISO 8601, e.g. '2025-07-19 09:00:23' or '2025-07-19T09:00:23+02:00'; "
            "an offset or a 'Z' / ' UTC' suffix is converted to UTC, no offset means UTC. "
            "Not before 2000-01-01, not more than 24 hours ahead of the consumer's clock.",
        }
    ),
]
Money = Annotated[
    Decimal,
    BeforeValidator(_number),
    Field(ge=0, max_digits=12, decimal_places=2),
    WithJsonSchema(
        {
            "type": "number",
            "minimum": 0,
            "maximum": 9_999_999_999.99,
            "description": "A JSON number (not text) with at most 2 decimal places.",
        }
    ),
]
NonEmpty = Annotated[str, Field(min_length=1, max_length=256)]
Text = Annotated[str, Field(max_length=256)]


class LiveShoppingEvent(BaseModel):
    """One live-shopping event (schema version 1). Times are UTC."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    event_id: NonEmpty
    schema_version: Annotated[Literal[1], BeforeValidator(_whole_number)]
    stream_id: NonEmpty
    streamer_name: Text | None = None
    stream_start_time: Timestamp | None = None
    viewer_id: NonEmpty
    viewer_email: Text | None = None
    viewer_state: Text | None = None
    device_type: Text | None = None
    event_time: Timestamp
    event_type: Literal[
        "stream_view_start",
        "product_view",
        "chat_message",
        "add_to_cart",
        "checkout_started",
        "order_completed",
        "stream_exit",
    ]
    product_id: Text | None = None
    product_name: Text | None = None
    chat_message: Annotated[str, Field(max_length=4000)] | None = None
    price: Money | None = None
    quantity: Annotated[int, Field(ge=1, le=10_000)] | None = None
    source: Text | None = None
    source_session_id: Text | None = None

    @model_validator(mode="after")
    def _fields_the_event_type_needs(self) -> LiveShoppingEvent:
        if self.event_type in PRODUCT_EVENTS and not self.product_id:
            raise _FieldProblem("product_id", f"required for {self.event_type} events")
        if self.event_type in MONEY_EVENTS:
            for name in ("price", "quantity"):
                if getattr(self, name) is None:
                    raise _FieldProblem(name, f"required for {self.event_type} events")
        if self.event_type == "chat_message" and self.chat_message is None:
            raise _FieldProblem("chat_message", "required for chat_message events")
        return self


class _FieldProblem(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(problem)


@dataclass(frozen=True)
class ValidEvent:
    """A valid event as a flat row for raw.raw_events (see EVENT_COLUMNS)."""

    row: tuple[Any, ...]

    @property
    def event_id(self) -> str:
        return self.row[0]


@dataclass(frozen=True)
class Rejection:
    """Why a message is not a valid event: the field at fault (or None) and what was wrong."""

    reason: str
    field: str | None = None

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_message(
    data: bytes,
    *,
    max_bytes: int = 64 * 1024,
    now: datetime | None = None,
) -> ValidEvent | Rejection:
    """Validate one message body. Never raises for bad input: returns a Rejection instead."""
    if not data:
        return Rejection("empty message")
    if len(data) > max_bytes:
        return Rejection(f"message of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(f"not UTF-8: byte {exc.start} ({data[exc.start : exc.start + 1]!r}) is invalid")
    if not text.strip():
        return Rejection("empty message (whitespace only)")
    try:
        payload = json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys,
            parse_float=Decimal,
            parse_constant=_reject_constant,
        )
    except _DuplicateKey as exc:
        return Rejection("duplicate key in the JSON object", field=str(exc))
    except (json.JSONDecodeError, ValueError) as exc:
        return Rejection(f"not JSON: {exc}")
    except RecursionError:
        return Rejection("not JSON this parser accepts: arrays or objects nested too deep")
    if not isinstance(payload, dict):
        return Rejection(f"JSON {type(payload).__name__} where an object was expected")
    field = _field_with_invalid_unicode(payload)
    if field is not None:
        # JSON allows escapes such as "\ud800" that decode to half a surrogate pair, which no
        # UTF-8 column can store.
        return Rejection("text holds a lone UTF-16 surrogate escape, which is not valid Unicode", field=field)
    return validate_event(payload, now=now)


def _field_with_invalid_unicode(payload: dict[str, Any]) -> str | None:
    for key, value in payload.items():
        try:
            json.dumps({key: value}, ensure_ascii=False, default=str).encode("utf-8")
        except UnicodeEncodeError:
            return key.encode("utf-8", "backslashreplace").decode("utf-8")
    return None


def validate_event(payload: dict[str, Any], *, now: datetime | None = None) -> ValidEvent | Rejection:
    """Validate an already-decoded event object."""
    try:
        event = LiveShoppingEvent.model_validate(payload)
    except ValidationError as exc:
        return _rejection_from(exc)
    now = now or datetime.now(UTC).replace(tzinfo=None)
    for name in ("event_time", "stream_start_time"):
        value = getattr(event, name)
        if value is None:
            continue
        if value < EARLIEST_EVENT_TIME:
            return Rejection(f"{value.isoformat()} is before {EARLIEST_EVENT_TIME.date()}", field=name)
        if value > now + FUTURE_TOLERANCE:
            return Rejection(f"{value.isoformat()} is more than 24 hours in the future", field=name)
    extra = event.model_extra or {}
    row = tuple(getattr(event, column) for column in EVENT_COLUMNS[:-1]) + (
        json.dumps(extra, ensure_ascii=False, default=_json_default) if extra else None,
    )
    return ValidEvent(row)


def _rejection_from(exc: ValidationError) -> Rejection:
    error = exc.errors(include_url=False)[0]
    context = error.get("ctx") or {}
    inner = context.get("error")
    if isinstance(inner, _FieldProblem):
        return Rejection(str(inner), field=inner.field)
    field = ".".join(str(part) for part in error["loc"]) or None
    if error["type"] == "missing":
        return Rejection("required field is missing", field=field)
    value = error.get("input")
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    message = error["msg"].removeprefix("Value error, ")
    return Rejection(f"{message} (got {shown})", field=field)


def event_json_schema() -> dict[str, Any]:
    """The contract as JSON Schema (draft 2020-12)."""
    schema = LiveShoppingEvent.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/liveshop-analytics/liveshop/docs/event.schema.json"
    schema["additionalProperties"] = True
    # What the model validator checks, in JSON Schema's terms: the fields each event type needs.
    schema["allOf"] = [
        _requires_for(PRODUCT_EVENTS, {"product_id": {"type": "string", "minLength": 1}}),
        _requires_for(MONEY_EVENTS, {"price": {"type": "number"}, "quantity": {"type": "integer"}}),
        _requires_for({"chat_message"}, {"chat_message": {"type": "string"}}),
    ]
    return schema


def _requires_for(event_types: frozenset[str] | set[str], fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "if": {"properties": {"event_type": {"enum": sorted(event_types)}}, "required": ["event_type"]},
        "then": {"required": list(fields), "properties": fields},
    }


def encode_event(event: dict[str, Any]) -> bytes:
    """Serialise an event dict for publishing (datetimes as ISO 8601, decimals as numbers)."""
    return json.dumps(event, default=_json_default, ensure_ascii=False, separators=(",", ":")).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, Decimal):
        # JSON numbers are parsed as Decimal; write them back as numbers, not as text.
        return float(value) if value != value.to_integral_value() else int(value)
    raise TypeError(f"cannot encode {type(value).__name__} in an event")
