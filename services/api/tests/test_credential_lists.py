"""SIP CredentialLists and Credentials (2010-04-01) and trunk CredentialLists (Trunking v1),
through the official twilio package."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from trunkline.api.testing import LiveApi
from trunkline.domain.model import Credential, TrunkCredentialList
from trunkline.store.sqlite import SqliteRepository

STRONG = "Correct1HorseBattery"
OTHER_STRONG = "Staple2BatteryHorse"


@pytest.fixture
def store(live_api: LiveApi) -> Iterator[SqliteRepository]:
    """The API's own database, opened a second time to read what it stored."""
    repo = SqliteRepository(live_api.settings.store_url.removeprefix("sqlite:///"))
    yield repo
    asyncio.run(repo.close())


@pytest.fixture
def http(live_api: LiveApi, account: tuple[str, str]) -> Iterator[httpx.Client]:
    """Raw HTTP as the `client` tenant, to see exactly the bytes the API answers with."""
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


def test_create_fetch_update_delete_credential_list(
    client: Client, account: tuple[str, str]
) -> None:
    account_sid = account[0]
    lists = client.api.v2010.account.sip.credential_lists
    created = lists.create(friendly_name="Office phones")
    assert created.sid.startswith("CL") and len(created.sid) == 34
    assert created.account_sid == account_sid
    assert created.friendly_name == "Office phones"
    uri = f"/2010-04-01/Accounts/{account_sid}/SIP/CredentialLists/{created.sid}"
    assert created.uri == f"{uri}.json"
    assert created.subresource_uris == {"credentials": f"{uri}/Credentials.json"}
    assert created.date_created is not None and created.date_updated is not None

    fetched = lists(created.sid).fetch()
    assert (fetched.sid, fetched.friendly_name) == (created.sid, "Office phones")

    updated = lists(created.sid).update(friendly_name="Branch phones")
    assert updated.friendly_name == "Branch phones"
    assert lists(created.sid).fetch().friendly_name == "Branch phones"

    assert lists(created.sid).delete() is True
    expect_error(lambda: lists(created.sid).fetch(), 404, 20404)
    assert lists.list() == []


def test_list_credential_lists_pages_forward_and_back(client: Client) -> None:
    lists = client.api.v2010.account.sip.credential_lists
    sids = [lists.create(friendly_name=f"list {i}").sid for i in range(7)]
    assert [c.sid for c in lists.list(page_size=3)] == sids
    first = lists.page(page_size=3)
    assert [c.sid for c in first] == sids[:3]
    assert first.previous_page_url is None
    second = first.next_page()
    assert [c.sid for c in second] == sids[3:6]
    assert [c.sid for c in second.previous_page()] == sids[:3]
    third = second.next_page()
    assert [c.sid for c in third] == sids[6:]
    assert third.next_page_url is None


@pytest.mark.parametrize(
    ("name", "why"),
    [("", "must not be empty"), ("x" * 65, "at most 64"), ("bad\x01name", "control")],
)
def test_invalid_credential_list_name_is_400_naming_friendly_name(
    client: Client, name: str, why: str
) -> None:
    lists = client.api.v2010.account.sip.credential_lists
    err = expect_error(lambda: lists.create(friendly_name=name), 400, 20001)
    assert "FriendlyName" in err.msg and why in err.msg
    assert lists.list() == []  # nothing half-written


def test_rename_to_an_invalid_name_leaves_the_list_as_it_was(client: Client) -> None:
    lists = client.api.v2010.account.sip.credential_lists
    sid = lists.create(friendly_name="keep me").sid
    err = expect_error(lambda: lists(sid).update(friendly_name="y" * 65), 400, 20001)
    assert "FriendlyName" in err.msg
    assert lists(sid).fetch().friendly_name == "keep me"


def test_create_fetch_update_delete_credential(
    client: Client, account: tuple[str, str], live_api: LiveApi, store: SqliteRepository
) -> None:
    account_sid = account[0]
    list_sid = client.api.v2010.account.sip.credential_lists.create(friendly_name="pbx").sid
    credentials = client.api.v2010.account.sip.credential_lists(list_sid).credentials
    created = credentials.create(username="alice.smith@pbx", password=STRONG)
    assert created.sid.startswith("CR") and len(created.sid) == 34
    assert created.account_sid == account_sid
    assert created.credential_list_sid == list_sid
    assert created.username == "alice.smith@pbx"
    assert created.uri == (
        f"/2010-04-01/Accounts/{account_sid}/SIP/CredentialLists/{list_sid}"
        f"/Credentials/{created.sid}.json"
    )
    assert created.date_created is not None

    fetched = credentials(created.sid).fetch()
    assert (fetched.sid, fetched.username) == (created.sid, "alice.smith@pbx")

    updated = credentials(created.sid).update(password=OTHER_STRONG)
    assert updated.username == "alice.smith@pbx"
    assert updated.date_updated is not None and updated.date_updated >= created.date_updated

    assert credentials(created.sid).delete() is True
    expect_error(lambda: credentials(created.sid).fetch(), 404, 20404)
    assert credentials.list() == []
    assert asyncio.run(store.get(Credential, created.sid)) is None


