"""Origination end to end: a carrier (sipp, sending from a gateway of the carriers file)
calls one of the platform's numbers; the platform finds the number's trunk and sends the
call to the trunk's origination URLs (sipp as the PBX), by priority and weight, failing over
as the guide says; CNAM, redirects, a secure trunk's TLS and SRTP, disaster recovery and
on-net calls. The happy path, weighted failover, redirect and CNAM run over UDP, TCP and TLS
(the carrier's leg and the PBX's leg alike).
"""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from trunkline.harness.modules import load_module

pytestmark = pytest.mark.e2e

support = load_module(Path(__file__).with_name("termination_support.py"))
HOST = support.HOST


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, harness_sip: Mapping[str, Any]
) -> Iterator[Any]:
    # Disaster-recovery TwiML is served from loopback here, which the platform refuses by
    # default (customers' servers are public).
    environment = {"TRUNKLINE_DR_ALLOW_PRIVATE": "1"}
    yield from support.start_termination(tmp_path_factory, harness_sip["sipp"], environment)


TRANSPORTS = ("udp", "tcp", "tls")


def origination_trunk(
    platform: Any,
    name: str,
    urls: list[tuple[int, int]],
    *,
    transport: str = "udp",
    weights: list[int] | None = None,
    secure: bool = False,
    scheme: str = "sip",
) -> tuple[Any, str]:
    """A trunk with origination URLs (port, priority) on loopback and a number on it."""
    trunk = platform.trunk(name)
    trunking = platform.client.trunking.v1
    if secure:
        trunking.trunks(trunk.sid).update(secure=True)
    origination_urls = trunking.trunks(trunk.sid).origination_urls
    for index, (port, priority) in enumerate(urls):
        origination_urls.create(
            friendly_name=f"{name}-{index}",
            sip_url=support.pbx_url(port, transport, scheme),
            priority=priority,
            weight=weights[index] if weights else 10,
            enabled=True,
        )
    return trunk, platform.buy_number("201", trunk_sid=trunk.sid)


def carrier_calls(
    sipp: Any,
    platform: Any,
    number: str,
    scenario: str = "pbx_uac_call.xml",
    *,
    transport: str = "udp",
    caller: str = "+14155550100",
) -> Any:
    """The primary carrier gateway sends a call for `number` to the platform (over UDP from
    its gateway port; over TCP or TLS the platform knows a carrier by its address)."""
    return sipp.pbx(
        scenario,
        domain=HOST,  # not a trunk domain: an origination call, trusted by its source
        caller=caller,
        service=number,
        local_port=platform.primary_port if transport == "udp" else None,
        transport=transport,
    )


