"""Blind transfer (REFER) through a trunk of the real `trunkline up`, per the trunk's
transfer settings, with pjsua2 user agents on every side (issue 6, item 10).

The PBX (a pjsua2 party) calls +15108675309 through the trunk; the carrier gateway (a pjsua2
party on the port of the platform's carriers file) answers. A second of audio later the PBX
transfers the call with REFER (pjsua2's Call.xfer): with `disable-all` (the default) the
platform refuses it (403, X-Trunkline-Error-Code 32218) and the call goes on; with
`enable-all` or `sip-only` (SIP URIs only) it answers 202, NOTIFYs the progress
(message/sipfrag: 100, then 200 with the subscription terminated), INVITEs the Refer-To
target with the caller ID of `transfer_caller_id`, hangs up the PBX and connects the carrier
party with the target. The target is a third pjsua2 party (a SIP URI on loopback) or, for a
PSTN number, a second call to the carrier gateway. Each party plays a tone of its own; an FFT
of the last part of each recording tells whom it heard at the end.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from trunkline.harness.modules import load_module

pytestmark = pytest.mark.e2e

PARTIES = Path(__file__).parent / "media_parties"
DESTINATION = "+15108675309"
PSTN_TARGET = "+15105550111"
ERROR_CODE = "32218"
# No two are in a ratio of small integers, so none is a harmonic of another.
PBX_HZ = 440.0
CARRIER_HZ = 1000.0
TARGET_HZ = 700.0
TRANSFER_AFTER = 1.0  # seconds of audio before the PBX sends REFER
DURATION = 3.0  # seconds of audio before the party that ends the call hangs up
TAIL = 1.2  # seconds at the end of a recording that must hold the other party's tone


def _load(name: str) -> ModuleType:
    return load_module(PARTIES / f"{name}.py", f"media_parties_{name}")


Spectrum = _load("tones").Spectrum
if TYPE_CHECKING:  # what mypy sees; pytest loads the module by its path
    from e2e.tests.media_parties.trunk_platform import (
        HOST,
        ZONE,
        PartyProcess,
        Platform,
        TrunkSetup,
        make_trunk,
        running_platform,
    )
else:
    _platform = _load("trunk_platform")
    HOST, ZONE = _platform.HOST, _platform.ZONE
    PartyProcess, Platform, TrunkSetup = (
        _platform.PartyProcess,
        _platform.Platform,
        _platform.TrunkSetup,
    )
    make_trunk, running_platform = _platform.make_trunk, _platform.running_platform


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """`trunkline up` with one UDP carrier gateway on loopback, for the whole module (each
    test configures its own trunk)."""
    with running_platform(tmp_path_factory.mktemp("tlr")) as running:
        yield running


def transfer_trunk(platform: Platform, mode: str | None, caller_id: str | None) -> TrunkSetup:
    """A trunk of its own with the given transfer settings (None: the default)."""
    trunk = make_trunk(platform.client)
    settings = {
        name: value
        for name, value in (("transfer_mode", mode), ("transfer_caller_id", caller_id))
        if value is not None
    }
    if settings:
        updated = platform.client.trunking.v1.trunks(trunk.sid).update(**settings)
        for name, value in settings.items():
            assert getattr(updated, name) == value, updated
    return trunk


def tail(path: Path, seconds: float = TAIL) -> Any:
    """What a recording holds in its last `seconds`."""
    with wave.open(str(path)) as recording:
        length = recording.getnframes() / recording.getframerate()
    assert length > seconds + 0.3, f"{path.name}: only {length:.2f} s recorded"
    return Spectrum.of(path, settle=length - seconds)


# ---- one call, transferred (or not) -------------------------------------------------------


@dataclass
class TransferCall:
    pbx: PartyProcess
    carrier: PartyProcess
    target: PartyProcess | None
    platform: Platform
    refer_to: str

    def explain(self) -> str:
        parts = [
            f"{party.role} {party.diagnostics()}"
            for party in (self.pbx, self.carrier, self.target)
            if party is not None
        ]
        return "\n".join([*parts, self.platform.logs()])

    def done(self, party: PartyProcess) -> list[dict[str, Any]]:
        """The party's "done" lines, one per call."""
        return party.all("done")

    def statuses(self) -> list[tuple[int, str, bool]]:
        """What pjsua2 told the PBX of its transfer: (status, reason, final) in order."""
        return [
            (line["status"], line["reason"], line["final"])
            for line in self.pbx.all("transfer_status")
        ]

    def pbx_requests(self, method: str) -> list[dict[str, Any]]:
        return [line for line in self.pbx.all("request") if line["method"] == method]

    def hears(self, recording: Path, hz: float) -> None:
        """The end of `recording` holds the tone `hz` (as its dominant one)."""
        heard = tail(recording)
        description = heard.describe(PBX_HZ, TARGET_HZ, CARRIER_HZ)
        assert heard.hears(hz), f"{description}\n{self.explain()}"


