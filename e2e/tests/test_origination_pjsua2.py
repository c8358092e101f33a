"""Origination through the real `trunkline up` with pjsua2 as the carrier and the PBXs: a
carrier's call to one of the platform's numbers goes through signaling (the B2BUA) and the
media relay to the number's trunk's origination URL, where a pjsua2 PBX answers; and an
on-net call, PBX to PBX through two trunks (the "two softphones" of the README).

The carrier is a pjsua2 party whose SIP UDP transport is bound to the carrier gateway's port
of the platform's carriers file (the platform trusts a carrier's call by its source address
and, over UDP, port); it calls `sip:<number>@127.0.0.1` with the platform as its outbound
proxy. The PBX is a pjsua2 party that answers every INVITE. Each plays a tone of its own and
records what it hears; an FFT of each recording must find the other's tone. sipp stands in
for the PBXs that refuse (503) or redirect (302).
"""

from __future__ import annotations

import concurrent.futures
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from trunkline.harness.modules import load_module
from trunkline.signaling.testing import write_self_signed
from trunkline.v1 import recording_pb2, recording_pb2_grpc

pytestmark = pytest.mark.e2e

TESTS = Path(__file__).parent
PARTIES = TESTS / "media_parties"
CALLER = "+14155550100"  # the PSTN caller the carrier presents
CARRIER_HZ = 1000.0  # 1000 / 440 is no ratio of small integers, so neither is a harmonic
PBX_HZ = 440.0
DURATION = 2.5  # seconds of audio per call


def _load(name: str) -> ModuleType:
    return load_module(PARTIES / f"{name}.py", f"media_parties_{name}")


Spectrum = _load("tones").Spectrum
support = load_module(TESTS / "termination_support.py")
if TYPE_CHECKING:  # what mypy sees; pytest loads the module by its path
    from e2e.tests.media_parties.trunk_platform import (
        HOST,
        PartyProcess,
        Platform,
        TrunkSetup,
        make_trunk,
        running_platform,
    )
else:
    _platform = _load("trunk_platform")
    HOST = _platform.HOST
    PartyProcess, Platform, TrunkSetup = (
        _platform.PartyProcess,
        _platform.Platform,
        _platform.TrunkSetup,
    )
    make_trunk, running_platform = _platform.make_trunk, _platform.running_platform


@pytest.fixture(scope="module")
def pbx_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The TLS certificate of the secure trunk's PBX: a private one, which the platform
    is told to trust (TRUNKLINE_SIP_TLS_CA_FILE)."""
    return write_self_signed(tmp_path_factory.mktemp("pbxtls"))


class Recorder(recording_pb2_grpc.RecorderServicer):
    """The consumer of the media service's recording fork (the recording service is a later
    issue): keeps every packet it is sent."""

    def __init__(self) -> None:
        self.packets: list[recording_pb2.RecordedPacket] = []
        self.lock = threading.Lock()

    def Record(
        self, request_iterator: Iterator[recording_pb2.RecordedPacket], context: Any
    ) -> recording_pb2.RecordSummary:
        count = 0
        for packet in request_iterator:
            with self.lock:
                self.packets.append(packet)
            count += 1
        return recording_pb2.RecordSummary(packets=count)

    def of_call(self, call_id: str) -> list[recording_pb2.RecordedPacket]:
        with self.lock:
            return [packet for packet in self.packets if packet.call_id == call_id]


@pytest.fixture(scope="module")
def recorder() -> Iterator[tuple[Recorder, str]]:
    """A Recorder gRPC server on loopback and its address."""
    servicer = Recorder()
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))
    recording_pb2_grpc.add_RecorderServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"{HOST}:0")
    server.start()
    try:
        yield servicer, f"{HOST}:{port}"
    finally:
        server.stop(None)


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory,
    pbx_certificate: tuple[Path, Path],
    recorder: tuple[Recorder, str],
) -> Iterator[Platform]:
    """`trunkline up` with one UDP carrier gateway on loopback, for the whole module (each
    test configures its own trunk); its media service forks recordings to `recorder`."""
    environment = {
        "TRUNKLINE_SIP_TLS_CA_FILE": str(pbx_certificate[0]),
        "TRUNKLINE_RECORDING_ADDRESS": recorder[1],
    }
    with running_platform(tmp_path_factory.mktemp("tlo"), environment) as running:
        yield running


@pytest.fixture
def sipp(
    harness_sip: Mapping[str, Any],
    platform: Platform,
    tmp_path: Path,
    pbx_certificate: tuple[Path, Path],
) -> Any:
    """sipp UASs for the PBXs that refuse or redirect (termination_support.Sipp), over TLS
    with the certificate the platform trusts."""
    return support.Sipp(
        harness_sip["sipp"],
        tmp_path,
        platform.launcher.sip_port,
        sip_tls_port=platform.launcher.sip_tls_port,
        certificate=pbx_certificate,
    )


TRANSPORTS = ("udp", "tcp", "tls")


def transport_options(transport: str, certificate: tuple[Path, Path]) -> tuple[str, ...]:
    """A pjsua2 PBX's options to listen on `transport` (over TLS with `certificate`)."""
    if transport == "tls":
        cert, key = certificate
        return ("--transport", "tls", "--tls-cert", str(cert), "--tls-key", str(key))
    return ("--transport", transport)


