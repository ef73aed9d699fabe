"""What the platform needs from a message bus, with Google Pub/Sub's semantics.

Delivery is at least once: a message is handed out with an ack deadline (a lease); if it is not
acknowledged before the deadline it is delivered again, with ``delivery_attempt`` counting up.
Consumers must therefore be idempotent, which the ingest achieves by deduplicating on the event's
own ``event_id`` (a resend by the publisher gets a new message id, so message ids cannot be used).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class ReceivedMessage:
    """One delivery of a message. ``ack_id`` identifies this delivery, not the message."""

    ack_id: str
    message_id: str
    data: bytes
    publish_time: datetime
    delivery_attempt: int = 1
    attributes: dict[str, str] = field(default_factory=dict)


class Publisher(Protocol):
    def publish(self, messages: Sequence[bytes]) -> list[str]:
        """Publish a batch; returns the message ids in order. Ordering is not guaranteed."""
        ...

    def close(self) -> None: ...


class Subscriber(Protocol):
    def pull(self, max_messages: int) -> list[ReceivedMessage]:
        """Return up to ``max_messages`` deliveries; an empty list when nothing is available."""
        ...

    def ack(self, ack_ids: Sequence[str]) -> None:
        """Acknowledge deliveries. Acks of expired deliveries may be ignored (at-least-once)."""
        ...

    def modify_ack_deadline(self, ack_ids: Sequence[str], seconds: int) -> None:
        """Extend (or, with 0, give up) the lease on deliveries."""
        ...

    def close(self) -> None: ...
