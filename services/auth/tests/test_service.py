"""The auth service as a process (`python -m trunkline.auth`): its gRPC API against a SQLite
file, its cache cleared by configuration notices from a real nats-server, its health server
and its JSON logs."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from trunkline.auth.testing import AuthProcess, ConfigWriter, auth_service
from trunkline.digest.sip import DigestClient, parse_challenge
from trunkline.events.config import ConfigPublisher
from trunkline.events.testing import NatsServer
from trunkline.store import Repository, open_store
from trunkline.v1 import auth_pb2_grpc
from trunkline.v1.auth_pb2 import CallerRequest, TerminationRequest, Verdict

REALM = "component.test"
SECRET = "component-nonce-secret-0123456789"
URI = "sip:+14155550123@acme.pstn.trunkline.test"
USER = "pbx-main"
PASSWORD = "Correct-Horse-9"
WRONG = "Wrong-Horse-99"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("auth")


@pytest.fixture(scope="module")
def nats_server(workdir: Path) -> Iterator[NatsServer]:
    with NatsServer(workdir / "nats") as server:
        yield server


@pytest.fixture(scope="module")
def health_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def auth(workdir: Path, nats_server: NatsServer, health_port: int) -> Iterator[AuthProcess]:
    env = {
        "TRUNKLINE_REALM": REALM,
        "TRUNKLINE_AUTH_NONCE_SECRET": SECRET,
        "TRUNKLINE_NATS_URL": nats_server.url,
        # Long enough that only a notice can make a change visible within the test.
        "TRUNKLINE_CONFIG_CACHE_TTL": "600",
        "TRUNKLINE_AUTH_LOCKOUT_FAILURES": "3",
        "TRUNKLINE_AUTH_HEALTH_PORT": str(health_port),
    }
    with auth_service(workdir, f"sqlite:///{workdir / 'trunkline.db'}", env=env) as process:
        yield process


@pytest.fixture
async def writer(workdir: Path) -> AsyncIterator[ConfigWriter]:
    store: Repository = open_store(f"sqlite:///{workdir / 'trunkline.db'}")
    yield ConfigWriter(store, realm=REALM)
    await store.close()


@pytest.fixture
async def stub(auth: AuthProcess) -> AsyncIterator[auth_pb2_grpc.AuthAsyncStub]:
    async with grpc.aio.insecure_channel(auth.grpc_address) as channel:
        yield auth_pb2_grpc.AuthStub(channel)


def termination(trunk_sid: str, source: str, *authorization: str) -> TerminationRequest:
    return TerminationRequest(
        trunk_sid=trunk_sid,
        source_ip=source,
        transport="UDP",
        method="INVITE",
        request_uri=URI,
        proxy_authorization=list(authorization),
    )


async def test_a_pbx_answers_the_digest_challenge_over_grpc(
    stub: auth_pb2_grpc.AuthAsyncStub, writer: ConfigWriter
) -> None:
    trunk = await writer.trunk(await writer.account())
    await writer.credentials(trunk, {USER: PASSWORD})
    source = "198.51.100.10"
    for algorithm in ("SHA-256", "MD5"):
        first = await stub.AuthorizeTermination(termination(trunk.sid, source))
        assert first.outcome == Verdict.CHALLENGE
        challenges = [parse_challenge(value) for value in first.challenges]
        assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
        assert {c.realm for c in challenges} == {REALM}
        [challenge] = [c for c in challenges if c.algorithm == algorithm]
        value = DigestClient(USER, PASSWORD).answer(challenge, method="INVITE", uri=URI)
        verdict = await stub.AuthorizeTermination(termination(trunk.sid, source, value))
        assert (verdict.outcome, verdict.username) == (Verdict.ALLOW, USER), algorithm
    first = await stub.AuthorizeTermination(termination(trunk.sid, source))
    wrong = DigestClient(USER, WRONG).answer(
        parse_challenge(first.challenges[0]), method="INVITE", uri=URI
    )
    verdict = await stub.AuthorizeTermination(termination(trunk.sid, source, wrong))
    assert (verdict.outcome, verdict.sip_status, verdict.error_code) == (Verdict.DENY, 403, 32202)


async def test_a_guessing_source_is_ignored_over_grpc(
    stub: auth_pb2_grpc.AuthAsyncStub, writer: ConfigWriter, auth: AuthProcess
) -> None:
    trunk = await writer.trunk(await writer.account())
    await writer.credentials(trunk, {USER: PASSWORD})
    source = "203.0.113.66"
    for _ in range(3):
        first = await stub.AuthorizeTermination(termination(trunk.sid, source))
        [value] = DigestClient(USER, WRONG).authorize(first.challenges, method="INVITE", uri=URI)
        verdict = await stub.AuthorizeTermination(termination(trunk.sid, source, value))
        assert verdict.error_code == 32202
    verdict = await stub.AuthorizeTermination(termination(trunk.sid, source))
    assert verdict.outcome == Verdict.IGNORE
    lines = [json.loads(line) for line in auth.log.read_text().splitlines() if line.strip()]
    [locked] = [line for line in lines if "locked out" in line["message"]]
    assert locked["source_ip"] == source
    assert locked["service"] == "auth"
    text = auth.log.read_text()
    for secret in (PASSWORD, WRONG, SECRET, "response="):
        assert secret not in text


async def test_a_configuration_notice_makes_a_change_visible(
    stub: auth_pb2_grpc.AuthAsyncStub, writer: ConfigWriter, nats_server: NatsServer
) -> None:
    trunk = await writer.trunk(await writer.account())
    await writer.acl(trunk, "198.51.100.0/24")
    newcomer = "192.0.2.50"
    verdict = await stub.AuthorizeTermination(termination(trunk.sid, newcomer))
    assert verdict.error_code == 32201
    await writer.acl(trunk, "192.0.2.0/24")
    # Cached: the refusal stands until a notice arrives.
    verdict = await stub.AuthorizeTermination(termination(trunk.sid, newcomer))
    assert verdict.error_code == 32201
    publisher = await ConfigPublisher.connect(nats_server.url, name="trunkline-test-api")
    try:
        await publisher.publish(trunk.account_sid, "trunks", trunk.sid, "updated")
    finally:
        await publisher.close()
    async with asyncio.timeout(5):
        while True:
            verdict = await stub.AuthorizeTermination(termination(trunk.sid, newcomer))
            if verdict.outcome == Verdict.ALLOW:
                break
            await asyncio.sleep(0.05)


async def test_caller_ids_over_grpc(
    stub: auth_pb2_grpc.AuthAsyncStub, writer: ConfigWriter
) -> None:
    account = await writer.account(trial=True)
    await writer.number(account, "+14155550177")
    await writer.caller_id(account, "+4930555777")
    allowed = await stub.AuthorizeCaller(
        CallerRequest(account_sid=account.sid, caller_id="+14155550177", destination="+4930555777")
    )
    assert allowed.outcome == Verdict.ALLOW
    trial = await stub.AuthorizeCaller(
        CallerRequest(account_sid=account.sid, caller_id="+14155550177", destination="+4930000")
    )
    assert (trial.sip_status, trial.error_code) == (403, 32100)
    spoofed = await stub.AuthorizeCaller(
        CallerRequest(account_sid=account.sid, caller_id="+15005550006", destination="+4930555777")
    )
    assert (spoofed.sip_status, spoofed.error_code) == (403, 21212)


async def test_a_broken_request_is_an_invalid_argument(
    stub: auth_pb2_grpc.AuthAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.AuthorizeTermination(termination("TK" + "0" * 32, "not-an-address"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_health_and_metrics(auth: AuthProcess, health_port: int) -> None:
    base = f"http://127.0.0.1:{health_port}"
    with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:  # noqa: S310
        assert json.load(response) == {"status": "ok"}
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:  # noqa: S310
        assert b"trunkline_auth_verdicts_total" in response.read()
