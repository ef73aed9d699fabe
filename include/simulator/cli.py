"""Command line: ``python -m include.simulator simulate|replay ...`` (see docs/replay.md).

Exit codes: 0 done (also after Ctrl-C), 1 the bus failed, 2 bad arguments, settings or input file.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from include.liveshop.errors import BusError, ConfigError, ReplayError
from include.simulator.generator import iter_events
from include.simulator.publishing import BATCH_SIZE, Batcher, Publisher, accelerated, pump, real_time
from include.simulator.replay import FORMATS, TIME_MODES, in_time_order, read_export

_WARM_UP_MINUTES = 20


class _DryRun:
    """Stands in for the bus with --dry-run: counts, publishes nothing."""

    def publish(self, messages: Sequence[bytes]) -> list[str]:
        return [""] * len(messages)

    def close(self) -> None:
        pass


def _publisher(dry_run: bool) -> Publisher:
    if dry_run:
        return _DryRun()
    try:
        from include.liveshop.bus import get_publisher
    except ImportError as exc:
        problem = f"the bus package cannot be imported ({exc}); use --dry-run"
        raise ConfigError("LIVESHOP_BUS", problem) from None
    from include.liveshop.settings import get_settings

    return get_publisher(get_settings())


def _progress(total: int | None) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="event", disable=not sys.stderr.isatty(), smoothing=0.1)


def _publish(
    events: Iterable[dict[str, Any]], args: argparse.Namespace, *, total: int | None, due: Any = None
) -> int:
    publisher = _publisher(args.dry_run)
    batcher = Batcher(publisher, batch_size=args.batch_size)
    verb = "counted (dry run)" if args.dry_run else "published"
    try:
        with _progress(total) as bar:
            pump(events, batcher, due=due, on_event=lambda: bar.update(1))
    except KeyboardInterrupt:
        batcher.flush()
        print(f"\ninterrupted: {batcher.published} events {verb}")
        return 0
    finally:
        with contextlib.suppress(AttributeError):
            publisher.close()  # type: ignore[attr-defined]
    print(f"{batcher.published} events {verb}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    if args.as_fast_as_possible and args.events is None:
        raise _Usage("--as-fast-as-possible needs --events N (otherwise it would never stop)")
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    if args.as_fast_as_possible:
        # a finished history that ends about now
        start = now - timedelta(seconds=args.events / args.rate)
        history = iter_events(args.seed, start=start, rate=args.rate, streams=args.streams)
        return _publish(itertools.islice(history, args.events), args, total=args.events)
    # The schedule starts in the past so that shows are under way with an audience from the first
    # second. What happened before now is published at once (due times in the past do not wait),
    # so the first micro-batch already sees whole sessions, not only their tails.
    warm_up = timedelta(minutes=_WARM_UP_MINUTES)
    events = iter_events(args.seed, start=now - warm_up, rate=args.rate, streams=args.streams)
    if args.events is not None:
        events = itertools.islice(events, args.events)
    print(f"live: about {args.rate:g} events/s over {args.streams} shows; Ctrl-C to stop", file=sys.stderr)
    return _publish(events, args, total=args.events, due=real_time())


def _replay(args: argparse.Namespace) -> int:
    if not math.isfinite(args.speed) or args.speed < 0:
        raise _Usage(f"--speed must be 0 (no waiting) or a finite number above it, got {args.speed}")
    replay = read_export(args.file, format=args.format, catalog=args.catalog)
    for reason, count in sorted(replay.skipped.items()):
        print(f"skipped {count} rows: {reason}", file=sys.stderr)
    events = in_time_order(replay.events, time_mode=args.time)
    due = None
    if events and args.speed > 0 and not args.as_fast_as_possible:
        due = accelerated(events[0]["event_time"], args.speed)
    return _publish(events, args, total=len(events), due=due)


class _Usage(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m include.simulator",
        description="Publish simulated live-shopping events, or replay a real export, onto the event bus.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="events per publish (%(default)s)")
    common.add_argument("--dry-run", action="store_true", help="build and count the events, publish nothing")

    simulate = commands.add_parser(
        "simulate", parents=[common], help="simulated live shows (live, in real time, by default)"
    )
    simulate.add_argument("--seed", type=int, default=42, help="random seed (%(default)s)")
    simulate.add_argument(
        "--rate", type=float, default=20.0, help="events per second, on average (%(default)s)"
    )
    simulate.add_argument("--events", type=int, help="stop after N events (default: run until Ctrl-C)")
    simulate.add_argument(
        "--as-fast-as-possible", action="store_true", help="with --events: publish without waiting"
    )
    simulate.add_argument("--streams", type=int, default=3, help="shows running at once (%(default)s)")
    simulate.set_defaults(run=_simulate)

    replay = commands.add_parser("replay", parents=[common], help="replay a real export file")
    replay.add_argument("file", type=Path)
    replay.add_argument("--format", choices=FORMATS, default="seed", help="(%(default)s)")
    replay.add_argument(
        "--catalog",
        type=Path,
        help="product catalogue CSV for --format seed (default: expanded_product_catalog.csv beside FILE)",
    )
    replay.add_argument("--time", choices=TIME_MODES, default="as-recorded", help="(%(default)s)")
    replay.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="replay the recorded gaps divided by X; 0 publishes without waiting (%(default)s)",
    )
    replay.add_argument("--as-fast-as-possible", action="store_true", help="same as --speed 0")
    replay.set_defaults(run=_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    for name in ("rate", "streams", "events", "batch_size"):
        value = getattr(args, name, None)
        if value is not None and (not math.isfinite(value) or value <= 0):
            parser.error(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    try:
        return args.run(args)
    except _Usage as exc:
        parser.error(str(exc))
    except (ReplayError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BusError as exc:
        print(f"error: the bus failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted before anything was published", file=sys.stderr)
        return 0
    return 2  # unreachable: parser.error exits
