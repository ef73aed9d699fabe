"""The event contract: what is accepted, and the reason given for each class of bad input."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest

from include.liveshop.contract import (
    EVENT_COLUMNS,
    Rejection,
    ValidEvent,
    encode_event,
    event_json_schema,
    parse_message,
)

NOW = datetime(2026, 12, 3, 12, 0, 0)

GOOD = {
    "event_id": "evt-1",
    "schema_version": 1,
    "stream_id": "STRM1",
    "streamer_name": "Alice",
    "stream_start_time": "2026-12-03 11:00:00",
    "viewer_id": "CUST001",
    "viewer_email": "drew@example.com",
    "viewer_state": "AZ",
    "device_type": "mobile",
    "event_time": "2026-12-03T11:05:00Z",
    "event_type": "order_completed",
    "product_id": "P001",
    "product_name": "Smart Lipstick",
    "price": 19.99,
    "quantity": 2,
}


def parse(event: dict | bytes) -> ValidEvent | Rejection:
    data = event if isinstance(event, bytes) else json.dumps(event).encode()
    return parse_message(data, max_bytes=4096, now=NOW)


def row(result: ValidEvent | Rejection) -> dict:
    assert isinstance(result, ValidEvent), result
    return dict(zip(EVENT_COLUMNS, result.row, strict=True))


def without(name: str) -> dict:
    return {k: v for k, v in GOOD.items() if k != name}


def test_valid_event_becomes_typed_row() -> None:
    values = row(parse(GOOD))
    assert values["event_time"] == datetime(2026, 12, 3, 11, 5, 0)  # Z converted to naive UTC
    assert values["price"] == Decimal("19.99")  # exact, not 19.989999...
    assert values["quantity"] == 2
    assert values["extra"] is None


def test_offsets_are_converted_to_utc() -> None:
    values = row(parse({**GOOD, "event_time": "2026-12-03T13:05:00+02:00"}))
    assert values["event_time"] == datetime(2026, 12, 3, 11, 5, 0)


def test_unknown_fields_are_kept_not_rejected() -> None:
    values = row(parse({**GOOD, "campaign": "black-friday", "nested": {"a": [1, 2]}}))
    assert json.loads(values["extra"]) == {"campaign": "black-friday", "nested": {"a": [1, 2]}}


def test_free_text_is_kept_verbatim() -> None:
    text = "'); DROP TABLE raw_events; -- <script>alert(1)</script> 🛍️🔥 ñ {{ var }}"
    event = {**without("product_id"), "event_type": "chat_message", "chat_message": text}
    event.pop("price"), event.pop("quantity")
    assert row(parse(event))["chat_message"] == text


def test_encode_event_round_trips() -> None:
    encoded = encode_event({**GOOD, "event_time": datetime(2026, 12, 3, 11, 5), "price": Decimal("19.99")})
    assert row(parse_message(encoded, now=NOW))["price"] == Decimal("19.99")


@pytest.mark.parametrize(
    "required", ["event_id", "schema_version", "stream_id", "viewer_id", "event_time", "event_type"]
)
def test_missing_required_field_is_named(required: str) -> None:
    result = parse(without(required))
    assert result == Rejection("required field is missing", field=required)


@pytest.mark.parametrize(
    ("event_type", "missing"),
    [
        ("order_completed", "price"),
        ("order_completed", "quantity"),
        ("add_to_cart", "price"),
        ("checkout_started", "product_id"),
        ("product_view", "product_id"),
    ],
)
def test_fields_required_by_event_type(event_type: str, missing: str) -> None:
    result = parse({**without(missing), "event_type": event_type})
    assert isinstance(result, Rejection)
    assert result.field == missing
    assert f"required for {event_type} events" in result.reason


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        (b"", None, "empty message"),
        (b"   \n", None, "empty message"),
        (b"\xff\xfe{}", None, "not UTF-8"),
        ("{}".encode("utf-16"), None, "not UTF-8"),
        (b"{not json", None, "not JSON"),
        (b"[1, 2]", None, "JSON list where an object was expected"),
        (b'"just a string"', None, "JSON str where an object was expected"),
        (b"null", None, "JSON NoneType where an object was expected"),
        (b'{"event_id": "a", "event_id": "b"}', "event_id", "duplicate key"),
        (b'{"price": NaN}', None, "not JSON"),
        (b"x" * 5000, None, "exceeds the limit of 4096 bytes"),
    ],
)
def test_unreadable_messages(data: bytes, field: str | None, fragment: str) -> None:
    result = parse(data)
    assert isinstance(result, Rejection)
    assert result.field == field
    assert fragment in result.reason


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"event_type": "refund"}, "event_type", "got 'refund'"),
        ({"price": -1}, "price", "greater than or equal to 0"),
        ({"quantity": 0}, "quantity", "greater than or equal to 1"),
        ({"quantity": -3}, "quantity", "greater than or equal to 1"),
        ({"price": "19.99"}, "price", "expected a JSON number, got str"),
        ({"price": True}, "price", "got bool"),
        ({"price": 1.234}, "price", "decimal places"),
        ({"quantity": 1.5}, "quantity", "valid integer"),
        ({"viewer_id": 42}, "viewer_id", "valid string"),
        ({"viewer_id": ""}, "viewer_id", "at least 1 character"),
        ({"schema_version": 2}, "schema_version", "Input should be 1"),
        ({"schema_version": True}, "schema_version", "expected a JSON integer, got True"),
        ({"schema_version": 1.0}, "schema_version", "expected a JSON integer, got Decimal('1.0')"),
        ({"schema_version": "1"}, "schema_version", "expected a JSON integer, got '1'"),
        ({"event_time": "yesterday"}, "event_time", "unparseable timestamp 'yesterday'"),
        ({"event_time": "2026-13-45 99:00:00"}, "event_time", "unparseable timestamp"),
        ({"event_time": 1764763200}, "event_time", "expected an ISO 8601 timestamp string, got int"),
        ({"event_time": "2030-01-01 00:00:00"}, "event_time", "more than 24 hours in the future"),
        ({"event_time": "1970-01-01 00:00:00"}, "event_time", "before 2000-01-01"),
        ({"stream_start_time": "1999-12-31 23:59:59"}, "stream_start_time", "before 2000-01-01"),
    ],
)
def test_invalid_values_are_named(change: dict, field: str, fragment: str) -> None:
    result = parse({**GOOD, **change})
    assert isinstance(result, Rejection), result
    assert result.field == field
    assert fragment in result.reason


def test_json_schema_describes_the_contract() -> None:
    schema = event_json_schema()
    assert set(schema["required"]) == {
        "event_id",
        "schema_version",
        "stream_id",
        "viewer_id",
        "event_time",
        "event_type",
    }
    assert schema["additionalProperties"] is True
    assert "order_completed" in json.dumps(schema["properties"]["event_type"])
    jsonschema.Draft202012Validator.check_schema(schema)


def test_published_schema_file_is_current() -> None:
    published = Path(__file__).resolve().parents[1] / "docs" / "event.schema.json"
    assert json.loads(published.read_text()) == event_json_schema(), "run `make schema`"


CHAT = {**without("product_id"), "event_type": "chat_message", "chat_message": "hi"}
del CHAT["price"], CHAT["quantity"]


@pytest.mark.parametrize(
    "event",
    [
        GOOD,
        CHAT,
        {**GOOD, "campaign": "black-friday"},
        {**GOOD, "price": 0, "quantity": 10_000},
        {**GOOD, "event_time": "2026-12-03 11:05:00", "stream_start_time": None},
        {**CHAT, "event_type": "stream_exit", "chat_message": None},
    ],
)
def test_schema_accepts_what_the_validator_accepts(event: dict) -> None:
    assert isinstance(parse(event), ValidEvent)
    jsonschema.validate(event, event_json_schema())


@pytest.mark.parametrize(
    "event",
    [
        without("event_id"),
        without("event_time"),
        without("price"),
        without("quantity"),
        without("product_id"),
        {**GOOD, "product_id": ""},
        {**GOOD, "product_id": None},
        {**CHAT, "chat_message": None},
        {**GOOD, "event_type": "refund"},
        {**GOOD, "price": -1},
        {**GOOD, "price": "19.99"},
        {**GOOD, "price": True},
        {**GOOD, "quantity": 0},
        {**GOOD, "quantity": "2"},
        {**GOOD, "viewer_id": 42},
        {**GOOD, "viewer_id": ""},
        {**GOOD, "schema_version": 2},
        {**GOOD, "schema_version": True},
        {**GOOD, "event_time": 1764763200},
    ],
)
def test_schema_refuses_what_the_validator_refuses(event: dict) -> None:
    # Some rules are the validator's alone: decimal places, the time window, duplicate keys,
    # encoding and size. These are the ones JSON Schema can say, so producers can check them.
    assert isinstance(parse(event), Rejection)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(event, event_json_schema())