def test_only_ha1_of_user_realm_password_is_stored(
    client: Client, live_api: LiveApi, store: SqliteRepository
) -> None:
    realm = live_api.settings.realm
    list_sid = client.api.v2010.account.sip.credential_lists.create(friendly_name="pbx").sid
    credentials = client.api.v2010.account.sip.credential_lists(list_sid).credentials
    sid = credentials.create(username="bob", password=STRONG).sid

    def expect_ha1(password: str) -> None:
        stored = asyncio.run(store.get(Credential, sid))
        assert stored is not None
        a1 = f"bob:{realm}:{password}".encode()
        assert stored.realm == realm
        assert stored.ha1_md5 == hashlib.md5(a1, usedforsecurity=False).hexdigest()
        assert stored.ha1_sha256 == hashlib.sha256(a1).hexdigest()
        assert password not in repr(stored.to_doc())

    expect_ha1(STRONG)
    credentials(sid).update(password=OTHER_STRONG)
    expect_ha1(OTHER_STRONG)


def test_password_and_hashes_never_appear_in_responses(
    client: Client, http: httpx.Client, account: tuple[str, str], store: SqliteRepository
) -> None:
    list_sid = client.api.v2010.account.sip.credential_lists.create(friendly_name="pbx").sid
    base = f"/2010-04-01/Accounts/{account[0]}/SIP/CredentialLists/{list_sid}/Credentials"
    created = http.post(f"{base}.json", data={"Username": "carol", "Password": STRONG})
    assert created.status_code == 201
    sid = created.json()["sid"]
    assert set(created.json()) == {
        "sid",
        "account_sid",
        "credential_list_sid",
        "username",
        "date_created",
        "date_updated",
        "uri",
    }
    updated = http.post(f"{base}/{sid}.json", data={"Password": OTHER_STRONG})
    assert updated.status_code == 200
    fetched = http.get(f"{base}/{sid}.json")
    listed = http.get(f"{base}.json")
    weak = http.post(f"{base}.json", data={"Username": "dave", "Password": "weakpassword"})
    assert weak.status_code == 400
    stored = asyncio.run(store.get(Credential, sid))
    assert stored is not None
    secrets = (STRONG, OTHER_STRONG, "weakpassword", stored.ha1_md5, stored.ha1_sha256)
    for response in (created, updated, fetched, listed, weak):
        for secret in secrets:
            assert secret not in response.text


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("Sh0rtPass", "at least 12 characters"),
        ("NoDigitsInThisOne", "digit"),
        ("alllowercase123", "upper-case"),
        ("ALLUPPERCASE123", "lower-case"),
    ],
)
def test_weak_passwords_are_rejected_naming_password(
    client: Client, password: str, why: str
) -> None:
    list_sid = client.api.v2010.account.sip.credential_lists.create(friendly_name="pbx").sid
    credentials = client.api.v2010.account.sip.credential_lists(list_sid).credentials
    err = expect_error(lambda: credentials.create(username="erin", password=password), 400, 20001)
    assert "Password" in err.msg and why in err.msg
    assert password not in err.msg
    assert credentials.list() == []

    sid = credentials.create(username="erin", password=STRONG).sid
    err = expect_error(lambda: credentials(sid).update(password=password), 400, 20001)
    assert "Password" in err.msg


@pytest.mark.parametrize(
    "username", ["", "has space", "colon:name", 'quote"d', "x" * 33, "back\\slash", "ünïcode"]
)
def test_invalid_usernames_are_400_naming_username(client: Client, username: str) -> None:
    list_sid = client.api.v2010.account.sip.credential_lists.create(friendly_name="pbx").sid
    credentials = client.api.v2010.account.sip.credential_lists(list_sid).credentials
    err = expect_error(lambda: credentials.create(username=username, password=STRONG), 400, 20001)
    assert "Username" in err.msg
    assert credentials.list() == []


