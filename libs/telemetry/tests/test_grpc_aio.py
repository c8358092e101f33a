"""The interceptors against a real grpc.aio server on loopback, for every call shape."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from trunkline.telemetry.grpc_aio import (
    client_interceptors,
    server_interceptors,
    stream_client_interceptors,
    traced_unary,
)

SERVICE = "trunkline.test.Echo"


def identity(data: bytes) -> bytes:
    return data


class Echo:
    """Records the span each handler ran under; echoes requests back."""

    def __init__(self) -> None:
        self.seen: dict[str, trace.SpanContext] = {}

    def saw(self, name: str) -> None:
        self.seen[name] = trace.get_current_span().get_span_context()

    async def unary(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        self.saw("Unary")
        if request == b"missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such trunk")
        if request == b"crash":
            raise RuntimeError("handler bug")
        return request

    async def server_stream(
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        self.saw("ServerStream")
        for part in request.split(b","):
            yield part

    async def client_stream(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        self.saw("ClientStream")
        return b",".join([part async for part in requests])

    async def bidi(self, requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        # The read/write style: a coroutine, not an async generator.
        self.saw("Bidi")
        while (request := await context.read()) is not grpc.aio.EOF:
            await context.write(request.upper())

    def handlers(self) -> grpc.GenericRpcHandler:
        options: dict[str, Any] = {
            "request_deserializer": identity,
            "response_serializer": identity,
        }
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Unary": grpc.unary_unary_rpc_method_handler(self.unary, **options),
                "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream, **options),
                "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream, **options),
                "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi, **options),
            },
        )


@pytest.fixture
async def echo_server() -> AsyncIterator[tuple[Echo, str]]:
    service = Echo()
    server = grpc.aio.server(interceptors=server_interceptors())
    server.add_generic_rpc_handlers([service.handlers()])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield service, f"127.0.0.1:{port}"
    await server.stop(grace=None)


@pytest.fixture
async def echo(echo_server: tuple[Echo, str]) -> AsyncIterator[tuple[Echo, grpc.aio.Channel]]:
    service, target = echo_server
    channel = grpc.aio.insecure_channel(target, interceptors=client_interceptors())
    yield service, channel
    await channel.close()


async def finished(
    exporter: InMemorySpanExporter, ready: Callable[[list[ReadableSpan]], bool]
) -> list[ReadableSpan]:
    # Client spans end from a done-callback task, just after the call returns: poll briefly.
    deadline = asyncio.get_running_loop().time() + 5
    while not ready(spans := list(exporter.get_finished_spans())):
        assert asyncio.get_running_loop().time() < deadline, [s.name for s in spans]
        await asyncio.sleep(0.01)
    return spans


def by_kind(spans: list[ReadableSpan], kind: SpanKind) -> ReadableSpan:
    [span] = [s for s in spans if s.kind is kind]
    return span


def has_client_and_server(spans: list[ReadableSpan]) -> bool:
    return {s.kind for s in spans} >= {SpanKind.CLIENT, SpanKind.SERVER}


def assert_one_trace(
    spans: list[ReadableSpan], outer: trace.Span, service: Echo, method: str
) -> tuple[ReadableSpan, ReadableSpan]:
    client, server = by_kind(spans, SpanKind.CLIENT), by_kind(spans, SpanKind.SERVER)
    trace_id = outer.get_span_context().trace_id
    assert client.context is not None and server.context is not None
    assert client.context.trace_id == server.context.trace_id == trace_id
    assert client.parent is not None and client.parent.span_id == outer.get_span_context().span_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert server.name == client.name == f"{SERVICE}/{method}"
    assert server.attributes is not None
    assert server.attributes["rpc.service"] == SERVICE
    assert server.attributes["rpc.method"] == method
    # The handler ran with the server span current, so its logs carry the same trace.
    assert service.seen[method].span_id == server.context.span_id
    return client, server


async def test_unary_call_is_one_trace_from_client_to_handler(
    echo: tuple[Echo, grpc.aio.Channel], spans: InMemorySpanExporter
) -> None:
    service, channel = echo
    call = channel.unary_unary(f"/{SERVICE}/Unary")
    with trace.get_tracer("test").start_as_current_span("request") as outer:
        assert await call(b"hello") == b"hello"
    client, server = assert_one_trace(
        await finished(spans, has_client_and_server), outer, service, "Unary"
    )
    assert client.attributes is not None and client.attributes["rpc.grpc.status_code"] == 0
    assert server.status.status_code is StatusCode.UNSET


async def test_server_streaming_async_generator_is_traced(
    echo: tuple[Echo, grpc.aio.Channel], spans: InMemorySpanExporter
) -> None:
    service, channel = echo
    call = channel.unary_stream(f"/{SERVICE}/ServerStream")
    with trace.get_tracer("test").start_as_current_span("request") as outer:
        assert [part async for part in call(b"a,b,c")] == [b"a", b"b", b"c"]
    assert_one_trace(await finished(spans, has_client_and_server), outer, service, "ServerStream")


async def test_client_streaming_with_the_write_api_is_traced(
    echo: tuple[Echo, grpc.aio.Channel], spans: InMemorySpanExporter
) -> None:
    service, channel = echo
    call_method = channel.stream_unary(f"/{SERVICE}/ClientStream")
    with trace.get_tracer("test").start_as_current_span("request") as outer:
        call = call_method()
        for part in (b"x", b"y"):
            await call.write(part)
        await call.done_writing()
        assert await asyncio.wait_for(call, timeout=5) == b"x,y"
    assert_one_trace(await finished(spans, has_client_and_server), outer, service, "ClientStream")


async def test_bidi_streaming_read_write_handler_is_traced(
    echo: tuple[Echo, grpc.aio.Channel], spans: InMemorySpanExporter
) -> None:
    service, channel = echo
    call_method = channel.stream_stream(f"/{SERVICE}/Bidi")
    with trace.get_tracer("test").start_as_current_span("request") as outer:
        call = call_method()
        await call.write(b"ab")
        assert await call.read() == b"AB"
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
    assert_one_trace(await finished(spans, has_client_and_server), outer, service, "Bidi")


async def test_an_abort_is_an_answer_on_the_server_and_an_error_on_the_client(
    echo: tuple[Echo, grpc.aio.Channel], spans: InMemorySpanExporter
) -> None:
    _, channel = echo
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await channel.unary_unary(f"/{SERVICE}/Unary")(b"missing")
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    found = await finished(spans, has_client_and_server)
    client, server = by_kind(found, SpanKind.CLIENT), by_kind(found, SpanKind.SERVER)
    not_found = grpc.StatusCode.NOT_FOUND.value[0]
    assert server.attributes is not None and server.attributes["rpc.grpc.status_code"] == not_found
    assert server.status.status_code is StatusCode.UNSET
    assert client.attributes is not None and client.attributes["rpc.grpc.status_code"] == not_found
    assert client.status.status_code is StatusCode.ERROR


async def test_a_handler_exception_marks_the_server_span_as_error(
    echo: tuple[Echo, grpc.aio.Channel], spans: InMemorySpanExporter
) -> None:
    _, channel = echo
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await channel.unary_unary(f"/{SERVICE}/Unary")(b"crash")
    assert raised.value.code() is grpc.StatusCode.UNKNOWN
    server = by_kind(await finished(spans, has_client_and_server), SpanKind.SERVER)
    assert server.status.status_code is StatusCode.ERROR
    assert [event.name for event in server.events] == ["exception"]


@pytest.fixture
async def lean(echo_server: tuple[Echo, str]) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to the echo server with only the streaming interceptors."""
    channel = grpc.aio.insecure_channel(echo_server[1], interceptors=stream_client_interceptors())
    yield channel
    await channel.close()


