"""Termination header rules: E.164 destination, caller ID, trunk domain, Diversion, timers."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.domain.domains import EDGES, LEGACY_EDGES
from trunkline.signaling.identity import (
    ERROR_CODE_HEADER,
    INVALID_TO_NUMBER,
    LOCAL_EDGE,
    Rejection,
    TrunkHost,
    allowed_diversions,
    caller_id,
    destination_number,
    filter_diversion,
    requires_session_timer,
    strip_session_timer,
    trunk_domain,
    trunk_domain_name,
)
from trunkline.signaling.sip.message import Headers, Request, parse_message
from trunkline.signaling.sip.uri import parse_uri

GOLDEN = Path(__file__).parent / "golden"
ZONE = "example.net"


def invite(*extra: str, from_: str = "<sip:+15105550100@pbx.example.com>;tag=a1") -> Request:
    head = [
        "INVITE sip:+15108675309@acme.pstn.ashburn.example.net SIP/2.0",
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds",
        "Max-Forwards: 70",
        "To: <sip:+15108675309@acme.pstn.ashburn.example.net>",
        f"From: {from_}",
        "Call-ID: a84b4c76e66710@pbx.example.com",
        "CSeq: 314159 INVITE",
        *extra,
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(head) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


# --- (a) destination_number ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "number"),
    [
        ("sip:+15108675309@acme.pstn.example.net", "+15108675309"),
        ("sips:+442079460000@acme.pstn.example.net", "+442079460000"),
        ("sip:+4930123456@acme.pstn.example.net;user=phone", "+4930123456"),
        ("tel:+15108675309", "+15108675309"),
        ("sip:%2B15108675309@acme.pstn.example.net", "+15108675309"),  # escapes are resolved
        ("sip:+15108675309;npdi;rn=+15105550000@acme.pstn.example.net", "+15108675309"),
        ("sip:+12345678@h", "+12345678"),  # 8 digits
        ("sip:+123456789012345@h", "+123456789012345"),  # 15 digits
    ],
)
def test_destination_number_accepts_e164(uri: str, number: str) -> None:
    assert destination_number(parse_uri(uri)) == number


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("sip:acme.pstn.example.net", "no number in the Request-URI"),
        ("sip:15108675309@acme.pstn.example.net", "number must start with +"),
        ("sip:0015108675309@h", "number must start with +"),
        ("sip:5108675309@h", "number must start with +"),
        ("tel:5108675309;phone-context=+1", "number must start with +"),
        ("sip:alice@h", "number must start with +"),
        ("sip:+1-510-867-5309@h", "no separators allowed"),
        ("sip:+1.510.867.5309@h", "no separators allowed"),
        ("tel:+1-510-867-5309", "no separators allowed"),
        ("sip:+1(510)8675309@h", "no separators allowed"),
        ("sip:+1510867530x@h", "only digits allowed after +"),
        ("sip:+1510%208675309@h", "only digits allowed after +"),
        ("sip:+15108675309*1@h", "only digits allowed after +"),
        ("sip:+%D9%A1%D9%A2%D9%A3%D9%A4%D9%A5%D9%A6%D9%A7%D9%A8@h", "only digits allowed"),
        ("sip:+05108675309@h", "country code cannot start with 0"),
        ("sip:+1234567@h", "8 to 15 digits expected"),
        ("sip:+1234567890123456@h", "8 to 15 digits expected"),
        ("sip:+@h", "8 to 15 digits expected"),
    ],
)
def test_destination_number_rejects_with_400_and_21211(uri: str, why: str) -> None:
    with pytest.raises(Rejection) as info:
        destination_number(parse_uri(uri))
    rejection = info.value
    assert rejection.sip_status == 400
    assert rejection.error_code == INVALID_TO_NUMBER == 21211
    assert rejection.reason.startswith("Not E.164: ")
    assert why in rejection.reason


def test_termination_rejects_number_without_plus_with_400() -> None:
    request = invite()
    request.uri = "sip:15108675309@acme.pstn.ashburn.example.net"
    with pytest.raises(Rejection) as info:
        destination_number(request.parsed_uri)
    response = info.value.response(request, to_tag="t1")
    assert (response.status, response.reason) == (400, "Not E.164: number must start with +")
    assert response.headers.get(ERROR_CODE_HEADER) == "21211"
    assert response.to.tag == "t1"
    assert response.call_id == request.call_id
    assert repr(info.value) == "Rejection(400, 'Not E.164: number must start with +', 21211)"


def test_destination_number_of_request_uri_text() -> None:
    assert destination_number("sip:+15108675309@acme.pstn.example.net") == "+15108675309"
    with pytest.raises(Rejection) as info:
        destination_number("sip:+1510@[bad")
    assert (info.value.sip_status, info.value.error_code) == (400, 21211)
    assert info.value.reason == "Not E.164: bad Request-URI (Bad URI host)"
    with pytest.raises(Rejection, match="must start with"):
        destination_number("tel:5108675309;phone-context=example.com")


@given(st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True))
def test_every_e164_number_is_accepted(number: str) -> None:
    assert destination_number(parse_uri(f"sip:{number}@acme.pstn.example.net")) == number
    assert destination_number(parse_uri(f"tel:{number}")) == number


@given(st.text(string.digits + "+-.()*#abc", max_size=20))
def test_anything_accepted_is_e164(user: str) -> None:
    uri = parse_uri("sip:x@h")
    uri.user = user
    try:
        number = destination_number(uri)
    except Rejection as rejection:
        assert (rejection.sip_status, rejection.error_code) == (400, 21211)
    else:
        assert number == user
        assert number[0] == "+" and number[1:].isdigit() and number[1] != "0"
        assert 8 <= len(number) - 1 <= 15


# --- (b) caller_id ------------------------------------------------------------------------------


def test_caller_id_from_from() -> None:
    assert caller_id(invite()) == "+15105550100"


@pytest.mark.parametrize(
    ("from_", "expected"),
    [
        ('"Front Desk" <sips:+15105550100@pbx.example.com>;tag=x', "+15105550100"),
        ("<tel:+1-510-555-0100>;tag=x", "+15105550100"),  # visual separators dropped
        ("<sip:+15105550100;isub=12@pbx>;tag=x", "+15105550100"),  # user parameters dropped
        ("<sip:+1.510.555.0100@pbx;user=phone>;tag=x", "+15105550100"),
        ("sip:+15105550100@pbx;tag=x", "+15105550100"),  # addr-spec form
        ("<sip:15105550100@pbx>;tag=x", "15105550100"),  # returned as found, not E.164
        ("<sip:05105550100@pbx>;tag=x", "05105550100"),
    ],
)
def test_caller_id_forms(from_: str, expected: str) -> None:
    assert caller_id(invite(from_=from_)) == expected


ANONYMOUS = '"Anonymous" <sip:anonymous@anonymous.invalid>;tag=x'


def test_caller_id_falls_back_to_remote_party_id() -> None:
    request = invite(
        'Remote-Party-ID: "Desk" <sip:+15105550111@pbx>;party=calling;privacy=full',
        "P-Asserted-Identity: <sip:+15105550122@pbx>",
        from_=ANONYMOUS,
    )
    assert caller_id(request) == "+15105550111"


def test_caller_id_skips_remote_party_id_of_another_party() -> None:
    request = invite(
        "Remote-Party-ID: <sip:+15105550999@pbx>;party=called",
        "Remote-Party-ID: <sip:alice@pbx>;party=calling, <sip:+15105550111@pbx>",
        from_=ANONYMOUS,
    )
    assert caller_id(request) == "+15105550111"


def test_caller_id_falls_back_to_p_asserted_identity() -> None:
    request = invite(
        "Remote-Party-ID: <sip:+15105550999@pbx>;party=called",
        'P-Asserted-Identity: "Desk" <sip:desk@pbx>, <tel:+15105550122>',
        from_="<sip:pbx.example.com>;tag=x",  # no user at all
    )
    assert caller_id(request) == "+15105550122"


def test_caller_id_passes_over_headers_that_do_not_parse() -> None:
    request = invite(
        "Remote-Party-ID: <sip:+1510@pbx;party=calling",  # unterminated
        'P-Asserted-Identity: "bad <sip:+15105550122@pbx>',
        "P-Asserted-Identity: <sip:+15105550133@pbx>",
        from_=ANONYMOUS,
    )
    assert caller_id(request) == "+15105550133"


def test_caller_id_none_when_no_header_holds_a_number() -> None:
    assert caller_id(invite(from_=ANONYMOUS)) is None
    assert caller_id(invite("P-Asserted-Identity: <sip:bob@pbx>", from_=ANONYMOUS)) is None


def test_caller_id_with_a_from_that_does_not_parse() -> None:
    request = invite("P-Asserted-Identity: <sip:+15105550122@pbx>")
    request.headers.set("From", "<sip:+1510@pbx")
    assert caller_id(request) == "+15105550122"


def test_caller_id_of_a_golden_asterisk_invite() -> None:
    message = parse_message((GOLDEN / "asterisk-invite.sip").read_bytes())
    assert isinstance(message, Request)
    assert caller_id(message) == "15551230000"  # Asterisk sent no '+': the caller decides


# --- (c) trunk_domain ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("acme.pstn.example.net", TrunkHost("acme", None)),
        ("ACME.PSTN.Example.NET", TrunkHost("acme", None)),
        ("acme.pstn.example.net.", TrunkHost("acme", None)),
        ("acme.pstn.ashburn.example.net", TrunkHost("acme", "ashburn")),
        ("acme.pstn.sao-paulo.example.net", TrunkHost("acme", "sao-paulo")),
        ("acme.pstn.US1.example.net.", TrunkHost("acme", "ashburn")),
        ("acme.pstn.br1.example.net", TrunkHost("acme", "sao-paulo")),
        ("acme.pstn.local.example.net", TrunkHost("acme", "local")),
        ("sub.acme.pstn.example.net", TrunkHost("sub.acme", None)),
        ("sub.acme.pstn.tokyo.example.net", TrunkHost("sub.acme", "tokyo")),
        ("local.pstn.example.net", TrunkHost("local", None)),
        ("my-pbx-1.pstn.example.net", TrunkHost("my-pbx-1", None)),
    ],
)
def test_trunk_domain(host: str, expected: TrunkHost) -> None:
    assert trunk_domain(host, ZONE) == expected


@pytest.mark.parametrize(
    "host",
    [
        "example.net",
        "pstn.example.net",
        ".pstn.example.net",
        "acme.example.net",
        "acme.pstn.example.com",
        "acme.pstn.notexample.net",
        "acme.pstn.paris.example.net",  # not an edge
        "acme.ashburn.example.net",  # no pstn
        "acme.pstn.ashburn.dublin.example.net",
        "acme.pstn.example.net..",
        "a.b.acme.pstn.example.net",  # at most one subdomain level
        "ashburn.pstn.example.net",  # an edge name is no trunk name
        "us1.pstn.dublin.example.net",
        "-acme.pstn.example.net",
        "ac_me.pstn.example.net",
        "acme..pstn.example.net",
        "203.0.113.9",
        "[2001:db8::1]",
        "",
    ],
)
def test_not_a_trunk_domain(host: str) -> None:
    assert trunk_domain(host, ZONE) is None


def test_zone_is_normalized_and_never_empty() -> None:
    assert trunk_domain("acme.pstn.example.net", "Example.NET.") == TrunkHost("acme", None)
    assert trunk_domain("acme.pstn.", "") is None


def test_trunk_domain_name_is_the_stored_claim_key() -> None:
    found = trunk_domain("Sub.Acme.PSTN.us2.Example.net.", ZONE)
    assert found is not None
    assert found.edge == "umatilla"
    assert found.domain_name(ZONE) == "sub.acme.pstn.example.net"
    assert trunk_domain_name("ACME", "Example.net.") == "acme.pstn.example.net"


label_text = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True).filter(
    lambda s: s not in EDGES and s not in LEGACY_EDGES
)
edge_labels = st.sampled_from([*EDGES, *LEGACY_EDGES, LOCAL_EDGE])


@given(
    st.lists(label_text, min_size=1, max_size=2),
    st.one_of(st.none(), edge_labels),
    st.booleans(),
    st.booleans(),
)
def test_trunk_domain_round_trip(
    parts: list[str], edge: str | None, upper: bool, trailing_dot: bool
) -> None:
    name = ".".join(parts)
    host = f"{name}.pstn.{edge}.{ZONE}" if edge else f"{name}.pstn.{ZONE}"
    host = host.upper() if upper else host
    host = host + "." if trailing_dot else host
    expected_edge = None if edge is None else LEGACY_EDGES.get(edge, edge)
    assert trunk_domain(host, ZONE) == TrunkHost(name, expected_edge)
    assert trunk_domain_name(name, ZONE) == f"{name}.pstn.{ZONE}"


@given(st.text(string.ascii_letters + string.digits + ".-_", max_size=40))
def test_trunk_domain_never_raises_and_only_names_trunks_in_the_zone(host: str) -> None:
    found = trunk_domain(host, ZONE)
    if found is not None:
        assert host.lower().rstrip(".").endswith(f".{ZONE}")
        assert ".pstn." in host.lower()


# --- (d) filter_diversion -----------------------------------------------------------------------

NUMBERS = frozenset({"+14155550000", "+14155550001"})


def diversions(headers: Headers) -> list[str]:
    return headers.get_all("Diversion")


def test_diversion_from_elsewhere_is_passed_on() -> None:
    headers = Headers([("Diversion", "<sip:+12125550000@pbx.example.com>;reason=unconditional")])
    assert diversions(filter_diversion(headers, ZONE, NUMBERS)) == [
        "<sip:+12125550000@pbx.example.com>;reason=unconditional"
    ]


def test_diversion_naming_the_platform_must_name_an_account_number() -> None:
    headers = Headers(
        [
            ("Diversion", "<sip:+14155550000@example.net>;reason=no-answer"),
            ("Subject", "hi"),
            ("Diversion", "<sip:+19995550000@example.net>, <sip:+12125550000@pbx.example.com>"),
            ("Diversion", "<sip:+18885550000@acme.pstn.example.net>"),  # a name under the zone
            ("Diversion", "<sip:+14155550001@EXAMPLE.NET.>"),
        ]
    )
    out = filter_diversion(headers, ZONE, NUMBERS)
    assert diversions(out) == [
        "<sip:+14155550000@example.net>;reason=no-answer",
        "<sip:+12125550000@pbx.example.com>",
        "<sip:+14155550001@EXAMPLE.NET.>",
    ]
    assert [name for name, _ in out] == ["Diversion", "Subject"]  # one line, where it was
    assert len(diversions(headers)) == 5  # the input is unchanged


def test_diversion_host_must_be_the_zone_not_just_end_like_it() -> None:
    headers = Headers([("Diversion", "<sip:+19995550000@badexample.net>")])
    assert len(diversions(filter_diversion(headers, ZONE, NUMBERS))) == 1


def test_diversion_number_is_compared_without_separators() -> None:
    headers = Headers([("Diversion", "<sip:+1-415-555-0000@example.net;user=phone>")])
    assert len(diversions(filter_diversion(headers, ZONE, NUMBERS))) == 1


def test_diversion_without_a_number_naming_the_platform_is_removed() -> None:
    headers = Headers([("Diversion", "<sip:example.net>"), ("Diversion", "<sip:bob@example.net>")])
    assert "Diversion" not in filter_diversion(headers, ZONE, NUMBERS)


def test_diversion_tel_uri_names_no_host_and_is_passed_on() -> None:
    headers = Headers([("Diversion", "<tel:+19995550000>;reason=user-busy")])
    assert len(diversions(filter_diversion(headers, ZONE, NUMBERS))) == 1


def test_diversion_that_does_not_parse_is_removed() -> None:
    headers = Headers(
        [
            ("Diversion", "<sip:+12125550000@pbx.example.com"),  # unterminated
            ("Diversion", "<sip:+12125550001@pbx.example.com>"),
            ("Diversion", "not a uri"),
        ]
    )
    assert diversions(filter_diversion(headers, ZONE, NUMBERS)) == [
        "<sip:+12125550001@pbx.example.com>"
    ]


def test_allowed_diversions_for_a_b2bua_that_copies_headers() -> None:
    headers = Headers(
        [
            ("Diversion", "<sip:+19995550000@example.net>, <sip:+14155550000@example.net>"),
            ("Diversion", "<sip:+12125550000@pbx.example.com>"),
        ]
    )
    assert allowed_diversions(headers, "EXAMPLE.net.", NUMBERS) == [
        "<sip:+14155550000@example.net>",
        "<sip:+12125550000@pbx.example.com>",
    ]
    assert allowed_diversions(headers, ZONE, ()) == ["<sip:+12125550000@pbx.example.com>"]
    assert allowed_diversions(Headers(), ZONE, NUMBERS) == []


def test_diversion_untouched_message_keeps_its_bytes() -> None:
    request = invite(
        "Diversion: <sip:+14155550000@example.net>;reason=unconditional",
        "Diversion: <sip:+12125550000@pbx.example.com>",
    )
    original = bytes(request)
    request.headers = filter_diversion(request.headers, ZONE, NUMBERS)
    assert bytes(request) == original


def test_no_diversion_no_change() -> None:
    headers = Headers([("Subject", "x")])
    out = filter_diversion(headers, ZONE, NUMBERS)
    assert out == headers and out is not headers


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["example.net", "pbx.example.com", "x.example.net", "EXAMPLE.net"]),
            st.sampled_from([*NUMBERS, "+19995550000", "bob"]),
        ),
        max_size=8,
    )
)
def test_diversion_model(entries: list[tuple[str, str]]) -> None:
    headers = Headers([("Diversion", f"<sip:{user}@{host}>") for host, user in entries])
    expected = [
        f"<sip:{user}@{host}>"
        for host, user in entries
        if not host.lower().endswith(ZONE) or user in NUMBERS
    ]
    assert diversions(filter_diversion(headers, ZONE, NUMBERS)) == expected


# --- (e) session timers ------------------------------------------------------------------------


def test_strip_session_timer_from_a_golden_asterisk_invite() -> None:
    message = parse_message((GOLDEN / "asterisk-invite.sip").read_bytes())
    assert isinstance(message, Request)
    out = strip_session_timer(message.headers)
    assert out.get_all("Supported") == ["100rel", "replaces", "norefersub", "histinfo"]
    assert "Session-Expires" not in out
    assert "Min-SE" not in out
    assert "Session-Expires" in message.headers  # the input is unchanged
    assert out.get("User-Agent") == "Asterisk PBX 20.5.0"
    assert not requires_session_timer(message.headers)


def test_strip_session_timer_compact_forms_and_require() -> None:
    headers = Headers(
        [
            ("k", "timer"),
            ("Require", "Timer, 100rel"),
            ("Proxy-Require", "timer"),
            ("x", "1800;refresher=uac"),
            ("Min-SE", "90"),
            ("Supported", "replaces"),
        ]
    )
    assert requires_session_timer(headers)
    out = strip_session_timer(headers)
    assert out.get_all("Supported") == ["replaces"]
    assert out.get_all("Require") == ["100rel"]
    assert "Proxy-Require" not in out
    assert "Session-Expires" not in out and "Min-SE" not in out
    assert not requires_session_timer(out)


def test_strip_session_timer_leaves_other_headers_alone() -> None:
    headers = Headers([("Supported", "100rel, replaces"), ("Require", "100rel")])
    out = strip_session_timer(headers)
    assert out == headers and out is not headers


@given(
    st.lists(
        st.lists(st.sampled_from(["timer", "TIMER", "100rel", "replaces", "path"]), max_size=4),
        max_size=3,
    )
)
def test_strip_session_timer_removes_only_timer(lines: list[list[str]]) -> None:
    headers = Headers([("Supported", ", ".join(tags)) for tags in lines if tags])
    out = strip_session_timer(headers)
    expected = [tag for tags in lines for tag in tags if tag.lower() != "timer"]
    assert out.get_all("Supported") == expected
