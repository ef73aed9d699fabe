"""Set up the configured bus: ``python -m include.liveshop.bus setup``.

With ``LIVESHOP_BUS=pubsub`` this creates the Pub/Sub topic and the ingest subscription if they are
absent (for the emulator and first-time setup; production may pre-create both). On the local bus it
creates the SQLite file and the subscription.
"""

from __future__ import annotations

import argparse
import logging
import sys

from include.liveshop.errors import LiveShopError
from include.liveshop.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m include.liveshop.bus", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    setup = commands.add_parser("setup", help="create the topic and the ingest subscription if absent")
    setup.add_argument(
        "--gcp-conn-id",
        default="google_cloud_default",
        help="Airflow connection with the Google credentials (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = get_settings()
        if settings.bus == "pubsub":
            from include.liveshop.bus.pubsub import ensure_topic_and_subscription

            topic, subscription = ensure_topic_and_subscription(settings, gcp_conn_id=args.gcp_conn_id)
        else:
            from include.liveshop.bus.local import LocalBus

            LocalBus(settings.bus_path).create_subscription(
                settings.topic, settings.subscription, settings.ack_deadline_seconds
            )
            topic = f"{settings.bus_path}:{settings.topic}"
            subscription = f"{settings.bus_path}:{settings.subscription}"
    except LiveShopError as exc:
        print(f"setup failed: {exc}", file=sys.stderr)  # noqa: T201 - a CLI
        return 2
    print(f"topic {topic}\nsubscription {subscription}")  # noqa: T201 - a CLI
    return 0


if __name__ == "__main__":
    sys.exit(main())
