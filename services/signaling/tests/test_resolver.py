"""The origination resolver against a real DNS server on loopback, started by the test.

The server is small but speaks DNS over UDP and TCP (dnspython builds its messages): it
answers A, AAAA and CNAME from a table, NXDOMAIN for unknown names, SERVFAIL or silence on
request, and truncates UDP answers that do not fit, as a real server does.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest

from trunkline.signaling.origination import origination_target
from trunkline.signaling.resolver import (
    DEFAULT_DNS_PORT,
    DNS_SERVER_ENV,
    ResolutionError,
    Resolver,
    parse_dns_server,
)
from trunkline.signaling.sip.transaction import Peer

MANY = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(80)]  # too many for a UDP answer
RECORDS: dict[str, dict[str, list[str]]] = {
    "pbx.example.com.": {"A": ["192.0.2.3", "192.0.2.1", "192.0.2.2"]},
    "dual.example.com.": {"A": ["192.0.2.10"], "AAAA": ["2001:db8::10", "2001:db8::11"]},
    "v6only.example.com.": {"AAAA": ["2001:db8::20"]},
    "alias.example.com.": {"CNAME": ["pbx.example.com."]},
    "many.example.com.": {"A": MANY},
}


@dataclass
class DnsServer:
    host: str
    port: int
    queries: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (name, type, via)
    silent: set[str] = field(default_factory=set)
    servfail: set[str] = field(default_factory=set)

    def answer(self, wire: bytes, via: str, limit: int | None) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name, rdtype = question.name.to_text().lower(), question.rdtype
        self.queries[(name, dns.rdatatype.to_text(rdtype), via)] += 1
        if name in self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        if name not in RECORDS:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response.to_wire()
        records = RECORDS[name]
        if "CNAME" in records:
            target = records["CNAME"][0]
            response.answer.append(dns.rrset.from_text_list(name, 60, "IN", "CNAME", [target]))
            name, records = target, RECORDS[target]
        wanted = dns.rdatatype.to_text(rdtype)
        if wanted in records:
            response.answer.append(
                dns.rrset.from_text_list(name, 60, "IN", wanted, records[wanted])
            )
        # No shuffle (dnspython's default when writing): the order the resolver keeps is checked.
        if limit is None:
            return response.to_wire(want_shuffle=False)
        try:
            return response.to_wire(max_size=limit, want_shuffle=False)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.TC
            return truncated.to_wire()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        limit = max(query.payload, 512) if query.edns >= 0 else 512
        reply = self.server.answer(data, "udp", limit)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


@pytest.fixture
async def dns_server() -> AsyncIterator[DnsServer]:
    loop = asyncio.get_running_loop()
    server = DnsServer("127.0.0.1", 0)
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Udp(server), local_addr=(server.host, 0)
    )
    server.port = transport.get_extra_info("sockname")[1]
    host, port = server.host, server.port

    async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                reply = server.answer(await reader.readexactly(size), "tcp", None)
                if reply is None:
                    continue
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    # The same port for TCP, as a name server has: a truncated answer is asked again there.
    stream = await asyncio.start_server(tcp, host, port)
    try:
        yield server
    finally:
        stream.close()
        transport.close()


def resolver_for(
    server: DnsServer, *, timeout: float = 2.0, ipv6: bool = False, cache: bool = True
) -> Resolver:
    return Resolver((server.host, server.port), timeout=timeout, ipv6=ipv6, cache=cache)


# --- lookups -----------------------------------------------------------------------------------


async def test_all_a_records_in_the_servers_order(dns_server: DnsServer) -> None:
    resolver = resolver_for(dns_server)
    assert await resolver.addresses("pbx.example.com") == ["192.0.2.3", "192.0.2.1", "192.0.2.2"]


async def test_each_address_becomes_an_attempt(dns_server: DnsServer) -> None:
    target = origination_target("sip:pbx.example.com;transport=tcp", "+14158675309")
    addresses = await resolver_for(dns_server).addresses(target.host)
    assert target.peers(addresses) == [
        Peer("TCP", "192.0.2.3", 5060),
        Peer("TCP", "192.0.2.1", 5060),
        Peer("TCP", "192.0.2.2", 5060),
    ]


async def test_an_ip_address_needs_no_lookup(dns_server: DnsServer) -> None:
    resolver = resolver_for(dns_server)
    assert await resolver.addresses("192.0.2.77") == ["192.0.2.77"]
    assert await resolver.addresses("2001:DB8::1") == ["2001:db8::1"]
    assert not dns_server.queries


async def test_a_trailing_dot_and_upper_case_are_the_same_name(dns_server: DnsServer) -> None:
    assert await resolver_for(dns_server).addresses("PBX.Example.com.") == [
        "192.0.2.3",
        "192.0.2.1",
        "192.0.2.2",
    ]


async def test_a_cname_is_followed(dns_server: DnsServer) -> None:
    addresses = await resolver_for(dns_server).addresses("alias.example.com")
    assert addresses == ["192.0.2.3", "192.0.2.1", "192.0.2.2"]


async def test_a_large_answer_is_fetched_again_over_tcp(dns_server: DnsServer) -> None:
    addresses = await resolver_for(dns_server).addresses("many.example.com")
    assert addresses == MANY
    assert dns_server.queries[("many.example.com.", "A", "udp")] == 1
    assert dns_server.queries[("many.example.com.", "A", "tcp")] == 1


async def test_only_a_records_unless_ipv6_is_asked_for(dns_server: DnsServer) -> None:
    assert await resolver_for(dns_server).addresses("dual.example.com") == ["192.0.2.10"]
    with_v6 = resolver_for(dns_server, ipv6=True)
    assert await with_v6.addresses("dual.example.com") == [
        "192.0.2.10",
        "2001:db8::10",
        "2001:db8::11",
    ]
    assert await with_v6.addresses("v6only.example.com") == ["2001:db8::20"]


async def test_no_a_records_is_an_error(dns_server: DnsServer) -> None:
    with pytest.raises(ResolutionError, match="no A records") as caught:
        await resolver_for(dns_server).addresses("v6only.example.com")
    assert caught.value.host == "v6only.example.com"


async def test_an_unknown_name_is_nxdomain(dns_server: DnsServer) -> None:
    with pytest.raises(ResolutionError, match="NXDOMAIN"):
        await resolver_for(dns_server).addresses("nowhere.example.com")


async def test_no_search_domains_are_tried(dns_server: DnsServer) -> None:
    with pytest.raises(ResolutionError):
        await resolver_for(dns_server).addresses("pbx")
    assert [name for name, _, _ in dns_server.queries] == ["pbx."]


async def test_a_failing_server_is_an_error(dns_server: DnsServer) -> None:
    dns_server.servfail.add("pbx.example.com.")
    with pytest.raises(ResolutionError, match="name servers failed"):
        await resolver_for(dns_server).addresses("pbx.example.com")


async def test_a_silent_server_is_an_error_within_the_timeout(dns_server: DnsServer) -> None:
    dns_server.silent.add("pbx.example.com.")
    started = time.monotonic()
    with pytest.raises(ResolutionError, match="in time"):
        await resolver_for(dns_server, timeout=0.3).addresses("pbx.example.com")
    assert time.monotonic() - started < 2


async def test_a_name_that_cannot_be_a_domain_name(dns_server: DnsServer) -> None:
    with pytest.raises(ResolutionError, match="not a valid domain name"):
        await resolver_for(dns_server).addresses("x" * 64 + ".example.com")
    assert not dns_server.queries


async def test_answers_are_cached_for_their_ttl(dns_server: DnsServer) -> None:
    resolver = resolver_for(dns_server)
    for _ in range(3):
        await resolver.addresses("pbx.example.com")
    assert dns_server.queries[("pbx.example.com.", "A", "udp")] == 1
    uncached = resolver_for(dns_server, cache=False)
    for _ in range(2):
        await uncached.addresses("pbx.example.com")
    assert dns_server.queries[("pbx.example.com.", "A", "udp")] == 3


async def test_from_env_uses_the_named_server(dns_server: DnsServer) -> None:
    resolver = Resolver.from_env({DNS_SERVER_ENV: f"{dns_server.host}:{dns_server.port}"})
    assert resolver.nameservers == [(dns_server.host, dns_server.port)]
    assert await resolver.addresses("pbx.example.com") == ["192.0.2.3", "192.0.2.1", "192.0.2.2"]


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:15353", ("127.0.0.1", 15353)),
        (" 10.0.0.53 ", ("10.0.0.53", DEFAULT_DNS_PORT)),
        ("[::1]:5353", ("::1", 5353)),
        ("[2001:DB8::53]", ("2001:db8::53", 53)),
        ("2001:db8::53", ("2001:db8::53", 53)),
    ],
)
def test_parse_dns_server(text: str, expected: tuple[str, int]) -> None:
    assert parse_dns_server(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("dns.example.com:53", "IP address"),
        ("127.0.0.1:", "port"),
        ("127.0.0.1:0", "port"),
        ("127.0.0.1:65536", "port"),
        ("127.0.0.1:dns", "port"),
        ("[::1", r"\[addr\]:port"),
        ("[::1]53", r"\[addr\]:port"),
        ("", "IP address"),
    ],
)
def test_parse_dns_server_says_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        parse_dns_server(text)
    assert DNS_SERVER_ENV in str(caught.value)


def test_without_the_variable_the_systems_resolver() -> None:
    system = dns.asyncresolver.Resolver(configure=True)
    resolver = Resolver.from_env({DNS_SERVER_ENV: " "})
    assert resolver.nameservers == [(str(ns), system.port) for ns in system.nameservers]


def test_a_bad_variable_is_refused() -> None:
    with pytest.raises(ValueError, match=DNS_SERVER_ENV):
        Resolver.from_env({DNS_SERVER_ENV: "localhost"})


async def test_without_any_name_server_names_fail_and_addresses_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = dns.asyncresolver.Resolver

    def no_resolv_conf(*, configure: bool = True) -> dns.asyncresolver.Resolver:
        if configure:
            raise dns.resolver.NoResolverConfiguration
        return real(configure=False)

    monkeypatch.setattr(dns.asyncresolver, "Resolver", no_resolv_conf)
    resolver = Resolver.from_env({})
    assert await resolver.addresses("192.0.2.1") == ["192.0.2.1"]
    with pytest.raises(ResolutionError, match=DNS_SERVER_ENV):
        await resolver.addresses("pbx.example.com")
