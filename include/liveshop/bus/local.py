"""A durable local bus with Pub/Sub's semantics, stored in one SQLite file.

It exists so the platform runs on a laptop with no cloud account; production uses Google Pub/Sub
through the same interface (``include/liveshop/bus/pubsub.py``).

Why SQLite rather than a queue library: the libraries that persist queues on disk (persist-queue,
litequeue) have acknowledgements but no ack deadline after which an unacked message comes back, and
are built for one process. SQLite itself gives what the semantics need: transactions that survive a
killed process (WAL journal, ``synchronous=FULL``), and safe use by several processes at once (the
simulator publishes while Airflow pulls), so this module is only the schema and a few statements.

Model: ``messages`` holds what was published to a topic; ``deliveries`` holds, per subscription, the
messages not yet acknowledged with their lease. Publishing fans a message out to every subscription
of its topic that exists at that moment (as in Pub/Sub, a topic without subscriptions drops it).
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from include.liveshop.bus.base import ReceivedMessage
from include.liveshop.errors import BusError

_SCHEMA = """
create table if not exists subscriptions (
    name text primary key,
    topic text not null,
    ack_deadline_seconds integer not null
);
create table if not exists messages (
    id integer primary key autoincrement,
    topic text not null,
    data blob not null,
    publish_time real not null
);
create table if not exists deliveries (
    subscription text not null,
    message_id integer not null,
    lease_expires real not null default 0,
    delivery_attempt integer not null default 0,
    lease_token text,
    primary key (subscription, message_id)
) without rowid;
create index if not exists deliveries_due on deliveries (subscription, lease_expires);
create index if not exists deliveries_message on deliveries (message_id);
"""


def _split_ack_id(ack_id: str) -> tuple[int, str]:
    message_id, _, token = ack_id.partition(":")
    if not message_id.isdigit() or not token:
        raise BusError(f"malformed ack id {ack_id!r} for the local bus")
    return int(message_id), token


class LocalBus:
    """Topic and subscriptions in one SQLite file. Safe to share between processes."""

    def __init__(self, path: Path | str, *, busy_timeout_seconds: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout = busy_timeout_seconds
        with self._connect() as con:
            con.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        try:
            con.execute("pragma journal_mode=wal")
            con.execute("pragma synchronous=full")
            yield con
        finally:
            con.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as con:
            con.execute("begin immediate")
            try:
                yield con
            except BaseException:
                con.execute("rollback")
                raise
            con.execute("commit")

    def create_subscription(self, topic: str, name: str, ack_deadline_seconds: int = 60) -> None:
        """Create a subscription if it does not exist (it receives messages published from now)."""
        with self._write() as con:
            row = con.execute("select topic from subscriptions where name = ?", (name,)).fetchone()
            if row is not None and row[0] != topic:
                raise BusError(f"subscription {name!r} exists on topic {row[0]!r}, not {topic!r}")
            con.execute(
                "insert into subscriptions values (?, ?, ?) on conflict (name) do update "
                "set ack_deadline_seconds = excluded.ack_deadline_seconds",
                (name, topic, ack_deadline_seconds),
            )

    def publisher(self, topic: str) -> LocalPublisher:
        return LocalPublisher(self, topic)

    def subscriber(self, subscription: str) -> LocalSubscriber:
        with self._connect() as con:
            row = con.execute(
                "select ack_deadline_seconds from subscriptions where name = ?", (subscription,)
            ).fetchone()
        if row is None:
            raise BusError(
                f"subscription {subscription!r} does not exist in {self.path}; "
                "create it first (LocalBus.create_subscription, done by get_subscriber)"
            )
        return LocalSubscriber(self, subscription, row[0])

    def backlog(self, subscription: str) -> int:
        """Messages of the subscription not yet acknowledged (leased or not)."""
        with self._connect() as con:
            return con.execute(
                "select count(*) from deliveries where subscription = ?", (subscription,)
            ).fetchone()[0]


class LocalPublisher:
    def __init__(self, bus: LocalBus, topic: str) -> None:
        self._bus = bus
        self.topic = topic

    def publish(self, messages: Sequence[bytes]) -> list[str]:
        if not messages:
            return []
        now = time.time()
        with self._bus._write() as con:
            subscriptions = [
                name
                for (name,) in con.execute("select name from subscriptions where topic = ?", (self.topic,))
            ]
            ids: list[str] = []
            for data in messages:
                cursor = con.execute(
                    "insert into messages (topic, data, publish_time) values (?, ?, ?)",
                    (self.topic, bytes(data), now),
                )
                ids.append(str(cursor.lastrowid))
            con.executemany(
                "insert into deliveries (subscription, message_id) values (?, ?)",
                [(name, int(message_id)) for name in subscriptions for message_id in ids],
            )
        return ids

    def close(self) -> None:
        """Nothing to release: every call opens and closes its own connection."""


class LocalSubscriber:
    def __init__(self, bus: LocalBus, subscription: str, ack_deadline_seconds: int) -> None:
        self._bus = bus
        self.subscription = subscription
        self.ack_deadline_seconds = ack_deadline_seconds

    def pull(self, max_messages: int) -> list[ReceivedMessage]:
        now = time.time()
        token = secrets.token_hex(8)
        with self._bus._write() as con:
            rows = con.execute(
                "select d.message_id, d.delivery_attempt + 1, m.data, m.publish_time "
                "from deliveries d join messages m on m.id = d.message_id "
                "where d.subscription = ? and d.lease_expires <= ? "
                "order by d.message_id limit ?",
                (self.subscription, now, max_messages),
            ).fetchall()
            con.executemany(
                "update deliveries set lease_expires = ?, delivery_attempt = ?, lease_token = ? "
                "where subscription = ? and message_id = ?",
                [
                    (now + self.ack_deadline_seconds, attempt, token, self.subscription, message_id)
                    for message_id, attempt, _, _ in rows
                ],
            )
        return [
            ReceivedMessage(
                ack_id=f"{message_id}:{token}",
                message_id=str(message_id),
                data=bytes(data),
                publish_time=datetime.fromtimestamp(published, tz=UTC),
                delivery_attempt=attempt,
            )
            for message_id, attempt, data, published in rows
        ]

    def ack(self, ack_ids: Sequence[str]) -> None:
        if not ack_ids:
            return
        keys = [(self.subscription, *_split_ack_id(ack_id)) for ack_id in ack_ids]
        with self._bus._write() as con:
            # Only the current lease can acknowledge: an ack that arrives after the message was
            # handed to someone else is ignored, as Pub/Sub may do.
            con.executemany(
                "delete from deliveries where subscription = ? and message_id = ? and lease_token = ?",
                keys,
            )
            con.execute(
                "delete from messages where topic = (select topic from subscriptions where name = ?) "
                "and id in (select value from json_each(?)) "
                "and not exists (select 1 from deliveries d where d.message_id = messages.id)",
                (self.subscription, "[" + ",".join(str(k[1]) for k in keys) + "]"),
            )

    def modify_ack_deadline(self, ack_ids: Sequence[str], seconds: int) -> None:
        if not ack_ids:
            return
        expires = time.time() + seconds
        with self._bus._write() as con:
            con.executemany(
                "update deliveries set lease_expires = ? "
                "where subscription = ? and message_id = ? and lease_token = ?",
                [(expires, self.subscription, *_split_ack_id(ack_id)) for ack_id in ack_ids],
            )

    def close(self) -> None:
        """Nothing to release: every call opens and closes its own connection."""
