"""The real `trunkline up` with pjsua2 parties (party.py) around it, for the end-to-end tests
of calls through a trunk (test_termination_pjsua2.py, test_termination_refer.py).

The platform runs with one UDP carrier gateway on loopback, whose port a callee party takes;
trunks, their IP ACL or credential list and a purchased number for the caller ID are set up
with the official `twilio` SDK against the platform's API. Each party runs in its own process
and reports JSON lines (see party.py).

Loaded by path (pytest's importlib mode puts nothing on sys.path); not named platform.py,
as party.py runs with this directory first on its sys.path, where it would hide the standard
library's `platform`.
"""

from __future__ import annotations

import json
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from twilio.rest import Client

from trunkline.cli.datadir import DataDir
from trunkline.cli.testing import Launcher, RunningPlatform, free_ports

HOST = "127.0.0.1"
PARTIES = Path(__file__).parent
ZONE = "trunkline.local"
PASSWORD = "Correct1HorseBattery"  # Twilio's rules: 12+ characters, mixed case, a digit


# ---- helpers ----------------------------------------------------------------------------


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} not within {timeout} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def free_udp_port() -> int:
    """A free UDP port below the media relays' RTP range (10000-60000) and the kernel's
    ephemeral ports: the carrier's port must stay free from the fixture's start to the
    last test, while relays (ours and any other platform on the machine) bind RTP ports."""
    for port in random.sample(range(8200, 10000), 200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    raise AssertionError("no free UDP port in 8200-9999")


class PartyProcess:
    """A party (media_parties/party.py) in its own process; its JSON lines in a file."""

    def __init__(
        self, tmp_path: Path, role: str, hz: float, *args: str, duration: float, name: str = ""
    ) -> None:
        self.role = name or role  # the name of its files (two parties may share a role)
        self.recording = tmp_path / f"{self.role}.wav"
        self.events = tmp_path / f"{self.role}.jsonl"
        self.log = tmp_path / f"{self.role}.pjsip.log"
        self.stderr = tmp_path / f"{self.role}.err"
        with self.events.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(PARTIES / "party.py"), "--role", role,
                 "--tone-hz", str(hz), "--record", str(self.recording),
                 "--duration", str(duration), "--log", str(self.log), *args],
                cwd=tmp_path,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
            )  # fmt: skip

    def call(self, uri: str) -> None:
        """Tell the (ready) caller where to call."""
        assert self.process.stdin is not None
        self.process.stdin.write(uri.encode() + b"\n")
        self.process.stdin.close()

    def lines(self) -> list[dict[str, Any]]:
        text = self.events.read_text() if self.events.exists() else ""
        # A line still being written has no newline yet.
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def all(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["event"] == name]

    def event(self, name: str) -> dict[str, Any] | None:
        return next(iter(self.all(name)), None)

    def wait_ready(self) -> int:
        wait_for(
            lambda: self.event("ready") is not None or self.process.poll() is not None,
            20,
            f"{self.role} ready",
        )
        ready = self.event("ready")
        assert ready is not None, f"{self.role} exited early:\n{self.diagnostics()}"
        return int(ready["sip_port"])

    def finish(self, timeout: float) -> dict[str, Any]:
        """Wait for the party to end its call and exit; its "done" line."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(self.process)
            raise AssertionError(f"{self.role} still running:\n{self.diagnostics()}") from None
        done = self.event("done")
        assert done is not None, f"{self.role} exited without a result:\n{self.diagnostics()}"
        return done

    def diagnostics(self) -> str:
        stderr = self.stderr.read_text(errors="replace") if self.stderr.exists() else ""
        return f"exit {self.process.poll()}, events {self.lines()}\nstderr: {stderr[-2000:]}"

    def close(self) -> None:
        stop(self.process)
        if self.process.stdin is not None:
            self.process.stdin.close()


# ---- the platform and its trunks ------------------------------------------------------------


@dataclass
class Platform:
    running: RunningPlatform
    launcher: Launcher
    client: Client
    carrier_port: int

    def proxy(self, transport: str) -> str:
        """The platform as a PBX's outbound proxy over `transport`."""
        if transport == "udp":
            return f"sip:{HOST}:{self.launcher.sip_port};lr"
        port = self.launcher.sip_tls_port if transport == "tls" else self.launcher.sip_port
        return f"sip:{HOST}:{port};transport={transport};lr"

    def logs(self) -> str:
        """The platform's signaling, media and auth logs (what explains a failed call)."""
        parts = []
        for name in ("signaling", "media", "auth"):
            path = self.running.data.log_file(name)
            text = path.read_text(errors="replace") if path.exists() else "(none)"
            parts.append(f"--- {name}.log\n{text[-4000:]}")
        return "\n".join(parts)


