"""2010-04-01 OutgoingCallerIds: validation requests and operator-verified caller IDs."""

from __future__ import annotations

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from trunkline.api.testing import LiveApi


def verify(live_api: LiveApi, account_sid: str, number: str, name: str = "") -> dict[str, str]:
    data = {"PhoneNumber": number, **({"FriendlyName": name} if name else {})}
    resp = live_api.admin.post(f"/admin/v1/Accounts/{account_sid}/OutgoingCallerIds", data=data)
    assert resp.status_code == 201, resp.text
    body: dict[str, str] = resp.json()
    return body


def test_validation_request_then_operator_verifies(client: Client, live_api: LiveApi) -> None:
    request = client.validation_requests.create(
        phone_number="+1 (415) 555-0142", friendly_name="Front desk"
    )
    assert request.phone_number == "+14155550142"
    assert len(request.validation_code) == 6 and request.validation_code.isdigit()
    assert client.outgoing_caller_ids.list() == []  # pending, not verified yet
    verified = verify(live_api, client.username, "+14155550142")
    assert verified["friendly_name"] == "Front desk"  # kept from the request
    listed = client.outgoing_caller_ids.list()
    assert [(c.sid, c.phone_number) for c in listed] == [(verified["sid"], "+14155550142")]


def test_fetch_update_delete_and_list_filters(client: Client, live_api: LiveApi) -> None:
    sids = [verify(live_api, client.username, f"+1415555017{i}")["sid"] for i in range(5)]
    assert [c.sid for c in client.outgoing_caller_ids.list(page_size=2)] == sids
    only = client.outgoing_caller_ids.list(phone_number="+14155550173")
    assert [c.sid for c in only] == [sids[3]]
    caller_id = client.outgoing_caller_ids(sids[0]).fetch()
    assert caller_id.phone_number == "+14155550170"
    assert client.outgoing_caller_ids(sids[0]).update(friendly_name="Sales").friendly_name == (
        "Sales"
    )
    assert client.outgoing_caller_ids(sids[0]).delete() is True
    with pytest.raises(TwilioRestException) as err:
        client.outgoing_caller_ids(sids[0]).fetch()
    assert err.value.status == 404
    # Deleted numbers can be validated again.
    verify(live_api, client.username, "+14155550170")


def test_already_verified_is_21450(client: Client, live_api: LiveApi) -> None:
    verify(live_api, client.username, "+14155550150")
    with pytest.raises(TwilioRestException) as err:
        client.validation_requests.create(phone_number="+14155550150")
    assert (err.value.status, err.value.code) == (400, 21450)
    again = live_api.admin.post(
        f"/admin/v1/Accounts/{client.username}/OutgoingCallerIds",
        data={"PhoneNumber": "+14155550150"},
    )
    assert again.status_code == 400 and again.json()["code"] == 21450
    assert len(client.outgoing_caller_ids.list()) == 1


def test_invalid_number_is_21421(client: Client) -> None:
    with pytest.raises(TwilioRestException) as err:
        client.validation_requests.create(phone_number="not a number")
    assert (err.value.status, err.value.code) == (400, 21421)
    assert "PhoneNumber" in err.value.msg


def test_other_tenants_caller_id_is_404(
    client: Client, other_client: Client, live_api: LiveApi
) -> None:
    theirs = verify(live_api, other_client.username, "+14155550160")["sid"]
    for call in (
        lambda: client.outgoing_caller_ids(theirs).fetch(),
        lambda: client.outgoing_caller_ids(theirs).update(friendly_name="mine"),
        lambda: client.outgoing_caller_ids(theirs).delete(),
    ):
        with pytest.raises(TwilioRestException) as err:
            call()
        assert err.value.status == 404
    assert other_client.outgoing_caller_ids(theirs).fetch().phone_number == "+14155550160"
