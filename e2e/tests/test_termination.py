"""Termination end to end: a PBX (sipp) calls through a trunk of the real `trunkline up` to
the platform's carrier gateways (sipp, or a UDP socket that answers nothing).

One platform per module, with two gateways: `primary_port` (priority 10) and
`secondary_port` (priority 20); each test makes its own trunk. The platform admits one call
per second per trunk, so a test places at most one call per trunk per second unless that is
what it tests. What each side sent and received is read from sipp's -trace_msg files
(e2e/sipp holds the scenarios). The PBX is Debian 12's sipp 3.6.1 (the harness's `sip`
component), except where it must answer a SHA-256 digest: the harness's sipp 3.8.

Sources that fail authentication are their own loopback addresses (127.0.0.2x): failures
count towards a source's lockout, and 127.0.0.1 must stay usable for the other tests.
Tests with a gateway that does not answer in time come last (see there).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from trunkline.harness.modules import load_module

pytestmark = pytest.mark.e2e


def _load_support() -> Any:
    return load_module(Path(__file__).with_name("termination_support.py"))


support = _load_support()
DESTINATION = support.DESTINATION
ERROR = support.ERROR_HEADER


@pytest.fixture(scope="module")
def termination(
    tmp_path_factory: pytest.TempPathFactory, harness_sip: Mapping[str, Any]
) -> Iterator[Any]:
    yield from support.start_termination(tmp_path_factory, harness_sip["sipp"])


@pytest.fixture
def sipp(termination: Any, tmp_path: Path) -> Any:
    return termination.sipp(tmp_path)


def assert_refused(run: Any, status: int, reason: str, code: int | None) -> Any:
    """The PBX got exactly `status` with a reason phrase containing `reason` and the error
    code `code` in X-Trunkline-Error-Code (None: no such header), and acknowledged it."""
    assert run.returncode == 0, run.describe()
    final = run.final_response()
    assert final.status == status, run.describe()
    assert reason in final.reason, run.describe()
    if code is None:
        assert final.header(ERROR) is None, run.describe()
    else:
        assert final.header(ERROR) == str(code), run.describe()
    assert len(run.sent("ACK")) >= 1, run.describe()
    return final


def assert_unanswered(run: Any) -> None:
    assert run.returncode == 0, run.describe()
    assert run.received() == [], run.describe()
    assert len(run.sent("INVITE")) >= 2, run.describe()  # retransmitted, and still nothing


# --- 1. the trunk by Request-URI host --------------------------------------------------------


@pytest.mark.parametrize(
    ("edge", "recorded_edge"),
    [(None, "local"), ("local", "local"), ("ashburn", "ashburn"), ("us1", "ashburn")],
)
def test_termination_finds_the_trunk_by_its_domain_and_localized_domains(
    termination: Any, sipp: Any, edge: str | None, recorded_edge: str
) -> None:
    trunk = termination.trunk("host")
    with sipp.carrier("carrier_uas.xml", termination.primary_port) as carrier:
        pbx = sipp.pbx("pbx_uac_call.xml", domain=trunk.host(edge), caller=termination.caller)
    assert pbx.returncode == 0, pbx.describe() + termination.diagnostics()
    assert carrier.run.returncode == 0, carrier.run.describe()
    invite = carrier.run.requests_received("INVITE")[0]
    assert invite.request_uri == f"sip:{DESTINATION}@127.0.0.1:{termination.primary_port}"
    # The edge the call came in through (a legacy region name stands for its edge).
    call_sid = support.call_sid_of(pbx)
    events = support.call_events(termination.platform.nats_url, termination.account_sid, call_sid)
    assert events["started"].edge == recorded_edge, events["started"]
    assert events["started"].trunk_sid == trunk.sid


def test_termination_leaves_an_unknown_trunk_host_unanswered(termination: Any, sipp: Any) -> None:
    unknown = f"nobody-{termination.account_sid[-6:].lower()}.pstn.{support.ZONE}"
    run = sipp.pbx("pbx_uac_unanswered.xml", domain=unknown, caller=termination.caller)
    assert_unanswered(run)
    other_zone = sipp.pbx("pbx_uac_unanswered.xml", domain="acme.example.com", caller="+1")
    assert_unanswered(other_zone)
    trunk = termination.trunk("edge")  # a trunk that exists, at an edge that does not
    unknown_edge = sipp.pbx(
        "pbx_uac_unanswered.xml", domain=trunk.host("mars"), caller=termination.caller
    )
    assert_unanswered(unknown_edge)


# --- 2. Max-Forwards --------------------------------------------------------------------------


def test_termination_refuses_max_forwards_below_20_with_483(termination: Any, sipp: Any) -> None:
    trunk = termination.trunk("hops")
    run = sipp.pbx(
        "pbx_uac_refused.xml", domain=trunk.domain, caller=termination.caller, max_forwards=19
    )
    assert_refused(run, 483, "Too Many Hops", 32006)
    # 20 is enough, and the carrier leg gets one less.
    trunk = termination.trunk("hops20")
    with sipp.carrier("carrier_uas.xml", termination.primary_port) as carrier:
        enough = sipp.pbx(
            "pbx_uac_call.xml", domain=trunk.domain, caller=termination.caller, max_forwards=20
        )
    assert enough.returncode == 0, enough.describe() + termination.diagnostics()
    assert carrier.run.requests_received("INVITE")[0].header("Max-Forwards") == "19"


# --- 3. authentication ------------------------------------------------------------------------

USER, PASSWORD = "pbx-e2e", "Correct1HorseBattery"


@pytest.fixture(scope="module")
def sipp_sha256(harness_sip: Mapping[str, Any]) -> str:
    """The harness's sipp 3.8 (Debian unstable's build): it computes SHA-256 digests, which
    Debian 12's sipp 3.6.1 cannot (it answers only MD5 challenges, and only the first)."""
    from trunkline.harness.components.sip import install_sipp_tls

    return str(install_sipp_tls())