@pytest.mark.parametrize(
    ("data", "parameter"),
    [({"Password": STRONG}, "Username"), ({"Username": "frank"}, "Password")],
)
def test_missing_credential_parameters_are_400_naming_them(
    client: Client,
    http: httpx.Client,
    account: tuple[str, str],
    data: dict[str, str],
    parameter: str,
) -> None:
    list_sid = client.api.v2010.account.sip.credential_lists.create(friendly_name="pbx").sid
    path = f"/2010-04-01/Accounts/{account[0]}/SIP/CredentialLists/{list_sid}/Credentials.json"
    resp = http.post(path, data=data)
    assert resp.status_code == 400
    body = resp.json()
    assert body["code"] == 20001 and parameter in body["message"]
    assert client.api.v2010.account.sip.credential_lists(list_sid).credentials.list() == []


def test_missing_friendly_name_is_400(http: httpx.Client, account: tuple[str, str]) -> None:
    resp = http.post(f"/2010-04-01/Accounts/{account[0]}/SIP/CredentialLists.json", data={})
    assert resp.status_code == 400
    assert "FriendlyName" in resp.json()["message"]


def test_username_is_unique_within_its_list(client: Client) -> None:
    lists = client.api.v2010.account.sip.credential_lists
    first, second = (lists.create(friendly_name=n).sid for n in ("a", "b"))
    taken = lists(first).credentials.create(username="grace", password=STRONG)
    err = expect_error(
        lambda: lists(first).credentials.create(username="grace", password=OTHER_STRONG),
        400,
        20001,
    )
    assert "Username" in err.msg and "grace" in err.msg and "already" in err.msg
    assert [c.sid for c in lists(first).credentials.list()] == [taken.sid]
    # The same user name is fine in another list, and free again once deleted.
    assert lists(second).credentials.create(username="grace", password=STRONG).username == "grace"
    lists(first).credentials(taken.sid).delete()
    assert lists(first).credentials.create(username="grace", password=STRONG).username == "grace"


def test_list_credentials_pages_forward_and_back(client: Client) -> None:
    list_sid = client.api.v2010.account.sip.credential_lists.create(friendly_name="pbx").sid
    credentials = client.api.v2010.account.sip.credential_lists(list_sid).credentials
    sids = [credentials.create(username=f"user{i}", password=STRONG).sid for i in range(5)]
    assert [c.sid for c in credentials.list(page_size=2)] == sids
    first = credentials.page(page_size=2)
    assert [c.sid for c in first] == sids[:2]
    assert first.previous_page_url is None
    second = first.next_page()
    assert [c.sid for c in second] == sids[2:4]
    assert [c.sid for c in second.previous_page()] == sids[:2]
    third = second.next_page()
    assert [c.sid for c in third] == sids[4:]
    assert third.next_page_url is None


def test_another_accounts_lists_and_credentials_are_404(
    client: Client, other_client: Client, account: tuple[str, str]
) -> None:
    theirs = other_client.api.v2010.account.sip.credential_lists.create(friendly_name="theirs")
    their_credential = other_client.api.v2010.account.sip.credential_lists(
        theirs.sid
    ).credentials.create(username="mallory", password=STRONG)
    mine = client.api.v2010.account.sip.credential_lists
    foreign = mine(theirs.sid)
    for call in (
        lambda: foreign.fetch(),
        lambda: foreign.update(friendly_name="mine now"),
        lambda: foreign.delete(),
        lambda: foreign.credentials.create(username="eve", password=STRONG),
        lambda: foreign.credentials(their_credential.sid).fetch(),
        lambda: foreign.credentials(their_credential.sid).update(password=OTHER_STRONG),
        lambda: foreign.credentials(their_credential.sid).delete(),
        lambda: client.api.v2010.accounts(theirs.account_sid).sip.credential_lists.create(
            friendly_name="planted"
        ),
    ):
        expect_error(call, 404, 20404)
    for listing in (
        lambda: foreign.credentials.list(),
        # Another account's SID in the path is not the caller's to read either.
        lambda: client.api.v2010.accounts(theirs.account_sid).sip.credential_lists.list(),
    ):
        expect_page_error(listing, 404, 20404)
    # A credential is only found through its own list, even within one account.
    own_list = mine.create(friendly_name="own").sid
    expect_error(lambda: mine(own_list).credentials(their_credential.sid).fetch(), 404, 20404)
    assert other_client.api.v2010.account.sip.credential_lists(
        theirs.sid
    ).fetch().friendly_name == ("theirs")
    assert [
        c.username
        for c in other_client.api.v2010.account.sip.credential_lists(theirs.sid).credentials.list()
    ] == ["mallory"]