def transfer(
    tmp_path: Path,
    platform: Platform,
    trunk: TrunkSetup,
    refer_to: str | None,
    *,
    target: bool = False,
    transferred: bool = True,
    carrier_calls: int = 1,
) -> TransferCall:
    """The PBX calls DESTINATION through the trunk; the carrier answers; a second later the
    PBX sends REFER to `refer_to` (None: the target party's SIP URI; `target`: run a target
    party). With `transferred` the carrier party hangs up DURATION seconds after its audio is
    up (it ends the call with the target), else the PBX hangs up then. `carrier_calls`: the
    calls the carrier gateway answers (2 for a transfer to a PSTN number)."""
    started: list[PartyProcess] = []
    try:
        hang_up = ("--hang-up",) if transferred else ()
        carrier = PartyProcess(
            tmp_path, "callee", CARRIER_HZ,
            "--sip-port", str(platform.carrier_port),
            "--calls", str(carrier_calls), "--next-tones-hz", str(TARGET_HZ),
            *hang_up,
            duration=DURATION, name="carrier",
        )  # fmt: skip
        started.append(carrier)
        target_party = None
        if target:
            target_party = PartyProcess(
                tmp_path, "callee", TARGET_HZ, duration=DURATION, name="target"
            )
            started.append(target_party)
        carrier.wait_ready()
        if target_party is not None:
            target_port = target_party.wait_ready()
            refer_to = refer_to or f"sip:target@{HOST}:{target_port}"
        assert refer_to is not None
        pbx = PartyProcess(
            tmp_path, "caller", PBX_HZ,
            "--proxy", platform.proxy("udp"),
            "--id-uri", f"sip:{trunk.caller_id}@{trunk.domain}",
            "--transfer-to", refer_to,
            "--transfer-after", str(TRANSFER_AFTER),
            duration=DURATION, name="pbx",
        )  # fmt: skip
        started.append(pbx)
        pbx.wait_ready()
        pbx.call(f"sip:{DESTINATION}@{trunk.domain}")
        call = TransferCall(pbx, carrier, target_party, platform, refer_to)
        try:
            for party in started:
                # Each party gives up DURATION + 10 s after it starts.
                party.finish(timeout=DURATION + 25)
        except AssertionError as failed:
            raise AssertionError(f"{failed}\n{call.explain()}") from None
        return call
    finally:
        for party in started:
            party.close()


def assert_refused(call: TransferCall) -> None:
    """The platform refused the REFER (403, 32218) and the call went on until the PBX hung
    up, audio flowing both ways to the end."""
    explain = call.explain()
    refer = call.pbx.all("refer_response")
    assert [(r["status"], r["error_code"]) for r in refer] == [(403, ERROR_CODE)], explain
    assert [(status, final) for status, _, final in call.statuses()] == [(403, True)], explain
    assert call.pbx_requests("NOTIFY") == [], explain
    assert call.pbx_requests("BYE") == [], explain
    # No INVITE beyond the first left the platform.
    assert len(call.carrier.all("invite")) == 1, explain
    (pbx,) = call.done(call.pbx)
    (carrier,) = call.done(call.carrier)
    assert pbx["ok"] and pbx["hung_up"], explain
    assert carrier["ok"] and not carrier["hung_up"], explain
    assert call.pbx.process.returncode == 0 and call.carrier.process.returncode == 0, explain
    # The last second and more: well after the refusal.
    call.hears(call.carrier.recording, PBX_HZ)
    call.hears(call.pbx.recording, CARRIER_HZ)


