"""The media relay between real user agents: two pjsua2 parties (one process each, null sound
device) call each other through a small SIP proxy that stands in for signaling and drives the
media service's gRPC API. Each party plays a tone of its own frequency into the call and
records what it hears; an FFT of each recording must find the other party's tone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest

from trunkline.harness.modules import load_module
from trunkline.media.testing import media_service as run_media_service
from trunkline.v1 import media_pb2
from trunkline.v1.media_pb2_grpc import MediaStub

pytestmark = pytest.mark.e2e

HOST = "127.0.0.1"
PARTIES = Path(__file__).parent / "media_parties"
CALLER_HZ = 440.0  # A: 1000 / 440 is no ratio of small integers, so neither is a harmonic
CALLEE_HZ = 1000.0
DURATION = 3.0  # seconds of audio per call
NAT_ADDRESS = "10.255.255.1"  # what a PBX behind a NAT advertises


def _load(name: str) -> ModuleType:
    return load_module(PARTIES / f"{name}.py", f"media_parties_{name}")


proxy_module = _load("proxy")
Spectrum = _load("tones").Spectrum
_parties = _load("trunk_platform")
PartyProcess, stop = _parties.PartyProcess, _parties.stop
TestProxy = proxy_module.TestProxy
MediaControl = proxy_module.MediaControl
advertise_address: Callable[[bytes, str], bytes] = proxy_module.advertise_address


# ---- helpers ----------------------------------------------------------------------------


@dataclass
class CallResult:
    caller: dict[str, Any]
    callee: dict[str, Any]
    caller_heard: Spectrum
    callee_heard: Spectrum
    proxy: Any  # a media_parties proxy.TestProxy

    def explain(self) -> str:
        return (
            f"{self.caller_heard.describe(CALLER_HZ, CALLEE_HZ)}\n"
            f"{self.callee_heard.describe(CALLER_HZ, CALLEE_HZ)}\ncaller {self.caller}\n"
            f"callee {self.callee}\nproxy trace {self.proxy.trace}, errors {self.proxy.errors}"
        )


def failure(party: PartyProcess, proxy: Any) -> str:
    return f"{party.role}: {party.diagnostics()}\nproxy trace {proxy.trace}, errors {proxy.errors}"


def call_through_proxy(
    tmp_path: Path,
    media: Any = None,
    *,
    caller_srtp: bool = False,
    callee_srtp: bool = False,
    rewrite_offer: Callable[[bytes], bytes] | None = None,
) -> CallResult:
    """One call from a caller playing CALLER_HZ to a callee playing CALLEE_HZ, signaled
    through a test proxy that drives `media` (a MediaControl; None forwards SDP as is)."""
    started: list[PartyProcess] = []
    try:
        # Both start at once (loading pjsua2 takes a while); the caller calls only when
        # told to, once the callee listens.
        callee = PartyProcess(
            tmp_path, "callee", CALLEE_HZ, *(["--srtp"] * callee_srtp), duration=DURATION
        )
        started.append(callee)
        caller = PartyProcess(
            tmp_path, "caller", CALLER_HZ, *(["--srtp"] * caller_srtp), duration=DURATION
        )
        started.append(caller)
        callee_port = callee.wait_ready()
        caller.wait_ready()
        with TestProxy((HOST, callee_port), media, rewrite_offer) as proxy:
            caller.call(proxy.uri)
            caller_done = caller.finish(timeout=DURATION + 20)
            # A caller that failed (a rejected offer, say) leaves the callee waiting.
            assert caller.process.returncode == 0, failure(caller, proxy)
            callee_done = callee.finish(timeout=10)
            assert callee.process.returncode == 0, failure(callee, proxy)
        return CallResult(
            caller_done,
            callee_done,
            Spectrum.of(caller.recording),
            Spectrum.of(callee.recording),
            proxy,
        )
    finally:
        for party in started:
            stop(party.process)
            if party.process.stdin is not None:
                party.process.stdin.close()


def relay_port(address: str) -> int:
    host, _, port = address.rpartition(":")
    assert host == HOST, address
    return int(port)


def sdp_media_line(sdp: bytes) -> str:
    found = re.search(rb"^m=audio [^\r\n]+", sdp, re.MULTILINE)
    assert found is not None, sdp
    return found.group().decode()


def sdp_media_port(sdp: bytes) -> int:
    return int(sdp_media_line(sdp).split()[1])


# ---- the media service ------------------------------------------------------------------


@dataclass
class MediaService:
    stub: MediaStub
    port_min: int
    port_max: int
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def media_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaService]:
    """`python -m trunkline.media` on loopback with a private port range, for the module."""
    with (
        run_media_service(tmp_path_factory.mktemp("media")) as process,
        grpc.insecure_channel(process.grpc_address) as channel,
    ):
        yield MediaService(process.stub(channel), process.port_min, process.port_max, process.log)


def policies(
    offerer: media_pb2.LegPolicy | None = None, answerer: media_pb2.LegPolicy | None = None
) -> tuple[media_pb2.LegPolicy, media_pb2.LegPolicy]:
    return offerer or media_pb2.LegPolicy(), answerer or media_pb2.LegPolicy()


def assert_each_heard_the_other(result: CallResult) -> None:
    assert result.callee_heard.hears(CALLER_HZ), result.explain()
    assert result.caller_heard.hears(CALLEE_HZ), result.explain()


def deleted_legs(result: CallResult) -> dict[str, media_pb2.LegStatistics]:
    """The statistics Media.Delete returned when the BYE went through, by leg role."""
    legs: dict[str, media_pb2.LegStatistics] | None = result.proxy.deleted
    assert legs is not None, f"no Delete:\n{result.explain()}"
    assert set(legs) == {"offerer", "answerer"}, f"{legs}\n{result.explain()}"
    return legs


# ---- the harness itself -------------------------------------------------------------------


def test_parties_hear_each_other_through_the_test_proxy_alone(tmp_path: Path) -> None:
    # Without a relay the SDP goes through untouched: this checks the parties, the proxy
    # and the FFT, so a failure of the tests below is the relay's.
    result = call_through_proxy(tmp_path)
    assert_each_heard_the_other(result)
    # A recording holds what came from the call, not the party's own tone.
    assert not result.caller_heard.hears(CALLER_HZ), result.explain()
    assert not result.callee_heard.hears(CALLEE_HZ), result.explain()
    assert result.proxy.offer.sent == result.proxy.offer.received != b""


# ---- the relay ----------------------------------------------------------------------------


def test_relay_carries_each_tone_to_the_other_party(
    media_service: MediaService, tmp_path: Path
) -> None:
    media = MediaControl(media_service.stub, *policies())
    result = call_through_proxy(tmp_path, media)
    assert_each_heard_the_other(result)
    # Each party sent its media to the relay's port for its leg, not to the other party.
    legs = deleted_legs(result)
    assert relay_port(result.caller["remote_rtp_address"]) == legs["offerer"].local_port
    assert relay_port(result.callee["remote_rtp_address"]) == legs["answerer"].local_port
    for leg in legs.values():
        assert media_service.port_min <= leg.local_port <= media_service.port_max, leg
        assert leg.packets > 0 and leg.bytes > 0, legs


@pytest.mark.parametrize("srtp_party", ["caller", "callee"])
def test_relay_bridges_srtp_leg_to_rtp_leg(
    media_service: MediaService, tmp_path: Path, srtp_party: str
) -> None:
    srtp = media_pb2.LegPolicy(transport=media_pb2.TRANSPORT_SRTP)
    rtp = media_pb2.LegPolicy(transport=media_pb2.TRANSPORT_RTP)
    caller_srtp = srtp_party == "caller"
    media = MediaControl(media_service.stub, *((srtp, rtp) if caller_srtp else (rtp, srtp)))
    result = call_through_proxy(
        tmp_path, media, caller_srtp=caller_srtp, callee_srtp=not caller_srtp
    )
    assert_each_heard_the_other(result)
    # What each party got from the relay: SDES keys for the SRTP party (one suite in the
    # answer), plain RTP for the other.
    offer, answer = result.proxy.offer.sent, result.proxy.answer.sent
    to_srtp, to_rtp = (answer, offer) if caller_srtp else (offer, answer)
    assert " RTP/SAVP " in sdp_media_line(to_srtp) and b"a=crypto:" in to_srtp, to_srtp
    assert " RTP/AVP " in sdp_media_line(to_rtp) and b"a=crypto:" not in to_rtp, to_rtp
    if caller_srtp:
        # pjsua2 offers the AES-256 suites first; the relay answers with one it supports.
        suites = re.findall(rb"^a=crypto:\d+ (\S+)", to_srtp, re.MULTILINE)
        assert suites in ([b"AES_CM_128_HMAC_SHA1_80"], [b"AES_CM_128_HMAC_SHA1_32"]), to_srtp
    for leg in deleted_legs(result).values():
        assert leg.packets > 0, leg
        assert leg.srtp_auth_failures == 0, leg


def test_symmetric_rtp_latches_onto_real_source_despite_wrong_sdp_address(
    media_service: MediaService, tmp_path: Path
) -> None:
    media = MediaControl(
        media_service.stub, *policies(offerer=media_pb2.LegPolicy(symmetric_rtp=True))
    )
    result = call_through_proxy(
        tmp_path, media, rewrite_offer=lambda sdp: advertise_address(sdp, NAT_ADDRESS)
    )
    offer = result.proxy.offer.received
    assert f"c=IN IP4 {NAT_ADDRESS}".encode() in offer and HOST.encode() not in offer, offer
    # The callee's tone reaches the caller only because the relay latched onto its source.
    assert_each_heard_the_other(result)
    offerer = deleted_legs(result)["offerer"]
    assert offerer.remote_address == f"{HOST}:{sdp_media_port(offer)}", offerer


def test_without_symmetric_rtp_media_goes_to_the_sdp_address(
    media_service: MediaService, tmp_path: Path
) -> None:
    media = MediaControl(
        media_service.stub, *policies(offerer=media_pb2.LegPolicy(symmetric_rtp=False))
    )
    result = call_through_proxy(
        tmp_path, media, rewrite_offer=lambda sdp: advertise_address(sdp, NAT_ADDRESS)
    )
    # The relay takes the caller's packets and carries them to the callee ...
    assert result.callee_heard.hears(CALLER_HZ), result.explain()
    # ... but sends the callee's to the address in the caller's SDP, where nobody listens.
    assert not result.caller_heard.hears(CALLEE_HZ), result.explain()
    assert result.caller["rx_packets"] == 0, result.explain()
    offerer = deleted_legs(result)["offerer"]
    offer = result.proxy.offer.received
    assert offerer.remote_address == f"{NAT_ADDRESS}:{sdp_media_port(offer)}", offerer
    assert offerer.packets > 0, offerer
