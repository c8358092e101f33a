"""Run the real CNAM service as a process, for component and end-to-end tests.

with cnam_service(tmp_path, "sqlite:///" + str(tmp_path / "t.db")) as cnam:
    stub = cnam.stub(grpc.insecure_channel(cnam.grpc_address))

`write_names` fills the operator's table the way the admin API's import does;
`stored_lookups` reads back the usage events of an account from JetStream.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from nats.js import JetStreamContext

from trunkline.domain.model import CnamEntry
from trunkline.events.usage import USAGE_STREAM, usage_subject
from trunkline.store import Batch, Repository
from trunkline.telemetry.testing import service_process
from trunkline.v1 import cnam_pb2_grpc
from trunkline.v1.cnam_pb2 import CnamLookup

__all__ = ["CnamProcess", "cnam_service", "stored_lookups", "write_names"]


@dataclass(frozen=True)
class CnamProcess:
    process: subprocess.Popen[bytes]
    grpc_address: str
    log: Path

    def stub(self, channel: grpc.Channel) -> cnam_pb2_grpc.CnamStub:
        return cnam_pb2_grpc.CnamStub(channel)


async def write_names(store: Repository, names: Mapping[str, str]) -> None:
    """Put `{E.164 number: caller name}` into the CNAM table."""
    batch = Batch()
    for number, name in names.items():
        batch.put(CnamEntry(phone_number=number, caller_name=name))
    await store.apply(batch)


async def stored_lookups(js: JetStreamContext, account_sid: str) -> list[CnamLookup]:
    """Every CnamLookup the USAGE stream holds for `account_sid`, in stream order (read by
    an ephemeral consumer, so nothing is left behind on the server)."""
    psub = await js.pull_subscribe(usage_subject(account_sid, "cnam"), stream=USAGE_STREAM)
    found: list[CnamLookup] = []
    try:
        while True:
            try:
                messages = await psub.fetch(100, timeout=0.5)
            except TimeoutError:  # nats-py's, or asyncio's between its two pull requests
                return found
            for message in messages:
                found.append(CnamLookup.FromString(message.data))
                await message.ack()
    finally:
        await psub.unsubscribe()


@contextmanager
def cnam_service(
    log_dir: Path,
    store_url: str,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 20.0,
) -> Iterator[CnamProcess]:
    """Start `python -m trunkline.cnam` on a free loopback port against `store_url`; return
    once its gRPC server accepts calls; stop it (SIGTERM) afterwards. `env` adds to or
    overrides the environment (TRUNKLINE_NATS_URL, TRUNKLINE_CNAM_PROVIDER_URL, ...)."""
    with service_process(
        "trunkline.cnam",
        log_dir,
        address_variable="TRUNKLINE_CNAM_GRPC_ADDRESS",
        env={"TRUNKLINE_STORE": store_url, **(env or {})},
        timeout=timeout,
    ) as running:
        yield CnamProcess(running.process, running.grpc_address, running.log)
