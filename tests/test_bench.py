"""The ingest benchmark runs end to end on a few events and loads each of them once.

Only the shape of the result and the counts are checked, never a timing."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from bench.ingest import main

EVENTS = 500


def test_ingest_benchmark_loads_every_event_once(tmp_path: Path, capsys) -> None:
    result = main(["--events", str(EVENTS), "--workdir", str(tmp_path), "--json", str(tmp_path / "r.json")])

    assert json.loads((tmp_path / "r.json").read_text()) == result
    assert "ours/baseline" in capsys.readouterr().out
    ours, baseline, ratios = result["ours"], result["baseline"], result["ratios"]
    for figure in (
        ours["publish_seconds"],
        ours["ingest_seconds"],
        ours["ingest_events_per_second"],
        ours["peak_rss_mib"],
        baseline["seconds"],
        baseline["events_per_second"],
        baseline["peak_rss_mib"],
        *ratios.values(),
    ):
        assert isinstance(figure, float) and figure > 0
    assert ours["report"]["pulled"] == EVENTS
    assert (ours["report"]["duplicates"], ours["report"]["dead_lettered"], ours["backlog_after"]) == (0, 0, 0)

    # The counts, read here from the two warehouses the run left behind.
    with duckdb.connect(str(tmp_path / "ours" / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*), count(distinct event_id) from raw.raw_events").fetchone() == (
            EVENTS,
            EVENTS,
        )
        assert con.execute("select count(*) from raw.dead_letter_events").fetchone() == (0,)
    with duckdb.connect(str(tmp_path / "baseline" / "baseline.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from raw.raw_events").fetchone() == (EVENTS,)
    assert (ours["loaded"], baseline["loaded"]) == (EVENTS, EVENTS)
