"""Trunking v1 /v1/Trunks/{TrunkSid}/OriginationUrls through the official twilio package."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from twilio.rest import Client

from trunkline.api.testing import LiveApi, fails

GOOD = {
    "weight": 10,
    "priority": 10,
    "enabled": True,
    "friendly_name": "Primary SBC",
    "sip_url": "sip:sbc1.example.com",
}


def test_create_fetch_update_delete(client: Client, live_api: LiveApi) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    urls = client.trunking.v1.trunks(trunk.sid).origination_urls
    created = urls.create(
        weight=60,
        priority=10,
        enabled=True,
        friendly_name="Primary SBC",
        sip_url="sip:anniebp@172.56.42.132:5062;transport=tls;edge=dublin?X-Site=hq",
    )
    assert created.sid.startswith("OU") and len(created.sid) == 34
    assert (created.weight, created.priority, created.enabled) == (60, 10, True)
    assert created.sip_url == "sip:anniebp@172.56.42.132:5062;transport=tls;edge=dublin?X-Site=hq"
    assert created.friendly_name == "Primary SBC"
    assert (created.trunk_sid, created.account_sid) == (trunk.sid, client.username)
    assert created.url == f"{live_api.url}/v1/Trunks/{trunk.sid}/OriginationUrls/{created.sid}"
    assert created.date_created is not None

    fetched = urls(created.sid).fetch()
    assert fetched.sip_url == created.sip_url and fetched.weight == 60

    updated = urls(created.sid).update(enabled=False, priority=20)
    assert (updated.enabled, updated.priority) == (False, 20)
    assert (updated.weight, updated.friendly_name) == (60, "Primary SBC")  # untouched fields stay
    moved = urls(created.sid).update(sip_url="sips:sbc2.example.com", friendly_name="Backup")
    assert (moved.sip_url, moved.friendly_name) == ("sips:sbc2.example.com", "Backup")

    assert urls(created.sid).delete() is True
    fails(lambda: urls(created.sid).fetch(), 404, 20404)
    assert urls.list() == []


def test_wire_format_is_trunking_v1(account: tuple[str, str], live_api: LiveApi) -> None:
    client = live_api.client(*account)
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    created = client.trunking.v1.trunks(trunk.sid).origination_urls.create(**GOOD)
    body = httpx.get(created.url, auth=account).json()
    assert set(body) == {
        "account_sid", "sid", "trunk_sid", "weight", "enabled", "sip_url", "friendly_name",
        "priority", "date_created", "date_updated", "url",
    }  # fmt: skip
    assert body["date_created"].endswith("Z")  # ISO 8601
    assert body["weight"] == 10 and body["enabled"] is True


def test_list_pages_forward_and_back(client: Client) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    urls = client.trunking.v1.trunks(trunk.sid).origination_urls
    sids = [
        urls.create(**{**GOOD, "sip_url": f"sip:sbc{i}.example.com", "priority": i}).sid
        for i in range(5)
    ]
    assert [u.sid for u in urls.list(page_size=2)] == sids
    first = urls.page(page_size=2)
    assert [u.sid for u in first] == sids[:2] and first.previous_page_url is None
    second = first.next_page()
    assert [u.sid for u in second] == sids[2:4]
    assert [u.sid for u in second.previous_page()] == sids[:2]
    third = second.next_page()
    assert [u.sid for u in third] == sids[4:] and third.next_page_url is None


def test_eleventh_url_is_21249(client: Client) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    urls = client.trunking.v1.trunks(trunk.sid).origination_urls
    for i in range(10):
        urls.create(**{**GOOD, "sip_url": f"sip:sbc{i}.example.com"})
    fails(lambda: urls.create(**{**GOOD, "sip_url": "sip:one-too-many.example.com"}), 400, 21249)
    assert len(urls.list()) == 10
    # Another trunk has its own ten.
    other = client.trunking.v1.trunks.create(friendly_name="other")
    client.trunking.v1.trunks(other.sid).origination_urls.create(**GOOD)
    # Deleting one makes room again.
    urls(urls.list(limit=1)[0].sid).delete()
    urls.create(**{**GOOD, "sip_url": "sip:room-again.example.com"})


@pytest.mark.parametrize(
    "sip_url",
    [
        "sip:sbc.example.com;edge=mars",
        "sip:sbc.example.com;region=zz9",
    ],
)
def test_unknown_edge_is_21252(client: Client, sip_url: str) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    urls = client.trunking.v1.trunks(trunk.sid).origination_urls
    message = fails(lambda: urls.create(**{**GOOD, "sip_url": sip_url}), 400, 21252)
    assert "SipUrl" in message
    assert urls.list() == []


@pytest.mark.parametrize(
    ("params", "parameter", "fault"),
    [
        ({"weight": 0}, "Weight", "between 1 and 65535"),
        ({"weight": 65536}, "Weight", "between 1 and 65535"),
        ({"weight": "heavy"}, "Weight", "integer"),
        ({"priority": -1}, "Priority", "between 0 and 65535"),
        ({"priority": 65536}, "Priority", "between 0 and 65535"),
        ({"enabled": "sometimes"}, "Enabled", "true or false"),
        ({"friendly_name": "x" * 65}, "FriendlyName", "64"),
        ({"friendly_name": " "}, "FriendlyName", "empty"),
        ({"sip_url": "http://sbc.example.com"}, "SipUrl", "sip:"),
        ({"sip_url": "sip://sip-box.com:1234"}, "SipUrl", "//"),
        ({"sip_url": "sip:sbc.example.com:70000"}, "SipUrl", "port"),
        ({"sip_url": "sip:sbc.example.com;transport=sctp"}, "SipUrl", "transport"),
        ({"sip_url": "sip:sbc.example.com;lr"}, "SipUrl", "not supported"),
        ({"sip_url": "sip:sbc.example.com?Subject=hi"}, "SipUrl", "X-"),
        ({"sip_url": "sip:localhost"}, "SipUrl", "fully qualified"),
        ({"sip_url": "sip:300.1.1.1"}, "SipUrl", "IPv4"),
        ({"sip_url": "sip:sbc.example.com;edge=dublin;region=ie1"}, "SipUrl", "not both"),
    ],
)
def test_invalid_parameters_are_400_naming_them(
    client: Client, params: dict[str, Any], parameter: str, fault: str
) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    urls = client.trunking.v1.trunks(trunk.sid).origination_urls
    message = fails(lambda: urls.create(**{**GOOD, **params}), 400, 20001)
    assert parameter in message and fault in message
    assert urls.list() == []  # nothing half-written

    kept = urls.create(**GOOD)
    fails(lambda: urls(kept.sid).update(**params), 400, 20001)
    again = urls(kept.sid).fetch()
    assert {name: getattr(again, name) for name in GOOD} == GOOD


@pytest.mark.parametrize("missing", ["Weight", "Priority", "Enabled", "FriendlyName", "SipUrl"])
def test_every_parameter_is_required_on_create(
    account: tuple[str, str], live_api: LiveApi, missing: str
) -> None:
    client = live_api.client(*account)
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    form = {
        "Weight": "10",
        "Priority": "10",
        "Enabled": "true",
        "FriendlyName": "Primary",
        "SipUrl": "sip:sbc.example.com",
    }
    del form[missing]
    resp = httpx.post(f"{trunk.url}/OriginationUrls", data=form, auth=account)
    assert resp.status_code == 400
    assert resp.json()["code"] == 20001 and missing in resp.json()["message"]
    assert client.trunking.v1.trunks(trunk.sid).origination_urls.list() == []


def test_another_accounts_urls_are_404_everywhere(client: Client, other_client: Client) -> None:
    theirs = other_client.trunking.v1.trunks.create(friendly_name="theirs")
    their_url = other_client.trunking.v1.trunks(theirs.sid).origination_urls.create(**GOOD)
    mine = client.trunking.v1.trunks.create(friendly_name="mine")
    for call in (
        lambda: client.trunking.v1.trunks(theirs.sid).origination_urls.list(),
        lambda: client.trunking.v1.trunks(theirs.sid).origination_urls.create(**GOOD),
        lambda: client.trunking.v1.trunks(theirs.sid).origination_urls(their_url.sid).fetch(),
        lambda: (
            client.trunking.v1.trunks(theirs.sid).origination_urls(their_url.sid).update(weight=1)
        ),
        lambda: client.trunking.v1.trunks(theirs.sid).origination_urls(their_url.sid).delete(),
        lambda: client.trunking.v1.trunks(mine.sid).origination_urls(their_url.sid).fetch(),
        lambda: client.trunking.v1.trunks(mine.sid).origination_urls(their_url.sid).delete(),
    ):
        fails(call, 404, 20404)
    kept = other_client.trunking.v1.trunks(theirs.sid).origination_urls(their_url.sid).fetch()
    assert kept.weight == GOOD["weight"]
    assert other_client.trunking.v1.trunks(theirs.sid).origination_urls.list() != []


def test_a_url_belongs_to_its_trunk(client: Client) -> None:
    first = client.trunking.v1.trunks.create(friendly_name="first")
    second = client.trunking.v1.trunks.create(friendly_name="second")
    url = client.trunking.v1.trunks(first.sid).origination_urls.create(**GOOD)
    fails(
        lambda: client.trunking.v1.trunks(second.sid).origination_urls(url.sid).fetch(), 404, 20404
    )
    assert client.trunking.v1.trunks(second.sid).origination_urls.list() == []


def test_deleting_the_trunk_deletes_its_urls(client: Client) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="going away")
    url = client.trunking.v1.trunks(trunk.sid).origination_urls.create(**GOOD)
    client.trunking.v1.trunks(trunk.sid).delete()
    fails(
        lambda: client.trunking.v1.trunks(trunk.sid).origination_urls(url.sid).fetch(), 404, 20404
    )


def test_url_changes_are_announced_with_their_trunk(client: Client, live_api: LiveApi) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    urls = client.trunking.v1.trunks(trunk.sid).origination_urls
    url = urls.create(**GOOD)
    urls(url.sid).update(weight=5)
    urls(url.sid).delete()
    sent = [(r, s, a, p) for (_, r, s, a, p) in live_api.announcer.sent if s == url.sid]
    assert sent == [
        ("origination_urls", url.sid, "created", trunk.sid),
        ("origination_urls", url.sid, "updated", trunk.sid),
        ("origination_urls", url.sid, "deleted", trunk.sid),
    ]
