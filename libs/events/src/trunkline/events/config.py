"""Configuration-change notices: the API announces writes, caching services invalidate.

Notices go over core NATS, not JetStream: they only tell caches to re-read the store, which
stays the source of truth, so nothing is acknowledged or replayed. A notice lost while a
subscriber reconnects leaves a stale cache entry, which the cache's own expiry has to bound.

    publisher = await ConfigPublisher.connect("nats://127.0.0.1:4222", name="trunkline-api")
    await publisher.publish(account_sid, "trunks", trunk_sid, "updated")

    async def on_change(change: ConfigChange, context: Context) -> None:
        cache.forget(change.sid, change.parent_sid)

    await subscribe_config(nc, on_change)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final, Self

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter

from trunkline.events.connection import ConnectionEvents, close, connect, flush
from trunkline.events.subjects import CONFIG_WILDCARD, config_subject
from trunkline.telemetry.propagation import extract, inject
from trunkline.v1.config_pb2 import ConfigChange

ACTIONS: Final = frozenset({"created", "updated", "deleted"})

ConfigCallback = Callable[[ConfigChange, Context], Awaitable[None]]

log = logging.getLogger("trunkline.events.config")
_tracer = trace.get_tracer("trunkline.events.config")

PUBLISH_FAILURES = Counter(
    "trunkline_config_publish_failures",
    "Configuration-change notices that the NATS server did not confirm "
    "(caches of that resource may stay stale until their entries expire)",
    ["resource"],
)
RECEIVE_FAILURES = Counter(
    "trunkline_config_receive_failures",
    "Configuration-change notices that could not be decoded or whose handler raised",
    ["reason"],
)


class ConfigPublisher:
    """Announces configuration writes on `trunkline.config.<account_sid>.<resource>`.

    `publish` never raises (except when cancelled): it runs after the store write has been
    committed, and failing the API request then would make the client retry a write that
    happened. A failure is logged and counted in trunkline_config_publish_failures_total.
    """

    def __init__(
        self, nc: NATS, *, flush_timeout: int = 1, events: ConnectionEvents | None = None
    ) -> None:
        self._nc = nc
        # Seconds to wait for the server's PONG: the write latency a slow NATS can add.
        self._flush_timeout = flush_timeout
        self._events = events

    @classmethod
    async def connect(cls, url: str, name: str) -> Self:
        """Connect to NATS at `url` (comma-separated for a cluster) as client `name`.

        Raises when no server answers at start-up. Once connected the client reconnects
        for as long as the process runs, logging the outage; notices published meanwhile
        are buffered by the client and counted as failures (their delivery is unconfirmed).
        """
        nc, events = await connect(url, name)
        return cls(nc, events=events)

    async def publish(
        self, account_sid: str, resource: str, sid: str, action: str, parent_sid: str = ""
    ) -> None:
        """Announce that record `sid` of `resource` was created, updated or deleted."""
        fields = {"account_sid": account_sid, "resource": resource, "sid": sid, "action": action}
        with _tracer.start_as_current_span(
            "config.publish",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "send",
                **{f"trunkline.{key}": value for key, value in fields.items()},
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                if action not in ACTIONS:
                    raise ValueError(f"action {action!r} is not one of {sorted(ACTIONS)}")
                subject = config_subject(account_sid, resource)
                span.set_attribute("messaging.destination.name", subject)
                change = ConfigChange(
                    account_sid=account_sid,
                    resource=resource,
                    sid=sid,
                    action=action,
                    parent_sid=parent_sid,
                )
                change.occurred_at.GetCurrentTime()
                await self._nc.publish(subject, change.SerializeToString(), headers=inject({}))
                if not self._nc.is_connected:
                    # Buffered for the reconnect; a flush would only wait out its timeout.
                    raise ConnectionError("NATS is reconnecting; the notice is buffered")
                await flush(self._nc, self._flush_timeout)
            except Exception as error:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
                PUBLISH_FAILURES.labels(resource=resource).inc()
                log.warning(
                    "configuration change not announced",
                    extra={**fields, "parent_sid": parent_sid, "error": repr(error)},
                )

    async def close(self) -> None:
        """Send what is buffered, then disconnect; while NATS is unreachable, just disconnect."""
        # Notices buffered while NATS is unreachable are already counted as failures.
        await close(self._nc, self._events)


async def subscribe_config(
    nc: NATS, callback: ConfigCallback, subject: str = CONFIG_WILDCARD
) -> Subscription:
    """Call `callback(change, context)` for every notice on `subject` (default: all).

    Returns once the server has registered the subscription, so subscribe first, then read
    the configuration to cache: a change committed in between is still announced here.

    `context` is the publisher's trace context from the message headers. The callback runs
    inside a CONSUMER span that continues that trace, so what it logs carries the trace id
    of the API request that made the change. A notice that cannot be decoded, or whose
    callback raises, is logged and counted, and the subscription goes on.
    """

    async def handle(msg: Msg) -> None:
        context = extract(msg.headers or {})
        with _tracer.start_as_current_span(
            "config.process",
            context=context,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "process",
                "messaging.destination.name": msg.subject,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                change = ConfigChange.FromString(msg.data)
            except DecodeError as error:
                _receive_failed(span, error, "decode")
                log.warning("undecodable configuration notice", extra={"subject": msg.subject})
                return
            span.set_attribute("trunkline.sid", change.sid)
            try:
                await callback(change, context)
            except Exception as error:
                _receive_failed(span, error, "callback")
                log.exception(
                    "configuration notice handler failed",
                    extra={"subject": msg.subject, "sid": change.sid, "action": change.action},
                )

    subscription = await nc.subscribe(subject, cb=handle)
    # Return only once the server routes notices here: a service that subscribes, then loads
    # its configuration, then misses nothing that changed in between.
    await flush(nc)
    return subscription


def _receive_failed(span: trace.Span, error: Exception, reason: str) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    RECEIVE_FAILURES.labels(reason=reason).inc()
