"""SIP, SIPS and tel URIs (RFC 3261 19.1, RFC 3966): parsing, faults and canonical output."""

from __future__ import annotations

import pytest

from trunkline.signaling.sip.uri import SipUri, UriError, parse_uri


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The examples of RFC 3261 19.1.3.
        ("sip:alice@atlanta.com", SipUri("sip", "alice", None, "atlanta.com", None)),
        (
            "sip:alice:secretword@atlanta.com;transport=tcp",
            SipUri("sip", "alice", "secretword", "atlanta.com", None, {"transport": "tcp"}),
        ),
        (
            "sips:alice@atlanta.com?subject=project%20x&priority=urgent",
            SipUri(
                "sips",
                "alice",
                None,
                "atlanta.com",
                None,
                {},
                {"subject": "project x", "priority": "urgent"},
            ),
        ),
        (
            "sip:+1-212-555-1212:1234@gateway.com;user=phone",
            SipUri("sip", "+1-212-555-1212", "1234", "gateway.com", None, {"user": "phone"}),
        ),
        ("sips:1212@gateway.com", SipUri("sips", "1212", None, "gateway.com", None)),
        ("sip:alice@192.0.2.4", SipUri("sip", "alice", None, "192.0.2.4", None)),
        (
            "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
            SipUri(
                "sip",
                None,
                None,
                "atlanta.com",
                None,
                {"method": "REGISTER"},
                {"to": "alice@atlanta.com"},
            ),
        ),
        # user-unreserved allows ";" in the user part (RFC 3261 19.1.3).
        (
            "sip:alice;day=tuesday@atlanta.com",
            SipUri("sip", "alice;day=tuesday", None, "atlanta.com", None),
        ),
        # Escapes in the user part are resolved; scheme case does not matter (19.1.4).
        ("SIP:%61lice@atlanta.com", SipUri("sip", "alice", None, "atlanta.com", None)),
        (
            "sip:[2001:db8::10]:5061;transport=tls;lr",
            SipUri("sip", None, None, "2001:db8::10", 5061, {"transport": "tls", "lr": None}),
        ),
        (
            "sip:127.0.0.1:5070;Transport=UDP",
            SipUri("sip", None, None, "127.0.0.1", 5070, {"transport": "UDP"}),
        ),
        # An origination URL as a customer writes it: routing parameters and X- headers.
        (
            "sip:+15558675309@pbx.example.com:5061;transport=tls;edge=ashburn;region=us1"
            "?X-Customer-Id=abc%201&X-Empty=",
            SipUri(
                "sip",
                "+15558675309",
                None,
                "pbx.example.com",
                5061,
                {"transport": "tls", "edge": "ashburn", "region": "us1"},
                {"X-Customer-Id": "abc 1", "X-Empty": ""},
            ),
        ),
        # RFC 3966.
        (
            "tel:+1-201-555-0123;ext=1234;phone-context=+1",
            SipUri(
                "tel", "+1-201-555-0123", None, "", None, {"ext": "1234", "phone-context": "+1"}
            ),
        ),
        (
            "tel:7042;phone-context=example.com",
            SipUri("tel", "7042", None, "", None, {"phone-context": "example.com"}),
        ),
        ("TEL:*67#", SipUri("tel", "*67#", None, "", None)),
        # A tolerated trailing ";" (some user agents send it).
        ("sip:bob@example.com;", SipUri("sip", "bob", None, "example.com", None)),
    ],
)
def test_parse_uri(text: str, expected: SipUri) -> None:
    uri = parse_uri(text)
    assert uri == expected
    assert parse_uri(str(uri)) == uri


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("alice@atlanta.com", "Missing URI scheme"),
        ("http://example.com/", "Unsupported URI scheme"),
        ("urn:service:sos", "Unsupported URI scheme"),
        ("sip:", "Bad URI host"),
        ("sip:alice@", "Bad URI host"),
        ("sip:alice@exa mple.com", "Bad URI host"),
        ("sip:alice@[2001:db8::1", "Bad URI host"),
        ("sip:alice@[1.2.3.4]", "Bad URI host"),
        ("sip:alice@example.com:99999", "Bad URI port"),
        ("sip:alice@example.com:50x", "Bad URI port"),
        ("sip:alice@example.com:", "Bad URI port"),
        ("sip:al ice@example.com", "Bad URI user"),
        ("sip:alice:pa:ss@example.com", "Bad URI password"),
        ("sip:alice@example.com;=x", "Bad URI parameter"),
        ("sip:alice@example.com;a b", "Bad URI parameter"),
        ("sip:alice@example.com?novalue", "Bad URI header"),
        ("sip:%zzalice@example.com", "Bad URI escape"),
        ("sip:%ffalice@example.com", "Bad URI user"),
        ("tel:abc", "Bad tel number"),
        ("tel:+1 555", "Bad tel number"),
        ("tel:+1555?x=y", "Bad tel number"),
    ],
)
def test_parse_uri_names_the_fault(text: str, reason: str) -> None:
    with pytest.raises(UriError) as excinfo:
        parse_uri(text)
    assert excinfo.value.reason == reason
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize(
    ("uri", "text"),
    [
        (SipUri("sip", "alice", None, "2001:db8::1", 5060), "sip:alice@[2001:db8::1]:5060"),
        (SipUri("sips", "a b", "p:w", "h.example", None), "sips:a%20b:p%3Aw@h.example"),
        (SipUri("sip", "zoë", None, "h", None), "sip:zo%C3%AB@h"),
        (SipUri("sip", "100%", None, "h", None), "sip:100%25@h"),
        (
            SipUri("sip", None, None, "h", None, {"lr": None, "x": "a;b"}, {"X-A": "1&2", "B": ""}),
            "sip:h;lr;x=a%3Bb?X-A=1%262&B=",
        ),
        (SipUri("tel", "+15551234567", None, "", None, {"ext": "9"}), "tel:+15551234567;ext=9"),
    ],
)
def test_str_escapes_what_the_grammar_does_not_allow(uri: SipUri, text: str) -> None:
    assert str(uri) == text
    assert parse_uri(text) == uri


def test_hostport_brackets_ipv6() -> None:
    assert parse_uri("sip:[::1]:5062").hostport == "[::1]:5062"
    assert parse_uri("sip:example.com").hostport == "example.com"


def test_sip_uri_parse_classmethod_matches_parse_uri() -> None:
    assert SipUri.parse("sip:bob@biloxi.example.com") == parse_uri("sip:bob@biloxi.example.com")


def test_hostile_uri_is_linear_time() -> None:
    # Possessive patterns: a long run of characters that almost matches must not backtrack.
    long_user = "sip:" + "a;" * 20000 + "@"
    with pytest.raises(UriError):
        parse_uri(long_user)
    assert parse_uri("sip:h" + ";p" * 20000).params == {"p": None}
