"""SIP messages (RFC 3261 7, 20, 25): golden messages from real user agents, hostile input,
the header model, serialization and responses."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from trunkline.signaling.sip.message import (
    CSeq,
    Headers,
    NameAddr,
    ParseError,
    Request,
    Response,
    Via,
    make_response,
    new_branch,
    new_tag,
    parse_message,
)
from trunkline.signaling.sip.uri import SipUri

GOLDEN = Path(__file__).parent / "golden"
WELL_FORMED = sorted(p.name for p in GOLDEN.glob("*.sip") if not p.name.startswith("hostile-"))
# Messages whose head is already canonical (CRLF, no folding, one Content-Length), which
# bytes() gives back byte for byte.
VERBATIM = [
    n
    for n in WELL_FORMED
    if n not in {"folded-and-spaced.sip", "lf-only.sip", "carrier-options-no-length.sip"}
]


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def request(name: str) -> Request:
    msg = parse_message(golden(name))
    assert isinstance(msg, Request)
    return msg


def response(name: str) -> Response:
    msg = parse_message(golden(name))
    assert isinstance(msg, Response)
    return msg


def without_length(headers: Headers) -> list[tuple[str, str]]:
    return [(n, v) for n, v in headers if n.lower() not in ("content-length", "l")]


# --- golden messages ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", WELL_FORMED)
def test_golden_message_parses_and_reparses_equal(name: str) -> None:
    msg = parse_message(golden(name))
    again = parse_message(bytes(msg))
    assert without_length(again.headers) == without_length(msg.headers)
    assert again.body == msg.body
    assert bytes(again) == bytes(msg)
    # Every lazily parsed structure of a real message parses too.
    assert msg.vias[0] == msg.top_via
    msg.contacts  # noqa: B018
    msg.routes  # noqa: B018
    msg.record_routes  # noqa: B018
    if isinstance(msg, Request):
        msg.parsed_uri  # noqa: B018


@pytest.mark.parametrize("name", VERBATIM)
def test_unmodified_message_serializes_to_its_original_bytes(name: str) -> None:
    data = golden(name)
    assert bytes(parse_message(data)) == data


def test_sipp_invite_captured() -> None:
    msg = request("sipp-uac-invite.sip")
    assert msg.method == "INVITE"
    assert msg.uri == "sip:service@127.0.0.1:5070"
    assert msg.parsed_uri == SipUri("sip", "service", None, "127.0.0.1", 5070)
    assert msg.call_id == "1-2430@127.0.0.1"
    assert msg.cseq == CSeq(1, "INVITE")
    assert msg.top_via == Via("UDP", "127.0.0.1", 5071, {"branch": "z9hG4bK-2430-1-0"})
    assert msg.from_ == NameAddr(
        "sipp", SipUri("sip", "sipp", None, "127.0.0.1", 5071), {"tag": "2430SIPpTag001"}
    )
    assert msg.to.tag is None
    assert msg.max_forwards == 70
    assert msg.headers.get("Subject") == "Performance Test"
    assert msg.headers.get("Content-Length") == "129"  # sipp pads the value with spaces
    assert msg.body.startswith(b"v=0\r\n") and len(msg.body) == 129


def test_sipp_200_ok_captured() -> None:
    msg = response("sipp-uas-200-invite.sip")
    assert (msg.status, msg.reason) == (200, "OK")
    assert msg.to.tag == "2426SIPpTag011"
    assert msg.contacts == [
        NameAddr(None, SipUri("sip", None, None, "127.0.0.1", 5070, {"transport": "UDP"}))
    ]
    assert msg.max_forwards is None


def test_pjsua2_invite_shape() -> None:
    msg = request("pjsua2-invite.sip")
    assert msg.top_via.rport == ""  # ";rport" without a value asks for it (RFC 3581 3)
    assert msg.top_via.received is None
    assert msg.from_.display_name == "Alice Liddell"
    assert msg.parsed_uri.params == {"transport": "udp"}
    assert msg.contacts[0].uri.params == {"ob": None}
    assert msg.headers.get_all("Allow")[:3] == ["PRACK", "INVITE", "ACK"]
    assert msg.headers.get_all("Supported") == ["replaces", "100rel", "timer", "norefersub"]


def test_pjsua2_register_contact_instance_param_keeps_its_quotes() -> None:
    contact = request("pjsua2-register.sip").contacts[0]
    assert contact.params == {
        "reg-id": "1",
        "+sip.instance": '"<urn:uuid:00000000-0000-0000-0000-00001d9c3a2b>"',
    }


def test_kamailio_forwarded_invite_has_two_vias_and_record_routes() -> None:
    msg = request("kamailio-forwarded-invite.sip")
    assert [v.host for v in msg.vias] == ["10.20.0.5", "192.0.2.10"]
    assert msg.vias[0].port is None
    assert msg.vias[1].received == "203.0.113.77"
    assert msg.vias[1].rport == "40123"
    assert msg.max_forwards == 69
    assert [r.uri.host for r in msg.record_routes] == ["198.51.100.5", "10.20.0.5"]
    assert msg.record_routes[0].uri.params["lr"] == "on"


def test_authentication_headers_are_not_split_on_commas() -> None:
    challenge = response("asterisk-401.sip").headers.get_all("WWW-Authenticate")
    assert len(challenge) == 1 and challenge[0].startswith('Digest realm="asterisk",nonce=')
    proxy = response("kamailio-407.sip").headers.get_all("Proxy-Authenticate")
    assert [c.rsplit("algorithm=", 1)[1] for c in proxy] == ["SHA-256", "MD5"]


def test_reason_header_with_quoted_text() -> None:
    msg = request("asterisk-bye.sip")
    assert msg.headers.get_all("Reason") == ['Q.850;cause=16;text="Normal Clearing"']


def test_compact_forms_map_to_full_names() -> None:
    msg = request("compact-forms.sip")
    assert msg.call_id == "compact-1@192.0.2.30"
    assert msg.from_.tag == "c0mp4ct"
    assert msg.to.uri.user == "+15558675309"
    assert msg.top_via.branch == "z9hG4bKcompact1"
    assert msg.contacts[0].uri.user == "compact"
    assert msg.headers.get_all("Supported") == msg.headers.get_all("k") == ["timer", "100rel"]
    assert msg.headers.get("Subject") == "compact forms"
    assert msg.headers.get("Event") == "refer"
    assert msg.headers.get_all("Allow-Events") == ["talk", "hold"]
    assert msg.headers.get("Content-Type") == "application/sdp"
    assert len(msg.body) == int(msg.headers.get("content-length") or "")
    # The names are written back as they came.
    assert b"\r\nv: SIP/2.0/UDP" in bytes(msg)


def test_folding_and_whitespace_around_separators() -> None:
    msg = request("folded-and-spaced.sip")
    assert msg.headers.get("Subject") == "a subject that continues on the next line"
    assert msg.from_.display_name == 'Folded "Q" Name'
    assert msg.from_.tag == "f01d"
    assert msg.top_via == Via("UDP", "192.0.2.40", 5060, {"branch": "z9hG4bKfolded1"})
    assert msg.max_forwards == 70
    out = bytes(msg)
    assert b"Subject: a subject that continues on the next line\r\n" in out
    # An unknown header keeps its name and value, spacing and all.
    assert b"\r\nX-Carrier-Route: edge-1, edge-2 ;  weird=spacing\r\n" in out


def test_lone_lf_line_ends_are_accepted_and_written_as_crlf() -> None:
    msg = request("lf-only.sip")
    assert msg.call_id == "lf-only-1@192.0.2.41"
    out = bytes(msg)
    assert out.count(b"\r\n") == out.count(b"\n")
    assert parse_message(out) == msg


def test_ipv6_tel_lists_and_quoted_commas() -> None:
    msg = request("ipv6-tel.sip")
    assert msg.parsed_uri == SipUri(
        "tel", "+1-201-555-0123", None, "", None, {"phone-context": "+1"}
    )
    assert [(v.transport, v.host, v.port) for v in msg.vias] == [
        ("TCP", "2001:db8::10", 5060),
        ("UDP", "2001:db8::20", None),
        ("TLS", "edge.example.net", 5061),
    ]
    assert msg.top_via.received == "2001:db8::9"
    assert str(msg.top_via).startswith("SIP/2.0/TCP [2001:db8::10]:5060;")
    assert [r.uri.hostport for r in msg.routes] == ["[2001:db8::1]:5060", "core.example.net"]
    assert msg.from_.display_name == 'Caller, "Esq."'
    assert msg.from_.uri == SipUri(
        "sips",
        "caller",
        "secret",
        "2001:db8::20",
        5061,
        {"transport": "tls"},
        {"X-Foo": "bar baz", "Priority": "urgent"},
    )
    # An addr-spec's parameters belong to the header, not the URI (RFC 3261 20.10).
    assert msg.to.uri == SipUri("tel", "+1-201-555-0123", None, "", None)
    assert msg.to.params == {"tag": "nottag", "phone-context": "+1"}
    assert [c.display_name for c in msg.contacts] == [None, "Second, Contact"]
    assert msg.contacts[0].params == {"expires": "60"}
    assert msg.contacts[1].params == {"q": "0.5"}


def test_datagram_without_content_length_takes_the_rest() -> None:
    data = golden("carrier-options-no-length.sip")
    msg = parse_message(data + b"trailing")
    assert msg.body == b"trailing"
    assert b"\r\nContent-Length: 8\r\n\r\ntrailing" in bytes(msg)


# --- hostile input -----------------------------------------------------------------------------

HOSTILE = {
    # name: (reason, answerable, status)
    "hostile-content-length-too-big.sip": ("Bad Content-Length", True, 400),
    "hostile-content-length-not-number.sip": ("Bad Content-Length", True, 400),
    "hostile-content-length-conflict.sip": ("Bad Content-Length", True, 400),
    "hostile-missing-call-id.sip": ("Missing Call-ID", False, 400),
    "hostile-missing-via.sip": ("Missing Via", False, 400),
    "hostile-missing-cseq.sip": ("Missing CSeq", False, 400),
    "hostile-missing-from.sip": ("Missing From", False, 400),
    "hostile-missing-to.sip": ("Missing To", False, 400),
    "hostile-cseq-method-mismatch.sip": ("CSeq method does not match", True, 400),
    "hostile-cseq-not-number.sip": ("Bad CSeq", True, 400),
    "hostile-cseq-too-big.sip": ("Bad CSeq", True, 400),
    "hostile-unterminated-quote.sip": ("Unterminated quoted string", True, 400),
    "hostile-bad-via.sip": ("Bad Via", False, 400),
    "hostile-bad-max-forwards.sip": ("Bad Max-Forwards", True, 400),
    "hostile-bad-request-line.sip": ("Bad request line", False, 400),
    "hostile-version-3.sip": ("Version Not Supported", True, 505),
    "hostile-bad-from-uri.sip": ("Bad From", True, 400),
    "hostile-huge-header-line.sip": ("Header line too long", False, 400),
    "hostile-too-many-headers.sip": ("Too many headers", False, 400),
    "hostile-commas-10k.sip": ("Header line too long", False, 400),
    "hostile-commas-10k-quoted.sip": ("Header line too long", False, 400),
    "hostile-header-without-colon.sip": ("Bad header line", False, 400),
    "hostile-invalid-utf8-subject.sip": ("Invalid UTF-8 in header", True, 400),
    "hostile-invalid-utf8-from.sip": ("Invalid UTF-8 in header", False, 400),
    "hostile-nul-byte.sip": ("Invalid control character in header", False, 400),
    "hostile-bare-cr.sip": ("Invalid control character in header", False, 400),
    "hostile-empty.sip": ("Empty message", False, 400),
    "hostile-only-crlf.sip": ("Empty message", False, 400),
    "hostile-no-end-of-headers.sip": ("Incomplete message", False, 400),
}


def test_every_hostile_golden_message_has_an_expectation() -> None:
    assert sorted(p.name for p in GOLDEN.glob("hostile-*.sip")) == sorted(HOSTILE)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_message_raises_parse_error_naming_the_fault(name: str) -> None:
    reason, answerable, status = HOSTILE[name]
    with pytest.raises(ParseError) as excinfo:
        parse_message(golden(name))
    err = excinfo.value
    assert (err.reason, err.request is not None, err.status) == (reason, answerable, status)
    assert str(err) == reason
    if err.request is not None:
        # The caller answers it; the response copies the request's Via, From, To, Call-ID and
        # CSeq verbatim (RFC 3261 8.2.6.2), even the one that was at fault.
        answer = bytes(make_response(err.request, err.status, err.reason))
        assert answer.startswith(f"SIP/2.0 {status} {reason}\r\n".encode())
        assert b"\r\nVia: SIP/2.0/UDP 192.0.2.66:5060;branch=z9hG4bKhostile\r\n" in answer
        assert b"\r\nCall-ID: hostile@192.0.2.66\r\n" in answer
        cseq = err.request.headers.get("CSeq")
        assert cseq is not None and f"\r\nCSeq: {cseq}\r\n".encode() in answer


def test_ten_thousand_commas_split_in_linear_time() -> None:
    began = time.perf_counter()
    msg = parse_message(golden("hostile-commas-10k.sip"), max_line=65536)
    assert msg.routes == []
    assert msg.headers.get_all("Allow") == []
    with pytest.raises(ParseError) as excinfo:
        parse_message(golden("hostile-commas-10k-quoted.sip"), max_line=65536).contacts  # noqa: B018
    assert excinfo.value.reason == "Unterminated quoted string"
    assert excinfo.value.request is not None
    # Quadratic splitting would take seconds here; linear takes about a millisecond.
    assert time.perf_counter() - began < 1.0


def test_limits_are_enforced_and_configurable() -> None:
    invite = golden("pjsua2-invite.sip")
    with pytest.raises(ParseError) as excinfo:
        parse_message(invite + b"x" * 65536)
    assert (excinfo.value.reason, excinfo.value.status) == ("Message too large", 513)
    with pytest.raises(ParseError, match="Message too large"):
        parse_message(invite, max_size=1000)
    with pytest.raises(ParseError, match="Too many headers"):
        parse_message(invite, max_headers=10)
    with pytest.raises(ParseError, match="Header line too long"):
        parse_message(invite, max_line=80)
    assert parse_message(golden("hostile-too-many-headers.sip"), max_headers=400).call_id


def test_a_flood_of_empty_lines_is_refused_before_per_line_work() -> None:
    data = golden("sipp-uac-bye.sip").replace(b"\r\n\r\n", b"\r\n" + b" \r\n" * 20000 + b"\r\n")
    with pytest.raises(ParseError, match="Too many headers"):
        parse_message(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"SIP/2.0 2000 OK\r\n\r\n", "Bad status line"),
        (b"SIP/2.0 099 Low\r\n\r\n", "Bad status line"),
        (b"INVITE sip:a@b\r\n\r\n", "Bad request line"),
        (b"INV(TE sip:a@b SIP/2.0\r\n\r\n", "Bad request line"),
        (b"INVITE nocolon SIP/2.0\r\n\r\n", "Bad request line"),
        (b"INVITE sip:a@b HTTP/1.1\r\n\r\n", "Bad request line"),
        (b"INVITE sip:a@b SIP/2.0\r\n folded start\r\n\r\n", "Bad header line"),
        (b"INVITE sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n", "Bad header name"),
        (b"INVITE sip:a@b SIP/2.0\r\n: x\r\n\r\n", "Bad header name"),
        (b"INVITE sip:a@b SIP/2.0\r\nVia: x", "Incomplete message"),
        (b"INVITE sip:a@b SIP/2.0\r\nX-\x7f: x\r\n\r\n", "Invalid control character in header"),
        # A lone CR and a lone LF must not pass for a CRLF (found by the fuzzer).
        (
            b"INVITE sip:a@b SIP/2.0\r\nX-A: \r3\nX-B: 4\r\n\r\n",
            "Invalid control character in header",
        ),
    ],
)
def test_malformed_framing(data: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as excinfo:
        parse_message(data)
    assert excinfo.value.reason == reason
    assert excinfo.value.request is None


def test_invalid_utf8_in_the_request_line() -> None:
    data = golden("sipp-uac-bye.sip").replace(b"sip:service@", b"sip:serv\xffice@", 1)
    with pytest.raises(ParseError) as excinfo:
        parse_message(data)
    assert excinfo.value.reason == "Invalid UTF-8 in start line"
    assert excinfo.value.request is not None


def test_response_faults_are_never_answerable() -> None:
    data = golden("sipp-uas-200-bye.sip").replace(b"CSeq: 2 BYE", b"CSeq: x BYE")
    with pytest.raises(ParseError) as excinfo:
        parse_message(data)
    assert (excinfo.value.reason, excinfo.value.request) == ("Bad CSeq", None)


@pytest.mark.parametrize(
    ("contact", "reason"),
    [
        (b"Contact: <sip:sipp@127.0.0.1:99999>", "Bad Contact"),
        (b"Contact: <sip:sipp@127.0.0.1:5071", "Unterminated angle bracket"),
        (b'Contact: "sipp <sip:sipp@127.0.0.1:5071>', "Unterminated quoted string"),
    ],
)
def test_lazy_header_faults_carry_the_request(contact: bytes, reason: str) -> None:
    data = golden("sipp-uac-bye.sip").replace(b"Contact: sip:sipp@127.0.0.1:5071", contact)
    msg = parse_message(data)
    with pytest.raises(ParseError) as excinfo:
        msg.contacts  # noqa: B018
    assert excinfo.value.reason == reason
    assert excinfo.value.request is msg


@pytest.mark.parametrize(
    ("uri", "reason", "status"),
    [("urn:service:sos", "Unsupported URI Scheme", 416), ("sip:a@b c", "Bad Request-URI", 400)],
)
def test_request_uri_faults(uri: str, reason: str, status: int) -> None:
    msg = request("sipp-uac-bye.sip")
    msg.uri = uri
    with pytest.raises(ParseError) as excinfo:
        msg.parsed_uri  # noqa: B018
    assert (excinfo.value.reason, excinfo.value.status) == (reason, status)
    assert excinfo.value.request is msg


def test_missing_max_forwards_is_allowed() -> None:
    data = golden("sipp-uac-bye.sip").replace(b"Max-Forwards: 70\r\n", b"")
    assert parse_message(data).max_forwards is None


def test_leading_crlf_keepalives_are_ignored() -> None:
    data = golden("sipp-uac-bye.sip")
    msg = parse_message(b"\r\n\r\n" + data)
    assert bytes(msg) == data


def test_extra_bytes_after_the_body_are_ignored() -> None:
    data = golden("sipp-uac-invite.sip")
    msg = parse_message(data + b"garbage after the body")
    assert len(msg.body) == 129
    assert bytes(msg) == data


def test_bytearray_and_memoryview_input() -> None:
    data = golden("sipp-uac-ack.sip")
    assert parse_message(bytearray(data)) == parse_message(memoryview(data)) == parse_message(data)


# --- the header model ----------------------------------------------------------------------------


def test_header_names_are_case_insensitive_and_compact_forms_equal_full_names() -> None:
    h = request("sipp-uac-invite.sip").headers
    assert h.get("call-id") == h.get("CALL-ID") == h.get("i") == h.get("I") == "1-2430@127.0.0.1"
    assert "v" in h and "via" in h and "Max-Forwards" in h
    assert "Route" not in h and "no such" not in h and 3 not in h
    assert h.get("X-Absent") is None and h.get_all("X-Absent") == []
    assert h.get("bad name") is None and h.get_all("bad name") == []


def test_list_headers_split_on_top_level_commas_only() -> None:
    h = Headers(
        [
            ("Contact", '"Smith, John" <sip:john@a.example;x=1,2>;q=0.5, <sip:b@b.example>'),
            ("Contact", "sip:c@c.example"),
            ("X-Custom", "a, b"),
            ("Warning", '399 host "one, two", 399 host "three"'),
        ]
    )
    assert h.get_all("m") == [
        '"Smith, John" <sip:john@a.example;x=1,2>;q=0.5',
        "<sip:b@b.example>",
        "sip:c@c.example",
    ]
    assert h.get("Contact") == '"Smith, John" <sip:john@a.example;x=1,2>;q=0.5'
    assert h.get_all("X-Custom") == ["a, b"]
    assert h.get_all("Warning") == ['399 host "one, two"', '399 host "three"']


def test_list_header_faults() -> None:
    h = Headers([("Contact", '"unterminated <sip:a@b>'), ("Route", "<sip:a@b;lr")])
    with pytest.raises(ParseError, match="Unterminated quoted string"):
        h.get_all("Contact")
    with pytest.raises(ParseError, match="Unterminated angle bracket"):
        h.get("Route")


def test_get_skips_empty_list_lines() -> None:
    h = Headers([("Via", ""), ("Via", "SIP/2.0/UDP h;branch=z9hG4bK1")])
    assert h.get("Via") == "SIP/2.0/UDP h;branch=z9hG4bK1"


def test_set_add_remove_keep_order() -> None:
    h = Headers([("Via", "a"), ("X-A", "1"), ("Via", "b"), ("X-B", "2")])
    h.add("v", "top", first=True)
    assert list(h) == [("Via", "top"), ("Via", "a"), ("X-A", "1"), ("Via", "b"), ("X-B", "2")]
    h.set("VIA", "only")
    assert list(h) == [("Via", "only"), ("X-A", "1"), ("X-B", "2")]
    h.set("x-new", "  spaced  ")
    h.add("X-C", "3", first=True)  # no X-C yet: appended
    assert list(h)[-2:] == [("x-new", "spaced"), ("X-C", "3")]
    h.remove("x-a")
    h.remove("X-Absent")
    assert [n for n, _ in h] == ["Via", "X-B", "x-new", "X-C"]
    assert len(h) == 4


def test_replace_first_and_pop_first() -> None:
    h = Headers([("Via", "a, b"), ("Via", "c"), ("Subject", "s")])
    h.replace_first("Via", "A")
    assert h.get_all("Via") == ["A", "b", "c"]
    assert h.pop_first("Via") == "A"
    assert h.pop_first("Via") == "b"
    assert list(h) == [("Via", "c"), ("Subject", "s")]
    h.replace_first("Subject", "t")
    assert h.get("Subject") == "t"
    assert h.pop_first("Subject") == "t"
    assert h.pop_first("Subject") is None and h.pop_first("bad name") is None
    h.replace_first("Route", "<sip:r;lr>")
    assert h.get("Route") == "<sip:r;lr>"


def test_header_values_cannot_inject_lines() -> None:
    h = Headers()
    for value in ("a\r\nVia: evil", "a\nb", "a\rb", "a\x00b"):
        with pytest.raises(ValueError, match="CR, LF or NUL"):
            h.add("X-Customer", value)
    with pytest.raises(ValueError, match="not a header name"):
        h.set("X Bad", "v")
    assert len(h) == 0


def test_copy_is_independent_and_equality_ignores_name_spelling() -> None:
    h = Headers([("v", "a"), ("X-A", "1")])
    c = h.copy()
    c.add("X-B", "2")
    assert len(h) == 2
    assert Headers([("Via", "a"), ("x-a", "1")]) == h
    assert h != c
    assert h != "not headers"
    assert "X-A" in repr(h)


# --- serialization ------------------------------------------------------------------------------


def test_modified_message_is_rewritten_and_content_length_follows_the_body() -> None:
    data = golden("sipp-uac-invite.sip")
    msg = request("sipp-uac-invite.sip")
    msg.body = b"v=0\r\n"
    out = bytes(msg)
    assert b"\r\nContent-Length: 5\r\n\r\nv=0\r\n" in out
    msg.body = parse_message(data).body
    assert bytes(msg) == data  # back to the original length: the original head again

    msg.headers.add("X-Trace", "abc")
    out = bytes(msg)
    assert out.endswith(b"X-Trace: abc\r\n\r\n" + msg.body)
    assert parse_message(out).headers.get("X-Trace") == "abc"


def test_start_line_changes_are_written() -> None:
    msg = request("sipp-uac-bye.sip")
    msg.uri = "sip:other@192.0.2.1"
    assert bytes(msg).startswith(b"BYE sip:other@192.0.2.1 SIP/2.0\r\n")
    resp = response("sipp-uas-200-bye.sip")
    resp.reason = "Fine"
    assert bytes(resp).startswith(b"SIP/2.0 200 Fine\r\n")


def test_headers_shared_into_another_message_do_not_leak_the_original_head() -> None:
    req = request("sipp-uac-bye.sip")
    resp = Response(200, "OK", req.headers)
    assert bytes(resp).startswith(b"SIP/2.0 200 OK\r\n")
    copied = Request("BYE", req.uri, req.headers.copy())
    assert bytes(copied) == bytes(req)


def test_duplicate_content_length_lines_are_written_once() -> None:
    h = Headers([("Content-Length", "5"), ("l", "5"), ("X-A", "1")])
    out = bytes(Request("OPTIONS", "sip:a@b", h, b"12"))
    assert out == b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 2\r\nX-A: 1\r\n\r\n12"
    data = golden("sipp-uac-ack.sip").replace(
        b"Content-Length: 0\r\n", b"Content-Length: 0\r\nl: 0\r\n"
    )
    assert bytes(parse_message(data)).count(b"Content-Length") == 1


def test_parsed_structures_follow_header_changes() -> None:
    msg = request("sipp-uac-invite.sip")
    assert msg.to.tag is None
    msg.headers.set("To", "<sip:service@127.0.0.1:5070>;tag=abc")
    assert msg.to.tag == "abc"
    via = msg.top_via
    via.params["received"] = "198.51.100.1"
    msg.headers.replace_first("Via", str(via))
    assert parse_message(bytes(msg)).top_via.received == "198.51.100.1"


def test_built_message_validates_and_round_trips() -> None:
    h = Headers()
    h.add("Via", str(Via("UDP", "192.0.2.1", 5060, {"branch": new_branch(), "rport": None})))
    h.add("Max-Forwards", "70")
    h.add(
        "From",
        str(NameAddr("Trunk", SipUri("sip", "+1555", None, "a.example", None), {"tag": new_tag()})),
    )
    h.add("To", str(NameAddr(None, SipUri("tel", "+1666", None, "", None))))
    h.add("Call-ID", "built@192.0.2.1")
    h.add("CSeq", str(CSeq(1, "INVITE")))
    msg = Request("INVITE", "sip:+1666@b.example", h, b"body")
    msg.validate()
    again = parse_message(bytes(msg))
    assert again.top_via == msg.top_via and again.from_ == msg.from_ and again.to == msg.to
    assert again.body == b"body"


@pytest.mark.parametrize(
    ("remove", "reason"),
    [("Call-ID", "Missing Call-ID"), ("Via", "Missing Via"), ("CSeq", "Missing CSeq")],
)
def test_validate_names_missing_headers(remove: str, reason: str) -> None:
    msg = request("sipp-uac-bye.sip")
    msg.headers.remove(remove)
    with pytest.raises(ParseError) as excinfo:
        msg.validate()
    assert (excinfo.value.reason, excinfo.value.request) == (reason, None)


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        ("CSeq", "2 INVITE", "CSeq method does not match"),
        ("Max-Forwards", "256", "Bad Max-Forwards"),
        ("Call-ID", "", "Bad Call-ID"),
        ("Call-ID", "a b", "Bad Call-ID"),
        ("From", "<sip:a@b", "Bad From"),
        ("To", "sip:", "Bad To"),
    ],
)
def test_validate_names_malformed_headers(header: str, value: str, reason: str) -> None:
    msg = request("sipp-uac-bye.sip")
    msg.headers.set(header, value)
    with pytest.raises(ParseError) as excinfo:
        msg.validate()
    assert excinfo.value.reason == reason
    assert excinfo.value.request is msg


# --- structured values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "via"),
    [
        (
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport",
            Via("UDP", "192.0.2.1", 5060, {"branch": "z9hG4bK776asdhds", "rport": None}),
        ),
        (
            "SIP / 2.0 / tcp [2001:db8::1] : 5061 ; Branch = z9hG4bKx ; received=2001:db8::2",
            Via("TCP", "2001:db8::1", 5061, {"branch": "z9hG4bKx", "received": "2001:db8::2"}),
        ),
        ('SIP/2.0/WSS edge.example;x="a;b"', Via("WSS", "edge.example", None, {"x": '"a;b"'})),
    ],
)
def test_via_parse(text: str, via: Via) -> None:
    assert Via.parse(text) == via
    assert Via.parse(str(via)) == via


def test_via_properties() -> None:
    via = Via.parse("SIP/2.0/UDP h;rport=5062;received=1.2.3.4;branch=z9hG4bKa")
    assert (via.branch, via.received, via.rport, via.sent_by) == (
        "z9hG4bKa",
        "1.2.3.4",
        "5062",
        "h",
    )
    assert Via.parse("SIP/2.0/UDP h").rport is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("SIP/2.0/UDP", "Bad Via"),
        ("SIP/3.0/UDP h", "Bad Via"),
        ("SIP/2.0/UDP h:70000", "Bad port"),
        ("SIP/2.0/UDP [1.2.3.4]", "Bad host"),
        ("SIP/2.0/UDP h;branch=a b", "Bad parameter"),
        ('SIP/2.0/UDP h;x="open', "Unterminated quoted string"),
    ],
)
def test_via_faults(text: str, reason: str) -> None:
    with pytest.raises(ParseError) as excinfo:
        Via.parse(text)
    assert excinfo.value.reason == reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '"A \\"quoted\\" \\\\ name" <sip:a@b>;tag=1',
            NameAddr('A "quoted" \\ name', SipUri("sip", "a", None, "b", None), {"tag": "1"}),
        ),
        ("Bob Smith <sip:bob@b>", NameAddr("Bob Smith", SipUri("sip", "bob", None, "b", None))),
        ("<sip:bob@b;lr>", NameAddr(None, SipUri("sip", "bob", None, "b", None, {"lr": None}))),
        ('"" <sip:b>', NameAddr("", SipUri("sip", None, None, "b", None))),
        # addr-spec: ;transport is the header's parameter here (RFC 3261 20.10).
        (
            "sip:bob@b;transport=udp;tag=9",
            NameAddr(None, SipUri("sip", "bob", None, "b", None), {"transport": "udp", "tag": "9"}),
        ),
    ],
)
def test_name_addr_parse(text: str, expected: NameAddr) -> None:
    parsed = NameAddr.parse(text)
    assert parsed == expected
    assert NameAddr.parse(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("*", "Missing URI scheme"),
        ('"open <sip:a@b>', "Unterminated quoted string"),
        ('"closed" sip:a@b', "Bad name-addr"),
        ("<sip:a@b", "Bad name-addr"),
        ("<sip:a@b>junk", "Bad parameter"),
    ],
)
def test_name_addr_faults(text: str, reason: str) -> None:
    with pytest.raises(ParseError) as excinfo:
        NameAddr.parse(text)
    assert excinfo.value.reason == reason


def test_wildcard_contact_is_a_bad_contact() -> None:
    register = golden("pjsua2-register.sip")
    contact = register[register.index(b"Contact: ") : register.index(b"\r\nExpires:")]
    data = register.replace(contact, b"Contact: *")
    msg = parse_message(data)
    assert msg.headers.get("Contact") == "*"
    with pytest.raises(ParseError, match="Bad Contact"):
        msg.contacts  # noqa: B018


@pytest.mark.parametrize(
    "text", ["", "1", "x INVITE", "1 INVITE extra", "2147483648 INVITE", "1 IN(VITE"]
)
def test_cseq_faults(text: str) -> None:
    with pytest.raises(ParseError, match="Bad CSeq"):
        CSeq.parse(text)


def test_cseq_parse_and_str() -> None:
    assert CSeq.parse("  2147483647\tNEWMETHOD ") == CSeq(2147483647, "NEWMETHOD")
    assert str(CSeq(7, "BYE")) == "7 BYE"


# --- responses, branches and tags ---------------------------------------------------------------


def test_make_response_copies_the_rfc_3261_8_2_6_headers() -> None:
    req = request("kamailio-forwarded-invite.sip")
    resp = make_response(req, 180, to_tag="b1")
    assert (resp.status, resp.reason) == (180, "Ringing")
    assert [n for n, _ in resp.headers] == ["Via", "Via", "To", "From", "Call-ID", "CSeq"]
    assert resp.vias == req.vias
    assert resp.to.tag == "b1" and resp.to.uri == req.to.uri
    assert resp.from_ == req.from_
    assert resp.body == b""
    again = parse_message(bytes(resp))
    assert isinstance(again, Response) and again.cseq == CSeq(2, "INVITE")


def test_make_response_keeps_an_existing_to_tag_and_copies_timestamp_into_100() -> None:
    req = request("sipp-uac-bye.sip")
    req.headers.add("Timestamp", "54")
    assert make_response(req, 200, to_tag="other").to.tag == "2426SIPpTag011"
    trying = make_response(req, 100)
    assert trying.headers.get("Timestamp") == "54"
    assert "Timestamp" not in make_response(req, 200).headers


def test_make_response_reason_phrases() -> None:
    req = request("sipp-uac-bye.sip")
    assert make_response(req, 487).reason == "Request Terminated"
    assert make_response(req, 499).reason == "Client Error"
    assert make_response(req, 200, "Okay").reason == "Okay"
    with pytest.raises(ValueError, match="status out of range"):
        make_response(req, 700)


def test_make_response_to_an_unparseable_to_copies_it_verbatim() -> None:
    data = golden("hostile-unterminated-quote.sip").replace(b'From: "Mallory', b"From: Mallory")
    data = data.replace(b"To: <sip:bob@example.com>", b'To: "Bob <sip:bob@example.com>')
    with pytest.raises(ParseError) as excinfo:
        parse_message(data)
    assert excinfo.value.request is not None
    resp = make_response(excinfo.value.request, 400, excinfo.value.reason, to_tag="t")
    assert resp.headers.get("To") == '"Bob <sip:bob@example.com>'


def test_new_branch_and_tag_are_unique_tokens() -> None:
    branches = {new_branch() for _ in range(1000)}
    tags = {new_tag() for _ in range(1000)}
    assert len(branches) == len(tags) == 1000
    assert all(b.startswith("z9hG4bK") and len(b) > 16 for b in branches)
    assert all(len(t) >= 8 for t in tags)


def test_a_forked_child_does_not_repeat_its_parents_tags() -> None:
    new_tag()  # the parent's pool now holds random bytes a child must not reuse
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, new_tag().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    childs = os.read(read, 64).decode()
    os.close(read)
    assert len(childs) == 16
    assert childs != new_tag()
