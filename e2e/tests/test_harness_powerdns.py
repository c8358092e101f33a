"""PowerDNS from the harness: a zone and an A record made through its API, resolved over DNS."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import httpx
import pytest

pytestmark = pytest.mark.e2e

ZONE = "smoke.test."
NAME = f"www.{ZONE}"
ADDRESS = "192.0.2.53"  # TEST-NET-1: documentation space, never routed


def api(endpoints: Mapping[str, Any]) -> httpx.Client:
    return httpx.Client(
        base_url=f"{endpoints['api']}/servers/{endpoints['server_id']}",
        headers={"X-API-Key": endpoints["api_key"]},
        timeout=10,
    )


def resolve_a(endpoints: Mapping[str, Any], name: str) -> list[str]:
    query = dns.message.make_query(name, dns.rdatatype.A)
    answer = dns.query.udp(query, endpoints["dns_host"], port=endpoints["dns_port"], timeout=2)
    assert answer.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(answer.rcode())
    return [rdata.address for rrset in answer.answer for rdata in rrset]


def test_zone_and_a_record_resolve(harness_powerdns: Mapping[str, Any]) -> None:
    with api(harness_powerdns) as client:
        # A harness left running by `trunkline-harness up` keeps zones from earlier runs.
        client.delete(f"/zones/{ZONE}")
        created = client.post(
            "/zones",
            json={"name": ZONE, "kind": "Native", "nameservers": [f"ns1.{ZONE}"]},
        )
        assert created.status_code == 201, created.text
        patched = client.patch(
            f"/zones/{ZONE}",
            json={
                "rrsets": [
                    {
                        "name": NAME,
                        "type": "A",
                        "ttl": 60,
                        "changetype": "REPLACE",
                        "records": [{"content": ADDRESS, "disabled": False}],
                    }
                ]
            },
        )
        assert patched.status_code == 204, patched.text
        zone = client.get(f"/zones/{ZONE}").json()
        assert any(r["name"] == NAME and r["type"] == "A" for r in zone["rrsets"]), zone

    # The API purges the packet cache on change; poll anyway rather than trust timing.
    deadline = time.monotonic() + 10
    addresses: list[str] = []
    while time.monotonic() < deadline:
        addresses = resolve_a(harness_powerdns, NAME)
        if addresses:
            break
        time.sleep(0.1)
    assert addresses == [ADDRESS]