@contextmanager
def running_platform(
    root: Path, environment: Mapping[str, str] | None = None, *, carriers: bool = True
) -> Iterator[Platform]:
    """`trunkline up` in `root` (short: supervisord's socket path must fit) with one UDP
    carrier gateway on loopback, torn down whatever happens. `environment` adds settings
    of the services (supervisord passes its environment on)."""
    carrier_port = free_udp_port()
    extra_args: tuple[str, ...] = ()
    if carriers:
        carriers_file = root / "carriers.toml"
        carriers_file.write_text(
            f'[[gateway]]\nname = "carrier"\naddress = "{HOST}:{carrier_port}"\ntransport = "udp"\n'
        )
        extra_args = ("--carriers", str(carriers_file))
    api_port, nats_port, monitor_port = free_ports(3)
    launcher = Launcher(
        DataDir.at(root / "data"),
        api_port,
        nats_port,
        monitor_port,
        extra_args=extra_args,
    )
    try:
        with pytest.MonkeyPatch.context() as env:
            for name, value in (environment or {}).items():
                env.setenv(name, value)
            running = launcher.start()
        boot = json.loads(running.data.bootstrap_file.read_text())
        client = Client(boot["account_sid"], boot["auth_token"])
        client.trunking.base_url = client.api.base_url = running.api_url
        yield Platform(running, launcher, client, carrier_port)
    finally:
        launcher.cleanup()


@dataclass
class TrunkSetup:
    sid: str
    domain: str
    caller_id: str  # the purchased number the PBX calls from
    username: str | None = None


def make_trunk(
    client: Client, *, acl: bool = True, credentials: bool = False, secure: bool = False
) -> TrunkSetup:
    """A trunk of its own for a test: an IP ACL with 127.0.0.1 and/or a credential list,
    and a purchased number on it for the caller ID."""
    name = f"pbx-{secrets.token_hex(4)}"
    domain = f"{name}.pstn.{ZONE}"
    trunk = client.trunking.v1.trunks.create(friendly_name=name, domain_name=domain, secure=secure)
    assert trunk.secure is secure
    sip = client.api.v2010.account.sip
    if acl:
        acl_sid = sip.ip_access_control_lists.create(friendly_name=f"{name} office").sid
        sip.ip_access_control_lists(acl_sid).ip_addresses.create(
            friendly_name="loopback", ip_address=HOST
        )
        client.trunking.v1.trunks(trunk.sid).ip_access_control_lists.create(
            ip_access_control_list_sid=acl_sid
        )
    username = None
    if credentials:
        list_sid = sip.credential_lists.create(friendly_name=f"{name} pbx").sid
        username = f"{name}-user"
        sip.credential_lists(list_sid).credentials.create(username=username, password=PASSWORD)
        client.trunking.v1.trunks(trunk.sid).credentials_lists.create(credential_list_sid=list_sid)
    available = client.available_phone_numbers("US").local.list(limit=20)
    assert available, "no numbers in the inventory"
    number = client.incoming_phone_numbers.create(
        phone_number=secrets.choice(available).phone_number, trunk_sid=trunk.sid
    )
    return TrunkSetup(trunk.sid, domain, number.phone_number, username)