def test_subaccount_lists_through_the_parent(client: Client) -> None:
    sub = client.api.v2010.accounts.create(friendly_name="branch")
    lists = client.api.v2010.accounts(sub.sid).sip.credential_lists
    created = lists.create(friendly_name="branch phones")
    assert created.account_sid == sub.sid
    assert [c.sid for c in lists.list()] == [created.sid]
    assert client.api.v2010.account.sip.credential_lists.list() == []


def test_credential_list_changes_are_announced(client: Client, live_api: LiveApi) -> None:
    lists = client.api.v2010.account.sip.credential_lists
    list_sid = lists.create(friendly_name="announced").sid
    lists(list_sid).update(friendly_name="again")
    credential_sid = lists(list_sid).credentials.create(username="heidi", password=STRONG).sid
    lists(list_sid).credentials(credential_sid).update(password=OTHER_STRONG)
    lists(list_sid).credentials(credential_sid).delete()
    lists(list_sid).delete()
    assert sent_for(live_api, list_sid) == [
        ("credential_lists", list_sid, "created", ""),
        ("credential_lists", list_sid, "updated", ""),
        ("credential_lists", list_sid, "deleted", ""),
    ]
    assert sent_for(live_api, credential_sid) == [
        ("credentials", credential_sid, "created", list_sid),
        ("credentials", credential_sid, "updated", list_sid),
        ("credentials", credential_sid, "deleted", list_sid),
    ]


def test_attach_fetch_list_detach_on_a_trunk(
    client: Client, account: tuple[str, str], live_api: LiveApi
) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    assert trunk.auth_type_set == []
    list_sid = client.api.v2010.account.sip.credential_lists.create(friendly_name="Phones").sid
    attached = client.trunking.v1.trunks(trunk.sid).credentials_lists

    link = attached.create(credential_list_sid=list_sid)
    assert link.sid == list_sid
    assert link.account_sid == account[0]
    assert link.trunk_sid == trunk.sid
    assert link.friendly_name == "Phones"
    assert link.url == f"{live_api.url}/v1/Trunks/{trunk.sid}/CredentialLists/{list_sid}"
    assert link.date_created is not None and link.date_updated is not None

    fetched = attached(list_sid).fetch()
    assert (fetched.sid, fetched.friendly_name) == (list_sid, "Phones")
    assert [c.sid for c in attached.list()] == [list_sid]
    trunk_now = client.trunking.v1.trunks(trunk.sid).fetch()
    assert trunk_now.auth_type_set == ["CREDENTIAL_LIST"]
    assert trunk_now.auth_type == "CREDENTIAL_LIST"

    # The attachment shows the list's current name.
    client.api.v2010.account.sip.credential_lists(list_sid).update(friendly_name="Renamed")
    assert attached(list_sid).fetch().friendly_name == "Renamed"

    assert attached(list_sid).delete() is True
    expect_error(lambda: attached(list_sid).fetch(), 404, 20404)
    assert attached.list() == []
    assert client.trunking.v1.trunks(trunk.sid).fetch().auth_type_set == []
    # Detaching leaves the list itself in place.
    assert client.api.v2010.account.sip.credential_lists(list_sid).fetch().sid == list_sid
    assert sent_for(live_api, trunk.sid)[-2:] == [
        ("trunks", trunk.sid, "updated", ""),
        ("trunks", trunk.sid, "updated", ""),
    ]


def test_attaching_the_same_list_twice_is_21245(client: Client) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    list_sid = client.api.v2010.account.sip.credential_lists.create(friendly_name="Phones").sid
    attached = client.trunking.v1.trunks(trunk.sid).credentials_lists
    attached.create(credential_list_sid=list_sid)
    err = expect_error(lambda: attached.create(credential_list_sid=list_sid), 400, 21245)
    assert list_sid in err.msg
    assert [c.sid for c in attached.list()] == [list_sid]


def test_trunk_credential_lists_page_with_v1_meta(client: Client, live_api: LiveApi) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    lists = client.api.v2010.account.sip.credential_lists
    attached = client.trunking.v1.trunks(trunk.sid).credentials_lists
    sids = [lists.create(friendly_name=f"l{i}").sid for i in range(5)]
    for sid in sids:
        attached.create(credential_list_sid=sid)
    assert [c.sid for c in attached.list(page_size=2)] == sids
    first = attached.page(page_size=2)
    assert [c.sid for c in first] == sids[:2]
    assert first.previous_page_url is None
    assert first.next_page_url is not None
    assert first.next_page_url.startswith(f"{live_api.url}/v1/Trunks/{trunk.sid}/CredentialLists?")
    second = first.next_page()
    assert [c.sid for c in second] == sids[2:4]
    assert [c.sid for c in second.previous_page()] == sids[:2]
    third = second.next_page()
    assert [c.sid for c in third] == sids[4:]
    assert third.next_page_url is None


