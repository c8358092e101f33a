"""SIP IpAccessControlLists and IpAddresses (2010-04-01) and trunk IpAccessControlLists
(Trunking v1), through the official twilio package."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from trunkline.api.testing import LiveApi
from trunkline.domain.model import IpAddress, TrunkIpAccessControlList
from trunkline.store.sqlite import SqliteRepository


@pytest.fixture
def store(live_api: LiveApi) -> Iterator[SqliteRepository]:
    """The API's own database, opened a second time to read what it stored."""
    repo = SqliteRepository(live_api.settings.store_url.removeprefix("sqlite:///"))
    yield repo
    asyncio.run(repo.close())


@pytest.fixture
def http(live_api: LiveApi, account: tuple[str, str]) -> Iterator[httpx.Client]:
    """Raw HTTP as the `client` tenant, for requests the SDK will not send."""
    with httpx.Client(base_url=live_api.url, auth=account) as raw:
        yield raw


def expect_error(call: Callable[[], Any], status: int, code: int) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as err:
        call()
    assert (err.value.status, err.value.code) == (status, code), err.value.msg
    return err.value


def expect_page_error(call: Callable[[], Any], status: int, code: int) -> None:
    """Listing calls raise the SDK's plain TwilioException, which carries the raw response."""
    with pytest.raises(TwilioException) as err:
        call()
    response = err.value.args[1]
    assert response.status_code == status
    assert json.loads(response.text)["code"] == code


def sent_for(live_api: LiveApi, sid: str) -> list[tuple[str, str, str, str]]:
    return [(r, s, a, p) for (_, r, s, a, p) in live_api.announcer.sent if s == sid]


def new_acl(client: Client, name: str = "Office") -> str:
    return str(client.api.v2010.account.sip.ip_access_control_lists.create(friendly_name=name).sid)


def test_create_fetch_update_delete_ip_access_control_list(
    client: Client, account: tuple[str, str]
) -> None:
    account_sid = account[0]
    acls = client.api.v2010.account.sip.ip_access_control_lists
    created = acls.create(friendly_name="Office")
    assert created.sid.startswith("AL") and len(created.sid) == 34
    assert created.account_sid == account_sid
    assert created.friendly_name == "Office"
    uri = f"/2010-04-01/Accounts/{account_sid}/SIP/IpAccessControlLists/{created.sid}"
    assert created.uri == f"{uri}.json"
    assert created.subresource_uris == {"ip_addresses": f"{uri}/IpAddresses.json"}
    assert created.date_created is not None and created.date_updated is not None

    assert acls(created.sid).fetch().friendly_name == "Office"
    assert acls(created.sid).update(friendly_name="Data center").friendly_name == "Data center"
    assert acls(created.sid).fetch().friendly_name == "Data center"

    assert acls(created.sid).delete() is True
    expect_error(lambda: acls(created.sid).fetch(), 404, 20404)
    assert acls.list() == []


def test_list_ip_access_control_lists_pages_forward_and_back(client: Client) -> None:
    acls = client.api.v2010.account.sip.ip_access_control_lists
    sids = [new_acl(client, f"acl {i}") for i in range(7)]
    assert [a.sid for a in acls.list(page_size=3)] == sids
    first = acls.page(page_size=3)
    assert [a.sid for a in first] == sids[:3]
    assert first.previous_page_url is None
    second = first.next_page()
    assert [a.sid for a in second] == sids[3:6]
    assert [a.sid for a in second.previous_page()] == sids[:3]
    third = second.next_page()
    assert [a.sid for a in third] == sids[6:]
    assert third.next_page_url is None


@pytest.mark.parametrize(("name", "why"), [("", "must not be empty"), ("x" * 256, "at most 255")])
def test_invalid_acl_name_is_400_naming_friendly_name(client: Client, name: str, why: str) -> None:
    acls = client.api.v2010.account.sip.ip_access_control_lists
    err = expect_error(lambda: acls.create(friendly_name=name), 400, 20001)
    assert "FriendlyName" in err.msg and why in err.msg
    assert acls.list() == []
    sid = new_acl(client, "keep me")
    err = expect_error(lambda: acls(sid).update(friendly_name=name), 400, 20001)
    assert "FriendlyName" in err.msg
    assert acls(sid).fetch().friendly_name == "keep me"


