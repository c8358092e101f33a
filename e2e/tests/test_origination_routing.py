"""Origination routing end to end (issue 7): which origination URL of a trunk gets a call.

A carrier (sipp sending from the platform's primary gateway port, as in test_origination.py)
calls a number of a trunk; PBXs are sipp UASs on loopback addresses. Covered here: only
enabled URLs, lowest priority first, a weighted draw within a priority (checked over many
calls), an FQDN host tried at each of its A records in turn (PowerDNS from the harness as
the platform's name server), and a URL's `edge=` parameter and `?X-...` headers.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from trunkline.harness.modules import load_module

pytestmark = pytest.mark.e2e

support = load_module(Path(__file__).with_name("termination_support.py"))
HOST = support.HOST
CALLER = "+14155550100"


@pytest.fixture(scope="module")
def powerdns(request: pytest.FixtureRequest) -> Mapping[str, Any] | None:
    """The harness's PowerDNS, or None when it is switched off (only the FQDN test needs it;
    the others still run)."""
    try:
        return request.getfixturevalue("harness_powerdns")
    except pytest.skip.Exception:
        return None


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory,
    harness_sip: Mapping[str, Any],
    powerdns: Mapping[str, Any] | None,
) -> Iterator[Any]:
    # One platform for the module (it takes seconds to start): its origination host names
    # are looked up at the harness's PowerDNS when there is one.
    environment = {}
    if powerdns is not None:
        environment["TRUNKLINE_DNS_SERVER"] = f"{powerdns['dns_host']}:{powerdns['dns_port']}"
    yield from support.start_termination(tmp_path_factory, harness_sip["sipp"], environment)


def trunk_with_urls(
    platform: Any, name: str, urls: list[dict[str, Any]]
) -> tuple[Any, str, list[Any]]:
    """A trunk with the origination URLs given (sip_url, priority, weight, enabled) and a
    number on it; the URLs as the API made them."""
    trunk = platform.trunk(name)
    origination_urls = platform.client.trunking.v1.trunks(trunk.sid).origination_urls
    made = [
        origination_urls.create(friendly_name=f"{name}-{index}", **url)
        for index, url in enumerate(urls)
    ]
    return trunk, platform.buy_number("201", trunk_sid=trunk.sid), made


def url(
    port: int, priority: int = 10, weight: int = 10, enabled: bool = True, host: str = HOST
) -> dict[str, Any]:
    return {
        "sip_url": f"sip:{host}:{port}",
        "priority": priority,
        "weight": weight,
        "enabled": enabled,
    }


def carrier_calls(sipp: Any, platform: Any, number: str, **options: Any) -> Any:
    """The primary carrier gateway sends calls for `number` to the platform."""
    options.setdefault("pause_ms", 100)
    return sipp.pbx(
        options.pop("scenario", "pbx_uac_call.xml"),
        domain=HOST,  # not a trunk domain: an origination call, trusted by its source
        caller=CALLER,
        service=number,
        local_port=platform.primary_port,
        **options,
    )


@contextlib.contextmanager
def pbx_at(
    sipp: Any, scenario: str, address: str, port: int, *, calls: int = 1, wait: float = 2.0
) -> Iterator[Any]:
    """A PBX (sipp UAS) bound to `address`:`port` for the block, as Sipp.carrier but on any
    local address (Sipp.carrier binds 127.0.0.1 only); stopped `wait` s after the block."""
    stem, trace, errors, output = sipp._files(f"{Path(scenario).stem}-{address}")
    command = sipp._command(
        scenario,
        local=address,
        port=port,
        trace=trace,
        errors=errors,
        timeout=20.0,
        calls=calls,
        variables={},
        args=(),
    )
    with output.open("wb") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    pbx = support.Carrier(support.SippRun(stem, command, None, trace, errors, output), process)
    try:
        deadline = time.monotonic() + 10
        while not support.udp_port_in_use(port, address):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"PBX sipp did not start\n{pbx.run.describe()}")
            time.sleep(0.02)
        yield pbx
    finally:
        pbx.finish(wait)


# --- enabled, priority, weight ---------------------------------------------------------------

CALLS = 100
WEIGHTS = (60, 20, 20)
TOLERANCE = 15  # calls (= percentage points of 100)


def test_calls_are_split_by_weight_within_the_lowest_priority_and_never_reach_disabled_urls(
    platform: Any, tmp_path: Path
) -> None:
    """100 calls to a trunk whose priority-10 URLs weigh 60/20/20, next to a disabled URL of
    weight 65535 (same priority) and a URL of priority 20 (all answer, so never needed).

    Each call's first choice is an independent draw, so a URL's count is Binomial(100, p):
    p=0.6 has sd 4.9, p=0.2 has sd 4.0. The tolerance of +-15 calls is over 3 sd for each;
    the exact binomial tails give a false failure for 0.14 % (60) and 0.015 % (each 20) of
    runs, under 0.2 % in all, while 45-75 vs 5-35 still tells 60 from 20 and from an even
    split (33). All calls must reach the three URLs: the disabled one and priority 20 none.
    """
    ports = support.free_udp_ports(5)
    weighted, (disabled, backup) = ports[:3], ports[3:]
    _, number, _ = trunk_with_urls(
        platform,
        "orig-weights",
        [url(port, weight=weight) for port, weight in zip(weighted, WEIGHTS, strict=True)]
        + [url(disabled, weight=65535, enabled=False), url(backup, priority=20)],
    )
    sipp = platform.sipp(tmp_path)
    with contextlib.ExitStack() as stack:
        pbxs = [
            stack.enter_context(sipp.carrier("carrier_uas.xml", port, calls=CALLS, wait=1))
            for port in weighted
        ]
        never = [stack.enter_context(support.udp_sink(port)) for port in (disabled, backup)]
        started = time.monotonic()
        run = carrier_calls(sipp, platform, number, calls=CALLS, rate=20, timeout=40)
        elapsed = time.monotonic() - started
        stray = [sink.drain() for sink in never]
    assert run.returncode == 0, run.describe() + platform.diagnostics()
    counts = [len(pbx.run.requests_received("INVITE")) for pbx in pbxs]
    assert sum(counts) == CALLS, (counts, elapsed)
    for count, weight in zip(counts, WEIGHTS, strict=True):
        assert abs(count - weight) <= TOLERANCE, f"split {counts}, expected about {WEIGHTS}"
    assert stray == [[], []], "a disabled or a priority-20 URL was sent a call"


def test_the_next_priority_gets_the_call_only_when_every_url_of_the_first_fails(
    platform: Any, tmp_path: Path
) -> None:
    """Two priority-10 URLs both answer 503: each is tried once (the draw orders them), then
    the priority-20 URL answers; a disabled priority-5 URL is never tried."""
    first, second, backup, disabled = support.free_udp_ports(4)
    trunk, number, _ = trunk_with_urls(
        platform,
        "orig-priority",
        [url(first), url(second), url(backup, priority=20), url(disabled, 5, enabled=False)],
    )
    sipp = platform.sipp(tmp_path)
    with (
        sipp.carrier("carrier_uas_unavailable.xml", first) as down1,
        sipp.carrier("carrier_uas_unavailable.xml", second) as down2,
        sipp.carrier("carrier_uas.xml", backup) as up,
        support.udp_sink(disabled) as never,
    ):
        run = carrier_calls(sipp, platform, number)
        stray = never.drain()
    assert run.returncode == 0, run.describe() + platform.diagnostics()
    assert len(down1.run.requests_received("INVITE")) == 1, down1.run.describe()
    assert len(down2.run.requests_received("INVITE")) == 1, down2.run.describe()
    assert up.run.returncode == 0, up.run.describe()
    assert stray == []
    (record,) = platform.calls_of(trunk.sid)
    assert record.status == "completed"


# --- an FQDN host: each A record in turn ------------------------------------------------------

FIRST_ADDRESS, SECOND_ADDRESS = "127.0.0.2", "127.0.0.3"  # loopback: sipp binds them


@pytest.fixture
def pbx_name(powerdns: Mapping[str, Any] | None) -> Iterator[str]:
    """`pbx.<zone>` with the A records 127.0.0.2 and 127.0.0.3, in a zone of its own."""
    if powerdns is None:
        pytest.skip("PowerDNS is switched off in the harness")
    zone = f"routing-{uuid.uuid4().hex[:8]}.test."
    name = f"pbx.{zone}"
    client = httpx.Client(
        base_url=f"{powerdns['api']}/servers/{powerdns['server_id']}",
        headers={"X-API-Key": powerdns["api_key"]},
        timeout=10,
    )
    with client:
        created = client.post(
            "/zones", json={"name": zone, "kind": "Native", "nameservers": [f"ns1.{zone}"]}
        )
        assert created.status_code == 201, created.text
        records = [{"content": a, "disabled": False} for a in (FIRST_ADDRESS, SECOND_ADDRESS)]
        rrset = {"name": name, "type": "A", "ttl": 60, "changetype": "REPLACE", "records": records}
        patched = client.patch(f"/zones/{zone}", json={"rrsets": [rrset]})
        assert patched.status_code == 204, patched.text
        try:
            yield name.rstrip(".")
        finally:
            client.delete(f"/zones/{zone}")


def test_an_fqdn_url_is_tried_at_each_of_its_a_records_in_turn(
    platform: Any, tmp_path: Path, pbx_name: str
) -> None:
    """`sip:pbx.<zone>:PORT` has two A records. Both addresses answering 503: each gets the
    INVITE once (Request-URI naming the host), then the priority-20 URL answers. Then one
    address answering 503 and the other 200: the call completes at the answering one (the
    server shuffles its records, so the 503 one is tried first in about half the runs)."""
    port, backup = support.free_udp_ports(2)
    _, number, _ = trunk_with_urls(
        platform, "orig-fqdn", [url(port, host=pbx_name), url(backup, priority=20)]
    )
    sipp = platform.sipp(tmp_path)
    with (
        pbx_at(sipp, "carrier_uas_unavailable.xml", FIRST_ADDRESS, port) as down1,
        pbx_at(sipp, "carrier_uas_unavailable.xml", SECOND_ADDRESS, port) as down2,
        sipp.carrier("carrier_uas.xml", backup) as up,
    ):
        run = carrier_calls(sipp, platform, number)
    assert run.returncode == 0, run.describe() + platform.diagnostics()
    for pbx in (down1, down2):
        (invite,) = pbx.run.requests_received("INVITE")
        assert invite.request_uri == f"sip:{number}@{pbx_name}:{port}", invite.request_uri
    assert up.run.returncode == 0, up.run.describe()

    _, number, _ = trunk_with_urls(platform, "orig-fqdn-2", [url(port, host=pbx_name)])
    with (
        pbx_at(sipp, "carrier_uas_unavailable.xml", FIRST_ADDRESS, port, wait=0.5) as down,
        pbx_at(sipp, "carrier_uas.xml", SECOND_ADDRESS, port) as answering,
    ):
        run = carrier_calls(sipp, platform, number)
    assert run.returncode == 0, run.describe() + platform.diagnostics()
    assert answering.run.returncode == 0, answering.run.describe()
    assert len(down.run.requests_received("INVITE")) <= 1


# --- edge and X- headers -----------------------------------------------------------------------


def test_an_origination_url_with_an_edge_parameter_sends_and_records_the_call_there(
    platform: Any, tmp_path: Path
) -> None:
    (port,) = support.free_udp_ports(1)
    trunk, number, (made,) = trunk_with_urls(
        platform, "orig-edge", [{**url(port), "sip_url": f"sip:{HOST}:{port};edge=dublin"}]
    )
    assert made.sip_url == f"sip:{HOST}:{port};edge=dublin"
    sipp = platform.sipp(tmp_path)
    with sipp.carrier("carrier_uas.xml", port) as pbx:
        run = carrier_calls(sipp, platform, number)
    assert run.returncode == 0, run.describe() + platform.diagnostics()
    assert pbx.run.returncode == 0, pbx.run.describe()
    (invite,) = pbx.run.requests_received("INVITE")
    # The edge picks where the call is sent from; it is not passed on to the PBX.
    assert invite.request_uri == f"sip:{number}@{HOST}:{port}", invite.request_uri
    (record,) = platform.calls_of(trunk.sid)
    assert record.status == "completed"
    # ... and is recorded on the call: the CALLS events carry it.
    events = support.call_events(platform.platform.nats_url, platform.account_sid, record.sid)
    assert events["started"].edge == "dublin", events


def test_x_headers_of_an_origination_url_reach_the_pbxs_invite(
    platform: Any, tmp_path: Path
) -> None:
    (port,) = support.free_udp_ports(1)
    sip_url = f"sip:{HOST}:{port}?X-Customer=acme&X-Site=east-1"
    _, number, (made,) = trunk_with_urls(platform, "orig-xhdr", [{**url(port), "sip_url": sip_url}])
    assert made.sip_url == sip_url
    sipp = platform.sipp(tmp_path)
    with sipp.carrier("carrier_uas.xml", port) as pbx:
        run = carrier_calls(sipp, platform, number)
    assert run.returncode == 0, run.describe() + platform.diagnostics()
    (invite,) = pbx.run.requests_received("INVITE")
    assert invite.headers("X-Customer") == ["acme"], invite.text
    assert invite.headers("X-Site") == ["east-1"], invite.text
    assert invite.request_uri == f"sip:{number}@{HOST}:{port}", invite.request_uri