def via_transport(message: Any) -> str:
    """The transport of a request's topmost Via (`SIP/2.0/TCP host;...` -> `tcp`)."""
    via = message.header("Via") or ""
    return via.split()[0].rpartition("/")[2].lower()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_origination_sends_a_call_for_a_trunk_number_to_its_origination_url(
    platform: Any, tmp_path: Path, transport: str
) -> None:
    # The carrier's leg and the PBX's leg both over `transport`.
    (pbx_port,) = support.free_transport_ports(1, transport)
    trunk, number = origination_trunk(
        platform, f"orig-happy-{transport}", [(pbx_port, 10)], transport=transport
    )
    sipp = platform.sipp(tmp_path)
    with sipp.carrier("carrier_uas.xml", pbx_port, transport=transport) as pbx:
        run = carrier_calls(sipp, platform, number, transport=transport)
    assert run.returncode == 0, run.describe() + platform.diagnostics()
    assert pbx.run.returncode == 0, pbx.run.describe()
    (invite,) = pbx.run.requests_received("INVITE")
    assert invite.request_uri.startswith(f"sip:{number}@"), invite.request_uri
    assert via_transport(invite) == transport, invite.header("Via")
    assert invite.header("Diversion") == f"<sip:{number}@trunkline.local>"
    (bye,) = pbx.run.requests_received("BYE")
    assert via_transport(bye) == transport, bye.header("Via")
    (record,) = platform.calls_of(trunk.sid)
    assert record.direction == "trunking-originating"
    assert record.status == "completed"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_weighted_failover_tries_the_rest_of_the_priority_before_the_next(
    platform: Any, tmp_path: Path, transport: str
) -> None:
    # Priority 10: a PBX that answers 503 with weight 65535 (drawn first but for 1 draw in
    # 65536) and one that answers with weight 1; priority 20 must not be tried.
    down, up, later = support.free_transport_ports(3, transport)
    trunk, number = origination_trunk(
        platform,
        f"orig-weighted-{transport}",
        [(down, 10), (up, 10), (later, 20)],
        transport=transport,
        weights=[65535, 1, 10],
    )
    sipp = platform.sipp(tmp_path)
    with (
        sipp.carrier("carrier_uas_unavailable.xml", down, transport=transport) as refusing,
        sipp.carrier("carrier_uas.xml", up, transport=transport) as answering,
        sipp.carrier("carrier_uas.xml", later, transport=transport, wait=0.5) as next_priority,
    ):
        run = carrier_calls(sipp, platform, number, transport=transport)
    assert run.returncode == 0, run.describe() + platform.diagnostics()
    assert refusing.run.requests_received("INVITE"), refusing.run.describe()
    assert answering.run.returncode == 0, answering.run.describe()
    assert next_priority.run.requests_received("INVITE") == []
    (record,) = platform.calls_of(trunk.sid)
    assert record.status == "completed"


def test_origination_fails_over_to_the_next_priority_on_503_but_not_on_486(
    platform: Any, tmp_path: Path
) -> None:
    first, second = support.free_udp_ports(2)
    _, number = origination_trunk(platform, "orig-failover", [(first, 10), (second, 20)])
    sipp = platform.sipp(tmp_path)
    with (
        sipp.carrier("carrier_uas_unavailable.xml", first) as down,
        sipp.carrier("carrier_uas.xml", second) as up,
    ):
        run = carrier_calls(sipp, platform, number)
    assert run.returncode == 0, run.describe() + platform.diagnostics()
    assert down.run.requests_received("INVITE") and up.run.requests_received("INVITE")
    assert up.run.returncode == 0, up.run.describe()

    _, number = origination_trunk(platform, "orig-busy", [(first, 10), (second, 20)])
    with (
        sipp.carrier("carrier_uas_busy.xml", first) as busy,
        support.udp_sink(second) as never,
    ):
        refused = carrier_calls(sipp, platform, number, "pbx_uac_refused.xml")
        tried_second = never.drain()
    assert refused.final_response().status == 486, refused.describe()
    assert busy.run.requests_received("INVITE")
    assert tried_second == []  # 486 is one of the answers that go back to the caller


def test_origination_fails_over_to_the_next_priority_after_4_s_without_a_response(
    platform: Any, tmp_path: Path
) -> None:
    silent, answering = support.free_udp_ports(2)
    trunk, number = origination_trunk(platform, "orig-silent", [(silent, 10), (answering, 20)])
    sipp = platform.sipp(tmp_path)
    with (
        sipp.carrier("carrier_uas_silent.xml", silent) as first,
        sipp.carrier("carrier_uas.xml", answering) as second,
    ):
        run = sipp.pbx(
            "pbx_uac_call.xml",
            domain=HOST,
            caller="+14155550100",
            service=number,
            local_port=platform.primary_port,
            timeout=15,
        )
    assert run.returncode == 0, run.describe() + platform.diagnostics()
    assert second.run.returncode == 0, second.run.describe()
    tried_first = first.run.requests_received("INVITE")
    assert tried_first, first.run.describe()
    waited = second.run.requests_received("INVITE")[0].seconds - tried_first[0].seconds
    assert 3.8 <= waited <= 5.5, f"{waited:.2f} s\n{first.run.describe()}"
    (record,) = platform.calls_of(trunk.sid)
    assert record.status == "completed"


