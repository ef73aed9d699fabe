"""The message bus: the local SQLite bus by default, Google Pub/Sub with ``LIVESHOP_BUS=pubsub``."""

from __future__ import annotations

from include.liveshop.bus.base import Publisher, ReceivedMessage, Subscriber
from include.liveshop.settings import Settings

__all__ = ["Publisher", "ReceivedMessage", "Subscriber", "get_publisher", "get_subscriber"]


def get_publisher(settings: Settings) -> Publisher:
    """A publisher to the configured topic.

    On the local bus this also creates the ingest subscription if it is missing, so that events
    published before Airflow's first pull are kept rather than dropped.
    """
    if settings.bus == "pubsub":
        from include.liveshop.bus.pubsub import PubSubPublisher

        return PubSubPublisher(settings)
    from include.liveshop.bus.local import LocalBus

    bus = LocalBus(settings.bus_path)
    bus.create_subscription(settings.topic, settings.subscription, settings.ack_deadline_seconds)
    return bus.publisher(settings.topic)


def get_subscriber(settings: Settings) -> Subscriber:
    """A subscriber on the configured subscription."""
    if settings.bus == "pubsub":
        from include.liveshop.bus.pubsub import PubSubSubscriber

        return PubSubSubscriber(settings)
    from include.liveshop.bus.local import LocalBus

    bus = LocalBus(settings.bus_path)
    bus.create_subscription(settings.topic, settings.subscription, settings.ack_deadline_seconds)
    return bus.subscriber(settings.subscription)