def add_origination_url(
    platform: Platform, trunk: TrunkSetup, url: str, *, priority: int = 10, weight: int = 10
) -> None:
    platform.client.trunking.v1.trunks(trunk.sid).origination_urls.create(
        friendly_name=f"pbx-{priority}-{weight}-{time.monotonic_ns() % 100000}",
        sip_url=url,
        priority=priority,
        weight=weight,
        enabled=True,
    )


def sdp_media_line(sdp: str) -> str:
    found = re.search(r"^m=audio [^\r\n]+", sdp, re.MULTILINE)
    assert found is not None, sdp
    return found.group()


# ---- one call -----------------------------------------------------------------------------


@dataclass
class Call:
    """A call between a calling party (the carrier, or PBX A on-net) and the answering PBX."""

    caller: PartyProcess
    pbx: PartyProcess
    platform: Platform
    seconds: float = 0.0
    caller_done: dict[str, Any] | None = None
    pbx_done: dict[str, Any] | None = None

    def explain(self) -> str:
        return "\n".join(
            [
                f"caller {self.caller.diagnostics()}",
                f"pbx {self.pbx.diagnostics()}",
                self.platform.logs(),
            ]
        )

    def invite(self) -> dict[str, Any]:
        """The INVITE the PBX got."""
        invite = self.pbx.event("invite")
        assert invite is not None, self.explain()
        return invite


def pbx_party(tmp_path: Path, *options: str, name: str = "pbx") -> tuple[PartyProcess, int]:
    """A PBX that answers every INVITE, once ready; and its SIP port."""
    pbx = PartyProcess(tmp_path, "callee", PBX_HZ, *options, duration=DURATION, name=name)
    try:
        return pbx, pbx.wait_ready()
    except BaseException:
        pbx.close()
        raise


def run_call(
    tmp_path: Path,
    platform: Platform,
    pbx: PartyProcess,
    uri: str,
    *caller_options: str,
    carrier: bool = True,
    caller_id: str = CALLER,
    expect_ok: bool = True,
) -> Call:
    """The carrier (from the gateway's address and port) or, with carrier=False, a PBX
    (caller_options give its From and outbound proxy) calls `uri`; both parties' outcome."""
    if carrier:
        caller_options = (
            "--sip-port", str(platform.carrier_port),
            "--id-uri", f"sip:{caller_id}@{HOST}",
            "--proxy", platform.proxy("udp"),
            *caller_options,
        )  # fmt: skip
    name = "carrier" if carrier else "pbx-a"
    caller = PartyProcess(
        tmp_path, "caller", CARRIER_HZ, *caller_options, duration=DURATION, name=name
    )
    call = Call(caller, pbx, platform)
    try:
        caller.wait_ready()
        started = time.monotonic()
        caller.call(uri)
        call.caller_done = caller.finish(timeout=DURATION + 30)
        call.pbx_done = pbx.finish(timeout=10)
        call.seconds = time.monotonic() - started
        if expect_ok:
            assert caller.process.returncode == 0, call.explain()
            assert pbx.process.returncode == 0, call.explain()
        return call
    finally:
        caller.close()
        pbx.close()


def assert_each_heard_the_other(call: Call) -> None:
    caller_heard, pbx_heard = Spectrum.of(call.caller.recording), Spectrum.of(call.pbx.recording)
    description = (
        f"{caller_heard.describe(CARRIER_HZ, PBX_HZ)}\n{pbx_heard.describe(CARRIER_HZ, PBX_HZ)}"
    )
    assert pbx_heard.hears(CARRIER_HZ), f"{description}\n{call.explain()}"
    assert caller_heard.hears(PBX_HZ), f"{description}\n{call.explain()}"


