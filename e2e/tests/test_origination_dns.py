"""Origination to an FQDN: every A record of the URL's host is an attempt (the guide's
"Ursprungs-SIP-URI" may name a host by its FQDN), resolved through a real PowerDNS server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest

from trunkline.signaling.origination import origination_target
from trunkline.signaling.resolver import DNS_SERVER_ENV, ResolutionError, Resolver
from trunkline.signaling.sip.transaction import Peer

pytestmark = pytest.mark.e2e

ZONE = "origination.test."
PBX = f"pbx.{ZONE}"
ADDRESSES = ["192.0.2.31", "192.0.2.32", "192.0.2.33"]  # TEST-NET-1: never routed
DIALLED = "+14158675309"


def rrset(name: str, rtype: str, contents: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "type": rtype,
        "ttl": 60,
        "changetype": "REPLACE",
        "records": [{"content": c, "disabled": False} for c in contents],
    }


@pytest.fixture
def zone(harness_powerdns: Mapping[str, Any]) -> Iterator[httpx.Client]:
    client = httpx.Client(
        base_url=f"{harness_powerdns['api']}/servers/{harness_powerdns['server_id']}",
        headers={"X-API-Key": harness_powerdns["api_key"]},
        timeout=10,
    )
    with client:
        # A harness left running by `trunkline-harness up` keeps zones from earlier runs.
        client.delete(f"/zones/{ZONE}")
        created = client.post(
            "/zones", json={"name": ZONE, "kind": "Native", "nameservers": [f"ns1.{ZONE}"]}
        )
        assert created.status_code == 201, created.text
        patched = client.patch(
            f"/zones/{ZONE}",
            json={
                "rrsets": [
                    rrset(PBX, "A", ADDRESSES),
                    rrset(f"alias.{ZONE}", "CNAME", [PBX]),
                    rrset(f"v6.{ZONE}", "AAAA", ["2001:db8::31"]),
                ]
            },
        )
        assert patched.status_code == 204, patched.text
        try:
            yield client
        finally:
            client.delete(f"/zones/{ZONE}")


def resolver(endpoints: Mapping[str, Any]) -> Resolver:
    server = f"{endpoints['dns_host']}:{endpoints['dns_port']}"
    return Resolver.from_env({DNS_SERVER_ENV: server})


async def settled(resolver: Resolver, host: str, expected: set[str]) -> list[str]:
    """The addresses once the server answers with `expected` (PowerDNS purges its packet
    cache on change; poll anyway rather than trust timing)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            found = await resolver.addresses(host)
        except ResolutionError:
            found = []
        if set(found) == expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


async def test_origination_to_an_fqdn_tries_each_of_its_a_records(
    harness_powerdns: Mapping[str, Any], zone: httpx.Client
) -> None:
    target = origination_target("sip:pbx.origination.test;transport=tcp", DIALLED)
    assert not target.is_ip
    found = await settled(resolver(harness_powerdns), target.host, set(ADDRESSES))
    # PowerDNS shuffles the records of an answer; every one of them is an attempt.
    assert sorted(found) == ADDRESSES
    peers = target.peers(found)
    assert sorted(peers, key=lambda p: p.host) == [Peer("TCP", a, 5060) for a in ADDRESSES]
    assert target.request_uri == "sip:+14158675309@pbx.origination.test;transport=tcp"


async def test_origination_follows_a_cname_to_its_a_records(
    harness_powerdns: Mapping[str, Any], zone: httpx.Client
) -> None:
    found = await settled(resolver(harness_powerdns), f"alias.{ZONE}", set(ADDRESSES))
    assert sorted(found) == ADDRESSES


async def test_origination_to_an_unknown_name_fails_over(
    harness_powerdns: Mapping[str, Any], zone: httpx.Client
) -> None:
    with pytest.raises(ResolutionError, match="NXDOMAIN"):
        await resolver(harness_powerdns).addresses(f"nowhere.{ZONE}")
    with pytest.raises(ResolutionError, match="no A records"):
        await resolver(harness_powerdns).addresses(f"v6.{ZONE}")


async def test_origination_sees_changed_a_records(
    harness_powerdns: Mapping[str, Any], zone: httpx.Client
) -> None:
    """A PBX that moves (its A records replaced) is reached at its new addresses."""
    first = resolver(harness_powerdns)
    assert sorted(await settled(first, PBX, set(ADDRESSES))) == ADDRESSES
    moved = ["198.51.100.7"]
    patched = zone.patch(f"/zones/{ZONE}", json={"rrsets": [rrset(PBX, "A", moved)]})
    assert patched.status_code == 204, patched.text
    assert await settled(resolver(harness_powerdns), PBX, set(moved)) == moved
