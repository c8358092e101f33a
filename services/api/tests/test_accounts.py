"""2010-04-01 Accounts: subaccounts, status, and what a parent may see of them."""

from __future__ import annotations

import httpx
import pytest
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from trunkline.api.testing import LiveApi


def test_fetch_own_account(client: Client, account: tuple[str, str]) -> None:
    me = client.api.v2010.accounts(account[0]).fetch()
    assert me.sid == account[0]
    assert me.owner_account_sid == account[0]
    assert me.status == "active"
    assert me.auth_token is None  # shown once, at creation; only its hash is kept


def test_create_list_update_subaccounts(client: Client, live_api: LiveApi) -> None:
    sub = client.api.v2010.accounts.create(friendly_name="Customer A")
    assert sub.sid.startswith("AC") and sub.sid != client.username
    assert sub.owner_account_sid == client.username
    assert sub.auth_token and len(sub.auth_token) == 32
    subs = [client.api.v2010.accounts.create(friendly_name=f"Customer {i}") for i in "BCD"]
    listed = [a.sid for a in client.api.v2010.accounts.list(page_size=2)]
    assert listed == [client.username, sub.sid, *(s.sid for s in subs)]
    assert [a.sid for a in client.api.v2010.accounts.list(friendly_name="Customer C")] == [
        subs[1].sid
    ]
    renamed = client.api.v2010.accounts(sub.sid).update(friendly_name="Customer A2")
    assert renamed.friendly_name == "Customer A2"

    # The subaccount's own token works; it sees itself but not its parent.
    sub_client = live_api.client(sub.sid, sub.auth_token)
    assert sub_client.api.v2010.accounts(sub.sid).fetch().friendly_name == "Customer A2"
    with pytest.raises(TwilioRestException) as err:
        sub_client.api.v2010.accounts(client.username).fetch()
    assert err.value.status == 404
    with pytest.raises(TwilioRestException) as err:
        sub_client.api.v2010.accounts.create(friendly_name="grandchild")
    assert err.value.status == 403

    # A parent reaches its subaccount's 2010 resources through the subaccount's SID.
    cl = client.api.v2010.accounts(sub.sid).sip.credential_lists.create(friendly_name="sub's")
    assert cl.account_sid == sub.sid
    assert [c.sid for c in sub_client.api.v2010.account.sip.credential_lists.list()] == [cl.sid]


def test_suspended_subaccount_cannot_write_and_closed_cannot_authenticate(
    client: Client, live_api: LiveApi
) -> None:
    sub = client.api.v2010.accounts.create(friendly_name="to suspend")
    sub_client = live_api.client(sub.sid, sub.auth_token)
    client.api.v2010.accounts(sub.sid).update(status="suspended")
    with pytest.raises(TwilioRestException) as err:
        sub_client.trunking.v1.trunks.create(friendly_name="nope")
    assert (err.value.status, err.value.code) == (403, 20005)
    assert sub_client.trunking.v1.trunks.list() == []  # reads still allowed
    client.api.v2010.accounts(sub.sid).update(status="closed")
    with pytest.raises(TwilioException) as closed:  # the SDK's list path raises the base class
        sub_client.trunking.v1.trunks.list()
    assert closed.value.args[1].status_code == 401
    with pytest.raises(TwilioRestException) as err:
        client.api.v2010.accounts(sub.sid).update(status="active")
    assert err.value.status == 400 and "Status" in err.value.msg


def test_account_cannot_change_its_own_status(client: Client) -> None:
    with pytest.raises(TwilioRestException) as err:
        client.api.v2010.accounts(client.username).update(status="closed")
    assert err.value.status == 403
    assert client.api.v2010.accounts(client.username).fetch().status == "active"


def test_other_tenants_account_is_404(client: Client, other_client: Client) -> None:
    with pytest.raises(TwilioRestException) as err:
        client.api.v2010.accounts(other_client.username).fetch()
    assert (err.value.status, err.value.code) == (404, 20404)
    with pytest.raises(TwilioRestException) as err:
        client.api.v2010.accounts(other_client.username).sip.credential_lists.create(
            friendly_name="x"
        )
    assert err.value.status == 404


def test_invalid_status_names_parameter(client: Client) -> None:
    sub = client.api.v2010.accounts.create(friendly_name="s")
    with pytest.raises(TwilioRestException) as err:
        client.api.v2010.accounts(sub.sid).update(status="asleep")
    assert err.value.status == 400 and "Status" in err.value.msg


def test_malformed_basic_auth_is_401(live_api: LiveApi) -> None:
    for header in ("Basic !!!notbase64", "Bearer abc", "Basic " + "dXNlcg=="):
        resp = httpx.get(f"{live_api.url}/v1/Trunks", headers={"Authorization": header})
        assert resp.status_code == 401
        assert resp.json()["code"] == 20003
