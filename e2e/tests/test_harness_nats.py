"""NATS from the harness: a JetStream stream published to and consumed with nats-py."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import nats
import pytest

pytestmark = pytest.mark.e2e


async def test_jetstream_publish_and_pull_consume(harness_nats: Mapping[str, Any]) -> None:
    # Unique names: the harness keeps its JetStream store across runs and tests share it.
    suffix = uuid.uuid4().hex[:12]
    stream, subject = f"SMOKE_{suffix}", f"smoke.{suffix}"
    payload = f"hello {suffix}".encode()
    nc = await nats.connect(harness_nats["url"], connect_timeout=5)
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[subject])
        try:
            ack = await js.publish(subject, payload, timeout=5)
            assert ack.stream == stream
            assert ack.seq == 1
            sub = await js.pull_subscribe(subject, durable=f"smoke-{suffix}", stream=stream)
            (msg,) = await sub.fetch(1, timeout=10)
            assert msg.data == payload
            await msg.ack_sync(timeout=5)  # the server confirms the ack, not just receives it
            info = await js.consumer_info(stream, f"smoke-{suffix}")
            assert info.num_ack_pending == 0
            assert info.delivered.stream_seq == 1
        finally:
            await js.delete_stream(stream)
    finally:
        await nc.close()