def assert_transferred(call: TransferCall, target_invite: dict[str, Any], caller_id: str) -> None:
    """The platform accepted the REFER, NOTIFYed 100 then 200, hung up the PBX; the target
    got the call from `caller_id`."""
    explain = call.explain()
    refer = call.pbx.all("refer_response")
    assert [r["status"] for r in refer] == [202], explain
    notifies = call.pbx_requests("NOTIFY")
    assert [n["body"].strip() for n in notifies] == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"], (
        explain
    )
    for notify in notifies:
        assert notify["event_header"].startswith("refer"), notify
        assert notify["content_type"].startswith("message/sipfrag"), notify
    assert notifies[0]["subscription_state"].startswith("active"), notifies[0]
    assert notifies[1]["subscription_state"].startswith("terminated"), notifies[1]
    # pjsua2's view: the 202 (which it reports as 100 Accepted), then the sipfrag of each
    # NOTIFY, the last one final.
    assert call.statuses() == [
        (100, "Accepted", False),
        (100, "Trying", False),
        (200, "OK", True),
    ], explain
    # The platform hung up the PBX (a BYE after the final NOTIFY), not the other way round.
    in_dialog = [r["method"] for r in call.pbx.all("request") if r["method"] in ("NOTIFY", "BYE")]
    assert in_dialog == ["NOTIFY", "NOTIFY", "BYE"], explain
    (pbx,) = call.done(call.pbx)
    assert pbx["ok"] and not pbx["hung_up"], explain
    assert call.pbx.process.returncode == 0, explain
    assert f"sip:{caller_id}@" in target_invite["from"], f"{target_invite}\n{explain}"


# ---- the tests ---------------------------------------------------------------------------------


def test_transfer_is_refused_by_default(platform: Platform, tmp_path: Path) -> None:
    trunk = transfer_trunk(platform, None, None)
    fetched = platform.client.trunking.v1.trunks(trunk.sid).fetch()
    assert fetched.transfer_mode == "disable-all"
    call = transfer(tmp_path, platform, trunk, f"sip:someone@{HOST}:9", transferred=False)
    assert_refused(call)


@pytest.mark.parametrize("refer_to", [f"tel:{PSTN_TARGET}", f"sip:{PSTN_TARGET}@{ZONE}"])
def test_sip_only_refuses_a_pstn_target(platform: Platform, tmp_path: Path, refer_to: str) -> None:
    trunk = transfer_trunk(platform, "sip-only", None)
    call = transfer(tmp_path, platform, trunk, refer_to, transferred=False)
    assert_refused(call)


@pytest.mark.parametrize(
    ("mode", "caller_id"),
    [("enable-all", "from-transferee"), ("sip-only", "from-transferor")],
)
def test_transfer_to_a_sip_uri(
    platform: Platform, tmp_path: Path, mode: str, caller_id: str
) -> None:
    trunk = transfer_trunk(platform, mode, caller_id)
    call = transfer(tmp_path, platform, trunk, None, target=True)
    assert call.target is not None
    explain = call.explain()
    target_invite = call.target.event("invite")
    assert target_invite is not None, explain
    assert target_invite["request_uri"] == call.refer_to, target_invite
    # from-transferee: the number the PBX called (the party it transfers); from-transferor:
    # the PBX's own caller ID.
    expected = DESTINATION if caller_id == "from-transferee" else trunk.caller_id
    assert_transferred(call, target_invite, expected)
    # The carrier party (the transferee) ended the call with the target: the platform hung
    # up the target.
    (carrier,) = call.done(call.carrier)
    (target,) = call.done(call.target)
    assert carrier["ok"] and carrier["hung_up"], explain
    assert target["ok"] and not target["hung_up"], explain
    assert call.carrier.process.returncode == 0 and call.target.process.returncode == 0, explain
    # At the end the carrier heard the target (not the PBX) and the target the carrier.
    call.hears(call.carrier.recording, TARGET_HZ)
    call.hears(call.target.recording, CARRIER_HZ)


def test_transfer_to_a_pstn_number_goes_to_the_carrier(platform: Platform, tmp_path: Path) -> None:
    trunk = transfer_trunk(platform, "enable-all", "from-transferor")
    call = transfer(tmp_path, platform, trunk, f"tel:{PSTN_TARGET}", carrier_calls=2)
    explain = call.explain()
    invites = call.carrier.all("invite")
    assert len(invites) == 2, explain
    assert invites[1]["request_uri"].startswith(f"sip:{PSTN_TARGET}@"), invites[1]
    assert f"sip:{PSTN_TARGET}@" in invites[1]["to"], invites[1]
    assert_transferred(call, invites[1], trunk.caller_id)
    # The carrier gateway's first call (the transferee, 1000 Hz) ended the call; the
    # platform hung up its second (the target, 700 Hz).
    first, second = call.done(call.carrier)
    assert first["ok"] and first["hung_up"], explain
    assert second["ok"] and not second["hung_up"], explain
    assert call.carrier.process.returncode == 0, explain
    second_recording = call.carrier.recording.with_name("carrier-2.wav")
    call.hears(call.carrier.recording, TARGET_HZ)
    call.hears(second_recording, CARRIER_HZ)
