"""gRPC clients of the services a call needs: media (the relay) and auth."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from trunkline.signaling.b2bua import MediaRefused, Reject
from trunkline.telemetry.grpc_aio import stream_client_interceptors, traced_unary
from trunkline.v1 import auth_pb2, auth_pb2_grpc, cnam_pb2, cnam_pb2_grpc, media_pb2, media_pb2_grpc

__all__ = ["AuthClient", "CnamClient", "MediaClient"]

log = logging.getLogger("trunkline.signaling.clients")

# Media refusals as SIP answers: an SDP without PCMU/PCMA is 488; a secure trunk's call
# without SRTP is 488 with 32208; no relay ports is 503.
_MEDIA_REJECTS = {
    grpc.StatusCode.INVALID_ARGUMENT: (488, 32102),
    grpc.StatusCode.FAILED_PRECONDITION: (488, 32208),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (503, 0),
}
_TIMEOUT = 5.0
_MEDIA = "/trunkline.v1.Media/"
_AUTH = "/trunkline.v1.Auth/"
# Deletes of calls that end within this many seconds of each other go to the media service
# as one DeleteMany: a gRPC round trip cost signaling and media more CPU than the delete
# itself (benchmarks/termination.py). A call's ended event waits for its delete, so this
# delays it a little; setup is not affected.
DELETE_WINDOW = 0.02
_DELETE_BATCH = 256


class MediaClient:
    """The Media protocol of b2bua.py over gRPC."""

    def __init__(self, address: str, *, delete_window: float = DELETE_WINDOW) -> None:
        # Unary calls go through traced_unary (cheaper than the unary interceptor).
        self.channel = grpc.aio.insecure_channel(address, interceptors=stream_client_interceptors())
        self.stub: media_pb2_grpc.MediaAsyncStub = media_pb2_grpc.MediaStub(self.channel)
        self.delete_window = delete_window
        self._deletes: list[tuple[str, asyncio.Future[None]]] = []
        self._deleter: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._deleter is not None:
            await asyncio.gather(self._deleter, return_exceptions=True)  # sends what waits
        await self.channel.close()

    async def offer(self, call_id: str, from_tag: str, sdp: bytes, **policy: Any) -> bytes:
        request = media_pb2.OfferRequest(
            call_id=call_id,
            from_tag=from_tag,
            sdp=sdp,
            offerer=policy.get("offerer", media_pb2.LegPolicy()),
            answerer=policy.get("answerer", media_pb2.LegPolicy()),
            media_timeout_seconds=policy.get("media_timeout", 0),
            record=policy.get("record", False),
        )
        reply = await self._call(self.stub.Offer, "Offer", request)
        return bytes(reply.sdp)

    async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: bytes) -> bytes:
        request = media_pb2.AnswerRequest(
            call_id=call_id, from_tag=from_tag, to_tag=to_tag, sdp=sdp
        )
        reply = await self._call(self.stub.Answer, "Answer", request)
        return bytes(reply.sdp)

    async def delete(self, call_id: str) -> None:
        """Delete the call's media session, together with the deletes of the next
        `delete_window` seconds; MediaRefused when it failed or the session was gone."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._deletes.append((call_id, done))
        if self._deleter is None or self._deleter.done():
            self._deleter = asyncio.create_task(self._send_deletes())
        await done

    async def _send_deletes(self) -> None:
        while self._deletes:
            await asyncio.sleep(self.delete_window)
            batch = self._deletes[:_DELETE_BATCH]
            del self._deletes[:_DELETE_BATCH]
            request = media_pb2.DeleteManyRequest(call_ids=[call_id for call_id, _ in batch])
            try:
                reply = await self._call(self.stub.DeleteMany, "DeleteMany", request)
            except MediaRefused as refused:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(refused)
                continue
            gone = set(reply.not_found)
            for call_id, done in batch:
                if done.done():  # its caller was cancelled
                    continue
                if call_id in gone:
                    reject = Reject(503, "Service Unavailable: no such media session", 0)
                    done.set_exception(MediaRefused(reject))
                else:
                    done.set_result(None)

    async def start_recording(self, call_id: str) -> None:
        request = media_pb2.RecordingRequest(call_id=call_id)
        await self._call(self.stub.StartRecording, "StartRecording", request)

    async def events(self) -> AsyncIterator[media_pb2.MediaEvent]:
        """Media events, resubscribing when the stream breaks (the service restarted)."""
        while True:
            try:
                async for event in self.stub.Events(media_pb2.EventsRequest(), wait_for_ready=True):
                    yield event
            except grpc.aio.AioRpcError as error:
                log.warning(
                    "media event stream ended; resubscribing", extra={"code": error.code().name}
                )
                await asyncio.sleep(1.0)

    async def _call(self, method: Callable[..., Any], name: str, request: Any) -> Any:
        try:
            return await traced_unary(method, _MEDIA + name, request, timeout=_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            status, code = _MEDIA_REJECTS.get(error.code(), (503, 0))
            details = error.details() or "media service unavailable"
            reason = (
                "Not Acceptable Here: " + details
                if status == 488
                else "Service Unavailable: " + details
            )
            raise MediaRefused(Reject(status, reason, code)) from error


class AuthClient:
    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address, interceptors=stream_client_interceptors())
        self.stub: auth_pb2_grpc.AuthAsyncStub = auth_pb2_grpc.AuthStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def termination(self, request: auth_pb2.TerminationRequest) -> auth_pb2.Verdict:
        verdict: auth_pb2.Verdict = await traced_unary(
            self.stub.AuthorizeTermination,
            _AUTH + "AuthorizeTermination",
            request,
            timeout=_TIMEOUT,
        )
        return verdict

    async def caller(self, request: auth_pb2.CallerRequest) -> auth_pb2.Verdict:
        verdict: auth_pb2.Verdict = await traced_unary(
            self.stub.AuthorizeCaller, _AUTH + "AuthorizeCaller", request, timeout=_TIMEOUT
        )
        return verdict


class CnamClient:
    """Caller names for origination calls; a lookup that fails or is slow leaves the call
    without a name rather than delaying it (the CNAM service bills each call once)."""

    def __init__(self, address: str, *, timeout: float = 1.5) -> None:
        self.channel = grpc.aio.insecure_channel(address, interceptors=stream_client_interceptors())
        self.stub: cnam_pb2_grpc.CnamAsyncStub = cnam_pb2_grpc.CnamStub(self.channel)
        self.timeout = timeout

    async def close(self) -> None:
        await self.channel.close()

    async def lookup(
        self, account_sid: str, trunk_sid: str, call_sid: str, number: str
    ) -> str | None:
        request = cnam_pb2.LookupRequest(
            account_sid=account_sid, trunk_sid=trunk_sid, call_sid=call_sid, number=number
        )
        try:
            reply = await traced_unary(
                self.stub.Lookup, "/trunkline.v1.Cnam/Lookup", request, timeout=self.timeout
            )
        except grpc.aio.AioRpcError as error:
            log.warning(
                "CNAM lookup failed; the call goes on without a name",
                extra={"call_sid": call_sid, "code": error.code().name},
            )
            return None
        return reply.caller_name if reply.found and reply.caller_name else None
