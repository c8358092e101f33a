"""The media service's gRPC API (proto/trunkline/v1/media.proto) over the relay."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from trunkline.media.call import LegPolicy, MediaError, Reason, Transport
from trunkline.media.relay import Event, EventKind, LegReport, RecordedPacket, Relay
from trunkline.media.rtp import RtpError, RtpPacket
from trunkline.v1 import media_pb2, media_pb2_grpc, recording_pb2, recording_pb2_grpc

__all__ = ["MediaService", "RecordingFork"]

log = logging.getLogger("trunkline.media.server")

Context = grpc.aio.ServicerContext[Any, Any]

_STATUS = {
    Reason.BAD_SDP: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.SRTP: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Reason.NO_PORTS: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
_KINDS = {
    EventKind.FIRST_PACKET: media_pb2.MediaEvent.FIRST_PACKET,
    EventKind.MEDIA_TIMEOUT: media_pb2.MediaEvent.MEDIA_TIMEOUT,
    EventKind.SRTP_AUTH_FAILURE: media_pb2.MediaEvent.SRTP_AUTH_FAILURE,
    EventKind.LATCHED: media_pb2.MediaEvent.LATCHED,
}
_SUITES = frozenset({"AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"})


def _policy(message: media_pb2.LegPolicy) -> LegPolicy:
    suites = tuple(message.crypto_suites)
    unknown = [s for s in suites if s not in _SUITES]
    if unknown:
        raise MediaError(Reason.SRTP, f"Unsupported SRTP crypto suite {unknown[0]}")
    return LegPolicy(
        symmetric_rtp=message.symmetric_rtp,
        transport=Transport(message.transport),
        crypto_suites=suites,
    )


def _statistics(report: LegReport) -> media_pb2.LegStatistics:
    stats = report.stats
    return media_pb2.LegStatistics(
        tag=report.tag,
        role=report.role,
        packets=stats.packets,
        bytes=stats.bytes,
        lost=stats.lost,
        jitter_ms=stats.jitter * 1000.0,
        late=stats.late,
        srtp_auth_failures=stats.srtp_auth_failures,
        rtcp_packets=report.rtcp_packets,
        remote_address=report.remote_address,
        local_port=report.local_port,
        dropped=report.dropped,
    )


def _event(event: Event) -> media_pb2.MediaEvent:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(event.time * 1e9))
    return media_pb2.MediaEvent(
        kind=_KINDS[event.kind],
        call_id=event.call_id,
        tag=event.tag,
        time=stamp,
        detail=event.detail,
    )


class MediaService(media_pb2_grpc.MediaServicer):
    def __init__(self, relay: Relay, *, recording_enabled: bool) -> None:
        self.relay = relay
        self.recording_enabled = recording_enabled

    async def _fail(self, context: Context, error: MediaError) -> None:
        await context.abort(_STATUS[error.reason], error.message)

    async def Offer(
        self, request: media_pb2.OfferRequest, context: Context
    ) -> media_pb2.OfferReply:
        try:
            if request.record and not self.recording_enabled:
                raise MediaError(Reason.SRTP, "Recording is not available: no recording service")
            policies = (_policy(request.offerer), _policy(request.answerer))
            sdp = await self.relay.offer(
                request.call_id,
                request.from_tag,
                request.sdp,
                policies,
                media_timeout=float(request.media_timeout_seconds) or None,
                record=request.record,
            )
        except MediaError as error:
            await self._fail(context, error)
            raise AssertionError("unreachable") from error
        return media_pb2.OfferReply(sdp=sdp)

    async def Answer(
        self, request: media_pb2.AnswerRequest, context: Context
    ) -> media_pb2.AnswerReply:
        try:
            sdp = await self.relay.answer(
                request.call_id, request.from_tag, request.to_tag, request.sdp
            )
        except MediaError as error:
            await self._fail(context, error)
            raise AssertionError("unreachable") from error
        return media_pb2.AnswerReply(sdp=sdp)

    async def Delete(
        self, request: media_pb2.DeleteRequest, context: Context
    ) -> media_pb2.DeleteReply:
        try:
            reports = await self.relay.delete(request.call_id)
        except MediaError as error:
            await self._fail(context, error)
            raise AssertionError("unreachable") from error
        return media_pb2.DeleteReply(legs=[_statistics(r) for r in reports])

    async def DeleteMany(
        self, request: media_pb2.DeleteManyRequest, context: Context
    ) -> media_pb2.DeleteManyReply:
        reply = media_pb2.DeleteManyReply()
        for call_id in request.call_ids:
            try:
                reports = await self.relay.delete(call_id)
            except MediaError as error:
                if error.reason is not Reason.NOT_FOUND:
                    raise
                reply.not_found.append(call_id)
                continue
            reply.deleted.add(call_id=call_id, legs=[_statistics(r) for r in reports])
        return reply

    async def Query(
        self, request: media_pb2.QueryRequest, context: Context
    ) -> media_pb2.QueryReply:
        try:
            reports = self.relay.query(request.call_id)
        except MediaError as error:
            await self._fail(context, error)
            raise AssertionError("unreachable") from error
        return media_pb2.QueryReply(legs=[_statistics(r) for r in reports])

    async def StartRecording(
        self, request: media_pb2.RecordingRequest, context: Context
    ) -> media_pb2.RecordingReply:
        return await self._record(request, context, on=True)

    async def StopRecording(
        self, request: media_pb2.RecordingRequest, context: Context
    ) -> media_pb2.RecordingReply:
        return await self._record(request, context, on=False)

    async def _record(
        self, request: media_pb2.RecordingRequest, context: Context, *, on: bool
    ) -> media_pb2.RecordingReply:
        try:
            if on and not self.recording_enabled:
                raise MediaError(Reason.SRTP, "Recording is not available: no recording service")
            recording = self.relay.set_recording(request.call_id, on)
        except MediaError as error:
            await self._fail(context, error)
            raise AssertionError("unreachable") from error
        return media_pb2.RecordingReply(recording=recording)

    async def Events(
        self, request: media_pb2.EventsRequest, context: Context
    ) -> AsyncIterator[media_pb2.MediaEvent]:
        queue = self.relay.subscribe()
        try:
            # Initial metadata tells the subscriber it is registered: no event it could miss
            # between its call and the first one it reads.
            await context.send_initial_metadata(())
            while True:
                yield _event(await queue.get())
        finally:
            self.relay.unsubscribe(queue)


class RecordingFork:
    """Streams recorded packets to the recording service (`Recorder.Record`), reconnecting.

    Packets recorded while the recording service is unreachable wait in a bounded queue;
    when it is full the oldest are dropped and counted (a recording gap, logged), so a
    dead recorder can never grow the relay's memory without bound.
    """

    def __init__(self, relay: Relay, target: str, *, limit: int = 100_000) -> None:
        self.relay = relay
        self.target = target
        self.limit = limit
        self.dropped = 0
        self.sent = 0
        self._queue = relay.recordings()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        self.relay.stop_recordings(self._queue)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _messages(self) -> AsyncIterator[recording_pb2.RecordedPacket]:
        while True:
            item = await self._queue.get()
            while self._queue.qsize() > self.limit:
                self._queue.get_nowait()
                self.dropped += 1
            yield _recorded(item)
            self.sent += 1

    async def _run(self) -> None:
        while True:
            try:
                async with grpc.aio.insecure_channel(self.target) as channel:
                    stub = recording_pb2_grpc.RecorderStub(channel)
                    await stub.Record(self._messages(), wait_for_ready=True)
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as error:
                log.warning(
                    "recording stream ended; reconnecting",
                    extra={"target": self.target, "code": error.code().name},
                )
            await asyncio.sleep(1.0)


def _recorded(item: RecordedPacket) -> recording_pb2.RecordedPacket:
    message = recording_pb2.RecordedPacket(
        call_id=item.call_id,
        tag=item.tag,
        role=item.role,
        arrival_ns=item.arrival_ns,
        end=item.end,
    )
    if not item.end:
        try:
            packet = RtpPacket.parse(item.packet)
        except RtpError:
            return message  # the relay forwards what it cannot parse; the recorder skips it
        message.payload_type = packet.payload_type
        message.sequence_number = packet.sequence_number
        message.timestamp = packet.timestamp
        message.ssrc = packet.ssrc
        message.payload = bytes(packet.payload)
    return message