def test_create_fetch_update_delete_ip_address(
    client: Client, account: tuple[str, str], store: SqliteRepository
) -> None:
    account_sid = account[0]
    acl_sid = new_acl(client)
    addresses = client.api.v2010.account.sip.ip_access_control_lists(acl_sid).ip_addresses
    created = addresses.create(friendly_name="PBX", ip_address="203.0.113.10")
    assert created.sid.startswith("IP") and len(created.sid) == 34
    assert created.account_sid == account_sid
    assert created.ip_access_control_list_sid == acl_sid
    assert (created.friendly_name, created.ip_address) == ("PBX", "203.0.113.10")
    assert created.cidr_prefix_length == 32  # the whole IPv4 address by default
    assert created.uri == (
        f"/2010-04-01/Accounts/{account_sid}/SIP/IpAccessControlLists/{acl_sid}"
        f"/IpAddresses/{created.sid}.json"
    )
    assert created.date_created is not None

    fetched = addresses(created.sid).fetch()
    assert (fetched.ip_address, fetched.cidr_prefix_length) == ("203.0.113.10", 32)

    renamed = addresses(created.sid).update(friendly_name="Main PBX")
    assert (renamed.friendly_name, renamed.ip_address) == ("Main PBX", "203.0.113.10")
    widened = addresses(created.sid).update(ip_address="198.51.100.0", cidr_prefix_length=24)
    assert (widened.ip_address, widened.cidr_prefix_length) == ("198.51.100.0", 24)
    assert widened.friendly_name == "Main PBX"
    moved = addresses(created.sid).update(ip_address="198.51.100.128")
    assert (moved.ip_address, moved.cidr_prefix_length) == ("198.51.100.128", 24)
    stored = asyncio.run(store.get(IpAddress, created.sid))
    assert stored is not None
    assert (stored.ip_address, stored.cidr_prefix_length) == ("198.51.100.128", 24)

    assert addresses(created.sid).delete() is True
    expect_error(lambda: addresses(created.sid).fetch(), 404, 20404)
    assert addresses.list() == []


def test_ipv6_addresses_default_to_128_and_are_kept_canonical(client: Client) -> None:
    addresses = client.api.v2010.account.sip.ip_access_control_lists(new_acl(client)).ip_addresses
    v6 = addresses.create(friendly_name="v6", ip_address="2001:DB8:0:0::1")
    assert (v6.ip_address, v6.cidr_prefix_length) == ("2001:db8::1", 128)
    net = addresses.create(friendly_name="v6 net", ip_address="2001:db8::", cidr_prefix_length=48)
    assert net.cidr_prefix_length == 48
    # Changing family without a prefix takes the new family's full length, never the old one.
    v4 = addresses(v6.sid).update(ip_address="192.0.2.1")
    assert (v4.ip_address, v4.cidr_prefix_length) == ("192.0.2.1", 32)
    back = addresses(net.sid).update(ip_address="192.0.2.0")
    assert back.cidr_prefix_length == 32


@pytest.mark.parametrize(
    ("ip", "prefix", "parameter"),
    [
        ("300.1.1.1", None, "IpAddress"),
        ("example.com", None, "IpAddress"),
        ("10.0.0.01", None, "IpAddress"),
        ("10.0.0.1", 33, "CidrPrefixLength"),
        ("10.0.0.1", -1, "CidrPrefixLength"),
        ("2001:db8::1", 129, "CidrPrefixLength"),
        ("", None, "IpAddress"),
    ],
)
def test_invalid_addresses_are_400_naming_the_parameter(
    client: Client, ip: str, prefix: int | None, parameter: str
) -> None:
    acl_sid = new_acl(client)
    addresses = client.api.v2010.account.sip.ip_access_control_lists(acl_sid).ip_addresses
    kwargs: dict[str, Any] = {"friendly_name": "bad", "ip_address": ip}
    if prefix is not None:
        kwargs["cidr_prefix_length"] = prefix
    err = expect_error(lambda: addresses.create(**kwargs), 400, 20001)
    assert parameter in err.msg
    assert addresses.list() == []

    good = addresses.create(friendly_name="good", ip_address="192.0.2.7")
    update = {k: v for k, v in kwargs.items() if k != "friendly_name"}
    err = expect_error(lambda: addresses(good.sid).update(**update), 400, 20001)
    assert parameter in err.msg
    fetched = addresses(good.sid).fetch()
    assert (fetched.ip_address, fetched.cidr_prefix_length) == ("192.0.2.7", 32)


