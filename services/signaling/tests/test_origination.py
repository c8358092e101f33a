"""Origination routing: URL order by priority and weight, failover, the target URI, the
Diversion header and the one followed 302 (the guide's "Ursprungseinstellungen")."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.domain.domains import EDGES, LEGACY_EDGES
from trunkline.domain.model import OriginationUrl
from trunkline.signaling.origination import (
    NO_FAILOVER_STATUSES,
    NO_RESPONSE_TIMEOUT,
    REDIRECT_FAILED,
    InvalidSipUrl,
    OriginationTarget,
    RedirectRefused,
    attempt_order,
    diversion_header,
    fails_over,
    origination_target,
    plan,
    redirect_target,
)
from trunkline.signaling.sip.message import NameAddr, Response, parse_message
from trunkline.signaling.sip.transaction import Peer
from trunkline.signaling.sip.uri import parse_uri

DIALLED = "+14158675309"
ZONE = "trunkline.example"
_sids = iter(range(10**9))


def url(
    sip_url: str = "sip:pbx.example.com",
    priority: int = 10,
    weight: int = 1,
    *,
    enabled: bool = True,
    sid: str | None = None,
) -> OriginationUrl:
    return OriginationUrl(
        sid=sid or f"OU{next(_sids):032x}",
        account_sid="AC" + "0" * 32,
        trunk_sid="TK" + "0" * 32,
        friendly_name=sip_url,
        sip_url=sip_url,
        priority=priority,
        weight=weight,
        enabled=enabled,
    )


# The guide's example: three URLs sharing priority 10 by 60/20/20, a backup at 20.
SBC1 = url("sip:mysbc1.com", 10, 60, sid="OU1")
SBC2 = url("sip:mysbc2.com", 10, 20, sid="OU2")
SBC3 = url("sip:mysbc3.com", 10, 20, sid="OU3")
BACKUP = url("sip:mysbc-backup.com", 20, 10, sid="OU4")
GUIDE = [SBC1, SBC2, SBC3, BACKUP]


# --- attempt order -----------------------------------------------------------------------------


def test_no_urls_no_attempts() -> None:
    assert attempt_order([], random.Random(1)) == []


def test_disabled_urls_are_never_tried() -> None:
    off = url("sip:off.example.com", 0, 100, enabled=False)
    for seed in range(50):
        order = attempt_order([*GUIDE, off], random.Random(seed))
        assert off not in order
        assert len(order) == 4


def test_lowest_priority_first_whatever_the_weights() -> None:
    low = url("sip:low.example.com", 0, 1)
    high = url("sip:high.example.com", 65535, 65535)
    for seed in range(50):
        order = attempt_order([high, *GUIDE, low], random.Random(seed))
        assert order[0] == low
        assert order[-1] == high
        assert order[4] == BACKUP


def test_first_choice_follows_the_weights_60_20_20() -> None:
    """10,000 calls: within 2 points of 60/20/20 (more than 4 standard deviations)."""
    rng = random.Random(7)
    draws = 10_000
    first = Counter(attempt_order(GUIDE, rng)[0].sid for _ in range(draws))
    assert set(first) == {"OU1", "OU2", "OU3"}  # the backup is never first
    assert abs(first["OU1"] / draws - 0.60) <= 0.02
    assert abs(first["OU2"] / draws - 0.20) <= 0.02
    assert abs(first["OU3"] / draws - 0.20) <= 0.02


def test_after_the_first_fails_the_rest_share_by_their_weights() -> None:
    """The guide: when mysbc1 is down, mysbc2 and mysbc3 take 50 % each; when mysbc2 was
    first, mysbc1 takes 60/80 = 75 % of the second attempts. The backup comes last, always."""
    rng = random.Random(11)
    second: dict[str, Counter[str]] = {"OU1": Counter(), "OU2": Counter(), "OU3": Counter()}
    for _ in range(10_000):
        order = [u.sid for u in attempt_order(GUIDE, rng)]
        assert order[3] == "OU4"
        second[order[0]][order[1]] += 1
    after_1 = second["OU1"].total()
    assert abs(second["OU1"]["OU2"] / after_1 - 0.50) <= 0.03
    assert abs(second["OU1"]["OU3"] / after_1 - 0.50) <= 0.03
    after_2 = second["OU2"].total()
    assert abs(second["OU2"]["OU1"] / after_2 - 0.75) <= 0.03
    assert abs(second["OU2"]["OU3"] / after_2 - 0.25) <= 0.03


def test_weight_zero_is_a_last_resort_within_its_priority() -> None:
    """The API accepts 1-65535; a 0 from elsewhere is tried after the weighted ones of its
    priority, before the next priority."""
    zero = url("sip:zero.example.com", 10, 0)
    for seed in range(50):
        order = attempt_order([zero, *GUIDE], random.Random(seed))
        assert order.index(zero) == 3
        assert order[4] == BACKUP


def test_same_seed_same_order_whatever_the_listing_order() -> None:
    for seed in range(20):
        a = attempt_order(GUIDE, random.Random(seed))
        b = attempt_order(reversed(GUIDE), random.Random(seed))
        assert a == b


urls_strategy = st.lists(
    st.builds(
        url,
        st.just("sip:pbx.example.com"),
        st.integers(0, 3),
        st.integers(0, 65535),
        enabled=st.booleans(),
    ),
    max_size=10,
)


@given(urls_strategy, st.integers(0, 2**32))
def test_order_is_the_enabled_urls_by_ascending_priority(
    urls: list[OriginationUrl], seed: int
) -> None:
    order = attempt_order(urls, random.Random(seed))
    assert sorted(order, key=lambda u: u.sid) == sorted(
        (u for u in urls if u.enabled), key=lambda u: u.sid
    )
    priorities = [u.priority for u in order]
    assert priorities == sorted(priorities)
    for a, b in itertools.pairwise(order):  # weight 0 only after the weighted ones
        assert not (a.priority == b.priority and a.weight == 0 and b.weight > 0)


# --- failover ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status", [200, 202, 299, 400, 404, 405, 410, 416, 482, 484, 486, 600, 603, 606, 699]
)
def test_these_answers_go_back_to_the_caller(status: int) -> None:
    assert fails_over(status) is False


@pytest.mark.parametrize(
    "status",
    [300, 301, 302, 380, 401, 403, 407, 408, 413, 415, 420, 480, 483, 488, 500, 502, 503, 504, 599],
)
def test_any_other_final_answer_fails_over(status: int) -> None:
    assert fails_over(status) is True


def test_no_response_within_four_seconds_fails_over() -> None:
    assert NO_RESPONSE_TIMEOUT == 4.0
    assert fails_over(None) is True


@pytest.mark.parametrize("status", [0, 100, 180, 183, 199, 700, 1000, -1])
def test_a_provisional_or_bogus_status_is_no_outcome(status: int) -> None:
    with pytest.raises(ValueError, match="not a final SIP status"):
        fails_over(status)


@given(st.integers(200, 699))
def test_failover_rule_over_every_final_status(status: int) -> None:
    answer_back = status // 100 in (2, 6) or status in NO_FAILOVER_STATUSES
    assert fails_over(status) is not answer_back


# --- the target of one URL ---------------------------------------------------------------------


def test_the_dialled_number_fills_the_user_part() -> None:
    target = origination_target(url("sip:172.56.42.132"), DIALLED)
    assert target.request_uri == "sip:+14158675309@172.56.42.132"
    assert (target.host, target.port, target.transport) == ("172.56.42.132", 5060, "UDP")
    assert target.is_ip
    assert target.edge is None
    assert target.headers == ()
    assert target.secure is False
    assert target.redirected is False


def test_an_fqdn_is_kept_in_the_request_uri_and_resolved() -> None:
    target = origination_target("sip:mysbc.com", DIALLED)
    assert target.request_uri == "sip:+14158675309@mysbc.com"
    assert target.host == "mysbc.com"
    assert not target.is_ip


def test_a_fixed_user_part_is_used_for_every_number() -> None:
    for number in (DIALLED, "+4930123456789"):
        target = origination_target("sip:anniebp@mysbc.com", number)
        assert target.request_uri == "sip:anniebp@mysbc.com"


def test_a_user_part_keeps_its_escapes_as_written() -> None:
    target = origination_target("sip:ann%20ie@mysbc.com", DIALLED)
    assert target.request_uri == "sip:ann%20ie@mysbc.com"
    assert parse_uri(target.request_uri).user == "ann ie"


def test_x_headers_are_added_not_put_in_the_request_uri() -> None:
    target = origination_target("sip:+14158675309@mysbc.com?X-myheader=foo&X-Two=a%20b", DIALLED)
    assert target.request_uri == "sip:+14158675309@mysbc.com"
    assert target.headers == (("X-myheader", "foo"), ("X-Two", "a b"))


@pytest.mark.parametrize(
    "sip_url",
    [
        "sip:mysbc.com?Subject=hi",
        "sip:mysbc.com?Route=%3Csip:evil.example.com%3E",
        "sip:mysbc.com?X-ok=1&From=x",
    ],
)
def test_a_url_adding_any_other_header_is_refused(sip_url: str) -> None:
    with pytest.raises(InvalidSipUrl, match="only X- headers"):
        origination_target(sip_url, DIALLED)


def test_transport_tcp() -> None:
    target = origination_target("sip:anniebp@172.56.42.132;transport=tcp", DIALLED)
    assert target.request_uri == "sip:anniebp@172.56.42.132;transport=tcp"
    assert (target.transport, target.port) == ("TCP", 5060)


def test_transport_udp_written_out_is_the_default() -> None:
    target = origination_target("sip:172.56.42.132;transport=UDP", DIALLED)
    assert target.request_uri == "sip:+14158675309@172.56.42.132"
    assert (target.transport, target.port) == ("UDP", 5060)


def test_transport_tls_defaults_to_port_5061() -> None:
    target = origination_target("sip:anniebp@172.56.42.132;transport=tls", DIALLED)
    assert target.request_uri == "sip:anniebp@172.56.42.132;transport=tls"
    assert (target.transport, target.port) == ("TLS", 5061)


def test_transport_tls_on_another_port() -> None:
    target = origination_target("sip:anniebp@172.56.42.132:5062;transport=tls", DIALLED)
    assert target.request_uri == "sip:anniebp@172.56.42.132:5062;transport=tls"
    assert (target.transport, target.port) == ("TLS", 5062)


def test_a_sips_url_is_sent_as_sip_over_tls() -> None:
    target = origination_target("sips:mysbc.com", DIALLED)
    assert target.request_uri == "sip:+14158675309@mysbc.com;transport=tls"
    assert (target.transport, target.port) == ("TLS", 5061)
    assert not target.secure  # TLS signaling only; SRTP is the secure trunk's


def test_edge_picks_the_sending_edge_and_is_not_passed_on() -> None:
    target = origination_target("sip:anniebp@172.56.42.132;edge=dublin", DIALLED)
    assert target.request_uri == "sip:anniebp@172.56.42.132"
    assert target.edge == "dublin"
    assert target.sending_edge("ashburn") == "dublin"


def test_without_edge_the_call_leaves_where_it_arrived() -> None:
    assert origination_target("sip:mysbc.com", DIALLED).sending_edge("tokyo") == "tokyo"


@pytest.mark.parametrize(("region", "edge"), sorted(LEGACY_EDGES.items()))
def test_legacy_region_names_their_edge(region: str, edge: str) -> None:
    target = origination_target(f"sip:anniebp@172.56.42.132;region={region}", DIALLED)
    assert target.edge == edge
    assert "region" not in target.request_uri


def test_an_unknown_edge_is_refused() -> None:
    with pytest.raises(InvalidSipUrl, match="not an edge location"):
        origination_target("sip:mysbc.com;edge=atlantis", DIALLED)


def test_a_secure_trunk_sends_over_tls_whatever_transport_says() -> None:
    target = origination_target("sip:mysbc.com;transport=udp", DIALLED, secure=True)
    assert target.request_uri == "sip:+14158675309@mysbc.com;transport=tls"
    assert (target.transport, target.port, target.secure) == ("TLS", 5061, True)


def test_a_secure_trunk_keeps_the_urls_port() -> None:
    target = origination_target("sip:mysbc.com:5080;transport=tcp", DIALLED, secure=True)
    assert target.request_uri == "sip:+14158675309@mysbc.com:5080;transport=tls"
    assert (target.transport, target.port) == ("TLS", 5080)


def test_an_ipv6_host() -> None:
    target = origination_target("sip:[2001:DB8::1]:5070;transport=tcp", DIALLED)
    assert target.request_uri == "sip:+14158675309@[2001:db8::1]:5070;transport=tcp"
    assert (target.host, target.port) == ("2001:db8::1", 5070)
    assert target.is_ip
    assert target.peers() == [Peer("TCP", "2001:db8::1", 5070)]


def test_the_url_sid_is_recorded() -> None:
    assert origination_target(SBC1, DIALLED).url_sid == "OU1"
    assert origination_target("sip:mysbc.com", DIALLED).url_sid == ""


@pytest.mark.parametrize("dialled", ["14158675309", "+1415", "+1 415 867", "", "+", "+0123456789"])
def test_the_dialled_number_must_be_e164(dialled: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        origination_target("sip:mysbc.com", dialled)


@pytest.mark.parametrize(
    "sip_url",
    [
        "http://mysbc.com",
        "sip://mysbc.com",
        "sip:mysbc",
        "sip:mysbc.com;lr",
        "sips:h.com;transport=udp",
    ],
)
def test_a_url_breaking_the_rules_is_refused(sip_url: str) -> None:
    with pytest.raises(InvalidSipUrl):
        origination_target(sip_url, DIALLED)


@given(
    user=st.one_of(st.none(), st.from_regex(r"[a-z0-9+]{1,12}", fullmatch=True)),
    host=st.sampled_from(["192.0.2.7", "pbx.example.com", "[2001:db8::7]"]),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    scheme=st.sampled_from(["sip", "sips"]),
    transport=st.sampled_from([None, "udp", "tcp", "tls"]),
    edge=st.one_of(st.none(), st.sampled_from(EDGES)),
    secure=st.booleans(),
)
def test_the_request_uri_is_what_the_sip_core_reads(
    user: str | None,
    host: str,
    port: int | None,
    scheme: str,
    transport: str | None,
    edge: str | None,
    secure: bool,
) -> None:
    if scheme == "sips" and transport == "udp":
        transport = None  # refused by the parser (sips means TLS)
    text = f"{scheme}:" + (f"{user}@" if user else "") + host
    text += f":{port}" if port else ""
    text += f";transport={transport}" if transport else ""
    text += f";edge={edge}" if edge else ""
    target = origination_target(text, DIALLED, secure=secure)
    parsed = parse_uri(target.request_uri)
    assert parsed.scheme == "sip"
    assert parsed.user == (user or DIALLED)
    assert parsed.host == target.host
    assert parsed.port == port
    assert parsed.headers == {}
    tls = secure or scheme == "sips" or transport == "tls"
    expected = "TLS" if tls else (transport or "udp").upper()
    assert target.transport == expected
    assert parsed.params == ({} if expected == "UDP" else {"transport": expected.lower()})
    assert target.port == (port or (5061 if tls else 5060))
    assert target.edge == edge


# --- per-address attempts ----------------------------------------------------------------------


def test_an_ip_host_is_one_attempt_whatever_the_addresses() -> None:
    target = origination_target("sip:192.0.2.1:5070", DIALLED)
    assert target.peers() == [Peer("UDP", "192.0.2.1", 5070)]
    assert target.peers(["198.51.100.1"]) == [Peer("UDP", "192.0.2.1", 5070)]


def test_an_fqdn_is_one_attempt_per_address_in_order() -> None:
    target = origination_target("sip:mysbc.com;transport=tls", DIALLED)
    addresses = ["192.0.2.3", "192.0.2.1", "2001:DB8::2", "192.0.2.3"]
    assert target.peers(addresses) == [
        Peer("TLS", "192.0.2.3", 5061),
        Peer("TLS", "192.0.2.1", 5061),
        Peer("TLS", "2001:db8::2", 5061),
    ]


def test_an_fqdn_without_addresses_has_no_attempts() -> None:
    assert origination_target("sip:mysbc.com", DIALLED).peers([]) == []


def test_a_plan_sets_unusable_urls_aside() -> None:
    broken = url("sip:mysbc.com?Subject=x", 10, 1000, sid="OU0")
    result = plan([*GUIDE, broken], DIALLED, random.Random(3), secure=True)
    assert [t.url_sid for t in result.targets][3] == "OU4"
    assert sorted(t.url_sid for t in result.targets) == ["OU1", "OU2", "OU3", "OU4"]
    assert all(t.transport == "TLS" and t.secure for t in result.targets)
    assert [(u.sid, type(e)) for u, e in result.invalid] == [("OU0", InvalidSipUrl)]


# --- Diversion ---------------------------------------------------------------------------------


def test_diversion_names_the_dialled_number_at_the_zone() -> None:
    value = diversion_header(DIALLED, ZONE)
    assert value == "<sip:+14158675309@trunkline.example>"
    parsed = NameAddr.parse(value)
    assert (parsed.uri.user, parsed.uri.host) == (DIALLED, ZONE)


def test_diversion_zone_is_lower_case() -> None:
    assert diversion_header(DIALLED, "Trunkline.EXAMPLE") == "<sip:+14158675309@trunkline.example>"


def test_diversion_needs_an_e164_number() -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        diversion_header("4158675309", ZONE)


# --- redirect ----------------------------------------------------------------------------------


def contacts(*values: str) -> list[NameAddr]:
    return [NameAddr.parse(v) for v in values]


FIRST = origination_target(url("sip:pbx.example.com;edge=frankfurt", sid="OU9"), DIALLED)


def test_a_302_is_followed_to_the_first_uri_of_the_first_contact() -> None:
    target = redirect_target(
        contacts("<sip:+4930555@other.example.com:5070>", "<sip:ignored@else.example.com>"),
        ZONE,
        FIRST,
    )
    assert isinstance(target, OriginationTarget)
    assert target.request_uri == "sip:+4930555@other.example.com:5070"
    assert (target.host, target.port, target.transport) == ("other.example.com", 5070, "UDP")
    assert target.redirected
    assert target.edge == "frankfurt"  # the original call's edge
    assert target.url_sid == "OU9"


def test_the_contacts_of_a_parsed_302() -> None:
    response = parse_message(
        b"SIP/2.0 302 Moved Temporarily\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKabc\r\n"
        b"From: <sip:+15105550100@trunkline.example>;tag=1\r\n"
        b"To: <sip:+14158675309@pbx.example.com>;tag=2\r\n"
        b"Call-ID: c1\r\n"
        b"CSeq: 1 INVITE\r\n"
        b'Contact: "Desk" <sip:desk@192.0.2.44;transport=tcp?X-Desk=7&Subject=no>;q=0.5,'
        b" <sip:second@192.0.2.45>\r\n"
        b"Contact: <sip:third@192.0.2.46>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(response, Response)
    target = redirect_target(response.contacts, ZONE, FIRST)
    assert isinstance(target, OriginationTarget)
    assert target.request_uri == "sip:desk@192.0.2.44;transport=tcp"
    assert (target.host, target.port, target.transport) == ("192.0.2.44", 5060, "TCP")
    assert target.headers == (("X-Desk", "7"),)  # only X- headers come along


def test_a_second_302_is_refused() -> None:
    once = redirect_target(contacts("<sip:a@192.0.2.1>"), ZONE, FIRST)
    assert isinstance(once, OriginationTarget)
    twice = redirect_target(contacts("<sip:b@192.0.2.2>"), ZONE, once)
    assert isinstance(twice, RedirectRefused)
    assert (twice.status, twice.code) == (502, REDIRECT_FAILED) == (502, 32219)
    assert "second time" in twice.reason


def test_a_302_without_contact_is_refused() -> None:
    refused = redirect_target([], ZONE, FIRST)
    assert isinstance(refused, RedirectRefused)
    assert refused.code == 32219


@pytest.mark.parametrize(
    "contact",
    [
        "<sip:x@trunkline.example>",
        "<sip:x@TRUNKLINE.example.>",
        "<sip:+14158675309@acme.pstn.ashburn.trunkline.example>",
        "<sip:x@acme.sip.trunkline.example;transport=tls>",
    ],
)
def test_a_redirect_into_the_platform_domain_is_refused(contact: str) -> None:
    refused = redirect_target(contacts(contact), ZONE, FIRST)
    assert isinstance(refused, RedirectRefused)
    assert refused.code == 32219
    assert "platform domain" in refused.reason


def test_a_name_that_only_ends_like_the_zone_is_not_the_platform() -> None:
    target = redirect_target(contacts("<sip:x@nottrunkline.example>"), ZONE, FIRST)
    assert isinstance(target, OriginationTarget)


@pytest.mark.parametrize(
    ("contact", "why"),
    [
        ("<sip:x@192.0.2.1;edge=dublin>", "edge"),
        ("<sip:x@192.0.2.1;EDGE=dublin>", "edge"),
        ("<sip:x@192.0.2.1;region=ie1>", "region"),
        ("<sip:x@192.0.2.1;tnx=abc>", "tnx"),
        ("<tel:+14155550100>", "tel"),
        ("<sip:x@192.0.2.1;transport=ws>", "transport ws"),
    ],
)
def test_a_redirect_the_platform_cannot_follow_is_refused(contact: str, why: str) -> None:
    refused = redirect_target(contacts(contact), ZONE, FIRST)
    assert isinstance(refused, RedirectRefused)
    assert (refused.status, refused.code) == (502, 32219)
    assert why in refused.reason


def test_only_the_first_contact_is_judged() -> None:
    target = redirect_target(
        contacts("<sip:x@192.0.2.1>", "<sip:x@trunkline.example;edge=dublin>"), ZONE, FIRST
    )
    assert isinstance(target, OriginationTarget)


def test_a_redirect_on_a_secure_trunk_keeps_tls_and_srtp() -> None:
    secure = origination_target("sip:pbx.example.com", DIALLED, secure=True)
    target = redirect_target(contacts("<sip:x@192.0.2.1;transport=udp>"), ZONE, secure)
    assert isinstance(target, OriginationTarget)
    assert target.request_uri == "sip:x@192.0.2.1;transport=tls"
    assert (target.transport, target.port, target.secure) == ("TLS", 5061, True)


def test_a_sips_contact_is_followed_as_sip_over_tls() -> None:
    target = redirect_target(contacts("<sips:x@[2001:db8::9]:5063>"), ZONE, FIRST)
    assert isinstance(target, OriginationTarget)
    assert target.request_uri == "sip:x@[2001:db8::9]:5063;transport=tls"
    assert (target.host, target.port, target.transport) == ("2001:db8::9", 5063, "TLS")
    assert target.peers() == [Peer("TLS", "2001:db8::9", 5063)]


def test_other_contact_parameters_stay_in_the_request_uri_a_password_does_not() -> None:
    target = redirect_target(
        contacts("<sip:+4930555:secret@gw.example.com;user=phone>"), ZONE, FIRST
    )
    assert isinstance(target, OriginationTarget)
    assert target.request_uri == "sip:+4930555@gw.example.com;user=phone"
    assert target.peers(["192.0.2.8"]) == [Peer("UDP", "192.0.2.8", 5060)]
