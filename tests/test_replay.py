"""Replay of real exports: the seed CSV (with prices from its catalogue), REES46 and Online Retail II.

Small hand-written files in tmp_path cover every rule; the tests on the real files in ../shared/data
are skipped where that folder is absent (see conftest.shared_data).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from include.liveshop.contract import ValidEvent, encode_event, parse_message
from include.liveshop.errors import ReplayError
from include.simulator import Batcher, cli, in_time_order, pump, read_export, replay_events
from include.simulator.publishing import accelerated
from include.simulator.replay import SEED_COLUMNS

HEADER = ",".join(SEED_COLUMNS)
STREAM = "STRM1,Alice,2025-07-19 09:00:00"
VIEWER = "CUST001,drew.hall1@example.com,AZ,desktop"
ROWS = (
    f"{STREAM},{VIEWER},2025-07-19 09:00:05,stream_view_start,,,",
    f"{STREAM},{VIEWER},2025-07-19 09:00:10,product_view,P001,Smart Lipstick,",
    f'{STREAM},{VIEWER},2025-07-19 09:00:12,chat_message,,,"Love it, really"',
    f"{STREAM},{VIEWER},2025-07-19 09:00:20,add_to_cart,P001,Smart Lipstick,",
    f"{STREAM},{VIEWER},2025-07-19 09:00:20,add_to_cart,P001,Smart Lipstick,",
    f"{STREAM},{VIEWER},2025-07-19 09:00:30,checkout_started,P001,Smart Lipstick,",
    f"{STREAM},{VIEWER},2025-07-19 09:00:40,order_completed,P001,Smart Lipstick,",
    f"{STREAM},{VIEWER},2025-07-19 09:00:41,order_completed,P002,Eco Tripod,",
    f"{STREAM},{VIEWER},2025-07-19 09:01:00,stream_exit,,,",
)
CATALOG = "product_id,product_name,sku,price\nP001,Smart Lipstick,20637,107\nP002,Eco Tripod,79017,72.50\n"


class FakePublisher:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def publish(self, messages: Sequence[bytes]) -> list[str]:
        self.messages.extend(messages)
        return [""] * len(messages)

    def close(self) -> None:
        pass


def write_seed(folder: Path, rows: Sequence[str] = ROWS, header: str = HEADER, catalog: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "events.csv"
    path.write_text("\n".join((header, *rows)) + "\n", encoding="utf-8")
    if catalog:
        (folder / "expanded_product_catalog.csv").write_text(CATALOG, encoding="utf-8")
    return path


# --- seed format, small files -------------------------------------------------------------------


def test_small_seed_file_replays_as_valid_events(tmp_path: Path) -> None:
    events = read_export(write_seed(tmp_path)).events
    assert len(events) == len(ROWS)
    for event in events:
        assert isinstance(parse_message(encode_event(event)), ValidEvent), event
        assert event["source"] == "seed_replay"
    start, view, chat, cart, *_, order_p1, order_p2, exit_ = events
    assert start["product_id"] is None and start["chat_message"] is None, "empty strings become null"
    assert start["stream_start_time"] == datetime(2025, 7, 19, 9, 0, 0)
    assert view["price"] == Decimal("107") and view["quantity"] is None
    assert chat["chat_message"] == "Love it, really"
    assert (cart["price"], cart["quantity"]) == (Decimal("107"), 1)
    assert (order_p2["price"], order_p2["quantity"]) == (Decimal("72.50"), 1)
    assert exit_["price"] is None


def test_ids_are_deterministic_and_identical_rows_get_their_own(tmp_path: Path) -> None:
    path = write_seed(tmp_path)
    first = [event["event_id"] for event in read_export(path).events]
    second = [event["event_id"] for event in read_export(path).events]
    assert first == second
    assert len(set(first)) == len(first), "the two identical add_to_cart rows are two events"
    copy = write_seed(tmp_path / "elsewhere")
    assert [event["event_id"] for event in read_export(copy).events] == first, "ids do not depend on where"


def test_ids_do_not_depend_on_the_time_mode(tmp_path: Path) -> None:
    path = write_seed(tmp_path)
    recorded = replay_events(path, time_mode="as-recorded")
    shifted = replay_events(path, time_mode="shift-to-now", now=datetime(2030, 1, 1))
    assert [event["event_id"] for event in recorded] == [event["event_id"] for event in shifted]


def test_shift_to_now_moves_every_time_by_the_same_amount(tmp_path: Path) -> None:
    now = datetime(2026, 3, 1, 12, 0, 0)
    recorded = replay_events(write_seed(tmp_path))
    shifted = replay_events(write_seed(tmp_path), time_mode="shift-to-now", now=now)
    assert shifted[-1]["event_time"] == now
    delta = now - recorded[-1]["event_time"]
    for before, after in zip(recorded, shifted, strict=True):
        assert after["event_time"] - before["event_time"] == delta
        assert after["stream_start_time"] - before["stream_start_time"] == delta


def test_events_are_published_in_time_order(tmp_path: Path) -> None:
    rows = (ROWS[1], ROWS[0], *ROWS[2:])
    events = in_time_order(read_export(write_seed(tmp_path, rows)).events)
    times = [event["event_time"] for event in events]
    assert times == sorted(times)


def test_speed_divides_the_recorded_gaps(tmp_path: Path) -> None:
    events = replay_events(write_seed(tmp_path))
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    def clock() -> float:
        return now[0]

    publisher = FakePublisher()
    pump(
        events,
        Batcher(publisher, max_delay=1000, clock=clock),
        due=accelerated(events[0]["event_time"], 5.0, clock=clock),
        clock=clock,
        sleep=sleep,
    )
    recorded = (events[-1]["event_time"] - events[0]["event_time"]).total_seconds()
    assert now[0] == pytest.approx(recorded / 5)
    assert len(publisher.messages) == len(ROWS)


@pytest.mark.parametrize(
    ("header", "rows", "where", "column"),
    [
        (HEADER.replace(",event_type", ""), ROWS[:1], "line 1", "event_type"),
        (HEADER, (ROWS[0], ROWS[1].replace("2025-07-19 09:00:10", "19/07/2025 9am")), "line 3", "event_time"),
        (HEADER, (ROWS[0], ROWS[0].replace("stream_view_start", "teleported")), "line 3", "event_type"),
        (HEADER, (ROWS[0], ROWS[6].replace("P001", "P999")), "line 3", "product_id"),
        (HEADER, (ROWS[0], ROWS[1].replace("P001", "")), "line 3", "product_id"),
        (HEADER, (ROWS[0], ROWS[2].replace('"Love it, really"', "")), "line 3", "chat_message"),
        (HEADER, (ROWS[0], ROWS[0].replace("CUST001", "")), "line 3", "viewer_id"),
        (HEADER, (ROWS[0], ROWS[0].replace("AZ,", "")), "line 3", None),
    ],
    ids=[
        "missing-column",
        "bad-timestamp",
        "unknown-type",
        "not-in-catalog",
        "no-product",
        "empty-chat",
        "no-viewer",
        "short-row",
    ],
)
def test_bad_input_names_file_line_and_column(
    tmp_path: Path, header: str, rows: Sequence[str], where: str, column: str | None
) -> None:
    path = write_seed(tmp_path, rows, header=header)
    with pytest.raises(ReplayError) as error:
        read_export(path)
    message = str(error.value)
    assert message.startswith(f"{path}, {where}"), message
    if column:
        assert f"column {column}" in message, message


@pytest.mark.parametrize("bad_line", [2, 6, 3001])
def test_a_byte_that_is_not_utf8_is_reported_on_its_own_line(tmp_path: Path, bad_line: int) -> None:
    # 4,000 rows: far more than one block of a buffered text reader, which would name the line
    # it had reached when it decoded the block instead of the line holding the byte.
    rows = [ROWS[0]] * 4_000
    path = write_seed(tmp_path, rows)
    lines = path.read_bytes().split(b"\n")
    lines[bad_line - 1] = lines[bad_line - 1].replace(b"Alice", b"Alic\xe9")
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ReplayError) as error:
        read_export(path)
    assert str(error.value) == (
        f"{path}, line {bad_line}: not UTF-8 text: 0xe9 at byte 11 of the line (save the file as UTF-8)"
    )


def test_a_utf8_byte_order_mark_and_windows_line_ends_are_read(tmp_path: Path) -> None:
    path = write_seed(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    events = read_export(path).events
    assert len(events) == len(ROWS)
    assert events[2]["chat_message"] == "Love it, really"


def test_a_column_named_twice_in_the_header_is_refused(tmp_path: Path) -> None:
    path = write_seed(tmp_path, [row + ",dance" for row in ROWS], header=HEADER + ",event_type")
    with pytest.raises(ReplayError) as error:
        read_export(path)
    assert str(error.value) == (
        f"{path}, line 1, column event_type: appears 2 times in the header; which one holds the values "
        "is ambiguous"
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--speed", "nan"], "--speed must be 0 (no waiting) or a finite number above it, got nan"),
        (["--speed", "-1"], "--speed must be 0"),
        (["--batch-size", "0"], "--batch-size must be a positive number, got 0"),
    ],
)
def test_cli_refuses_speeds_and_sizes_that_mean_nothing(
    tmp_path: Path, capsys: Any, args: list[str], fragment: str
) -> None:
    path = write_seed(tmp_path)
    with pytest.raises(SystemExit) as exited:
        cli.main(["replay", str(path), "--dry-run", *args])
    assert exited.value.code == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize("rate", ["nan", "inf", "0"])
def test_cli_refuses_a_rate_that_is_not_a_positive_number(capsys: Any, rate: str) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["simulate", "--rate", rate, "--events", "1", "--dry-run"])
    assert exited.value.code == 2
    assert f"--rate must be a positive number, got {float(rate)}" in capsys.readouterr().err


def test_money_events_need_a_catalog(tmp_path: Path) -> None:
    path = write_seed(tmp_path, catalog=False)
    with pytest.raises(ReplayError, match=r"line 5, column product_id: .*pass --catalog"):
        read_export(path)
    (tmp_path / "prices.csv").write_text(CATALOG, encoding="utf-8")
    assert len(read_export(path, catalog=tmp_path / "prices.csv").events) == len(ROWS)


def test_cli_reports_bad_input_with_exit_code_2(tmp_path: Path, capsys: Any) -> None:
    path = write_seed(tmp_path, (ROWS[0], ROWS[1].replace("2025-07-19 09:00:10", "yesterday")))
    assert cli.main(["replay", str(path), "--dry-run"]) == 2
    assert f"{path}, line 3, column event_time" in capsys.readouterr().err


def test_cli_replays_through_the_publisher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    publisher = FakePublisher()
    monkeypatch.setattr(cli, "_publisher", lambda dry_run: publisher)
    path = write_seed(tmp_path)
    assert cli.main(["replay", str(path), "--time", "shift-to-now", "--speed", "0"]) == 0
    published = [parse_message(message) for message in publisher.messages]
    assert [event.event_id for event in published if isinstance(event, ValidEvent)] == [
        event["event_id"] for event in replay_events(path)
    ]


# --- REES46 and Online Retail II, small files ---------------------------------------------------

REES46 = (
    "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"
    "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,s-1\n"
    "2019-10-01 00:00:05 UTC,cart,44600062,2103807459595387724,,shiseido,35.79,541312140,s-1\n"
    "2019-10-01 00:00:09 UTC,remove_from_cart,44600062,2103807459595387724,,shiseido,35.79,541312140,s-1\n"
    "2019-10-01 00:01:00 UTC,purchase,1004856,2053013555631882655,electronics.smartphone,samsung,130.76,"
    "541312140,s-1\n"
)


def test_rees46_maps_to_one_pseudo_stream_per_day(tmp_path: Path) -> None:
    path = tmp_path / "rees46.csv"
    path.write_text(REES46, encoding="utf-8")
    replay = read_export(path, format="rees46")
    kinds = [event["event_type"] for event in replay.events]
    assert kinds == ["product_view", "add_to_cart", "order_completed"]
    assert replay.skipped == Counter({"event_type remove_from_cart": 1})
    order = replay.events[-1]
    assert order["stream_id"] == "rees46-2019-10-01" and order["streamer_name"] is None
    assert (order["viewer_id"], order["source_session_id"]) == ("541312140", "s-1")
    assert (order["price"], order["quantity"]) == (Decimal("130.76"), 1)
    assert order["device_type"] is None and order["viewer_state"] is None
    assert order["product_name"] == "samsung smartphone"
    assert all(isinstance(parse_message(encode_event(event)), ValidEvent) for event in replay.events)


def test_rees46_ids_survive_a_reexport_with_reordered_and_added_columns(tmp_path: Path) -> None:
    original = tmp_path / "rees46.csv"
    original.write_text(REES46, encoding="utf-8")
    with original.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    reexported = tmp_path / "rees46-reexported.csv"
    columns = [*reversed(list(rows[0])), "exported_by"]
    with reexported.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows({**row, "exported_by": "warehouse job"} for row in rows)
    ids = [event["event_id"] for event in read_export(original, format="rees46").events]
    assert [event["event_id"] for event in read_export(reexported, format="rees46").events] == ids
    assert len(set(ids)) == len(ids)


def test_online_retail_ids_survive_reordered_and_added_columns(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "Invoice": ["489434", "489434"],
            "StockCode": ["85048", "79323P"],
            "Description": ["GLASS BALL", "PINK LIGHTS"],
            "Quantity": [12, 12],
            "InvoiceDate": ["2009-12-01 07:45:00"] * 2,
            "Price": [6.95, 6.75],
            "Customer ID": [13085.0, 13085.0],
            "Country": ["United Kingdom"] * 2,
        }
    )
    pq.write_table(table, tmp_path / "a.parquet")
    reordered = table.select(list(reversed(table.column_names))).append_column("Batch", pa.array(["x", "y"]))
    pq.write_table(reordered, tmp_path / "b.parquet")
    first, second = (
        read_export(tmp_path / name, format="online_retail").events for name in ("a.parquet", "b.parquet")
    )
    assert [e["event_id"] for e in first] == [e["event_id"] for e in second]
    assert len({e["event_id"] for e in first}) == 2


def test_online_retail_orders_one_event_per_invoice_line(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "Invoice": ["489434", "489434", "C489449", "489450", "489451"],
            "StockCode": ["85048", "79323P", "22087", "21232", "21871"],
            "Description": ["GLASS BALL", "PINK LIGHTS", "PAPER BUNTING", "STRAWBERRY MUG", None],
            "Quantity": [12, 12, -12, 6, 3],
            "InvoiceDate": ["2009-12-01 07:45:00"] * 2 + ["2009-12-01 10:33:00"] * 3,
            "Price": [6.95, 6.75, 2.95, 1.25, 0.5],
            "Customer ID": [13085.0, 13085.0, 16321.0, None, 17519.0],
            "Country": ["United Kingdom"] * 5,
        }
    )
    path = tmp_path / "retail.parquet"
    pq.write_table(table, path)
    replay = read_export(path, format="online_retail")
    assert replay.skipped == Counter({"cancellation": 1, "no customer id": 1})
    assert [event["event_type"] for event in replay.events] == ["order_completed"] * 3
    first = replay.events[0]
    assert (first["stream_id"], first["viewer_id"], first["source_session_id"]) == (
        "retail-2009-12-01",
        "13085",
        "489434",
    )
    assert (first["price"], first["quantity"]) == (Decimal("6.95"), 12)
    assert all(isinstance(parse_message(encode_event(event)), ValidEvent) for event in replay.events)


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="unknown format"):
        read_export(write_seed(tmp_path), format="xlsx")


# --- the real exports in ../shared/data ---------------------------------------------------------


def independent_seed_revenue(folder: Path) -> Decimal:
    """Revenue of order_completed rows, priced from the catalogue, read with nothing but csv."""
    with (folder / "expanded_product_catalog.csv").open(newline="") as handle:
        prices = {row["product_id"]: Decimal(row["price"]) for row in csv.DictReader(handle)}
    with (folder / "synthetic_5k_live_shopping_events.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    orders = [row for row in rows if row["event_type"] == "order_completed"]
    return sum((prices[row["product_id"]] for row in orders), Decimal(0))


@pytest.mark.shared_data
def test_seed_export_replays_as_5000_valid_events(seed_events_csv: Path) -> None:
    events = replay_events(seed_events_csv)
    assert len(events) == 5_000
    for event in events:
        assert isinstance(parse_message(encode_event(event)), ValidEvent), event
    assert len({event["event_id"] for event in events}) == 5_000
    with seed_events_csv.open(newline="") as handle:
        expected = Counter(row["event_type"] for row in csv.DictReader(handle))
    assert Counter(event["event_type"] for event in events) == expected


@pytest.mark.shared_data
def test_seed_export_ids_are_the_same_in_every_replay(seed_events_csv: Path) -> None:
    first = [event["event_id"] for event in read_export(seed_events_csv).events]
    shifted = replay_events(seed_events_csv, time_mode="shift-to-now")
    assert first == [event["event_id"] for event in read_export(seed_events_csv).events]
    assert sorted(first) == sorted(event["event_id"] for event in shifted)


@pytest.mark.shared_data
def test_seed_export_revenue_comes_from_the_catalog(seed_events_csv: Path) -> None:
    expected = independent_seed_revenue(seed_events_csv.parent)
    assert expected == 20_335
    events = replay_events(seed_events_csv)
    revenue = sum(
        (event["price"] * event["quantity"] for event in events if event["event_type"] == "order_completed"),
        Decimal(0),
    )
    assert revenue == expected


@pytest.mark.shared_data
def test_rees46_sample_replays(shared_data: Path) -> None:
    replay = read_export(shared_data / "rees46" / "2019-Oct_head5k.csv", format="rees46")
    assert len(replay.events) + sum(replay.skipped.values()) == 5_019
    assert {event["stream_id"] for event in replay.events} == {"rees46-2019-10-01"}


@pytest.mark.shared_data
def test_malformed_copy_of_the_seed_export_names_the_line(seed_events_csv: Path, tmp_path: Path) -> None:
    lines = seed_events_csv.read_text(encoding="utf-8").splitlines()
    lines[1234] = lines[1234].replace("2025-07-19", "2025-13-45", 2)
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ReplayError, match=rf"^{broken}, line 1235, column stream_start_time: "):
        read_export(broken, catalog=seed_events_csv.parent / "expanded_product_catalog.csv")