def test_non_integer_prefix_is_400(
    http: httpx.Client, client: Client, account: tuple[str, str]
) -> None:
    acl_sid = new_acl(client)
    path = f"/2010-04-01/Accounts/{account[0]}/SIP/IpAccessControlLists/{acl_sid}/IpAddresses.json"
    resp = http.post(
        path, data={"FriendlyName": "x", "IpAddress": "192.0.2.1", "CidrPrefixLength": "wide"}
    )
    assert resp.status_code == 400
    assert "CidrPrefixLength" in resp.json()["message"]


@pytest.mark.parametrize(
    ("data", "parameter"),
    [
        ({"IpAddress": "192.0.2.1"}, "FriendlyName"),
        ({"FriendlyName": "no address"}, "IpAddress"),
    ],
)
def test_missing_address_parameters_are_400_naming_them(
    client: Client,
    http: httpx.Client,
    account: tuple[str, str],
    data: dict[str, str],
    parameter: str,
) -> None:
    acl_sid = new_acl(client)
    path = f"/2010-04-01/Accounts/{account[0]}/SIP/IpAccessControlLists/{acl_sid}/IpAddresses.json"
    resp = http.post(path, data=data)
    assert resp.status_code == 400
    body = resp.json()
    assert body["code"] == 20001 and parameter in body["message"]
    assert client.api.v2010.account.sip.ip_access_control_lists(acl_sid).ip_addresses.list() == []


def test_list_ip_addresses_pages_forward_and_back(client: Client) -> None:
    addresses = client.api.v2010.account.sip.ip_access_control_lists(new_acl(client)).ip_addresses
    sids = [
        addresses.create(friendly_name=f"h{i}", ip_address=f"192.0.2.{i}").sid for i in range(5)
    ]
    assert [a.sid for a in addresses.list(page_size=2)] == sids
    first = addresses.page(page_size=2)
    assert [a.sid for a in first] == sids[:2]
    assert first.previous_page_url is None
    second = first.next_page()
    assert [a.sid for a in second] == sids[2:4]
    assert [a.sid for a in second.previous_page()] == sids[:2]
    third = second.next_page()
    assert [a.sid for a in third] == sids[4:]
    assert third.next_page_url is None


def test_another_accounts_acls_and_addresses_are_404(client: Client, other_client: Client) -> None:
    theirs = other_client.api.v2010.account.sip.ip_access_control_lists.create(
        friendly_name="theirs"
    )
    their_address = other_client.api.v2010.account.sip.ip_access_control_lists(
        theirs.sid
    ).ip_addresses.create(friendly_name="their pbx", ip_address="192.0.2.50")
    mine = client.api.v2010.account.sip.ip_access_control_lists
    foreign = mine(theirs.sid)
    for call in (
        lambda: foreign.fetch(),
        lambda: foreign.update(friendly_name="mine now"),
        lambda: foreign.delete(),
        lambda: foreign.ip_addresses.create(friendly_name="planted", ip_address="198.51.100.66"),
        lambda: foreign.ip_addresses(their_address.sid).fetch(),
        lambda: foreign.ip_addresses(their_address.sid).update(ip_address="198.51.100.66"),
        lambda: foreign.ip_addresses(their_address.sid).delete(),
        lambda: client.api.v2010.accounts(theirs.account_sid).sip.ip_access_control_lists.create(
            friendly_name="planted"
        ),
    ):
        expect_error(call, 404, 20404)
    for listing in (
        lambda: foreign.ip_addresses.list(),
        # Another account's SID in the path is not the caller's to read either.
        lambda: client.api.v2010.accounts(theirs.account_sid).sip.ip_access_control_lists.list(),
    ):
        expect_page_error(listing, 404, 20404)
    # An address is only found through its own list, even within one account.
    own = new_acl(client)
    expect_error(lambda: mine(own).ip_addresses(their_address.sid).fetch(), 404, 20404)
    kept = other_client.api.v2010.account.sip.ip_access_control_lists(theirs.sid)
    assert kept.fetch().friendly_name == "theirs"
    assert [(a.ip_address, a.cidr_prefix_length) for a in kept.ip_addresses.list()] == [
        ("192.0.2.50", 32)
    ]


