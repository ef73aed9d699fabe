"""Google Pub/Sub behind the bus interface, through the Airflow Google provider.

The subscriber goes through ``PubSubHook`` so that credentials come from an Airflow connection
(``google_cloud_default`` unless told otherwise), as every other Google task of the platform does.
Two things the hook does not offer are done with the google-cloud-pubsub clients built from the
hook's credentials, each noted where it happens: modifying ack deadlines, and batched publishing
that returns message ids.

Semantics worth knowing (see docs/pubsub.md):

* A pull returns at most 1000 messages and may return fewer than are available; the ingest pulls in
  rounds (see include/liveshop/ingest.py for when a batch ends). A pull on an empty subscription
  waits for messages; the client gives up after ``pull_timeout_seconds`` and reports it as empty.
* ``delivery_attempt`` is only counted by Pub/Sub on subscriptions with a dead-letter policy;
  elsewhere it arrives as 0 and is reported as 1.
* ``PUBSUB_EMULATOR_HOST`` is honoured by the google clients; the Airflow connection must then be
  anonymous (``"is_anonymous": true`` in its extra), or the hook looks for real credentials first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from airflow.exceptions import AirflowNotFoundException
from airflow.providers.google.cloud.hooks.pubsub import PubSubException, PubSubHook
from airflow.providers.google.common.consts import CLIENT_INFO
from google.api_core.exceptions import DeadlineExceeded, GoogleAPICallError, NotFound, PermissionDenied
from google.auth.exceptions import GoogleAuthError
from google.cloud.pubsub_v1 import PublisherClient
from google.cloud.pubsub_v1.types import BatchSettings

from include.liveshop.bus.base import ReceivedMessage
from include.liveshop.errors import BusError
from include.liveshop.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_GCP_CONN_ID = "google_cloud_default"

#: Pub/Sub returns at most this many messages per pull, whatever is asked for.
MAX_PULL_MESSAGES = 1_000
#: Ack ids per Acknowledge / ModifyAckDeadline request (the request size limit is 512 KiB).
MAX_ACK_IDS_PER_REQUEST = 2_500
#: Longest lease Pub/Sub accepts in one ModifyAckDeadline.
MAX_ACK_DEADLINE_SECONDS = 600

#: Batches sent by the publisher: well under the 1000 messages / 10 MB limits of one request.
PUBLISH_BATCH = BatchSettings(max_messages=1_000, max_bytes=4 * 1024 * 1024, max_latency=0.05)


def _project(settings: Settings) -> str:
    if not settings.gcp_project:
        raise BusError(
            "LIVESHOP_GCP_PROJECT is not set; the Pub/Sub bus needs the project of the topic and subscription"
        )
    return settings.gcp_project


@contextmanager
def _credentials_of(gcp_conn_id: str) -> Iterator[None]:
    """Turns a missing connection or missing credentials into a BusError saying what to set."""
    try:
        yield
    except AirflowNotFoundException as exc:
        raise BusError(
            f"the Airflow connection {gcp_conn_id!r} is not defined; define it in Airflow or as "
            f"AIRFLOW_CONN_{gcp_conn_id.upper()} (see docs/pubsub.md)"
        ) from exc
    except GoogleAuthError as exc:
        raise BusError(
            f"no Google credentials for the Airflow connection {gcp_conn_id!r}: {exc}; give it a key "
            'or workload identity, or for the emulator set "is_anonymous": true in its extra'
        ) from exc


def _connected_hook(gcp_conn_id: str) -> PubSubHook:
    """The hook, with its connection and credentials resolved now rather than on first use."""
    with _credentials_of(gcp_conn_id):
        hook = PubSubHook(gcp_conn_id=gcp_conn_id)
        hook.get_credentials()
    return hook


def _batches(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _api_error(exc: BaseException) -> BaseException:
    """The google API error inside a hook's ``PubSubException(message, error)``, else ``exc``."""
    if isinstance(exc, PubSubException):
        for arg in exc.args:
            if isinstance(arg, BaseException):
                return arg
        if exc.__context__ is not None:
            return exc.__context__
    return exc


def _hint(error: BaseException, *, role: str, what: str) -> str:
    if isinstance(error, NotFound):
        return f"; create the {what} (python -m include.liveshop.bus setup) or fix its name"
    if isinstance(error, PermissionDenied):
        return f"; the credentials of the Airflow connection need {role} on the {what}"
    return ""


