"""Several relay processes behind one control address (TRUNKLINE_MEDIA_WORKERS > 1).

One Python process relays on one core. To use more, the service starts N worker processes,
each a complete media service (its own relay, its own share of the port range, its own
recording stream) on a private gRPC socket, and this front process answers the public
address: every request naming a call goes to the worker that owns the call (a stable hash
of the Call-ID), and the event streams of all workers are merged into each subscriber's.
The front never touches a packet.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from trunkline.telemetry.grpc_aio import client_interceptors
from trunkline.v1 import media_pb2, media_pb2_grpc

__all__ = ["Front", "Worker", "split_ports", "worker_for"]

log = logging.getLogger("trunkline.media.front")

Context = grpc.aio.ServicerContext[Any, Any]
Reply = TypeVar("Reply")


def worker_for(call_id: str, workers: int) -> int:
    """The worker that owns a call: stable across processes and restarts (crc32, not hash())."""
    return zlib.crc32(call_id.encode("utf-8", "surrogatepass")) % workers


def split_ports(port_min: int, port_max: int, workers: int) -> list[tuple[int, int]]:
    """Disjoint even-aligned sub-ranges, one per worker, covering the range."""
    first = port_min + port_min % 2
    pairs = (port_max - first + 1) // 2
    if pairs < workers:
        raise ValueError(f"port range {port_min}-{port_max} too small for {workers} workers")
    share, extra = divmod(pairs, workers)
    ranges = []
    start = first
    for index in range(workers):
        count = share + (1 if index < extra else 0)
        ranges.append((start, start + 2 * count - 1))
        start += 2 * count
    return ranges


@dataclass
class Worker:
    index: int
    address: str  # unix:... gRPC address
    process: subprocess.Popen[bytes]


def start_workers(count: int, port_min: int, port_max: int, socket_dir: Path) -> list[Worker]:
    workers = []
    for index, (low, high) in enumerate(split_ports(port_min, port_max, count)):
        address = f"unix:{socket_dir / f'media-worker-{index}.sock'}"
        env = {
            **os.environ,
            "TRUNKLINE_MEDIA_WORKERS": "1",
            "TRUNKLINE_MEDIA_GRPC_ADDRESS": address,
            "TRUNKLINE_MEDIA_PORT_MIN": str(low),
            "TRUNKLINE_MEDIA_PORT_MAX": str(high),
            "TRUNKLINE_MEDIA_HEALTH_PORT": "0",
            "TRUNKLINE_MEDIA_WORKER_INDEX": str(index),
        }
        process = subprocess.Popen([sys.executable, "-m", "trunkline.media"], env=env)
        workers.append(Worker(index, address, process))
    return workers


def stop_workers(workers: Sequence[Worker], timeout: float = 10.0) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.process.wait(timeout)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


class Front(media_pb2_grpc.MediaServicer):
    """The public Media API, routed to the workers."""

    def __init__(self, channels: Sequence[grpc.aio.Channel]) -> None:
        self.stubs: list[media_pb2_grpc.MediaAsyncStub] = [
            media_pb2_grpc.MediaStub(channel) for channel in channels
        ]

    def _stub(self, call_id: str) -> media_pb2_grpc.MediaAsyncStub:
        return self.stubs[worker_for(call_id, len(self.stubs))]

    async def _forward(self, call: Callable[[], Awaitable[Reply]], context: Context) -> Reply:
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            # The worker's verdict (status and reason) is the answer, unchanged.
            await context.abort(error.code(), error.details() or "")
            raise AssertionError("unreachable") from error

    async def Offer(
        self, request: media_pb2.OfferRequest, context: Context
    ) -> media_pb2.OfferReply:
        return await self._forward(lambda: self._stub(request.call_id).Offer(request), context)

    async def Answer(
        self, request: media_pb2.AnswerRequest, context: Context
    ) -> media_pb2.AnswerReply:
        return await self._forward(lambda: self._stub(request.call_id).Answer(request), context)

    async def Delete(
        self, request: media_pb2.DeleteRequest, context: Context
    ) -> media_pb2.DeleteReply:
        return await self._forward(lambda: self._stub(request.call_id).Delete(request), context)

    async def DeleteMany(
        self, request: media_pb2.DeleteManyRequest, context: Context
    ) -> media_pb2.DeleteManyReply:
        # One request per worker that owns some of the calls, side by side; the reply keeps
        # the request's order.
        shares: dict[int, list[str]] = {}
        for call_id in request.call_ids:
            shares.setdefault(worker_for(call_id, len(self.stubs)), []).append(call_id)
        replies = await asyncio.gather(
            *(self._delete_many(index, ids, context) for index, ids in shares.items())
        )
        deleted = {call.call_id: call for reply in replies for call in reply.deleted}
        missing = {call_id for reply in replies for call_id in reply.not_found}
        merged = media_pb2.DeleteManyReply()
        for call_id in request.call_ids:
            if call_id in deleted:
                merged.deleted.append(deleted.pop(call_id))
            elif call_id in missing:
                merged.not_found.append(call_id)
        return merged

    async def _delete_many(
        self, index: int, call_ids: list[str], context: Context
    ) -> media_pb2.DeleteManyReply:
        request = media_pb2.DeleteManyRequest(call_ids=call_ids)
        return await self._forward(lambda: self.stubs[index].DeleteMany(request), context)

    async def Query(
        self, request: media_pb2.QueryRequest, context: Context
    ) -> media_pb2.QueryReply:
        return await self._forward(lambda: self._stub(request.call_id).Query(request), context)

    async def StartRecording(
        self, request: media_pb2.RecordingRequest, context: Context
    ) -> media_pb2.RecordingReply:
        stub = self._stub(request.call_id)
        return await self._forward(lambda: stub.StartRecording(request), context)

    async def StopRecording(
        self, request: media_pb2.RecordingRequest, context: Context
    ) -> media_pb2.RecordingReply:
        stub = self._stub(request.call_id)
        return await self._forward(lambda: stub.StopRecording(request), context)

    async def Events(
        self, request: media_pb2.EventsRequest, context: Context
    ) -> AsyncIterator[media_pb2.MediaEvent]:
        merged: asyncio.Queue[media_pb2.MediaEvent | BaseException] = asyncio.Queue()
        subscribed = [asyncio.Event() for _ in self.stubs]

        async def pump(stub: media_pb2_grpc.MediaAsyncStub, ready: asyncio.Event) -> None:
            try:
                stream = stub.Events(request)
                await stream.initial_metadata()  # the worker has registered the subscriber
                ready.set()
                async for event in stream:
                    merged.put_nowait(event)
            except BaseException as error:  # a worker's stream ending ends the merged one
                ready.set()
                merged.put_nowait(error)

        tasks = [
            asyncio.create_task(pump(stub, ready))
            for stub, ready in zip(self.stubs, subscribed, strict=True)
        ]
        try:
            # Subscribed on every worker: now the subscriber may count on every event.
            await asyncio.gather(*(ready.wait() for ready in subscribed))
            await context.send_initial_metadata(())
            while True:
                item = await merged.get()
                if isinstance(item, BaseException):
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "media worker stream ended")
                yield item
        finally:
            for task in tasks:
                task.cancel()


async def open_channels(workers: Sequence[Worker], timeout: float) -> list[grpc.aio.Channel]:
    channels = []
    for worker in workers:
        channel = grpc.aio.insecure_channel(worker.address, interceptors=client_interceptors())
        await asyncio.wait_for(channel.channel_ready(), timeout)
        channels.append(channel)
    return channels
