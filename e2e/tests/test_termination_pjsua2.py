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

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from trunkline.harness.modules import load_module
from trunkline.signaling.testing import write_self_signed

pytestmark = pytest.mark.e2e

PARTIES = Path(__file__).parent / "media_parties"
DESTINATION = "+15108675309"
PBX_HZ = 440.0  # 1000 / 440 is no ratio of small integers, so neither is a harmonic
CARRIER_HZ = 1000.0
DURATION = 2.5  # seconds of audio per call


def _load(name: str) -> ModuleType:
    return load_module(PARTIES / f"{name}.py", f"media_parties_{name}")


Spectrum = _load("tones").Spectrum
if TYPE_CHECKING:  # what mypy sees; pytest loads the module by its path
    from e2e.tests.media_parties.trunk_platform import (
        HOST,
        PASSWORD,
        PartyProcess,
        Platform,
        TrunkSetup,
        make_trunk,
        running_platform,
    )
else:
    _platform = _load("trunk_platform")
    HOST, PASSWORD = _platform.HOST, _platform.PASSWORD
    PartyProcess, Platform, TrunkSetup = (
        _platform.PartyProcess,
        _platform.Platform,
        _platform.TrunkSetup,
    )
    make_trunk, running_platform = _platform.make_trunk, _platform.running_platform


# ---- the platform, its trunks and the parties (media_parties/trunk_platform.py) ----------


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """`trunkline up` with one UDP carrier gateway on loopback, for the whole module (each
    test configures its own trunk)."""
    with running_platform(tmp_path_factory.mktemp("tlt")) as running:
        yield running


def sdp_media_line(sdp: str) -> str:
    found = re.search(r"^m=audio [^\r\n]+", sdp, re.MULTILINE)
    assert found is not None, sdp
    return found.group()


def address_port(address: str) -> int:
    return int(address.rpartition(":")[2])


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
                tmp_path, "callee", CARRIER_HZ, "--sip-port", str(platform.carrier_port),
                duration=DURATION,
            )  # fmt: skip
            started.append(carrier)
        pbx = PartyProcess(
            tmp_path, "caller", PBX_HZ,
            "--transport", transport,
            "--proxy", platform.proxy(transport),
            "--id-uri", f"sip:{trunk.caller_id}@{trunk.domain}",
            *pbx_options,
            duration=DURATION,
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
