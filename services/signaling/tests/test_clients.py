"""The media client gathers deletes: calls that end close together cost one DeleteMany."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from trunkline.signaling.b2bua import MediaRefused
from trunkline.signaling.clients import MediaClient
from trunkline.v1 import media_pb2, media_pb2_grpc


class FakeMedia(media_pb2_grpc.MediaServicer):
    """Knows the calls in `live`; records each DeleteMany it gets."""

    def __init__(self) -> None:
        self.live = {"CA1", "CA2", "CA3", "CA4"}
        self.batches: list[list[str]] = []
        self.fail = False

    async def DeleteMany(
        self, request: media_pb2.DeleteManyRequest, context: Any
    ) -> media_pb2.DeleteManyReply:
        self.batches.append(list(request.call_ids))
        if self.fail:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "relay restarting")
        reply = media_pb2.DeleteManyReply()
        for call_id in request.call_ids:
            if call_id in self.live:
                self.live.discard(call_id)
                reply.deleted.add(call_id=call_id)
            else:
                reply.not_found.append(call_id)
        return reply


@pytest.fixture
async def media() -> AsyncIterator[tuple[FakeMedia, MediaClient]]:
    fake = FakeMedia()
    server = grpc.aio.server()
    media_pb2_grpc.add_MediaServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = MediaClient(f"127.0.0.1:{port}", delete_window=0.05)
    yield fake, client
    await client.close()
    await server.stop(None)


async def test_deletes_within_the_window_are_one_request(
    media: tuple[FakeMedia, MediaClient],
) -> None:
    fake, client = media
    results = await asyncio.gather(
        client.delete("CA1"), client.delete("CA2"), client.delete("CA9"), return_exceptions=True
    )
    assert fake.batches == [["CA1", "CA2", "CA9"]]
    assert results[:2] == [None, None]
    assert isinstance(results[2], MediaRefused)
    assert results[2].reject.status == 503
    assert "no such media session" in results[2].reject.reason
    # A later delete starts a batch of its own.
    await client.delete("CA3")
    assert fake.batches[1:] == [["CA3"]]


async def test_a_failed_batch_fails_each_of_its_deletes(
    media: tuple[FakeMedia, MediaClient],
) -> None:
    fake, client = media
    fake.fail = True
    results = await asyncio.gather(
        client.delete("CA1"), client.delete("CA2"), return_exceptions=True
    )
    assert all(isinstance(result, MediaRefused) for result in results)
    assert "relay restarting" in results[0].reject.reason  # type: ignore[union-attr]


async def test_close_sends_the_deletes_still_waiting(
    media: tuple[FakeMedia, MediaClient],
) -> None:
    fake, client = media
    waiting = asyncio.ensure_future(client.delete("CA4"))
    await asyncio.sleep(0)
    await client.close()
    assert fake.batches == [["CA4"]]
    assert await waiting is None