def auth_uri(trunk: Any, number: str = DESTINATION) -> list[str]:
    """sipp digests `sip:<remote ip>:<port>` unless told the Request-URI (RFC 7616 3.4.6:
    the platform refuses another URI with 400, rightly)."""
    return ["-auth_uri", f"{number}@{trunk.domain}"]


def test_termination_refuses_a_trunk_without_acl_or_credential_list_with_403(
    termination: Any, sipp: Any
) -> None:
    trunk = termination.trunk("noauth", acl=None)
    run = sipp.pbx("pbx_uac_refused.xml", domain=trunk.domain, caller=termination.caller)
    assert_refused(run, 403, "no IP access control list and no credential list", 32200)


def test_termination_refuses_a_source_outside_every_acl_with_403(
    termination: Any, sipp: Any
) -> None:
    trunk = termination.trunk("acl", acl=("192.0.2.0/24", "127.0.0.1/32"))
    run = sipp.pbx(
        "pbx_uac_refused.xml", domain=trunk.domain, caller=termination.caller, source="127.0.0.21"
    )
    assert_refused(run, 403, "Source IP address not in ACL", 32201)


def test_termination_challenges_with_sha256_and_md5_and_accepts_an_md5_answer(
    termination: Any, sipp: Any
) -> None:
    trunk = termination.trunk("md5", acl=None, credentials=(USER, PASSWORD))
    source = "127.0.0.27"
    first = sipp.pbx(
        "pbx_uac_refused.xml", domain=trunk.domain, caller=termination.caller, source=source
    )
    response = assert_refused(first, 407, "Proxy Authentication Required", None)
    challenges = [support.parse_challenge(v) for v in response.headers("Proxy-Authenticate")]
    # RFC 8760 2.4: the preferred algorithm first.
    assert [c.get("algorithm") for c in challenges] == ["SHA-256", "MD5"], first.describe()
    for challenge in challenges:
        assert challenge["realm"] == support.ZONE, first.describe()
        assert challenge["qop"] == "auth", first.describe()
        assert challenge["nonce"] and challenge["opaque"], first.describe()
    assert challenges[0]["nonce"] == challenges[1]["nonce"], first.describe()

    # sipp 3.6 answers only the first challenge: the PBX answers the MD5 one computed here.
    authorization = support.digest_authorization(
        challenges[1],
        method="INVITE",
        uri=f"sip:{DESTINATION}@{trunk.domain}",
        username=USER,
        password=PASSWORD,
    )
    with sipp.carrier("carrier_uas.xml", termination.primary_port) as carrier:
        second = sipp.pbx(
            "pbx_uac_call.xml",
            domain=trunk.domain,
            caller=termination.caller,
            source=source,
            extra=[f"Proxy-Authorization: {authorization}"],
        )
    assert second.returncode == 0, second.describe() + termination.diagnostics()
    assert second.responses_received(407) == [], second.describe()
    assert carrier.run.returncode == 0, carrier.run.describe()
    assert "proxy-authorization" not in carrier.run.requests_received("INVITE")[0].header_names


