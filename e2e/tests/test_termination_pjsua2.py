"""Termination through a trunk of the real `trunkline up`, with pjsua2 as the PBX and the
carrier: a call from the PBX to a PSTN number goes through signaling (the B2BUA) and the
media relay to the carrier gateway, over UDP, TCP and TLS, with digest authentication and
with a secure trunk (TLS and SRTP).

The trunk, its IP ACL or credential list and the caller-ID number are set up with the
official `twilio` SDK against the platform's API. The carrier is a pjsua2 party that answers
on the port the platform's carriers file names; the PBX is a pjsua2 party that calls
`sip:+15108675309@<trunk domain>` through the platform as its outbound proxy, with the
purchased number as its From user. Each plays a tone of its own and records what it hears;
an FFT of each recording must find the other's tone.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from twilio.rest import Client

from trunkline.cli.datadir import DataDir
from trunkline.cli.testing import Launcher, RunningPlatform, free_ports
from trunkline.signaling.testing import write_self_signed

pytestmark = pytest.mark.e2e

HOST = "127.0.0.1"
PARTIES = Path(__file__).parent / "media_parties"
ZONE = "trunkline.local"
DESTINATION = "+15108675309"
PBX_HZ = 440.0  # 1000 / 440 is no ratio of small integers, so neither is a harmonic
CARRIER_HZ = 1000.0
DURATION = 2.5  # seconds of audio per call
PASSWORD = "Correct1HorseBattery"  # Twilio's rules: 12+ characters, mixed case, a digit


def _load(name: str) -> ModuleType:
    # Plain modules next to the party script; pytest's importlib mode puts nothing on
    # sys.path, so load them by path.
    spec = importlib.util.spec_from_file_location(f"media_parties_{name}", PARTIES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


Spectrum = _load("tones").Spectrum


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


def sdp_media_line(sdp: str) -> str:
    found = re.search(r"^m=audio [^\r\n]+", sdp, re.MULTILINE)
    assert found is not None, sdp
    return found.group()


def address_port(address: str) -> int:
    return int(address.rpartition(":")[2])


class PartyProcess:
    """A party (media_parties/party.py) in its own process; its JSON lines in a file."""

    def __init__(self, tmp_path: Path, role: str, hz: float, *args: str) -> None:
        self.role = role
        self.recording = tmp_path / f"{role}.wav"
        self.events = tmp_path / f"{role}.jsonl"
        self.log = tmp_path / f"{role}.pjsip.log"
        self.stderr = tmp_path / f"{role}.err"
        with self.events.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(PARTIES / "party.py"), "--role", role,
                 "--tone-hz", str(hz), "--record", str(self.recording),
                 "--duration", str(DURATION), "--log", str(self.log), *args],
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


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """`trunkline up` with one UDP carrier gateway on loopback, for the whole module (each
    test configures its own trunk)."""
    root = tmp_path_factory.mktemp("tlt")  # short: supervisord's socket path must fit
    carrier_port = free_udp_port()
    carriers = root / "carriers.toml"
    carriers.write_text(
        f'[[gateway]]\nname = "carrier"\naddress = "{HOST}:{carrier_port}"\ntransport = "udp"\n'
    )
    api_port, nats_port, monitor_port = free_ports(3)
    launcher = Launcher(
        DataDir.at(root / "data"),
        api_port,
        nats_port,
        monitor_port,
        extra_args=("--carriers", str(carriers)),
    )
    try:
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


# ---- one call ---------------------------------------------------------------------------------


@dataclass
class TerminationCall:
    pbx: PartyProcess
    carrier: PartyProcess | None
    pbx_done: dict[str, Any]
    carrier_done: dict[str, Any] | None
    platform: Platform

    @property
    def responses(self) -> list[dict[str, Any]]:
        """The final responses the PBX got to its INVITEs, in order."""
        return self.pbx.all("response")

    def heard(self) -> tuple[Any, Any]:
        """(what the PBX heard, what the carrier heard)."""
        assert self.carrier is not None
        return Spectrum.of(self.pbx.recording), Spectrum.of(self.carrier.recording)

    def explain(self) -> str:
        parts = [f"pbx {self.pbx.diagnostics()}"]
        if self.carrier is not None:
            parts.append(f"carrier {self.carrier.diagnostics()}")
        return "\n".join([*parts, self.platform.logs()])


def place_call(
    tmp_path: Path,
    platform: Platform,
    trunk: TrunkSetup,
    transport: str,
    *pbx_options: str,
    answered: bool = True,
) -> TerminationCall:
    """The PBX calls DESTINATION through the trunk over `transport`; with `answered`, the
    carrier party waits for the call the platform sends on, else no carrier runs."""
    started: list[PartyProcess] = []
    try:
        carrier = None
        if answered:
            carrier = PartyProcess(
                tmp_path, "callee", CARRIER_HZ, "--sip-port", str(platform.carrier_port)
            )
            started.append(carrier)
        pbx = PartyProcess(
            tmp_path, "caller", PBX_HZ,
            "--transport", transport,
            "--proxy", platform.proxy(transport),
            "--id-uri", f"sip:{trunk.caller_id}@{trunk.domain}",
            *pbx_options,
        )  # fmt: skip
        started.append(pbx)
        if carrier is not None:
            carrier.wait_ready()
        pbx.wait_ready()
        pbx.call(f"sip:{DESTINATION}@{trunk.domain}")
        pbx_done = pbx.finish(timeout=DURATION + 25)
        carrier_done = None
        if carrier is not None:
            call = TerminationCall(pbx, carrier, pbx_done, None, platform)
            assert pbx.process.returncode == 0, call.explain()
            carrier_done = carrier.finish(timeout=10)
            assert carrier.process.returncode == 0, call.explain()
        return TerminationCall(pbx, carrier, pbx_done, carrier_done, platform)
    finally:
        for party in started:
            party.close()


def assert_each_heard_the_other(call: TerminationCall) -> None:
    pbx_heard, carrier_heard = call.heard()
    description = (
        f"{pbx_heard.describe(PBX_HZ, CARRIER_HZ)}\n{carrier_heard.describe(PBX_HZ, CARRIER_HZ)}"
    )
    assert carrier_heard.hears(PBX_HZ), f"{description}\n{call.explain()}"
    assert pbx_heard.hears(CARRIER_HZ), f"{description}\n{call.explain()}"


def assert_relayed(call: TerminationCall, trunk: TrunkSetup) -> dict[str, str]:
    """The carrier got the call for DESTINATION from the caller ID, and each party sent its
    audio to the media relay (its own port per leg), not to the other party. The SDP answer
    the PBX got."""
    assert call.carrier is not None and call.carrier_done is not None
    invite = call.carrier.event("invite")
    assert invite is not None, call.explain()
    assert invite["request_uri"].startswith(f"sip:{DESTINATION}@"), invite
    assert f"sip:{trunk.caller_id}@" in invite["from"], invite
    assert f"sip:{DESTINATION}@" in invite["to"], invite
    final = call.responses[-1] if call.responses else {}
    assert final.get("status") == 200, f"{call.responses}\n{call.explain()}"
    pbx_relay = address_port(call.pbx_done["remote_rtp_address"])
    carrier_relay = address_port(call.carrier_done["remote_rtp_address"])
    assert sdp_media_line(final["sdp"]).split()[1] == str(pbx_relay), final["sdp"]
    assert sdp_media_line(invite["sdp"]).split()[1] == str(carrier_relay), invite["sdp"]
    assert pbx_relay != carrier_relay
    assert call.pbx_done["rx_packets"] > 0 and call.carrier_done["rx_packets"] > 0
    return final


# ---- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_pbx_calls_the_pstn_through_a_trunk(
    platform: Platform, tmp_path: Path, transport: str
) -> None:
    trunk = make_trunk(platform.client)
    # Over TLS the PBX verifies the platform against the certificate `trunkline up` made,
    # the one its banner names.
    cert = platform.running.data.sip_tls_cert
    tls = ("--tls-ca", str(cert)) if transport == "tls" else ()
    banner = platform.running.output()
    assert f"tls:{HOST}:{platform.launcher.sip_tls_port}" in banner
    assert f"SIP cert  {cert}" in banner
    call = place_call(tmp_path, platform, trunk, transport, *tls)
    assert_each_heard_the_other(call)
    answer = assert_relayed(call, trunk)
    assert " RTP/AVP " in sdp_media_line(answer["sdp"]), answer["sdp"]
    # An IP ACL trunk: no challenge on the way.
    assert [r["status"] for r in call.responses] == [200], call.responses


def test_pbx_answers_the_digest_challenge_of_a_credential_list_trunk(
    platform: Platform, tmp_path: Path
) -> None:
    trunk = make_trunk(platform.client, acl=False, credentials=True)
    assert trunk.username is not None
    call = place_call(
        tmp_path, platform, trunk, "udp", "--username", trunk.username, "--password", PASSWORD
    )
    assert_each_heard_the_other(call)
    assert_relayed(call, trunk)
    assert [r["status"] for r in call.responses] == [407, 200], call.responses


def test_secure_trunk_over_tls_with_srtp(platform: Platform, tmp_path: Path) -> None:
    trunk = make_trunk(platform.client, secure=True)
    call = place_call(
        tmp_path, platform, trunk, "tls",
        "--tls-ca", str(platform.running.data.sip_tls_cert),
        "--srtp", "--secure-signaling",
    )  # fmt: skip
    assert_each_heard_the_other(call)
    answer = assert_relayed(call, trunk)
    # SRTP with SDES toward the PBX; plain RTP toward the carrier.
    assert " RTP/SAVP " in sdp_media_line(answer["sdp"]), answer["sdp"]
    assert "a=crypto:" in answer["sdp"], answer["sdp"]
    assert call.carrier is not None
    offer = call.carrier.event("invite")
    assert offer is not None
    assert " RTP/AVP " in sdp_media_line(offer["sdp"]) and "a=crypto:" not in offer["sdp"]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_secure_trunk_refuses_a_call_without_tls(
    platform: Platform, tmp_path: Path, transport: str
) -> None:
    trunk = make_trunk(platform.client, secure=True)
    call = place_call(tmp_path, platform, trunk, transport, "--srtp", answered=False)
    assert call.pbx.process.returncode == 1
    assert call.pbx_done["last_status"] == 403, call.explain()
    assert not call.pbx_done["answered"]
    assert [(r["status"], r["error_code"]) for r in call.responses] == [(403, "32209")], (
        call.explain()
    )


def test_pbx_that_does_not_trust_the_certificate_never_reaches_the_platform(
    platform: Platform, tmp_path: Path
) -> None:
    # The other side of the TLS test above: the PBX there really verified the platform.
    trunk = make_trunk(platform.client)
    stranger, _ = write_self_signed(tmp_path)
    call = place_call(tmp_path, platform, trunk, "tls", "--tls-ca", str(stranger), answered=False)
    assert not call.pbx_done["answered"], call.explain()
    assert call.responses == [], call.explain()  # no response: the INVITE never went out
    assert call.pbx_done["last_status"] >= 500, call.explain()
