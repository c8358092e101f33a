"""Call records and lifecycle events: every state change of a call is written to the store
(the Call resource the API serves) and published on the CALLS JetStream stream.

The B2BUA reports changes synchronously (b2bua.CallHooks); they go into one ordered queue
that a single task drains, so a call's events are written and published in the order they
happened and a slow store or NATS never blocks SIP. The task lets changes gather for a short
window (`window`, 50 ms; none when a backlog is already waiting) before a batch: the changes
of one call in a batch are one write of its latest record (a call that rings and is answered
within the window costs one write, not three), every event is still published, in order. So
the Call resource lags the call by up to the window plus the write. A write or publish that
fails is retried with backoff until it succeeds (JetStream deduplicates a retried event by
its message ID), so no CDR is dropped while the process lives; at shutdown the window is
skipped, the batch in flight and what is queued are written for a bounded time, and what
remains is logged by call SID.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from trunkline.domain.model import Call as CallRecord
from trunkline.domain.model import CallDirection, CallStatus
from trunkline.events.calls import CallEventPublisher
from trunkline.signaling.b2bua import Call, CallHooks
from trunkline.store.repository import Batch, Repository
from trunkline.v1.calls_pb2 import CallEvent

__all__ = ["CallRecorder"]

log = logging.getLogger("trunkline.signaling.records")

_RETRY_FIRST = 0.2
_RETRY_MAX = 5.0
_BATCH = 1024  # changes written and published together at most
# Measured with benchmarks/termination.py (100 ms calls): writing each change as it came cost
# signaling 6.1 ms of CPU per call at 100 calls/s (NATS 0.74 ms); with this window 4.4 ms
# (NATS 0.21 ms), p99 setup delay unchanged (+11 ms). A 0.2 s window saved as much but its
# bursts of ~80 events pushed the p99 to +16..25 ms, hence 50 ms and chunks of 16.
DEFAULT_WINDOW = 0.05  # seconds changes gather before a batch is written and published
_PUBLISH_CHUNK = 16  # events published at once


@dataclass
class _Change:
    kind: CallEvent.Kind.ValueType
    record: CallRecord
    event: CallEvent


class CallRecorder(CallHooks):
    def __init__(
        self,
        repo: Repository,
        publisher: CallEventPublisher | None,
        *,
        window: float = DEFAULT_WINDOW,
    ) -> None:
        self.repo = repo
        self.publisher = publisher
        self.window = window
        self._records: dict[str, CallRecord] = {}
        self._queue: asyncio.Queue[_Change] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._in_flight: list[_Change] = []
        self.written = 0  # changes written (several of one call may be one write)
        self.writes = 0  # records written
        self.published = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._drain())

    async def close(self, timeout: float = 10.0) -> None:
        """Write and publish what is queued or in flight (for up to `timeout` s), then stop;
        log each change that could not be recorded by then."""
        self._closing.set()
        deadline = time.monotonic() + timeout
        while (not self._queue.empty() or self._in_flight) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        lost = list(self._in_flight)
        while not self._queue.empty():
            lost.append(self._queue.get_nowait())
        for change in lost:
            log.error(
                "call event not recorded at shutdown",
                extra={"call_sid": change.record.sid, "kind": CallEvent.Kind.Name(change.kind)},
            )

    # --- hooks ----------------------------------------------------------------------------

    def started(self, call: Call) -> None:
        now = _now()
        for sid, account_sid, trunk_sid, direction, parent in _views(call):
            record = CallRecord(
                sid=sid,
                account_sid=account_sid,
                direction=CallDirection(direction),
                from_=call.from_number,
                to=call.to_number,
                status=CallStatus.QUEUED,
                trunk_sid=trunk_sid or None,
                parent_call_sid=parent,
                start_time=now,
                edge=call.edge or None,
                sip_call_id=call.a_call_id,
                date_created=now,
                date_updated=now,
            )
            self._change(CallEvent.STARTED, call, record)

    def ringing(self, call: Call) -> None:
        for record in self._current(call):
            self._change(CallEvent.RINGING, call, _updated(record, status=CallStatus.RINGING))

    def answered(self, call: Call) -> None:
        answered = _at(call.answered_at)
        for record in self._current(call):
            change = _updated(record, status=CallStatus.IN_PROGRESS, answer_time=answered)
            self._change(CallEvent.ANSWERED, call, change)

    def ended(self, call: Call) -> None:
        for record in self._current(call, forget=True):
            final = _updated(
                record,
                status=_status(call.status),
                end_time=_at(call.ended_at),
                duration=call.duration,
                sip_response_code=call.final_status or None,
                error_code=call.error_code or None,
            )
            self._change(CallEvent.ENDED, call, final, keep=False)

    def _current(self, call: Call, *, forget: bool = False) -> list[CallRecord]:
        found = []
        for sid, *_ in _views(call):
            record = self._records.pop(sid, None) if forget else self._records.get(sid)
            if record is not None:
                found.append(record)
        return found

    # --- internals ------------------------------------------------------------------------

    def _change(
        self,
        kind: CallEvent.Kind.ValueType,
        call: Call,
        record: CallRecord,
        *,
        keep: bool = True,
    ) -> None:
        if keep:
            self._records[record.sid] = record
        self._queue.put_nowait(_Change(kind, record, _event(kind, call, record)))

    async def _drain(self) -> None:
        # Changes queued within the window (and while the last batch was written) go out
        # together: one store transaction with each call's latest record, then their
        # events, published back to back (in order on one connection) and acknowledged
        # together.
        while True:
            first = await self._queue.get()
            self._in_flight = [first]
            # A backlog (more than a chunk already waiting) goes at once: the window is
            # for gathering, and what waits has gathered already.
            backlog = self._queue.qsize() >= _PUBLISH_CHUNK
            if self.window > 0 and not self._closing.is_set() and not backlog:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self.window)
            batch = self._in_flight
            while not self._queue.empty() and len(batch) < _BATCH:
                batch.append(self._queue.get_nowait())
            await self._retry(self._write, batch, "write")
            self.written += len(batch)
            if self.publisher is not None:
                await self._retry(self._publish, batch, "publish")
                self.published += len(batch)
            self._in_flight = []

    async def _write(self, batch: list[_Change]) -> None:
        latest = {change.record.sid: change.record for change in batch}
        writes = Batch()
        for record in latest.values():
            writes.put(record)
        await self.repo.apply(writes)
        self.writes += len(latest)

    async def _publish(self, batch: list[_Change]) -> None:
        publisher = self.publisher
        assert publisher is not None
        # A retried batch may publish an event twice: JetStream drops the duplicate by its
        # message ID (trunkline.events.calls). publish_many sends a few at a time with a loop
        # turn between, so SIP messages that arrive meanwhile are handled between them, and
        # awaits the acks together: awaiting acks chunk by chunk made publishing
        # latency-bound, and at 375 calls/s the events fell seconds behind the calls
        # (benchmarks/termination.py, events_lag_s).
        await publisher.publish_many([change.event for change in batch], chunk=_PUBLISH_CHUNK)

    async def _retry(
        self, attempt: Callable[[list[_Change]], Awaitable[None]], batch: list[_Change], what: str
    ) -> None:
        delay = _RETRY_FIRST
        while True:
            try:
                await attempt(batch)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning(
                    f"call events {what} failed; retrying",
                    extra={
                        "call_sids": sorted({c.record.sid for c in batch}),
                        "error": str(error),
                        "retry_in": delay,
                    },
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)


def _views(call: Call) -> list[tuple[str, str, str, str, str | None]]:
    """The CDRs a B2BUA call makes: its own, and for an on-net call the origination call at
    the called number's trunk (its parent is the terminating call)."""
    views: list[tuple[str, str, str, str, str | None]] = [
        (call.sid, call.account_sid, call.trunk_sid, call.direction, None)
    ]
    linked = call.linked
    if linked is not None:
        views.append(
            (linked.sid, linked.account_sid, linked.trunk_sid, "trunking-originating", call.sid)
        )
    return views