def test_acl_changes_are_announced(client: Client, live_api: LiveApi) -> None:
    acls = client.api.v2010.account.sip.ip_access_control_lists
    acl_sid = new_acl(client)
    acls(acl_sid).update(friendly_name="again")
    address_sid = acls(acl_sid).ip_addresses.create(friendly_name="pbx", ip_address="192.0.2.9").sid
    acls(acl_sid).ip_addresses(address_sid).update(cidr_prefix_length=30)
    acls(acl_sid).ip_addresses(address_sid).delete()
    acls(acl_sid).delete()
    assert sent_for(live_api, acl_sid) == [
        ("ip_access_control_lists", acl_sid, "created", ""),
        ("ip_access_control_lists", acl_sid, "updated", ""),
        ("ip_access_control_lists", acl_sid, "deleted", ""),
    ]
    assert sent_for(live_api, address_sid) == [
        ("ip_addresses", address_sid, "created", acl_sid),
        ("ip_addresses", address_sid, "updated", acl_sid),
        ("ip_addresses", address_sid, "deleted", acl_sid),
    ]


def test_attach_fetch_list_detach_on_a_trunk(
    client: Client, account: tuple[str, str], live_api: LiveApi
) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    acl_sid = new_acl(client, "Carrier IPs")
    attached = client.trunking.v1.trunks(trunk.sid).ip_access_control_lists

    link = attached.create(ip_access_control_list_sid=acl_sid)
    assert link.sid == acl_sid
    assert link.account_sid == account[0]
    assert link.trunk_sid == trunk.sid
    assert link.friendly_name == "Carrier IPs"
    assert link.url == f"{live_api.url}/v1/Trunks/{trunk.sid}/IpAccessControlLists/{acl_sid}"
    assert link.date_created is not None and link.date_updated is not None

    assert attached(acl_sid).fetch().friendly_name == "Carrier IPs"
    assert [a.sid for a in attached.list()] == [acl_sid]
    assert client.trunking.v1.trunks(trunk.sid).fetch().auth_type_set == ["IP_ACL"]

    # Both kinds attached: the trunk reports both.
    list_sid = client.api.v2010.account.sip.credential_lists.create(friendly_name="phones").sid
    client.trunking.v1.trunks(trunk.sid).credentials_lists.create(credential_list_sid=list_sid)
    assert client.trunking.v1.trunks(trunk.sid).fetch().auth_type_set == [
        "CREDENTIAL_LIST",
        "IP_ACL",
    ]

    assert attached(acl_sid).delete() is True
    expect_error(lambda: attached(acl_sid).fetch(), 404, 20404)
    assert attached.list() == []
    assert client.trunking.v1.trunks(trunk.sid).fetch().auth_type_set == ["CREDENTIAL_LIST"]
    assert client.api.v2010.account.sip.ip_access_control_lists(acl_sid).fetch().sid == acl_sid
    assert sent_for(live_api, trunk.sid)[-1] == ("trunks", trunk.sid, "updated", "")


def test_attaching_the_same_acl_twice_is_21245(client: Client) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    acl_sid = new_acl(client)
    attached = client.trunking.v1.trunks(trunk.sid).ip_access_control_lists
    attached.create(ip_access_control_list_sid=acl_sid)
    err = expect_error(lambda: attached.create(ip_access_control_list_sid=acl_sid), 400, 21245)
    assert acl_sid in err.msg
    assert [a.sid for a in attached.list()] == [acl_sid]


def test_trunk_acls_page_with_v1_meta(client: Client, live_api: LiveApi) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    attached = client.trunking.v1.trunks(trunk.sid).ip_access_control_lists
    sids = [new_acl(client, f"a{i}") for i in range(5)]
    for sid in sids:
        attached.create(ip_access_control_list_sid=sid)
    assert [a.sid for a in attached.list(page_size=2)] == sids
    first = attached.page(page_size=2)
    assert [a.sid for a in first] == sids[:2]
    assert first.previous_page_url is None
    assert first.next_page_url is not None
    assert first.next_page_url.startswith(
        f"{live_api.url}/v1/Trunks/{trunk.sid}/IpAccessControlLists?"
    )
    second = first.next_page()
    assert [a.sid for a in second] == sids[2:4]
    assert [a.sid for a in second.previous_page()] == sids[:2]
    third = second.next_page()
    assert [a.sid for a in third] == sids[4:]
    assert third.next_page_url is None


