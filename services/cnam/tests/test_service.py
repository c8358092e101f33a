"""The CNAM service as a process (`python -m trunkline.cnam`): its gRPC API against a SQLite
file, a real HTTP provider on loopback (one that knows a name, one that knows none, one too
slow), its usage events in a real nats-server, its health server and its JSON logs."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote

import grpc
import nats
import pytest

from trunkline.cnam.testing import CnamProcess, cnam_service, stored_lookups, write_names
from trunkline.events.testing import NatsServer
from trunkline.store import open_store
from trunkline.v1 import cnam_pb2_grpc
from trunkline.v1.cnam_pb2 import LookupReply, LookupRequest

KEY = "s3cr3t-provider-key"
TABLE = "+14155550100"
KNOWN = "+12125550123"
UNKNOWN = "+16465550111"
SLOW = "+13125550199"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProviderHandler(BaseHTTPRequestHandler):
    asked: ClassVar[Counter[str]] = Counter()

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        number = unquote(path.rsplit("/", 1)[-1])
        ProviderHandler.asked[number] += 1
        if query != f"key={KEY}":
            self._answer(401, "text/plain", b"no key")
        elif number == KNOWN:
            self._answer(200, "application/json", b'{"caller_name": "SMITH JOHN"}')
        elif number == SLOW:
            time.sleep(2)
            self._answer(200, "text/plain", b"TOO LATE")
        else:
            self._answer(404, "application/json", b'{"message": "no such number"}')

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # The service stops waiting for the slow number: its answer finds the socket closed.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cnam")


@pytest.fixture(scope="module")
def provider_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ProviderHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cnam/{{number}}?key={KEY}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def health_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def cnam(
    workdir: Path, nats_server: NatsServer, provider_url: str, health_port: int
) -> Iterator[CnamProcess]:
    env = {
        "TRUNKLINE_NATS_URL": nats_server.url,
        "TRUNKLINE_CNAM_PROVIDER_URL": provider_url,
        "TRUNKLINE_CNAM_PROVIDER_TIMEOUT": "0.3",
        "TRUNKLINE_CNAM_HEALTH_PORT": str(health_port),
    }
    with cnam_service(workdir, f"sqlite:///{workdir / 'trunkline.db'}", env=env) as process:
        yield process


@pytest.fixture
async def stub(cnam: CnamProcess) -> AsyncIterator[cnam_pb2_grpc.CnamAsyncStub]:
    async with grpc.aio.insecure_channel(cnam.grpc_address) as channel:
        yield cnam_pb2_grpc.CnamStub(channel)


def sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


async def test_names_over_grpc_each_lookup_billed_once(
    stub: cnam_pb2_grpc.CnamAsyncStub, workdir: Path, nats_server: NatsServer
) -> None:
    store = open_store(f"sqlite:///{workdir / 'trunkline.db'}")
    try:
        await write_names(store, {TABLE: "ACME CORP"})
    finally:
        await store.close()
    account, trunk = sid("AC"), sid("TK")
    asked: list[tuple[str, str, LookupReply]] = []

    async def lookup(number: str) -> LookupReply:
        call_sid = sid("CA")
        reply = await stub.Lookup(
            LookupRequest(account_sid=account, trunk_sid=trunk, call_sid=call_sid, number=number)
        )
        asked.append((call_sid, number, reply))
        return reply

    def answer(found: bool, name: str, source: str) -> LookupReply:
        return LookupReply(found=found, caller_name=name, source=source)

    assert await lookup(TABLE) == answer(True, "ACME CORP", "table")
    assert await lookup(KNOWN) == answer(True, "SMITH JOHN", "provider")
    assert await lookup(KNOWN) == answer(True, "SMITH JOHN", "cache")
    assert await lookup(UNKNOWN) == answer(False, "", "provider")
    assert await lookup(UNKNOWN) == answer(False, "", "cache")
    started = time.monotonic()
    assert await lookup(SLOW) == answer(False, "", "provider")
    assert time.monotonic() - started < 1.5  # the provider's 2 s were not waited for
    assert ProviderHandler.asked[KNOWN] == ProviderHandler.asked[UNKNOWN] == 1
    assert ProviderHandler.asked[TABLE] == 0

    for number, code in (
        ("+4930555777", grpc.StatusCode.FAILED_PRECONDITION),
        ("4155550100", grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Lookup(
                LookupRequest(
                    account_sid=account, trunk_sid=trunk, call_sid=sid("CA"), number=number
                )
            )
        assert refused.value.code() == code

    nc = await nats.connect(nats_server.url, name="trunkline-test-billing")
    try:
        expected = [
            (call_sid, number, reply.found, reply.source) for call_sid, number, reply in asked
        ]
        deadline = time.monotonic() + 10
        while True:
            events = await stored_lookups(nc.jetstream(), account)
            got = [(e.call_sid, e.number, e.found, e.source) for e in events]
            if got == expected or time.monotonic() > deadline:
                break
        assert got == expected
        assert {(e.account_sid, e.trunk_sid) for e in events} == {(account, trunk)}
    finally:
        await nc.drain()


async def test_json_logs_name_the_failing_call_but_never_the_provider_key(
    stub: cnam_pb2_grpc.CnamAsyncStub, cnam: CnamProcess
) -> None:
    call_sid = sid("CA")
    reply = await stub.Lookup(
        LookupRequest(account_sid=sid("AC"), trunk_sid=sid("TK"), call_sid=call_sid, number=SLOW)
    )
    assert (reply.found, reply.source) == (False, "provider")
    lines = [json.loads(line) for line in cnam.log.read_text().splitlines() if line.strip()]
    [started] = [line for line in lines if line["message"] == "cnam service listening"]
    assert started["service"] == "cnam"
    assert (started["provider"], started["usage_events"]) == ("127.0.0.1", True)
    [failure] = [line for line in lines if line.get("call_sid") == call_sid]
    assert failure["level"] == "WARNING" and "provider failed" in failure["message"]
    assert "no answer within 0.3 s" in failure["error"]
    assert KEY not in cnam.log.read_text()


def test_health_and_metrics(cnam: CnamProcess, health_port: int) -> None:
    base = f"http://127.0.0.1:{health_port}"
    with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:  # noqa: S310
        assert json.load(response) == {"status": "ok"}
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:  # noqa: S310
        metrics = response.read()
    assert b"trunkline_cnam_lookups_total" in metrics
    assert b"trunkline_cnam_usage_events_published_total" in metrics