def _status(text: str) -> CallStatus:
    try:
        return CallStatus(text)
    except ValueError:
        return CallStatus.FAILED


def _now() -> datetime:
    return datetime.now(UTC)


def _at(stamp: float | None) -> datetime | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, UTC)


def _updated(record: CallRecord, **changes: object) -> CallRecord:
    return dataclasses.replace(record, date_updated=_now(), **changes)  # type: ignore[arg-type]


def _timestamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _event(kind: CallEvent.Kind.ValueType, call: Call, record: CallRecord) -> CallEvent:
    event = CallEvent(
        kind=kind,
        call_sid=record.sid,
        account_sid=record.account_sid,
        trunk_sid=record.trunk_sid or "",
        direction=str(record.direction),
        to=record.to,
        edge=record.edge or "",
        sip_call_id=record.sip_call_id or "",
        status=str(record.status),
        time=_timestamp(record.date_updated),
    )
    setattr(event, "from", record.from_)
    if kind == CallEvent.ENDED:
        event.sip_status = call.final_status
        event.ended_by = call.ended_by
        event.reason = call.end_reason
        event.error_code = call.error_code
        event.duration_seconds = call.duration
    answer = _timestamp(record.answer_time)
    if answer is not None:
        event.answer_time.CopyFrom(answer)
    return event