def _utc(value: datetime | None) -> datetime:
    """A plain aware UTC datetime (the client hands out a subclass carrying nanoseconds)."""
    if value is None:
        return datetime.now(UTC)
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=UTC,
    )


def _received(item: Any) -> ReceivedMessage:
    message = item.message
    return ReceivedMessage(
        ack_id=item.ack_id,
        message_id=message.message_id,
        data=bytes(message.data),
        publish_time=_utc(message.publish_time),
        # 0 when the subscription has no dead-letter policy: Pub/Sub does not count then.
        delivery_attempt=max(1, item.delivery_attempt or 0),
        attributes=dict(message.attributes),
    )


class PubSubSubscriber:
    """Pulls from ``settings.subscription`` in ``settings.gcp_project``."""

    def __init__(
        self,
        settings: Settings,
        *,
        gcp_conn_id: str = DEFAULT_GCP_CONN_ID,
        pull_timeout_seconds: float = 5.0,
        request_timeout_seconds: float = 60.0,
    ) -> None:
        self.project = _project(settings)
        self.subscription = settings.subscription
        self.subscription_path = f"projects/{self.project}/subscriptions/{self.subscription}"
        self._pull_timeout = pull_timeout_seconds
        self._request_timeout = request_timeout_seconds
        self._hook = _connected_hook(gcp_conn_id)
        # Built now rather than on first use: the ingest's lease keeper calls from another thread.
        self._client = self._hook.subscriber_client

    def pull(self, max_messages: int) -> list[ReceivedMessage]:
        # return_immediately=True is deprecated by Pub/Sub (it may answer empty while messages
        # wait), so the request waits for messages and the timeout bounds the wait instead: on an
        # empty subscription the service holds the pull open until the deadline.
        try:
            received = self._hook.pull(
                subscription=self.subscription,
                project_id=self.project,
                max_messages=max(1, min(max_messages, MAX_PULL_MESSAGES)),
                return_immediately=False,
                timeout=self._pull_timeout,
            )
        except PubSubException as exc:
            error = _api_error(exc)
            if isinstance(error, DeadlineExceeded):
                return []
            raise BusError(
                f"pulling from subscription {self.subscription_path} failed: {error}"
                + _hint(error, role="roles/pubsub.subscriber", what="subscription")
            ) from exc
        return [_received(item) for item in received]

    def ack(self, ack_ids: Sequence[str]) -> None:
        for batch in _batches(ack_ids, MAX_ACK_IDS_PER_REQUEST):
            try:
                self._hook.acknowledge(
                    subscription=self.subscription,
                    project_id=self.project,
                    ack_ids=batch,
                    timeout=self._request_timeout,
                )
            except PubSubException as exc:
                error = _api_error(exc)
                raise BusError(
                    f"acknowledging {len(batch)} messages on {self.subscription_path} failed: {error}"
                    + _hint(error, role="roles/pubsub.subscriber", what="subscription")
                ) from exc

    def modify_ack_deadline(self, ack_ids: Sequence[str], seconds: int) -> None:
        # PubSubHook has no modify_ack_deadline, so this calls the hook's own SubscriberClient
        # (same credentials, same endpoint, emulator included).
        seconds = max(0, min(int(seconds), MAX_ACK_DEADLINE_SECONDS))
        for batch in _batches(ack_ids, MAX_ACK_IDS_PER_REQUEST):
            try:
                self._client.modify_ack_deadline(
                    request={
                        "subscription": self.subscription_path,
                        "ack_ids": batch,
                        "ack_deadline_seconds": seconds,
                    },
                    timeout=self._request_timeout,
                )
            except GoogleAPICallError as exc:
                raise BusError(
                    f"modifying the ack deadline of {len(batch)} messages on "
                    f"{self.subscription_path} failed: {exc}"
                    + _hint(exc, role="roles/pubsub.subscriber", what="subscription")
                ) from exc

    def close(self) -> None:
        self._client.close()