async def test_traced_unary_is_one_trace_from_client_to_handler(
    echo_server: tuple[Echo, str], lean: grpc.aio.Channel, spans: InMemorySpanExporter
) -> None:
    service, _ = echo_server
    path = f"/{SERVICE}/Unary"
    with trace.get_tracer("test").start_as_current_span("request") as outer:
        assert await traced_unary(lean.unary_unary(path), path, b"hello", timeout=5) == b"hello"
    found = await finished(spans, has_client_and_server)
    # One client span (by_kind checks): no interceptor made a second.
    client, _ = assert_one_trace(found, outer, service, "Unary")
    assert client.attributes is not None and client.attributes["rpc.grpc.status_code"] == 0
    # Streaming calls on the lean channel are still traced by its interceptors.
    spans.clear()
    stream = lean.unary_stream(f"/{SERVICE}/ServerStream")
    with trace.get_tracer("test").start_as_current_span("request") as outer:
        assert [part async for part in stream(b"a,b")] == [b"a", b"b"]
    assert_one_trace(await finished(spans, has_client_and_server), outer, service, "ServerStream")


async def test_traced_unary_marks_an_error_status_on_the_client_span(
    lean: grpc.aio.Channel, spans: InMemorySpanExporter
) -> None:
    path = f"/{SERVICE}/Unary"
    with (
        trace.get_tracer("test").start_as_current_span("request"),
        pytest.raises(grpc.aio.AioRpcError) as raised,
    ):
        await traced_unary(lean.unary_unary(path), path, b"missing")
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    client = by_kind(await finished(spans, has_client_and_server), SpanKind.CLIENT)
    not_found = grpc.StatusCode.NOT_FOUND.value[0]
    assert client.attributes is not None and client.attributes["rpc.grpc.status_code"] == not_found
    assert client.status.status_code is StatusCode.ERROR
    assert client.status.description == "no such trunk"


async def test_traced_unary_outside_any_trace_makes_no_client_span(
    lean: grpc.aio.Channel, spans: InMemorySpanExporter
) -> None:
    path = f"/{SERVICE}/Unary"
    assert await traced_unary(lean.unary_unary(path), path, b"hello") == b"hello"
    found = await finished(spans, lambda found: any(s.kind is SpanKind.SERVER for s in found))
    assert [s.kind for s in found] == [SpanKind.SERVER]
    assert found[0].parent is None  # the server's span is the root of its own trace