def assert_relayed(call: Call) -> None:
    """Each party sent its audio to the media relay (a port per leg), not to the other."""
    assert call.caller_done is not None and call.pbx_done is not None
    caller_relay = call.caller_done["remote_rtp_address"]
    pbx_relay = call.pbx_done["remote_rtp_address"]
    invite = call.invite()
    assert sdp_media_line(invite["sdp"]).split()[1] == pbx_relay.rpartition(":")[2], invite
    assert caller_relay != pbx_relay
    assert call.caller_done["rx_packets"] > 0 and call.pbx_done["rx_packets"] > 0


# ---- the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_carrier_call_reaches_the_pbx_at_the_origination_url(
    platform: Platform, tmp_path: Path, transport: str, pbx_certificate: tuple[Path, Path]
) -> None:
    trunk = make_trunk(platform.client)
    pbx, port = pbx_party(tmp_path, *transport_options(transport, pbx_certificate))
    add_origination_url(platform, trunk, support.pbx_url(port, transport))
    call = run_call(tmp_path, platform, pbx, f"sip:{trunk.caller_id}@{HOST}")
    assert_each_heard_the_other(call)
    assert_relayed(call)
    invite = call.invite()
    assert invite["request_uri"].startswith(f"sip:{trunk.caller_id}@"), invite
    assert f"sip:{CALLER}@" in invite["from"], invite
    assert f"sip:{trunk.caller_id}@" in invite["to"], invite
    assert call.pbx_done is not None and call.pbx_done["last_status"] == 200
    assert invite["via"].split()[0] == f"SIP/2.0/{transport.upper()}", invite
    print(f"{transport}: {call.seconds:.1f} s")