@pytest.mark.parametrize("value", ["", "AL123", "CL" + "0" * 32])
def test_invalid_acl_sid_is_400_naming_it(client: Client, value: str) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    attached = client.trunking.v1.trunks(trunk.sid).ip_access_control_lists
    err = expect_error(lambda: attached.create(ip_access_control_list_sid=value), 400, 20001)
    assert "IpAccessControlListSid" in err.msg
    assert attached.list() == []


def test_unknown_or_foreign_acl_cannot_be_attached(client: Client, other_client: Client) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    theirs = new_acl(other_client, "theirs")
    attached = client.trunking.v1.trunks(trunk.sid).ip_access_control_lists
    for sid in (theirs, "AL" + "0" * 32):
        err = expect_error(
            lambda sid=sid: attached.create(ip_access_control_list_sid=sid), 404, 20404
        )
        assert sid in err.msg
    assert attached.list() == []
    assert client.trunking.v1.trunks(trunk.sid).fetch().auth_type_set == []


def test_another_accounts_trunk_acls_are_404(client: Client, other_client: Client) -> None:
    their_trunk = other_client.trunking.v1.trunks.create(friendly_name="theirs")
    their_acl = new_acl(other_client, "theirs")
    other_client.trunking.v1.trunks(their_trunk.sid).ip_access_control_lists.create(
        ip_access_control_list_sid=their_acl
    )
    my_acl = new_acl(client, "mine")
    foreign = client.trunking.v1.trunks(their_trunk.sid).ip_access_control_lists
    expect_page_error(lambda: foreign.list(), 404, 20404)
    for call in (
        lambda: foreign.create(ip_access_control_list_sid=my_acl),
        lambda: foreign(their_acl).fetch(),
        lambda: foreign(their_acl).delete(),
    ):
        expect_error(call, 404, 20404)
    kept = other_client.trunking.v1.trunks(their_trunk.sid).ip_access_control_lists.list()
    assert [a.sid for a in kept] == [their_acl]


def test_deleting_an_acl_removes_its_addresses_and_detaches_it_everywhere(
    client: Client, live_api: LiveApi, store: SqliteRepository
) -> None:
    acls = client.api.v2010.account.sip.ip_access_control_lists
    acl_sid = new_acl(client, "doomed")
    kept_sid = new_acl(client, "kept")
    addresses = [
        acls(acl_sid).ip_addresses.create(friendly_name=f"h{i}", ip_address=f"192.0.2.{i}").sid
        for i in range(2)
    ]
    trunk_sids = [client.trunking.v1.trunks.create(friendly_name=f"t{i}").sid for i in range(2)]
    for trunk_sid in trunk_sids:
        client.trunking.v1.trunks(trunk_sid).ip_access_control_lists.create(
            ip_access_control_list_sid=acl_sid
        )
    client.trunking.v1.trunks(trunk_sids[0]).ip_access_control_lists.create(
        ip_access_control_list_sid=kept_sid
    )

    assert acls(acl_sid).delete() is True

    expect_page_error(lambda: acls(acl_sid).ip_addresses.list(), 404, 20404)
    assert [a.sid for a in acls.list()] == [kept_sid]
    remaining = client.trunking.v1.trunks(trunk_sids[0]).ip_access_control_lists.list()
    assert [a.sid for a in remaining] == [kept_sid]
    assert client.trunking.v1.trunks(trunk_sids[1]).ip_access_control_lists.list() == []
    assert client.trunking.v1.trunks(trunk_sids[1]).fetch().auth_type_set == []
    for sid in addresses:
        assert asyncio.run(store.get(IpAddress, sid)) is None
        assert sent_for(live_api, sid)[-1] == ("ip_addresses", sid, "deleted", acl_sid)
    for trunk_sid in trunk_sids:
        key = f"{trunk_sid}:{acl_sid}"
        assert asyncio.run(store.get(TrunkIpAccessControlList, key)) is None
        assert sent_for(live_api, trunk_sid)[-1] == ("trunks", trunk_sid, "updated", "")