@pytest.mark.parametrize("value", ["", "CL123", "AL" + "0" * 32, "CL" + "g" * 32])
def test_invalid_credential_list_sid_is_400_naming_it(client: Client, value: str) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    attached = client.trunking.v1.trunks(trunk.sid).credentials_lists
    err = expect_error(lambda: attached.create(credential_list_sid=value), 400, 20001)
    assert "CredentialListSid" in err.msg
    assert attached.list() == []


def test_unknown_or_foreign_credential_list_cannot_be_attached(
    client: Client, other_client: Client
) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    theirs = other_client.api.v2010.account.sip.credential_lists.create(friendly_name="x").sid
    attached = client.trunking.v1.trunks(trunk.sid).credentials_lists
    for sid in (theirs, "CL" + "0" * 32):
        err = expect_error(lambda sid=sid: attached.create(credential_list_sid=sid), 404, 20404)
        assert sid in err.msg
    assert attached.list() == []
    assert client.trunking.v1.trunks(trunk.sid).fetch().auth_type_set == []


def test_another_accounts_trunk_attachments_are_404(client: Client, other_client: Client) -> None:
    their_trunk = other_client.trunking.v1.trunks.create(friendly_name="theirs")
    their_list = other_client.api.v2010.account.sip.credential_lists.create(friendly_name="x").sid
    other_client.trunking.v1.trunks(their_trunk.sid).credentials_lists.create(
        credential_list_sid=their_list
    )
    my_list = client.api.v2010.account.sip.credential_lists.create(friendly_name="mine").sid
    foreign = client.trunking.v1.trunks(their_trunk.sid).credentials_lists
    expect_page_error(lambda: foreign.list(), 404, 20404)
    for call in (
        lambda: foreign.create(credential_list_sid=my_list),
        lambda: foreign(their_list).fetch(),
        lambda: foreign(their_list).delete(),
    ):
        expect_error(call, 404, 20404)
    assert [
        c.sid for c in other_client.trunking.v1.trunks(their_trunk.sid).credentials_lists.list()
    ] == [their_list]


def test_deleting_a_list_removes_its_credentials_and_detaches_it_everywhere(
    client: Client, live_api: LiveApi, store: SqliteRepository
) -> None:
    lists = client.api.v2010.account.sip.credential_lists
    list_sid = lists.create(friendly_name="doomed").sid
    kept_sid = lists.create(friendly_name="kept").sid
    credentials = [
        lists(list_sid).credentials.create(username=name, password=STRONG).sid
        for name in ("ivan", "judy")
    ]
    trunk_sids = [client.trunking.v1.trunks.create(friendly_name=f"t{i}").sid for i in range(2)]
    for trunk_sid in trunk_sids:
        client.trunking.v1.trunks(trunk_sid).credentials_lists.create(credential_list_sid=list_sid)
    client.trunking.v1.trunks(trunk_sids[0]).credentials_lists.create(credential_list_sid=kept_sid)

    assert lists(list_sid).delete() is True

    expect_page_error(lambda: lists(list_sid).credentials.list(), 404, 20404)
    assert [c.sid for c in lists.list()] == [kept_sid]
    assert [c.sid for c in client.trunking.v1.trunks(trunk_sids[0]).credentials_lists.list()] == [
        kept_sid
    ]
    assert client.trunking.v1.trunks(trunk_sids[1]).credentials_lists.list() == []
    assert client.trunking.v1.trunks(trunk_sids[1]).fetch().auth_type_set == []
    for sid in credentials:
        assert asyncio.run(store.get(Credential, sid)) is None
    assert asyncio.run(store.holder("credential_username", f"{list_sid}:ivan")) is None
    for trunk_sid in trunk_sids:
        assert asyncio.run(store.get(TrunkCredentialList, f"{trunk_sid}:{list_sid}")) is None
        assert sent_for(live_api, trunk_sid)[-1] == ("trunks", trunk_sid, "updated", "")
    for sid in credentials:
        assert sent_for(live_api, sid)[-1] == ("credentials", sid, "deleted", list_sid)
