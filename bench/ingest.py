"""Ingest throughput and memory, against DuckDB's own bulk load of the same events.

    python -m bench.ingest [--events 50000] [--json result.json]

In one run, on a temporary directory, with simulated events (``include.simulator``):

* **ours**: publish the events to the local bus (batches of 500, as the simulator does), then run
  ``run_ingest`` (pull, validate, load, acknowledge) in a child process, as the Airflow task does;
* **baseline**: the same event bytes as one newline-delimited JSON file, loaded by DuckDB's
  ``read_json`` into a table of the same columns, also in a child process.

Each child times its own work (after its imports) and reports its peak RSS. Throughputs depend on
the machine, so the figures to compare are the ratios within one run. The baseline validates
nothing, deduplicates nothing and keeps no transport metadata: it is the ceiling, not a target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_EVENTS = 50_000
SEED = 20260314
PUBLISH_BATCH = 500  # include.simulator.publishing.BATCH_SIZE

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Types of the contract's columns in raw.raw_events (include/liveshop/warehouse.py), for read_json.
JSON_COLUMNS = {
    "event_id": "VARCHAR",
    "schema_version": "INTEGER",
    "stream_id": "VARCHAR",
    "streamer_name": "VARCHAR",
    "stream_start_time": "TIMESTAMP",
    "viewer_id": "VARCHAR",
    "viewer_email": "VARCHAR",
    "viewer_state": "VARCHAR",
    "device_type": "VARCHAR",
    "event_time": "TIMESTAMP",
    "event_type": "VARCHAR",
    "product_id": "VARCHAR",
    "product_name": "VARCHAR",
    "chat_message": "VARCHAR",
    "price": "DECIMAL(12, 2)",
    "quantity": "INTEGER",
    "source": "VARCHAR",
    "source_session_id": "VARCHAR",
}


def _peak_rss_mib() -> float:
    """Peak resident memory of this process so far.

    On Linux this is VmHWM, the high-water mark of the process's own address space. ``ru_maxrss``
    is not used there: Linux carries it over from the parent across fork and exec, so a child
    spawned by a process holding the generated events would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def _env(data_dir: Path, args: argparse.Namespace) -> dict[str, str]:
    """The process environment without any LIVESHOP_* of the caller's shell, plus this run's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVESHOP_")}
    pythonpath = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    return {
        **env,
        "PYTHONPATH": pythonpath,
        "LIVESHOP_DATA_DIR": str(data_dir),
        "LIVESHOP_BATCH_MAX_MESSAGES": str(args.events),
        "LIVESHOP_CHUNK_SIZE": str(args.chunk_size),
        "LIVESHOP_PULL_MAX_MESSAGES": str(min(args.pull_size, args.events)),
    }


# --------------------------------------------------------------------------------------------
# the two measured steps, each run in a child process


def _child_ingest() -> dict[str, Any]:
    from include.liveshop.bus import get_subscriber
    from include.liveshop.ingest import run_ingest
    from include.liveshop.settings import get_settings

    settings = get_settings()
    subscriber = get_subscriber(settings)
    after_imports = _peak_rss_mib()
    started = time.perf_counter()
    try:
        report = run_ingest(settings, subscriber, batch_id="bench")
    finally:
        subscriber.close()
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "report": report.as_dict(),
        "rss_after_imports_mib": after_imports,
        "peak_rss_mib": _peak_rss_mib(),
    }


def _child_baseline(ndjson: Path, database: Path) -> dict[str, Any]:
    from include.liveshop import warehouse

    after_imports = _peak_rss_mib()
    columns = ", ".join(f"{name}: '{kind}'" for name, kind in JSON_COLUMNS.items())
    started = time.perf_counter()
    with warehouse.connect(database) as con:
        warehouse.ensure_schema(con)  # the same table, primary key included
        con.execute(
            f"""
            insert into raw.raw_events
            select {", ".join(JSON_COLUMNS)}, null as extra,
                   (row_number() over ())::varchar as message_id, now() as publish_time,
                   1 as delivery_attempt, now() as ingested_at, 'baseline' as batch_id
            from read_json(?, format = 'newline_delimited', columns = {{{columns}}})
            """,
            [str(ndjson)],
        )
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rss_after_imports_mib": after_imports, "peak_rss_mib": _peak_rss_mib()}


def _run_child(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.ingest", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"benchmark step {args[:2]} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# the run


def _events(n: int) -> list[bytes]:
    from include.liveshop.contract import encode_event
    from include.simulator.generator import generate_events

    return [encode_event(event) for event in generate_events(SEED, n)]


def _count(database: Path, sql: str) -> tuple:
    import duckdb

    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(sql).fetchone()


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from include.liveshop.bus import get_publisher
    from include.liveshop.bus.local import LocalBus
    from include.liveshop.settings import get_settings

    messages = _events(args.events)
    ours_dir, baseline_dir = workdir / "ours", workdir / "baseline"
    baseline_dir.mkdir(parents=True, exist_ok=True)
    env = _env(ours_dir, args)
    settings = get_settings(env)

    publisher = get_publisher(settings)
    started = time.perf_counter()
    for start in range(0, len(messages), PUBLISH_BATCH):
        publisher.publish(messages[start : start + PUBLISH_BATCH])
    publish_seconds = time.perf_counter() - started
    publisher.close()

    ingest = _run_child(["--child", "ingest"], env)
    loaded, distinct = _count(
        settings.duckdb_path, "select count(*), count(distinct event_id) from raw.raw_events"
    )
    backlog = LocalBus(settings.bus_path).backlog(settings.subscription)

    ndjson = baseline_dir / "events.ndjson"
    ndjson.write_bytes(b"\n".join(messages) + b"\n")
    database = baseline_dir / "baseline.duckdb"
    baseline = _run_child(
        ["--child", "baseline", "--ndjson", str(ndjson), "--database", str(database)],
        _env(baseline_dir, args),
    )
    (baseline_loaded,) = _count(database, "select count(*) from raw.raw_events")

    if (loaded, distinct, backlog, baseline_loaded) != (args.events, args.events, 0, args.events):
        raise RuntimeError(
            f"expected {args.events} events loaded once and an empty backlog; got raw_events {loaded} "
            f"({distinct} distinct), backlog {backlog}, baseline {baseline_loaded}"
        )

    n = args.events
    ours_rate = n / ingest["seconds"]
    end_to_end_rate = n / (publish_seconds + ingest["seconds"])
    baseline_rate = n / baseline["seconds"]
    import duckdb

    return {
        "events": n,
        "event_bytes": sum(map(len, messages)),
        "chunk_size": args.chunk_size,
        "pull_size": min(args.pull_size, n),
        "ours": {
            "publish_seconds": publish_seconds,
            "publish_events_per_second": n / publish_seconds,
            "ingest_seconds": ingest["seconds"],
            "ingest_events_per_second": ours_rate,
            "publish_and_ingest_events_per_second": end_to_end_rate,
            "report": ingest["report"],
            "loaded": loaded,
            "distinct_event_ids": distinct,
            "backlog_after": backlog,
            "rss_after_imports_mib": ingest["rss_after_imports_mib"],
            "peak_rss_mib": ingest["peak_rss_mib"],
        },
        "baseline": {
            "seconds": baseline["seconds"],
            "events_per_second": baseline_rate,
            "loaded": baseline_loaded,
            "rss_after_imports_mib": baseline["rss_after_imports_mib"],
            "peak_rss_mib": baseline["peak_rss_mib"],
        },
        "ratios": {
            "ingest_vs_baseline": ours_rate / baseline_rate,
            "publish_and_ingest_vs_baseline": end_to_end_rate / baseline_rate,
            "peak_rss_ingest_vs_baseline": ingest["peak_rss_mib"] / baseline["peak_rss_mib"],
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "platform": platform.platform(),
        },
    }


def render(result: dict[str, Any]) -> str:
    ours, baseline, ratios = result["ours"], result["baseline"], result["ratios"]
    n = result["events"]
    rows = [
        ("publish to the local bus", ours["publish_seconds"], ours["publish_events_per_second"], None),
        (
            "run_ingest: pull, validate, load, ack",
            ours["ingest_seconds"],
            ours["ingest_events_per_second"],
            ratios["ingest_vs_baseline"],
        ),
        (
            "publish + run_ingest",
            ours["publish_seconds"] + ours["ingest_seconds"],
            ours["publish_and_ingest_events_per_second"],
            ratios["publish_and_ingest_vs_baseline"],
        ),
        ("baseline: DuckDB read_json bulk load", baseline["seconds"], baseline["events_per_second"], 1.0),
    ]
    lines = [
        f"{n:,} simulated events ({result['event_bytes'] / n:.0f} B each, {result['event_bytes'] / 2**20:.1f} MiB), "
        f"chunk {result['chunk_size']:,}, pull {result['pull_size']:,}, {result['machine']['cpus']} CPUs",
        "",
        f"{'step':<40}{'seconds':>9}{'events/s':>11}{'ours/baseline':>15}",
    ]
    for name, seconds, rate, ratio in rows:
        shown = "" if ratio is None else f"{ratio:.3f}"
        lines.append(f"{name:<40}{seconds:>9.2f}{rate:>11,.0f}{shown:>15}")
    lines += [
        "",
        f"peak RSS of the run_ingest process: {ours['peak_rss_mib']:.0f} MiB "
        f"({ours['rss_after_imports_mib']:.0f} MiB after imports); "
        f"baseline process: {baseline['peak_rss_mib']:.0f} MiB "
        f"({baseline['rss_after_imports_mib']:.0f} MiB after imports)",
        f"loaded: {ours['loaded']:,} events, {ours['report']['chunks']} chunks, backlog after {ours['backlog_after']}; "
        f"baseline {baseline['loaded']:,}",
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="events to publish and load")
    parser.add_argument("--chunk-size", type=int, default=5_000, help="LIVESHOP_CHUNK_SIZE for the run")
    parser.add_argument("--pull-size", type=int, default=1_000, help="LIVESHOP_PULL_MAX_MESSAGES for the run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the result as JSON")
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: a temporary directory)")
    parser.add_argument("--child", choices=("ingest", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--ndjson", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--database", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table and return the result."""
    args = _parser().parse_args(argv)
    if args.child == "ingest":
        sys.stdout.write(json.dumps(_child_ingest()) + "\n")
        return {}
    if args.child == "baseline":
        sys.stdout.write(json.dumps(_child_baseline(args.ndjson, args.database)) + "\n")
        return {}
    if args.events < 1:
        raise SystemExit("--events must be at least 1")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
            result = run(args, Path(tmp))
    sys.stdout.write(render(result) + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