def test_termination_refuses_a_wrong_password_with_403(
    termination: Any, sipp: Any, sipp_sha256: str
) -> None:
    trunk = termination.trunk("badpw", acl=None, credentials=(USER, PASSWORD))
    run = sipp.pbx(
        "pbx_uac_digest_refused.xml",
        domain=trunk.domain,
        caller=termination.caller,
        source="127.0.0.22",
        args=["-au", USER, "-ap", "Wrong1HorseBattery", *auth_uri(trunk)],
        binary=sipp_sha256,
    )
    assert len(run.responses_received(407)) == 1, run.describe()
    assert_refused(run, 403, "Bad user credentials", 32202)


def test_termination_accepts_the_right_sha256_digest_and_places_the_call(
    termination: Any, sipp: Any, sipp_sha256: str
) -> None:
    trunk = termination.trunk("sha", acl=None, credentials=(USER, PASSWORD))
    with sipp.carrier("carrier_uas.xml", termination.primary_port) as carrier:
        run = sipp.pbx(
            "pbx_uac_digest.xml",
            domain=trunk.domain,
            caller=termination.caller,
            args=["-au", USER, "-ap", PASSWORD, *auth_uri(trunk)],
            binary=sipp_sha256,
        )
    assert run.returncode == 0, run.describe() + termination.diagnostics()
    answered = run.sent("INVITE")[-1].header("Proxy-Authorization") or ""
    assert "algorithm=SHA-256" in answered, run.describe()
    assert [m.status for m in run.responses_received() if m.status != 100][:2] == [407, 180]
    assert carrier.run.returncode == 0, carrier.run.describe()


def test_termination_enforces_both_the_acl_and_the_credential_list(
    termination: Any, sipp: Any, sipp_sha256: str
) -> None:
    trunk = termination.trunk("both", acl=("127.0.0.1/32",), credentials=(USER, PASSWORD))
    outside = sipp.pbx(
        "pbx_uac_refused.xml", domain=trunk.domain, caller=termination.caller, source="127.0.0.23"
    )
    assert_refused(outside, 403, "Source IP address not in ACL", 32201)
    with sipp.carrier("carrier_uas.xml", termination.primary_port) as carrier:
        inside = sipp.pbx(
            "pbx_uac_digest.xml",
            domain=trunk.domain,
            caller=termination.caller,
            args=["-au", USER, "-ap", PASSWORD, *auth_uri(trunk)],
            binary=sipp_sha256,
        )
    assert inside.returncode == 0, inside.describe() + termination.diagnostics()
    # Inside the ACL the digest is still asked for, and then the call goes through.
    assert len(inside.responses_received(407)) == 1, inside.describe()
    assert carrier.run.returncode == 0, carrier.run.describe()


def test_termination_stops_answering_a_source_after_10_authentication_failures(
    termination: Any, sipp: Any
) -> None:
    trunk = termination.trunk("lockout", acl=("192.0.2.0/24",))
    source = "127.0.0.24"
    failures = sipp.pbx(
        "pbx_uac_refused.xml",
        domain=trunk.domain,
        caller=termination.caller,
        source=source,
        calls=10,
        rate=20,
    )
    assert failures.returncode == 0, failures.describe()
    finals = final_responses_by_call(failures)
    assert len(finals) == 10, failures.describe()
    assert {(m.status, m.header(ERROR)) for m in finals.values()} == {(403, "32201")}

    locked = sipp.pbx(
        "pbx_uac_unanswered.xml", domain=trunk.domain, caller=termination.caller, source=source
    )
    assert_unanswered(locked)
    # Only that source: another one is still answered.
    other = sipp.pbx(
        "pbx_uac_refused.xml", domain=trunk.domain, caller=termination.caller, source="127.0.0.25"
    )
    assert_refused(other, 403, "Source IP address not in ACL", 32201)


