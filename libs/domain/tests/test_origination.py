"""Origination SIP URLs: the examples of the guide parse, everything else names its fault."""

from __future__ import annotations

import pytest

from trunkline.domain.origination import (
    InvalidSipUrl,
    OriginationUri,
    UnknownEdge,
    parse_sip_url,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sip:172.56.42.132", OriginationUri("sip", None, "172.56.42.132", None, None, None, ())),
        ("sip:mysbc.com", OriginationUri("sip", None, "mysbc.com", None, None, None, ())),
        (
            "sip:+14158675309@172.56.42.132",
            OriginationUri("sip", "+14158675309", "172.56.42.132", None, None, None, ()),
        ),
        (
            "sip:anniebp@172.56.42.132;transport=tcp",
            OriginationUri("sip", "anniebp", "172.56.42.132", None, "tcp", None, ()),
        ),
        (
            "sip:anniebp@172.56.42.132:5062;transport=tls",
            OriginationUri("sip", "anniebp", "172.56.42.132", 5062, "tls", None, ()),
        ),
        (
            "sip:anniebp@172.56.42.132;edge=dublin",
            OriginationUri("sip", "anniebp", "172.56.42.132", None, None, "dublin", ()),
        ),
        (
            "sip:anniebp@172.56.42.132;region=ie1",
            OriginationUri("sip", "anniebp", "172.56.42.132", None, None, "dublin", ()),
        ),
        (
            "sip:+14158675309@mysbc.com?X-myheader=foo",
            OriginationUri(
                "sip", "+14158675309", "mysbc.com", None, None, None, (("X-myheader", "foo"),)
            ),
        ),
        (
            "SIP:PBX.Example.COM:5080;Transport=TCP;EDGE=Frankfurt?X-a=1&X-b=two%20words",
            OriginationUri(
                "sip",
                None,
                "pbx.example.com",
                5080,
                "tcp",
                "frankfurt",
                (("X-a", "1"), ("X-b", "two words")),
            ),
        ),
        (
            "sip:[2001:db8::1]:5080",
            OriginationUri("sip", None, "2001:db8::1", 5080, None, None, ()),
        ),
        (
            "sips:sbc.example.com",
            OriginationUri("sips", None, "sbc.example.com", None, None, None, ()),
        ),
        (
            "sip:a%20b@sbc.example.com",
            OriginationUri("sip", "a%20b", "sbc.example.com", None, None, None, ()),
        ),
    ],
)
def test_guide_examples_parse(url: str, expected: OriginationUri) -> None:
    assert parse_sip_url(url) == expected


def test_effective_transport_and_port_follow_the_guide() -> None:
    plain = parse_sip_url("sip:sbc.example.com")
    assert (plain.effective_transport, plain.effective_port) == ("udp", 5060)
    tls = parse_sip_url("sip:sbc.example.com;transport=tls")
    assert (tls.effective_transport, tls.effective_port) == ("tls", 5061)
    # The guide: sips URIs are treated as sip URIs over TLS.
    secure = parse_sip_url("sips:sbc.example.com:5062;transport=tcp")
    assert (secure.effective_transport, secure.effective_port) == ("tls", 5062)
    assert parse_sip_url("sip:[2001:db8::1]:5080").hostport == "[2001:db8::1]:5080"
    assert parse_sip_url("sip:10.0.0.1").hostport == "10.0.0.1"


@pytest.mark.parametrize(
    ("url", "fault"),
    [
        ("", "empty"),
        ("http://sbc.example.com", "must start with sip:"),
        ("tel:+14155550100", "must start with sip:"),
        ("sbc.example.com", "must start with sip:"),
        ("sip:", "no host"),
        ("sip://sip-box.com:1234", "no '//'"),
        ("sip: sbc.example.com", "spaces"),
        ("sip:sbc.example.com\r\nVia: x", "control characters"),
        ("sip:@sbc.example.com", "no user part"),
        ("sip:user:secret@sbc.example.com", "password"),
        ("sip:us<er@sbc.example.com", "user part"),
        ("sip:host?X-Mail=a@b.example.com", "user part"),
        ("sip:sbc.example.com:0", "port"),
        ("sip:sbc.example.com:65536", "port"),
        ("sip:sbc.example.com:50a", "port"),
        ("sip:sbc.example.com:", "port"),
        ("sip:2001:db8::1", "brackets"),
        ("sip:[2001:db8::zz]", "IPv6"),
        ("sip:[2001:db8::1", "closing"),
        ("sip:[2001:db8::1]5060", "after the IPv6"),
        ("sip:999.1.1.1", "IPv4"),
        ("sip:10.0.0", "IPv4"),
        ("sip:localhost", "fully qualified"),
        ("sip:-bad.example.com", "label"),
        ("sip:bad..example.com", "label"),
        ("sip:sbc_1.example.com", "label"),
        ("sip:sbc.example.123", "top-level"),
        ("sip:sbc.example.com;lr", "not supported"),
        ("sip:sbc.example.com;maddr=10.0.0.1", "not supported"),
        ("sip:sbc.example.com;transport=sctp", "transport must be"),
        ("sip:sbc.example.com;transport", "needs a value"),
        ("sip:sbc.example.com;transport=", "needs a value"),
        ("sip:sbc.example.com;transport=udp;transport=tcp", "twice"),
        ("sip:sbc.example.com;", "empty parameter"),
        ("sip:sbc.example.com;edge=dublin;region=ie1", "not both"),
        ("sips:sbc.example.com;transport=udp", "contradicts"),
        ("sip:sbc.example.com?", "empty header"),
        ("sip:sbc.example.com?Subject=hi", "only X- headers"),
        ("sip:sbc.example.com?X-a", "needs a value"),
        ("sip:sbc.example.com?X-=1", "header name"),
        ("sip:sbc.example.com?X-a=b&Via=x", "only X- headers"),
        ("sip:sbc.example.com?X-a=<b>", "escaped"),
        ("sip:sbc.example.com?X-a=%0D%0AVia:%20evil", "control characters"),
    ],
)
def test_invalid_urls_name_their_fault(url: str, fault: str) -> None:
    with pytest.raises(InvalidSipUrl) as err:
        parse_sip_url(url)
    assert fault in str(err.value)
    assert not isinstance(err.value, UnknownEdge)


@pytest.mark.parametrize(
    "url",
    [
        "sip:sbc.example.com;edge=mars",
        "sip:sbc.example.com;edge=us1",  # a legacy id is a region, not an edge
        "sip:sbc.example.com;region=xx9",
        "sip:sbc.example.com;region=dublin",
    ],
)
def test_unknown_edges_are_their_own_error(url: str) -> None:
    with pytest.raises(UnknownEdge):
        parse_sip_url(url)


def test_every_edge_and_legacy_region_is_accepted() -> None:
    from trunkline.domain.domains import EDGES, LEGACY_EDGES

    for edge in EDGES:
        assert parse_sip_url(f"sip:sbc.example.com;edge={edge}").edge == edge
    for region, edge in LEGACY_EDGES.items():
        assert parse_sip_url(f"sip:sbc.example.com;region={region}").edge == edge
