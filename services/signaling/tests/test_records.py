"""CallRecorder: the CDR writes and CALLS events of the B2BUA's calls, against the real
SQLite store (the platform's embedded default) and a publisher that keeps what it gets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from trunkline.domain.model import Call as CallRecord
from trunkline.domain.model import CallStatus
from trunkline.signaling.records import CallRecorder
from trunkline.store.repository import Batch
from trunkline.store.sqlite import SqliteRepository
from trunkline.v1.calls_pb2 import CallEvent


class CountingStore(SqliteRepository):
    """The SQLite store, counting the records of each write; the first `failures` writes
    raise, as a store that is down would."""

    def __init__(self, path: Path, failures: int = 0) -> None:
        super().__init__(path)
        self.writes: list[list[str]] = []
        self.failures = failures

    async def apply(self, batch: Batch) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("store unavailable")
        await super().apply(batch)
        self.writes.append([record.key for record in batch.puts])


class Publisher:
    """Keeps the events; with a `store`, also whether each event's call was written before
    the event was published."""

    def __init__(self, store: CountingStore | None = None) -> None:
        self.events: list[CallEvent] = []
        self.store = store
        self.written_first: list[bool] = []
        self.batches: list[int] = []  # events per publish_many

    async def publish(self, event: CallEvent) -> None:
        self.events.append(event)
        if self.store is not None:
            written = {key for keys in self.store.writes for key in keys}
            self.written_first.append(event.call_sid in written)

    async def publish_many(self, events: list[CallEvent], *, chunk: int = 16) -> None:
        self.batches.append(len(events))
        for event in events:
            await self.publish(event)


def a_call(sid: str) -> Any:
    """What the recorder reads of a b2bua.Call."""
    return SimpleNamespace(
        sid=sid,
        account_sid="AC" + "1" * 32,
        trunk_sid="TK" + "2" * 32,
        direction="trunking-terminating",
        linked=None,
        from_number="+14155550100",
        to_number="+15108675309",
        edge="ashburn",
        a_call_id=f"{sid}@pbx.example.com",
        answered_at=None,
        ended_at=None,
        status="queued",
        duration=0,
        final_status=0,
        error_code=0,
        ended_by="",
        end_reason="",
    )


def run_through(recorder: CallRecorder, call: Any) -> None:
    recorder.started(call)
    recorder.ringing(call)
    call.answered_at = time.time()
    recorder.answered(call)
    call.ended_at, call.status, call.duration = time.time(), "completed", 0
    call.final_status, call.ended_by, call.end_reason = 200, "caller", "BYE"
    recorder.ended(call)


async def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    repo = CountingStore(tmp_path / "calls.sqlite")
    yield repo
    await repo.close()


SID = "CA" + "3" * 32


async def test_a_calls_changes_within_the_window_are_one_write_and_all_its_events(
    store: CountingStore,
) -> None:
    publisher = Publisher()
    recorder = CallRecorder(store, publisher, window=0.2)  # type: ignore[arg-type]
    recorder.start()
    run_through(recorder, a_call(SID))
    await until(lambda: len(publisher.events) == 4)
    assert store.writes == [[SID]]
    kinds = [CallEvent.Kind.Name(event.kind) for event in publisher.events]
    assert kinds == ["STARTED", "RINGING", "ANSWERED", "ENDED"]
    stored = await store.get(CallRecord, SID)
    assert stored is not None and stored.status == CallStatus.COMPLETED
    assert stored.answer_time is not None
    await recorder.close()


async def test_changes_further_apart_than_the_window_are_written_each(
    store: CountingStore,
) -> None:
    recorder = CallRecorder(store, None, window=0.05)
    recorder.start()
    call = a_call(SID)
    recorder.started(call)
    await until(lambda: len(store.writes) == 1)
    stored = await store.get(CallRecord, SID)
    assert stored is not None and stored.status == CallStatus.QUEUED  # seen while it rings
    call.ended_at, call.status = time.time(), "busy"
    recorder.ended(call)
    await until(lambda: len(store.writes) == 2)
    stored = await store.get(CallRecord, SID)
    assert stored is not None and stored.status == CallStatus.BUSY
    await recorder.close()


async def test_close_records_what_waits_in_the_window_at_once(store: CountingStore) -> None:
    publisher = Publisher()
    recorder = CallRecorder(store, publisher, window=60.0)  # type: ignore[arg-type]
    recorder.start()
    run_through(recorder, a_call(SID))
    await asyncio.sleep(0.05)  # the batch is in flight, waiting out its window
    started = time.monotonic()
    await recorder.close(timeout=5.0)
    assert time.monotonic() - started < 2.0
    assert store.writes == [[SID]] and len(publisher.events) == 4
    stored = await store.get(CallRecord, SID)
    assert stored is not None and stored.status == CallStatus.COMPLETED


async def test_a_failed_write_is_retried_before_its_events_are_published(
    tmp_path: Path,
) -> None:
    store = CountingStore(tmp_path / "calls.sqlite", failures=1)
    publisher = Publisher(store)
    recorder = CallRecorder(store, publisher, window=0.0)  # type: ignore[arg-type]
    recorder.start()
    recorder.started(a_call(SID))
    await until(lambda: len(publisher.events) == 1)
    assert store.failures == 0 and store.writes == [[SID]]  # failed once, then written
    assert publisher.written_first == [True]  # nothing published unwritten
    await recorder.close()
    await store.close()


async def test_a_batchs_events_go_to_the_publisher_at_once_in_order(
    store: CountingStore,
) -> None:
    # Ten calls' 40 events in one window: one publish_many (which awaits their acks
    # together), not an ack round trip per event or per chunk.
    publisher = Publisher()
    recorder = CallRecorder(store, publisher, window=0.1)  # type: ignore[arg-type]
    recorder.start()
    sids = [f"CA{index:032d}" for index in range(10)]
    for sid in sids:
        run_through(recorder, a_call(sid))
    await until(lambda: recorder.published == 40)
    assert publisher.batches == [40]
    # In order: each call's events as they happened, the calls as they came.
    assert [(e.call_sid, CallEvent.Kind.Name(e.kind)) for e in publisher.events] == [
        (sid, kind) for sid in sids for kind in ("STARTED", "RINGING", "ANSWERED", "ENDED")
    ]
    await recorder.close()