@pytest.fixture(scope="module")
def platform_without_carriers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The plain `trunkline up` a newcomer runs: no carriers file at all."""
    with running_platform(tmp_path_factory.mktemp("tln"), carriers=False) as running:
        yield running


def test_on_net_pbx_a_calls_pbx_b_through_two_trunks_with_audio_both_ways(
    platform_without_carriers: Platform, tmp_path: Path
) -> None:
    # On-net calls never leave the platform: no carrier gateway is needed.
    platform = platform_without_carriers
    trunk_a = make_trunk(platform.client)
    trunk_b = make_trunk(platform.client)
    pbx_b, port = pbx_party(tmp_path, name="pbx-b")
    add_origination_url(platform, trunk_b, f"sip:{HOST}:{port}")
    call = run_call(
        tmp_path, platform, pbx_b, f"sip:{trunk_b.caller_id}@{trunk_a.domain}",
        "--proxy", platform.proxy("udp"),
        "--id-uri", f"sip:{trunk_a.caller_id}@{trunk_a.domain}",
        carrier=False,
    )  # fmt: skip
    assert_each_heard_the_other(call)
    assert_relayed(call)
    invite = call.invite()
    assert invite["request_uri"].startswith(f"sip:{trunk_b.caller_id}@"), invite
    assert f"sip:{trunk_a.caller_id}@" in invite["from"], invite


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_weighted_failover_moves_on_from_a_503_to_the_other_url_of_the_priority(
    platform: Platform,
    tmp_path: Path,
    sipp: Any,
    transport: str,
    pbx_certificate: tuple[Path, Path],
) -> None:
    trunk = make_trunk(platform.client)
    (failing,) = support.free_transport_ports(1, transport)
    pbx, port = pbx_party(tmp_path, *transport_options(transport, pbx_certificate))
    # One priority; the failing URL's weight makes it the first draw but for 1 in 65536.
    add_origination_url(platform, trunk, support.pbx_url(failing, transport), weight=65535)
    add_origination_url(platform, trunk, support.pbx_url(port, transport), weight=1)
    refusing = sipp.carrier("carrier_uas_unavailable.xml", failing, wait=2, transport=transport)
    with refusing as down:
        call = run_call(tmp_path, platform, pbx, f"sip:{trunk.caller_id}@{HOST}")
    assert down.run.requests_received("INVITE"), down.run.describe()
    assert_each_heard_the_other(call)
    assert_relayed(call)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_302_from_the_pbx_leads_to_the_pbx_it_names(
    platform: Platform,
    tmp_path: Path,
    sipp: Any,
    transport: str,
    pbx_certificate: tuple[Path, Path],
) -> None:
    trunk = make_trunk(platform.client)
    (redirecting,) = support.free_transport_ports(1, transport)
    pbx, port = pbx_party(tmp_path, *transport_options(transport, pbx_certificate))
    add_origination_url(platform, trunk, support.pbx_url(redirecting, transport))
    moved = {"target": f"{HOST}:{port};transport={transport}"}
    redirector = sipp.carrier(
        "pbx_uas_redirect.xml", redirecting, variables=moved, transport=transport
    )
    with redirector as first:
        call = run_call(tmp_path, platform, pbx, f"sip:{trunk.caller_id}@{HOST}")
    assert first.run.returncode == 0, first.run.describe()
    assert_each_heard_the_other(call)
    assert_relayed(call)


def test_a_redirected_call_keeps_the_trunks_recording(
    platform: Platform, tmp_path: Path, sipp: Any, recorder: tuple[Recorder, str]
) -> None:
    # Recording starts at the answer of the PBX the 302 named, on the call's media session:
    # the fork carries both legs (the carrier's and that PBX's), each to its end.
    trunk = make_trunk(platform.client)
    platform.client.trunking.v1.trunks(trunk.sid).recordings().update(mode="record-from-answer")
    (redirecting,) = support.free_udp_ports(1)
    pbx, port = pbx_party(tmp_path)
    add_origination_url(platform, trunk, f"sip:{HOST}:{redirecting}")
    moved = {"target": f"{HOST}:{port}"}
    with sipp.carrier("pbx_uas_redirect.xml", redirecting, variables=moved) as first:
        call = run_call(tmp_path, platform, pbx, f"sip:{trunk.caller_id}@{HOST}")
    assert first.run.returncode == 0, first.run.describe()
    assert_each_heard_the_other(call)
    calls = platform.client.api.v2010.account.calls.list(limit=1000)
    (record,) = [c for c in calls if c.trunk_sid == trunk.sid]
    deadline = time.monotonic() + 10
    while sum(p.end for p in recorder[0].of_call(record.sid)) < 2:
        assert time.monotonic() < deadline, f"recording of {record.sid} did not end"
        time.sleep(0.1)
    by_role: dict[str, list[recording_pb2.RecordedPacket]] = {}
    for packet in recorder[0].of_call(record.sid):
        by_role.setdefault(packet.role, []).append(packet)
    assert sorted(by_role) == ["answerer", "offerer"], sorted(by_role)
    for role, packets in by_role.items():
        media = [p for p in packets if not p.end]
        assert len(media) >= 50, f"{role}: {len(media)} packets"  # 2.5 s at 50/s each way
        assert packets[-1].end, role


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cnam_shows_the_callers_name_to_the_pbx(
    platform: Platform, tmp_path: Path, transport: str, pbx_certificate: tuple[Path, Path]
) -> None:
    caller = "+14155550142"
    support.import_cnam(platform.running, f"{caller},ACME WIDGETS\n")
    trunk = make_trunk(platform.client)
    platform.client.trunking.v1.trunks(trunk.sid).update(cnam_lookup_enabled=True)
    pbx, port = pbx_party(tmp_path, *transport_options(transport, pbx_certificate))
    add_origination_url(platform, trunk, support.pbx_url(port, transport))
    call = run_call(tmp_path, platform, pbx, f"sip:{trunk.caller_id}@{HOST}", caller_id=caller)
    assert_each_heard_the_other(call)
    invite = call.invite()
    assert invite["from"].startswith('"ACME WIDGETS" <'), invite["from"]
    assert f"sip:{caller}@" in invite["from"], invite


def test_secure_trunk_calls_its_pbx_over_tls_with_srtp(
    platform: Platform, tmp_path: Path, pbx_certificate: tuple[Path, Path]
) -> None:
    trunk = make_trunk(platform.client, secure=True)
    cert, key = pbx_certificate
    pbx, port = pbx_party(
        tmp_path, "--transport", "tls", "--tls-cert", str(cert), "--tls-key", str(key),
        "--srtp", "--secure-signaling",
    )  # fmt: skip
    add_origination_url(platform, trunk, f"sip:{HOST}:{port};transport=tls")
    call = run_call(tmp_path, platform, pbx, f"sip:{trunk.caller_id}@{HOST}")
    assert_each_heard_the_other(call)
    assert_relayed(call)
    invite = call.invite()
    # SRTP with SDES toward the PBX; the carrier's leg stays plain RTP.
    assert " RTP/SAVP " in sdp_media_line(invite["sdp"]) and "a=crypto:" in invite["sdp"]
    carrier_answer = call.caller.all("response")[-1]
    assert " RTP/AVP " in sdp_media_line(carrier_answer["sdp"]), carrier_answer
    assert "a=crypto:" not in carrier_answer["sdp"]