def test_origination_answers_404_for_a_number_without_a_trunk(
    platform: Any, tmp_path: Path
) -> None:
    number = platform.buy_number("201")
    run = carrier_calls(platform.sipp(tmp_path), platform, number, "pbx_uac_refused.xml")
    final = run.final_response()
    assert final.status == 404, run.describe()
    assert "not on a trunk" in final.reason


def test_an_on_net_call_reaches_the_called_trunks_pbx_and_is_recorded_at_both_trunks(
    platform: Any, tmp_path: Path
) -> None:
    (pbx_port,) = support.free_udp_ports(1)
    called, number = origination_trunk(platform, "onnet-b", [(pbx_port, 10)])
    calling = platform.trunk("onnet-a")
    sipp = platform.sipp(tmp_path)
    with (
        sipp.carrier("carrier_uas.xml", pbx_port) as pbx_b,
        support.udp_sink(platform.primary_port) as carriers,
    ):
        run = sipp.pbx(
            "pbx_uac_call.xml", domain=calling.domain, caller=platform.caller, service=number
        )
        to_carriers = carriers.drain()
    assert run.returncode == 0, run.describe() + platform.diagnostics()
    assert pbx_b.run.returncode == 0, pbx_b.run.describe()
    assert to_carriers == []  # never left the platform
    (invite,) = pbx_b.run.requests_received("INVITE")
    assert invite.header("Diversion") == f"<sip:{number}@trunkline.local>"
    (terminating,) = platform.calls_of(calling.sid)
    (originating,) = platform.calls_of(called.sid)
    assert terminating.direction == "trunking-terminating"
    assert originating.direction == "trunking-originating"
    assert originating.parent_call_sid == terminating.sid
    assert terminating.status == originating.status == "completed"