class PubSubPublisher:
    """Publishes to ``settings.topic`` in ``settings.gcp_project``, in batches."""

    def __init__(
        self,
        settings: Settings,
        *,
        gcp_conn_id: str = DEFAULT_GCP_CONN_ID,
        timeout_seconds: float = 120.0,
        batch_settings: BatchSettings = PUBLISH_BATCH,
    ) -> None:
        self.project = _project(settings)
        self.topic = settings.topic
        self.topic_path = f"projects/{self.project}/topics/{self.topic}"
        self._timeout = timeout_seconds
        hook = _connected_hook(gcp_conn_id)
        # Not hook.publish: it waits for each message before sending the next and returns no
        # message ids. A PublisherClient with the hook's credentials batches and returns them.
        self._client = PublisherClient(
            batch_settings=batch_settings,
            credentials=hook.get_credentials(),
            client_info=CLIENT_INFO,
            client_options=hook.get_client_options(),
        )

    def publish(self, messages: Sequence[bytes]) -> list[str]:
        if not messages:
            return []
        deadline = time.monotonic() + self._timeout
        try:
            pending = [
                self._client.publish(self.topic_path, bytes(data), timeout=self._timeout) for data in messages
            ]
        except (ValueError, RuntimeError) as exc:
            raise BusError(f"publishing to topic {self.topic_path} was refused: {exc}") from exc
        futures.wait(pending, timeout=max(0.0, deadline - time.monotonic()))
        ids: list[str] = []
        failed = 0
        first_error: BaseException | None = None
        for future in pending:
            if not future.done():
                failed += 1
                first_error = first_error or TimeoutError(f"no answer within {self._timeout:.0f} s")
                continue
            error = future.exception()
            if error is not None:
                failed += 1
                first_error = first_error or error
                continue
            ids.append(future.result())
        if first_error is not None:
            partly = (
                "; the others were published, so retrying the whole batch resends them (harmless: "
                "the ingest deduplicates on event_id)"
                if failed < len(messages)
                else ""
            )
            raise BusError(
                f"publishing to topic {self.topic_path} failed for {failed} of {len(messages)} "
                f"messages ({first_error}){partly}"
                + _hint(first_error, role="roles/pubsub.publisher", what="topic")
            )
        return ids

    def close(self) -> None:
        """Stop the publisher and release its channel (``publish`` already waited for its messages)."""
        try:
            self._client.stop()
        except RuntimeError:
            return  # already stopped
        self._client.transport.close()


def ensure_topic_and_subscription(
    settings: Settings, *, gcp_conn_id: str = DEFAULT_GCP_CONN_ID
) -> tuple[str, str]:
    """Create the topic and the ingest subscription if absent; returns their full paths.

    An existing subscription is left as it is. One on another topic is an error; one with another
    ack deadline only gets a warning (the ingest extends its leases itself, so any deadline works).
    """
    project = _project(settings)
    topic_path = f"projects/{project}/topics/{settings.topic}"
    subscription_path = f"projects/{project}/subscriptions/{settings.subscription}"
    hook = _connected_hook(gcp_conn_id)
    try:
        hook.create_topic(topic=settings.topic, project_id=project, fail_if_exists=False)
        hook.create_subscription(
            topic=settings.topic,
            project_id=project,
            subscription=settings.subscription,
            ack_deadline_secs=settings.ack_deadline_seconds,
            fail_if_exists=False,
        )
        # The hook cannot read a subscription back; its SubscriberClient can.
        existing = hook.subscriber_client.get_subscription(request={"subscription": subscription_path})
    except (PubSubException, GoogleAPICallError) as exc:
        error = _api_error(exc)
        raise BusError(
            f"setting up {topic_path} and {subscription_path} failed: {error}"
            + (
                "; the credentials need roles/pubsub.editor (or an admin pre-creates both)"
                if isinstance(error, PermissionDenied)
                else ""
            )
        ) from exc
    finally:
        if "subscriber_client" in vars(hook):
            hook.subscriber_client.close()
    if existing.topic != topic_path:
        raise BusError(
            f"subscription {subscription_path} exists on topic {existing.topic}, not {topic_path}; "
            "set LIVESHOP_SUBSCRIPTION to another name or delete the subscription"
        )
    if existing.ack_deadline_seconds != settings.ack_deadline_seconds:
        log.warning(
            "subscription %s has an ack deadline of %s s, not LIVESHOP_ACK_DEADLINE_SECONDS=%s; "
            "left unchanged",
            subscription_path,
            existing.ack_deadline_seconds,
            settings.ack_deadline_seconds,
        )
    return topic_path, subscription_path
