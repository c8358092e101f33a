"""`trunkline up` runs the embedded platform: supervisord, NATS, the API and media, for real."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import time
from typing import Any

import grpc
import httpx
import nats
import pytest

from trunkline.cli.testing import Launcher, RunningPlatform
from trunkline.events.connection import flush
from trunkline.v1 import media_pb2, media_pb2_grpc

pytestmark = pytest.mark.e2e


def process_table(platform: RunningPlatform) -> dict[str, tuple[str, int]]:
    """`trunkline status` as {name: (state, pid)}."""
    result = platform.status()
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{platform.diagnostics()}"
    table = {}
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "pid":
            table[fields[0]] = (fields[1], int(fields[3]))
    return table


def bootstrap(platform: RunningPlatform) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(platform.data.bootstrap_file.read_text())
    return data


async def next_message_on(subscription: Any, subject: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    seen = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await subscription.next_msg(timeout=left)
        except TimeoutError:  # nats-py's or asyncio's
            break
        if message.subject == subject:
            return message
        seen.append(message.subject)
    raise AssertionError(f"no message on {subject} within {timeout}s (saw {seen})")


def assert_stopped_cleanly(platform: RunningPlatform, rc: int, pids: list[int]) -> None:
    assert rc == 0, platform.diagnostics()
    # `trunkline up` waits for supervisord, which waits for its programs: nothing is left.
    assert platform.leftover_processes() == []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"process {pid} is still alive after trunkline up exited")


async def test_trunkline_up_runs_nats_the_api_and_media_and_stops_cleanly_on_ctrl_c(
    trunkline: Launcher,
) -> None:
    platform = trunkline.start()

    table = process_table(platform)
    assert table["supervisord"][0] == "RUNNING"
    assert table["nats"][0] == "RUNNING"
    assert table["api"][0] == "RUNNING"
    assert table["media"][0] == "RUNNING"
    assert table["auth"][0] == "RUNNING"
    assert table["cnam"][0] == "RUNNING"
    assert table["signaling"][0] == "RUNNING"

    health = httpx.get(f"{platform.api_url}/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"

    assert stat.S_IMODE(platform.data.bootstrap_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(platform.data.admin_token_file.stat().st_mode) == 0o600
    account = bootstrap(platform)
    sid, token = account["account_sid"], account["auth_token"]
    assert account["api_url"] == platform.api_url
    assert sid in platform.output() and token in platform.output()
    sip = f"127.0.0.1:{trunkline.sip_port}"
    assert f"SIP       udp:{sip}, tcp:{sip}" in platform.output()

    connection = await nats.connect(platform.nats_url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        assert connection.is_connected
        subscription = await connection.subscribe("trunkline.config.>")
        await flush(connection)
        async with httpx.AsyncClient(
            base_url=platform.api_url, auth=(sid, token), timeout=10
        ) as api:
            fetched = await api.get(f"/2010-04-01/Accounts/{sid}.json")
            assert fetched.status_code == 200, fetched.text
            assert fetched.json()["sid"] == sid

            created = await api.post("/v1/Trunks", data={"FriendlyName": "x"})
            assert created.status_code == 201, created.text
        await next_message_on(subscription, f"trunkline.config.{sid}.trunks", timeout=10)
    finally:
        await connection.close()

    # The media service answers its gRPC API (a call it does not know is NOT_FOUND).
    assert f"Media     gRPC 127.0.0.1:{trunkline.media_port}" in platform.output()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{trunkline.media_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await media_pb2_grpc.MediaStub(channel).Query(media_pb2.QueryRequest(call_id="none"))
        assert unknown.value.code() is grpc.StatusCode.NOT_FOUND

    pids = [pid for _, pid in table.values()]
    rc = await asyncio.to_thread(platform.stop, signal.SIGINT)
    assert_stopped_cleanly(platform, rc, pids)
    assert not platform.data.endpoints_file.exists()
    assert "Stopped." in platform.output()


def test_trunkline_up_on_the_same_data_dir_keeps_the_account_and_its_trunks(
    trunkline: Launcher,
) -> None:
    first = trunkline.start()
    account = bootstrap(first)
    sid, token = account["account_sid"], account["auth_token"]
    admin_token = first.data.admin_token_file.read_text()
    created = httpx.post(
        f"{first.api_url}/v1/Trunks", data={"FriendlyName": "kept"}, auth=(sid, token), timeout=10
    )
    assert created.status_code == 201, created.text
    trunk_sid = created.json()["sid"]
    assert first.stop(signal.SIGTERM) == 0, first.diagnostics()

    second = trunkline.start()
    assert bootstrap(second)["account_sid"] == sid
    assert second.data.admin_token_file.read_text() == admin_token
    # The token is shown once, on the first start; a restart points to the file instead.
    assert token not in second.output()
    assert str(second.data.bootstrap_file) in second.output()

    with httpx.Client(base_url=second.api_url, auth=(sid, token), timeout=10) as api:
        trunk = api.get(f"/v1/Trunks/{trunk_sid}")
        assert trunk.status_code == 200, trunk.text
        assert trunk.json()["friendly_name"] == "kept"
        fetched = api.get(f"/2010-04-01/Accounts/{sid}.json")
        assert fetched.status_code == 200, fetched.text

    pids = [pid for _, pid in process_table(second).values()]
    rc = second.stop(signal.SIGINT)
    assert_stopped_cleanly(second, rc, pids)


def test_trunkline_up_seeds_the_inventory_and_admin_commands_use_it(trunkline: Launcher) -> None:
    platform = trunkline.start()

    listed = platform.trunkline("admin", "--json", "numbers", "list", "--area-code", "415")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    numbers = {n["phone_number"] for n in json.loads(listed.stdout)["phone_numbers"]}
    assert {"+14155550100", "+14155550199"} <= numbers

    accounts = platform.trunkline("admin", "--json", "accounts", "list")
    assert accounts.returncode == 0, accounts.stdout + accounts.stderr
    sids = [a["sid"] for a in json.loads(accounts.stdout)["accounts"]]
    assert bootstrap(platform)["account_sid"] in sids

    created = platform.trunkline("admin", "accounts", "create", "--name", "Acme", "--type", "Trial")
    assert created.returncode == 0, created.stdout + created.stderr
    new_sid = created.stdout.split()[2]
    verified = platform.trunkline(
        "admin", "caller-ids", "verify", "--account", new_sid, "--number", "+1 415 555 0142"
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"Verified +14155550142 for {new_sid}" in verified.stdout

    unknown = platform.trunkline(
        "admin", "caller-ids", "verify", "--account", "AC" + "0" * 32, "--number", "+14155550142"
    )
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("Error: POST /admin/v1/Accounts/AC")
    assert "HTTP 404" in unknown.stderr