def cnam_lookups(platform: Any, trunk_sid: str, count: int, timeout: float = 10.0) -> list[Any]:
    """The CNAM usage events (USAGE stream) of one trunk's calls, once `count` are in."""
    import nats

    from trunkline.cnam.testing import stored_lookups

    async def fetch() -> list[Any]:
        connection = await nats.connect(platform.platform.nats_url, max_reconnect_attempts=0)
        try:
            deadline = time.monotonic() + timeout
            while True:
                stored = await stored_lookups(connection.jetstream(), platform.account_sid)
                found = [lookup for lookup in stored if lookup.trunk_sid == trunk_sid]
                if len(found) >= count or time.monotonic() > deadline:
                    return found
                await asyncio.sleep(0.2)
        finally:
            await connection.close()

    return asyncio.run(fetch())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cnam_puts_the_callers_name_in_from_contact_and_pai_for_north_american_callers(
    platform: Any, tmp_path: Path, transport: str
) -> None:
    support.import_cnam(platform.platform, "+14155550142,ACME WIDGETS\n")
    (pbx_port,) = support.free_transport_ports(1, transport)
    trunk, number = origination_trunk(
        platform, f"orig-cnam-{transport}", [(pbx_port, 10)], transport=transport
    )
    platform.client.trunking.v1.trunks(trunk.sid).update(cnam_lookup_enabled=True)
    sipp = platform.sipp(tmp_path)
    callers = ("+14155550142", "+14155550143", "+442071234567")  # named, unknown, foreign
    with sipp.carrier("carrier_uas.xml", pbx_port, calls=3, transport=transport) as pbx:
        for caller in callers:
            run = carrier_calls(sipp, platform, number, transport=transport, caller=caller)
            assert run.returncode == 0, run.describe() + platform.diagnostics()
    named, unknown, foreign = pbx.run.requests_received("INVITE")
    for header in ("From", "Contact", "P-Asserted-Identity"):
        assert (named.header(header) or "").startswith('"ACME WIDGETS" <'), named.header(header)
    assert '"' not in (unknown.header("From") or "")  # looked up, no name
    assert '"' not in (foreign.header("From") or "")  # other countries get no lookup
    # Every lookup, found or not, is a usage event billing will charge; +44 had none.
    lookups = cnam_lookups(platform, trunk.sid, 2)
    assert sorted((lookup.number, lookup.found) for lookup in lookups) == [
        ("+14155550142", True),
        ("+14155550143", False),
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_302_from_the_pbx_is_followed_once_to_its_contact(
    platform: Any, tmp_path: Path, transport: str
) -> None:
    redirecting, target = support.free_transport_ports(2, transport)
    trunk, number = origination_trunk(
        platform, f"orig-302-{transport}", [(redirecting, 10)], transport=transport
    )
    sipp = platform.sipp(tmp_path)
    moved = {"target": f"{HOST}:{target};transport={transport}"}
    with (
        sipp.carrier(
            "pbx_uas_redirect.xml", redirecting, variables=moved, transport=transport
        ) as first,
        sipp.carrier("carrier_uas.xml", target, transport=transport) as second,
    ):
        run = carrier_calls(sipp, platform, number, transport=transport)
    assert run.returncode == 0, run.describe() + platform.diagnostics()
    assert first.run.returncode == 0, first.run.describe()
    assert second.run.returncode == 0, second.run.describe()
    (invite,) = second.run.requests_received("INVITE")
    assert via_transport(invite) == transport, invite.header("Via")
    (record,) = platform.calls_of(trunk.sid)
    assert record.status == "completed"


@pytest.mark.parametrize("scheme", ["sip", "sips"])
def test_a_secure_trunk_calls_its_pbx_over_tls_offering_srtp_with_one_suite(
    platform: Any, tmp_path: Path, scheme: str
) -> None:
    # `sip:...;transport=tls` and `sips:` both go over TLS, sent as sip: (issue 7, 4).
    (pbx_port,) = support.free_transport_ports(1, "tls")
    trunk, number = origination_trunk(
        platform,
        f"orig-secure-{scheme}",
        [(pbx_port, 10)],
        transport="tls",
        secure=True,
        scheme=scheme,
    )
    sipp = platform.sipp(tmp_path)
    with sipp.carrier("pbx_uas_srtp.xml", pbx_port, transport="tls") as pbx:
        run = carrier_calls(sipp, platform, number)  # the carrier's leg: plain UDP and RTP
    assert run.returncode == 0, run.describe() + platform.diagnostics()
    assert pbx.run.returncode == 0, pbx.run.describe()
    (invite,) = pbx.run.requests_received("INVITE")
    assert invite.request_uri.startswith(f"sip:{number}@"), invite.request_uri
    assert via_transport(invite) == "tls", invite.header("Via")
    media = [line for line in invite.body.splitlines() if line.startswith("m=")]
    assert len(media) == 1 and media[0].split()[2] == "RTP/SAVP", invite.body
    crypto = [line for line in invite.body.splitlines() if line.startswith("a=crypto:")]
    assert len(crypto) == 1 and crypto[0].split()[1] == "AES_CM_128_HMAC_SHA1_80", invite.body
    (answer,) = [m for m in run.responses_received(200) if m.header("CSeq") == "1 INVITE"]
    assert " RTP/AVP " in answer.body, run.describe()
    assert "a=crypto" not in answer.body
    (record,) = platform.calls_of(trunk.sid)
    assert record.status == "completed"


def test_a_redirected_call_of_a_secure_trunk_keeps_tls_and_srtp(
    platform: Any, tmp_path: Path
) -> None:
    # The 302's Contact names no transport: the secure trunk's call still goes over TLS.
    redirecting, target = support.free_transport_ports(2, "tls")
    trunk, number = origination_trunk(
        platform, "orig-302-secure", [(redirecting, 10)], transport="tls", secure=True
    )
    sipp = platform.sipp(tmp_path)
    moved = {"target": f"{HOST}:{target}"}
    with (
        sipp.carrier("pbx_uas_redirect.xml", redirecting, variables=moved, transport="tls"),
        sipp.carrier("pbx_uas_srtp.xml", target, transport="tls") as second,
    ):
        run = carrier_calls(sipp, platform, number)
    assert run.returncode == 0, run.describe() + platform.diagnostics()
    assert second.run.returncode == 0, second.run.describe()
    (invite,) = second.run.requests_received("INVITE")
    assert via_transport(invite) == "tls", invite.header("Via")
    assert invite.request_uri.endswith(";transport=tls"), invite.request_uri
    assert " RTP/SAVP " in invite.body and "a=crypto:" in invite.body, invite.body
    (record,) = platform.calls_of(trunk.sid)
    assert record.status == "completed"


def test_a_second_302_and_a_302_into_the_platform_zone_are_refused_with_32219(
    platform: Any, tmp_path: Path
) -> None:
    first, second = support.free_udp_ports(2)
    _, number = origination_trunk(platform, "orig-302-twice", [(first, 10)])
    sipp = platform.sipp(tmp_path)
    with (
        sipp.carrier("pbx_uas_redirect.xml", first, variables={"target": f"{HOST}:{second}"}),
        sipp.carrier("pbx_uas_redirect.xml", second, variables={"target": f"{HOST}:{first}"}),
    ):
        twice = carrier_calls(sipp, platform, number, "pbx_uac_refused.xml")
    final = twice.final_response()
    assert (final.status, final.header(support.ERROR_HEADER)) == (502, "32219"), twice.describe()
    assert "second time" in final.reason

    _, number = origination_trunk(platform, "orig-302-zone", [(first, 10)])
    into_zone = {"target": "+15105550111@trunkline.local"}
    with sipp.carrier("pbx_uas_redirect.xml", first, variables=into_zone):
        refused = carrier_calls(sipp, platform, number, "pbx_uac_refused.xml")
    final = refused.final_response()
    assert (final.status, final.header(support.ERROR_HEADER)) == (502, "32219"), refused.describe()


@pytest.mark.parametrize("parameter", ["edge=dublin", "tnx=1"])
def test_a_302_to_a_contact_with_an_edge_or_tnx_parameter_is_refused_with_32219(
    platform: Any, tmp_path: Path, parameter: str
) -> None:
    first, second = support.free_udp_ports(2)
    _, number = origination_trunk(platform, "orig-302-param", [(first, 10)])
    sipp = platform.sipp(tmp_path)
    moved = {"target": f"{HOST}:{second};{parameter}"}
    with (
        sipp.carrier("pbx_uas_redirect.xml", first, variables=moved),
        support.udp_sink(second) as never,
    ):
        refused = carrier_calls(sipp, platform, number, "pbx_uac_refused.xml")
        tried = never.drain()
    final = refused.final_response()
    assert (final.status, final.header(support.ERROR_HEADER)) == (502, "32219"), refused.describe()
    assert parameter.partition("=")[0] in final.reason
    assert tried == []


def test_an_origination_url_with_a_user_part_calls_that_user(platform: Any, tmp_path: Path) -> None:
    (pbx_port,) = support.free_udp_ports(1)
    trunk = platform.trunk("orig-user")
    platform.client.trunking.v1.trunks(trunk.sid).origination_urls.create(
        friendly_name="reception",
        sip_url=f"sip:reception@{HOST}:{pbx_port}",
        priority=10,
        weight=10,
        enabled=True,
    )
    number = platform.buy_number("201", trunk_sid=trunk.sid)
    sipp = platform.sipp(tmp_path)
    with sipp.carrier("carrier_uas.xml", pbx_port) as pbx:
        run = carrier_calls(sipp, platform, number)
    assert run.returncode == 0, run.describe() + platform.diagnostics()
    (invite,) = pbx.run.requests_received("INVITE")
    assert invite.request_uri.startswith(f"sip:reception@{HOST}:{pbx_port}"), invite.request_uri
    assert invite.header("Diversion") == f"<sip:{number}@trunkline.local>"


@dataclass(frozen=True)
class TwimlRequest:
    method: str
    path: str
    params: dict[str, list[str]]


class TwimlServer:
    """A customer's web server for the disaster-recovery URL: answers GET and POST with the
    TwiML document of the path (`document` at /recover, `more` at theirs) and keeps each
    request's method, path and parameters (query string or form)."""

    def __init__(self, document: str, more: Mapping[str, str] | None = None) -> None:
        documents = {"/recover": document, **(more or {})}
        requests: list[TwimlRequest] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(urllib.parse.urlsplit(self.path).query)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(self.rfile.read(length).decode())

            def _answer(self, form: str) -> None:
                path = urllib.parse.urlsplit(self.path).path
                requests.append(TwimlRequest(self.command, path, urllib.parse.parse_qs(form)))
                body = documents.get(path, "").encode()
                self.send_response(200 if path in documents else 404)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.documents = documents  # the handler reads this dict: a test may add paths
        self.requests = requests
        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.base = f"http://{HOST}:{self.server.server_address[1]}"
        self.url = f"{self.base}/recover"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def twiml() -> Iterator[Callable[..., TwimlServer]]:
    servers: list[TwimlServer] = []

    def serve(document: str, more: Mapping[str, str] | None = None) -> TwimlServer:
        servers.append(TwimlServer(document, more))
        return servers[-1]

    yield serve
    for server in servers:
        server.close()


def recovering_trunk(
    platform: Any, name: str, pbx_port: int, url: str, method: str = "GET"
) -> tuple[Any, str]:
    trunk, number = origination_trunk(platform, name, [(pbx_port, 10)])
    platform.client.trunking.v1.trunks(trunk.sid).update(
        disaster_recovery_url=url, disaster_recovery_method=method
    )
    return trunk, number


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_disaster_recovery_dials_the_sip_uri_of_its_twiml_when_no_url_answers(
    platform: Any, tmp_path: Path, twiml: Callable[..., TwimlServer], transport: str
) -> None:
    (down,) = support.free_udp_ports(1)
    (backup,) = support.free_transport_ports(1, transport)
    uri = f"sip:backup@{HOST}:{backup}" + ("" if transport == "udp" else f";transport={transport}")
    server = twiml(f"<Response><Dial><Sip>{uri}</Sip></Dial></Response>")
    _, number = recovering_trunk(platform, f"orig-dr-dial-{transport}", down, server.url)
    sipp = platform.sipp(tmp_path)
    with (
        sipp.carrier("carrier_uas_unavailable.xml", down) as failing,
        sipp.carrier("carrier_uas.xml", backup, transport=transport) as answering,
    ):
        run = carrier_calls(sipp, platform, number)
    assert run.returncode == 0, run.describe() + platform.diagnostics()
    assert failing.run.requests_received("INVITE")
    assert answering.run.returncode == 0, answering.run.describe()
    (invite,) = answering.run.requests_received("INVITE")
    assert via_transport(invite) == transport, invite.header("Via")
    (request,) = server.requests
    assert request.method == "GET"
    params = request.params
    assert params["To"] == [number] and params["From"] == ["+14155550100"]
    assert params["Direction"] == ["trunking-originating"]
    assert params["CallSid"][0].startswith("CA")
    assert params["AccountSid"] == [platform.account_sid]
    assert params["CallStatus"] == ["ringing"]


def test_disaster_recovery_rejects_busy_and_a_failing_url_ends_the_call_with_32011(
    platform: Any, tmp_path: Path, twiml: Callable[..., TwimlServer]
) -> None:
    (down,) = support.free_udp_ports(1)
    server = twiml('<Response><Reject reason="busy"/></Response>')
    _, number = recovering_trunk(platform, "orig-dr-busy", down, server.url)
    sipp = platform.sipp(tmp_path)
    with sipp.carrier("carrier_uas_unavailable.xml", down):
        busy = carrier_calls(sipp, platform, number, "pbx_uac_refused.xml")
    assert busy.final_response().status == 486, busy.describe()

    (closed,) = support.free_udp_ports(1)  # nothing listens on this TCP port either
    _, number = recovering_trunk(platform, "orig-dr-down", down, f"http://{HOST}:{closed}/x")
    with sipp.carrier("carrier_uas_unavailable.xml", down):
        failed = carrier_calls(sipp, platform, number, "pbx_uac_refused.xml")
    final = failed.final_response()
    assert final.header(support.ERROR_HEADER) == "32011", failed.describe()
    assert final.status >= 500


@pytest.mark.parametrize(
    ("document", "status", "code"),
    [
        ("<Response><Hangup/></Response>", 480, None),
        ('<Response><Reject reason="rejected"/></Response>', 603, None),
        ('<Response><Pause length="1"/></Response>', 480, None),  # the document's end
        ("<Response><Enqueue>support</Enqueue></Response>", 502, "32011"),
    ],
    ids=["hangup", "reject-rejected", "pause-then-end", "unknown-verb"],
)
def test_disaster_recovery_ends_the_call_as_its_twiml_says(
    platform: Any,
    tmp_path: Path,
    twiml: Callable[..., TwimlServer],
    document: str,
    status: int,
    code: str | None,
) -> None:
    (down,) = support.free_udp_ports(1)
    server = twiml(document)
    _, number = recovering_trunk(platform, "orig-dr-end", down, server.url)
    sipp = platform.sipp(tmp_path)
    with sipp.carrier("carrier_uas_unavailable.xml", down):
        run = carrier_calls(sipp, platform, number, "pbx_uac_refused.xml")
    final = run.final_response()
    assert final.status == status, run.describe()
    assert final.header(support.ERROR_HEADER) == code, run.describe()
    assert len(server.requests) == 1
    if "Pause" in document:
        (invite,) = run.sent("INVITE")
        assert final.seconds - invite.seconds >= 0.9, run.describe()


def test_disaster_recovery_posts_follows_a_redirect_and_dials_a_number(
    platform: Any, tmp_path: Path, twiml: Callable[..., TwimlServer]
) -> None:
    # <Play> is skipped (no audio yet), <Redirect> fetches the next document (POST, as
    # Twilio's default), and <Dial><Number> sends the call to the carriers with its callerId.
    (down,) = support.free_udp_ports(1)
    server = twiml("")
    server.documents["/recover"] = (
        f"<Response><Play>{server.base}/hello.wav</Play>"
        f"<Redirect>{server.base}/next</Redirect></Response>"
    )
    dialled = "+15105550199"
    server.documents["/next"] = (
        f'<Response><Dial callerId="{platform.caller}"><Number>{dialled}</Number></Dial></Response>'
    )
    _, number = recovering_trunk(platform, "orig-dr-post", down, server.url, method="POST")
    sipp = platform.sipp(tmp_path)
    with (
        sipp.carrier("carrier_uas_unavailable.xml", down),
        sipp.carrier("carrier_uas.xml", platform.primary_port) as gateway,
    ):
        # Over TCP: the primary gateway's UDP port is the carrier UAS above.
        run = carrier_calls(sipp, platform, number, transport="tcp")
    assert run.returncode == 0, run.describe() + platform.diagnostics()
    assert gateway.run.returncode == 0, gateway.run.describe()
    (invite,) = gateway.run.requests_received("INVITE")
    assert invite.request_uri.startswith(f"sip:{dialled}@"), invite.request_uri
    assert f"<sip:{platform.caller}@" in (invite.header("From") or ""), invite.header("From")
    first, second = server.requests
    assert (first.method, first.path) == ("POST", "/recover")
    assert first.params["To"] == [number] and first.params["CallStatus"] == ["ringing"]
    assert (second.method, second.path) == ("POST", "/next")
    assert second.params["CallSid"] == first.params["CallSid"]


def test_a_number_whose_trunk_has_no_origination_url_nor_recovery_url_answers_32010(
    platform: Any, tmp_path: Path
) -> None:
    _, number = origination_trunk(platform, "orig-nowhere", [])
    run = carrier_calls(platform.sipp(tmp_path), platform, number, "pbx_uac_refused.xml")
    final = run.final_response()
    assert (final.status, final.header(support.ERROR_HEADER)) == (480, "32010"), run.describe()
    assert "no valid origination URI" in final.reason
