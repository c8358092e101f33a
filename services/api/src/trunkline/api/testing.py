"""Helpers to run the API in-process on loopback, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from opentelemetry import trace
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from trunkline.api.app import build_app
from trunkline.api.context import Platform
from trunkline.api.settings import Settings
from trunkline.store.sqlite import SqliteRepository

ADMIN_TOKEN = secrets.token_urlsafe(24)  # per test run; the admin API is guarded by it


@dataclass
class RecordingAnnouncer:
    """Keeps announcements in memory; the real NATS path is covered by the e2e tests."""

    sent: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    # The trace each announcement was made in, by the SID it announced.
    trace_ids: dict[str, int] = field(default_factory=dict)

    async def publish(
        self, account_sid: str, resource: str, sid: str, action: str, parent_sid: str = ""
    ) -> None:
        self.sent.append((account_sid, resource, sid, action, parent_sid))
        self.trace_ids[sid] = trace.get_current_span().get_span_context().trace_id

    async def close(self) -> None:
        return None


@dataclass
class LiveApi:
    url: str
    settings: Settings
    announcer: RecordingAnnouncer
    admin: httpx.Client

    def new_account(self, name: str = "Test account", kind: str = "Full") -> tuple[str, str]:
        resp = self.admin.post("/admin/v1/Accounts", data={"FriendlyName": name, "Type": kind})
        resp.raise_for_status()
        body = resp.json()
        return body["sid"], body["auth_token"]

    def client(self, sid: str, token: str) -> Client:
        client = Client(sid, token)
        client.trunking.base_url = self.url
        client.api.base_url = self.url
        return client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_in_thread(db: Path, **overrides: object) -> Iterator[LiveApi]:
    """The API on a free loopback port, in a thread with its own event loop."""
    port = free_port()
    settings = Settings(
        **{
            "host": "127.0.0.1",
            "port": port,
            "store_url": f"sqlite:///{db}",
            "admin_token": ADMIN_TOKEN,
            "zone": "trunkline.test",
            "realm": "trunkline.test",
            **overrides,
        }  # type: ignore[arg-type]
    )
    announcer = RecordingAnnouncer()
    platform = Platform(settings, SqliteRepository(db), announcer)
    config = uvicorn.Config(
        build_app(platform), host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    ready = threading.Event()
    for _ in range(1000):
        if server.started:
            break
        ready.wait(0.01)
    assert server.started, "API server did not start within 10 s"
    url = f"http://127.0.0.1:{port}"
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    try:
        yield LiveApi(url, settings, announcer, admin)
    finally:
        admin.close()
        server.should_exit = True
        thread.join(timeout=10)


def fails(call: Callable[[], object], status: int, code: int) -> str:
    """Call, expect a Twilio error body with `status` and `code`, and return its message.

    Fetches raise TwilioRestException; list calls raise the SDK's plain TwilioException,
    which carries the raw response instead.
    """
    with pytest.raises(TwilioException) as err:
        call()
    exc = err.value
    if isinstance(exc, TwilioRestException):
        got, message = (exc.status, exc.code), exc.msg
    else:
        response = exc.args[1]
        body = json.loads(response.text)
        got, message = (response.status_code, body["code"]), body["message"]
    assert got == (status, code), message
    return str(message)