# --- 4. numbers --------------------------------------------------------------------------------


def test_termination_rejects_number_without_plus_with_400(termination: Any, sipp: Any) -> None:
    trunk = termination.trunk("plus")
    run = sipp.pbx(
        "pbx_uac_refused.xml",
        domain=trunk.domain,
        caller=termination.caller,
        service=DESTINATION.removeprefix("+"),
    )
    assert_refused(run, 400, "Not E.164", 21211)


def test_termination_refuses_a_caller_id_the_account_does_not_hold_with_403(
    termination: Any, sipp: Any
) -> None:
    trunk = termination.trunk("callerid")
    run = sipp.pbx("pbx_uac_refused.xml", domain=trunk.domain, caller="+15005550006")
    assert_refused(run, 403, "not a number of the account", 21212)


def test_termination_refuses_a_call_without_any_caller_id_with_403(
    termination: Any, sipp: Any
) -> None:
    trunk = termination.trunk("nocaller")
    run = sipp.pbx("pbx_uac_refused.xml", domain=trunk.domain, caller="anonymous")
    assert_refused(run, 403, "no caller ID", 21212)


def test_termination_accepts_a_verified_caller_id_that_is_no_number_of_the_account(
    termination: Any, sipp: Any
) -> None:
    trunk = termination.trunk("verified")
    verified = "+19195550142"
    done = termination.platform.trunkline(
        "admin", "caller-ids", "verify", "--account", termination.account_sid, "--number", verified
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with sipp.carrier("carrier_uas.xml", termination.primary_port) as carrier:
        run = sipp.pbx("pbx_uac_call.xml", domain=trunk.domain, caller=verified)
    assert run.returncode == 0, run.describe() + termination.diagnostics()
    assert carrier.run.returncode == 0, carrier.run.describe()
    invite = carrier.run.requests_received("INVITE")[0]
    assert f"<sip:{verified}@{support.ZONE}>" in (invite.header("From") or "")


@pytest.mark.parametrize(
    "header",
    [
        "Remote-Party-ID: <sip:{caller}@127.0.0.1>;party=calling;screen=yes;privacy=off",
        "P-Asserted-Identity: <sip:{caller}@127.0.0.1>",
    ],
    ids=["remote-party-id", "p-asserted-identity"],
)
def test_termination_takes_the_caller_id_from_rpid_or_pai_when_from_has_none(
    termination: Any, sipp: Any, header: str
) -> None:
    trunk = termination.trunk("rpid")
    line = header.format(caller=termination.caller)
    with sipp.carrier("carrier_uas.xml", termination.primary_port) as carrier:
        run = sipp.pbx("pbx_uac_call.xml", domain=trunk.domain, caller="anonymous", extra=[line])
    assert run.returncode == 0, run.describe() + termination.diagnostics()
    assert carrier.run.returncode == 0, carrier.run.describe()
    invite = carrier.run.requests_received("INVITE")[0]
    assert f"sip:{termination.caller}@{support.ZONE}" in (invite.header("From") or "")
    name, _, value = line.partition(": ")
    assert invite.headers(name) == [value], carrier.run.describe()
    record = termination.call_record(support.call_sid_of(run))
    assert record._from == termination.caller


# --- 5. limits ---------------------------------------------------------------------------------


def test_termination_refuses_the_second_call_within_a_second_with_503(
    termination: Any, sipp: Any
) -> None:
    trunk = termination.trunk("cps")
    with sipp.carrier("carrier_uas_busy.xml", termination.primary_port) as carrier:
        run = sipp.pbx(
            "pbx_uac_refused.xml",
            domain=trunk.domain,
            caller=termination.caller,
            calls=2,
            rate=10,  # 100 ms apart
        )
    assert run.returncode == 0, run.describe()
    finals = sorted(final_responses_by_call(run).values(), key=lambda m: m.status)
    assert [m.status for m in finals] == [486, 503], run.describe()
    assert "calls-per-second" in finals[1].reason, run.describe()
    assert finals[1].header(ERROR) == "32001", run.describe()
    assert len(carrier.run.requests_received("INVITE")) == 1, carrier.run.describe()


# --- 7. routing --------------------------------------------------------------------------------


def test_termination_fails_over_to_the_next_gateway_on_503(termination: Any, sipp: Any) -> None:
    trunk = termination.trunk("failover")
    with (
        sipp.carrier("carrier_uas_unavailable.xml", termination.primary_port) as first,
        sipp.carrier("carrier_uas.xml", termination.secondary_port) as second,
    ):
        run = sipp.pbx("pbx_uac_call.xml", domain=trunk.domain, caller=termination.caller)
    assert run.returncode == 0, run.describe() + termination.diagnostics()
    assert first.run.returncode == 0, first.run.describe()  # its 503 was acknowledged
    assert second.run.returncode == 0, second.run.describe()
    assert run.responses_received(503) == [], run.describe()
    (record,) = termination.calls_of(trunk.sid)  # one call, however many attempts
    assert record.status == "completed"


def test_termination_relays_a_486_without_failing_over(termination: Any, sipp: Any) -> None:
    trunk = termination.trunk("busy")
    with (
        support.udp_sink(termination.secondary_port) as second,
        sipp.carrier("carrier_uas_busy.xml", termination.primary_port) as first,
    ):
        run = sipp.pbx("pbx_uac_refused.xml", domain=trunk.domain, caller=termination.caller)
        time.sleep(0.3)
        assert second.drain() == []
    assert_refused(run, 486, "Busy Here", None)
    assert first.run.returncode == 0, first.run.describe()
    (record,) = termination.calls_of(trunk.sid)
    assert record.status == "busy"
    events = support.call_events(termination.platform.nats_url, termination.account_sid, record.sid)
    assert (events["ended"].status, events["ended"].sip_status) == ("busy", 486), events


def test_termination_relays_the_last_failure_when_every_gateway_fails(
    termination: Any, sipp: Any
) -> None:
    trunk = termination.trunk("allfail")
    with (
        sipp.carrier("carrier_uas_unavailable.xml", termination.primary_port) as first,
        sipp.carrier("carrier_uas_unavailable.xml", termination.secondary_port) as second,
    ):
        run = sipp.pbx("pbx_uac_refused.xml", domain=trunk.domain, caller=termination.caller)
    assert_refused(run, 503, "Service Unavailable", None)
    assert first.run.returncode == 0 and second.run.returncode == 0, second.run.describe()
    (record,) = termination.calls_of(trunk.sid)
    assert record.status == "failed"
    events = support.call_events(termination.platform.nats_url, termination.account_sid, record.sid)
    assert (events["ended"].status, events["ended"].sip_status) == ("failed", 503), events


def test_termination_to_an_on_net_number_without_origination_uri_is_refused_with_32010(
    termination: Any, sipp: Any
) -> None:
    # On-net calls go to the called trunk's PBX (e2e/tests/test_origination.py); a trunk
    # with no origination URI cannot take them, and the carriers are not tried either.
    trunk = termination.trunk("onnet")
    receiving = termination.trunk("onnet-dest")
    number = termination.buy_number("415", trunk_sid=receiving.sid)
    with support.udp_sink(termination.primary_port) as carrier:
        run = sipp.pbx(
            "pbx_uac_refused.xml", domain=trunk.domain, caller=termination.caller, service=number
        )
        assert carrier.drain() == []
    final = assert_refused(run, 480, "no valid origination URI", 32010)
    assert final.status == 480


# --- 8. the call -------------------------------------------------------------------------------


def test_termination_relays_a_call_answered_by_the_carrier_and_hung_up_by_the_pbx(
    termination: Any, sipp: Any
) -> None:
    trunk = termination.trunk("call")
    with sipp.carrier("carrier_uas.xml", termination.primary_port) as carrier:
        run = sipp.pbx("pbx_uac_call.xml", domain=trunk.domain, caller=termination.caller)
    assert run.returncode == 0, run.describe() + termination.diagnostics()
    assert carrier.run.returncode == 0, carrier.run.describe()

    invite = run.sent("INVITE")[0]
    responses = [m for m in run.responses_received() if m.method == "INVITE"]
    assert responses[0].status == 100, run.describe()
    assert responses[0].seconds - invite.seconds < 0.5, run.describe()
    assert [m.status for m in responses][:3] == [100, 180, 200], run.describe()
    assert run.responses_received(200)[-1].method == "BYE", run.describe()

    far = carrier.run.requests_received("INVITE")[0]
    assert far.request_uri == f"sip:{DESTINATION}@127.0.0.1:{termination.primary_port}"
    assert f"<sip:{termination.caller}@{support.ZONE}>" in (far.header("From") or "")
    assert far.header("Max-Forwards") == "69", carrier.run.describe()
    assert far.header("Call-ID") != invite.header("Call-ID")
    assert "x-trunkline-e2e" not in far.header_names  # unknown headers stay on leg A
    # The audio is anchored: each side sees the relay's address, never the other side's.
    answer = carrier.run.sent(status=200)[0]
    relayed_answer = run.responses_received(200)[0]
    assert audio_port(far.body) != audio_port(invite.body), far.body
    assert audio_port(relayed_answer.body) != audio_port(answer.body), relayed_answer.body
    assert [m.method for m in carrier.run.received() if not m.is_response][1:] == ["ACK", "BYE"]


def test_termination_relays_a_bye_from_the_carrier(termination: Any, sipp: Any) -> None:
    trunk = termination.trunk("calleebye")
    with sipp.carrier("carrier_uas_hangup.xml", termination.primary_port) as carrier:
        run = sipp.pbx("pbx_uac_callee_hangup.xml", domain=trunk.domain, caller=termination.caller)
    assert run.returncode == 0, run.describe() + termination.diagnostics()
    assert carrier.run.returncode == 0, carrier.run.describe()
    assert len(run.requests_received("BYE")) >= 1
    assert carrier.run.responses_received(200), carrier.run.describe()
    call_sid = support.call_sid_of(run)
    assert termination.call_record(call_sid).status == "completed"
    events = support.call_events(termination.platform.nats_url, termination.account_sid, call_sid)
    assert events["ended"].status == "completed" and events["ended"].ended_by == "callee"


def test_termination_cancels_the_carrier_leg_when_the_pbx_cancels(
    termination: Any, sipp: Any
) -> None:
    trunk = termination.trunk("cancel")
    with sipp.carrier("carrier_uas_ringing.xml", termination.primary_port) as carrier:
        run = sipp.pbx("pbx_uac_cancel.xml", domain=trunk.domain, caller=termination.caller)
    assert run.returncode == 0, run.describe() + termination.diagnostics()
    assert [m.method for m in run.responses_received(200)] == ["CANCEL"], run.describe()
    assert run.responses_received(487), run.describe()
    assert carrier.run.returncode == 0, carrier.run.describe()  # CANCEL, 487, ACK
    assert carrier.run.requests_received("CANCEL"), carrier.run.describe()
    (record,) = termination.calls_of(trunk.sid)
    assert record.status == "canceled"
    events = support.call_events(termination.platform.nats_url, termination.account_sid, record.sid)
    assert set(events) == {"started", "ringing", "ended"}, events
    assert events["ended"].status == "canceled" and events["ended"].ended_by == "caller"


def test_termination_relays_a_hold_reinvite_to_the_carrier(termination: Any, sipp: Any) -> None:
    trunk = termination.trunk("hold")
    with sipp.carrier("carrier_uas_hold.xml", termination.primary_port) as carrier:
        run = sipp.pbx("pbx_uac_hold.xml", domain=trunk.domain, caller=termination.caller)
    assert run.returncode == 0, run.describe() + termination.diagnostics()
    assert carrier.run.returncode == 0, carrier.run.describe()
    invites = carrier.run.requests_received("INVITE")
    reinvite = invites[-1]
    assert reinvite.header("Call-ID") == invites[0].header("Call-ID"), carrier.run.describe()
    assert reinvite.header("CSeq") != invites[0].header("CSeq"), carrier.run.describe()
    assert "a=sendonly" in reinvite.body, carrier.run.describe()
    answer = [m for m in run.responses_received(200) if m.header("CSeq") == "2 INVITE"]
    assert answer and "a=recvonly" in answer[0].body, run.describe()


def test_termination_strips_session_timers_toward_the_carrier(termination: Any, sipp: Any) -> None:
    trunk = termination.trunk("timer")
    extra = ["Supported: timer, replaces", "Session-Expires: 1800;refresher=uac", "Min-SE: 90"]
    with sipp.carrier("carrier_uas.xml", termination.primary_port) as carrier:
        run = sipp.pbx(
            "pbx_uac_call.xml", domain=trunk.domain, caller=termination.caller, extra=extra
        )
    assert run.returncode == 0, run.describe() + termination.diagnostics()
    far = carrier.run.requests_received("INVITE")[0]
    supported = ",".join(far.headers("Supported")).lower()
    assert "timer" not in supported, carrier.run.describe()
    assert far.headers("Session-Expires") == [] and far.headers("Min-SE") == []


def test_termination_refuses_a_call_that_requires_session_timers_with_420(
    termination: Any, sipp: Any
) -> None:
    trunk = termination.trunk("require")
    run = sipp.pbx(
        "pbx_uac_refused.xml",
        domain=trunk.domain,
        caller=termination.caller,
        extra=["Supported: timer", "Require: timer", "Session-Expires: 1800"],
    )
    assert_refused(run, 420, "Bad Extension", None)


def test_termination_passes_diversion_but_removes_a_platform_number_not_the_accounts(
    termination: Any, sipp: Any
) -> None:
    trunk = termination.trunk("diversion")
    foreign = "<sip:+14155550111@pbx.example.com>;reason=unconditional"
    not_ours = f"<sip:+17185550123@{support.ZONE}>;reason=user-busy"
    ours = f"<sip:{termination.caller}@{support.ZONE}>;reason=no-answer"
    extra = [f"Diversion: {foreign}", f"Diversion: {not_ours}", f"Diversion: {ours}"]
    with sipp.carrier("carrier_uas.xml", termination.primary_port) as carrier:
        run = sipp.pbx(
            "pbx_uac_call.xml", domain=trunk.domain, caller=termination.caller, extra=extra
        )
    assert run.returncode == 0, run.describe() + termination.diagnostics()
    far = carrier.run.requests_received("INVITE")[0]
    diversions = [v.strip() for line in far.headers("Diversion") for v in line.split(",")]
    assert diversions == [foreign, ours], carrier.run.describe()


# --- 9. OPTIONS --------------------------------------------------------------------------------


def test_termination_answers_options_once_per_10_s_per_source(termination: Any, sipp: Any) -> None:
    trunk = termination.trunk("ping")
    run = sipp.pbx(
        "pbx_options_twice.xml",
        domain=trunk.domain,
        variables={"domain": trunk.domain},
        source="127.0.0.26",
    )
    assert run.returncode == 0, run.describe()
    (answer,) = run.responses_received()
    assert answer.status == 200 and answer.header("CSeq") == "1 OPTIONS", run.describe()
    assert "INVITE" in (answer.header("Allow") or ""), run.describe()
    assert [m.header("CSeq") for m in run.sent("OPTIONS")][-1] == "2 OPTIONS"


# --- 11. records and events --------------------------------------------------------------------


def test_termination_records_the_call_and_publishes_its_lifecycle_events(
    termination: Any, sipp: Any
) -> None:
    trunk = termination.trunk("events")
    with sipp.carrier("carrier_uas.xml", termination.primary_port) as carrier:
        run = sipp.pbx(
            "pbx_uac_call.xml", domain=trunk.domain, caller=termination.caller, pause_ms=1200
        )
    assert run.returncode == 0, run.describe() + termination.diagnostics()
    assert carrier.run.returncode == 0, carrier.run.describe()
    call_sid = support.call_sid_of(run)

    record = termination.call_record(call_sid)
    assert record.status == "completed"
    assert record.direction == "trunking-terminating"
    assert (record._from, record.to) == (termination.caller, DESTINATION)
    assert record.trunk_sid == trunk.sid
    assert record.account_sid == termination.account_sid
    assert int(record.duration) >= 1
    listed = termination.client.api.v2010.accounts(termination.account_sid).calls.list(
        to=DESTINATION
    )
    assert call_sid in [c.sid for c in listed]

    events = support.call_events(termination.platform.nats_url, termination.account_sid, call_sid)
    assert set(events) == {"started", "ringing", "answered", "ended"}, events
    for event in events.values():
        assert event.call_sid == call_sid and event.trunk_sid == trunk.sid
        assert event.direction == "trunking-terminating"
        assert (getattr(event, "from"), event.to) == (termination.caller, DESTINATION)
    ended = events["ended"]
    assert ended.status == "completed" and ended.ended_by == "caller", ended
    assert ended.duration_seconds >= 1, ended


# --- last: gateways that do not answer ---------------------------------------------------------
# The platform gives up on a silent gateway after 4 s, but its INVITE transaction to it goes
# on retransmitting (Timer A, up to Timer B, 32 s): a carrier sipp started on that port later
# would take such a retransmission for a new call. So these tests come last, and the one
# whose gateway never answers at all is the very last.


def test_termination_hangs_up_a_gateway_that_answers_after_it_was_given_up_on(
    termination: Any, sipp: Any
) -> None:
    trunk = termination.trunk("lateok")
    with (
        sipp.carrier("carrier_uas_late_answer.xml", termination.primary_port, wait=3) as first,
        sipp.carrier("carrier_uas.xml", termination.secondary_port) as second,
    ):
        run = sipp.pbx(
            "pbx_uac_call.xml",
            domain=trunk.domain,
            caller=termination.caller,
            pause_ms=2500,  # the call is still up when the first gateway answers
            timeout=15,
        )
    assert run.returncode == 0, run.describe() + termination.diagnostics()
    assert second.run.returncode == 0, second.run.describe()
    assert not run.requests_received("BYE"), run.describe()  # the PBX's call stays up
    assert first.run.requests_received("ACK"), first.run.describe()
    assert first.run.requests_received("BYE"), first.run.describe()
    assert first.run.returncode == 0, first.run.describe()


def test_termination_cancels_a_gateway_that_rings_after_it_was_given_up_on(
    termination: Any, sipp: Any
) -> None:
    trunk = termination.trunk("late")
    with (
        sipp.carrier("carrier_uas_late.xml", termination.primary_port, wait=6) as first,
        sipp.carrier("carrier_uas.xml", termination.secondary_port) as second,
    ):
        run = sipp.pbx(
            "pbx_uac_call.xml",
            domain=trunk.domain,
            caller=termination.caller,
            pause_ms=2500,  # the call is still up when the first gateway rings
            timeout=15,
        )
    assert run.returncode == 0, run.describe() + termination.diagnostics()
    assert second.run.returncode == 0, second.run.describe()
    assert first.run.sent(status=180), first.run.describe()
    assert first.run.requests_received("CANCEL"), first.run.describe()


def test_termination_fails_over_to_the_next_gateway_after_4_s_of_silence(
    termination: Any, sipp: Any
) -> None:
    trunk = termination.trunk("silent")
    with (
        sipp.carrier("carrier_uas_silent.xml", termination.primary_port) as first,
        sipp.carrier("carrier_uas.xml", termination.secondary_port) as second,
    ):
        run = sipp.pbx(
            "pbx_uac_call.xml", domain=trunk.domain, caller=termination.caller, timeout=15
        )
    assert run.returncode == 0, run.describe() + termination.diagnostics()
    assert second.run.returncode == 0, second.run.describe()
    tried_first = first.run.requests_received("INVITE")
    assert tried_first, first.run.describe()
    tried_second = second.run.requests_received("INVITE")[0]
    waited = tried_second.seconds - tried_first[0].seconds
    assert 3.8 <= waited <= 5.5, f"{waited:.2f} s\n{first.run.describe()}"


def audio_port(sdp: str) -> int:
    for line in sdp.splitlines():
        if line.startswith("m=audio "):
            return int(line.split()[1])
    raise AssertionError(f"no m=audio line in {sdp!r}")


def final_responses_by_call(run: Any) -> dict[str, Any]:
    """The last final response the PBX got in each call (Call-ID), for multi-call runs."""
    finals: dict[str, Any] = {}
    for message in run.responses_received():
        if (message.status or 0) >= 200 and message.method == "INVITE":
            finals[message.header("Call-ID")] = message
    return finals
