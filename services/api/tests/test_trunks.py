"""Trunking v1 /v1/Trunks through the official twilio package."""

from __future__ import annotations

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from trunkline.api.testing import LiveApi


def test_create_fetch_update_delete_trunk(client: Client, live_api: LiveApi) -> None:
    trunk = client.trunking.v1.trunks.create(
        friendly_name="Main PBX",
        domain_name="acme.pstn.trunkline.test",
        secure=True,
        transfer_mode="enable-all",
        disaster_recovery_url="https://dr.example.com/twiml",
        disaster_recovery_method="GET",
    )
    assert trunk.sid.startswith("TK") and len(trunk.sid) == 34
    assert trunk.domain_name == "acme.pstn.trunkline.test"
    assert trunk.secure is True
    assert trunk.transfer_mode == "enable-all"
    assert trunk.recording == {"mode": "do-not-record", "trim": "do-not-trim"}
    assert trunk.url == f"{live_api.url}/v1/Trunks/{trunk.sid}"
    assert trunk.links["origination_urls"].endswith(f"/v1/Trunks/{trunk.sid}/OriginationUrls")
    assert trunk.date_created is not None

    fetched = client.trunking.v1.trunks(trunk.sid).fetch()
    assert fetched.friendly_name == "Main PBX"
    assert fetched.disaster_recovery_method == "GET"

    updated = client.trunking.v1.trunks(trunk.sid).update(
        friendly_name="Renamed", cnam_lookup_enabled=True
    )
    assert updated.friendly_name == "Renamed"
    assert updated.cnam_lookup_enabled is True
    assert updated.secure is True  # untouched fields stay

    assert client.trunking.v1.trunks(trunk.sid).delete() is True
    with pytest.raises(TwilioRestException) as err:
        client.trunking.v1.trunks(trunk.sid).fetch()
    assert err.value.status == 404
    assert err.value.code == 20404


def test_trunk_changes_are_announced(client: Client, live_api: LiveApi) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="announced")
    client.trunking.v1.trunks(trunk.sid).update(friendly_name="again")
    client.trunking.v1.trunks(trunk.sid).delete()
    actions = [(r, s, a) for (_, r, s, a, _) in live_api.announcer.sent if s == trunk.sid]
    assert actions == [
        ("trunks", trunk.sid, "created"),
        ("trunks", trunk.sid, "updated"),
        ("trunks", trunk.sid, "deleted"),
    ]


def test_list_trunks_pages_forward_and_back(client: Client) -> None:
    sids = [client.trunking.v1.trunks.create(friendly_name=f"t{i}").sid for i in range(7)]
    listed = [t.sid for t in client.trunking.v1.trunks.list(page_size=3)]
    assert listed == sids
    first = client.trunking.v1.trunks.page(page_size=3)
    assert [t.sid for t in first] == sids[:3]
    assert first.previous_page_url is None
    second = first.next_page()
    assert [t.sid for t in second] == sids[3:6]
    back = second.previous_page()
    assert [t.sid for t in back] == sids[:3]
    third = second.next_page()
    assert [t.sid for t in third] == sids[6:]
    assert third.next_page_url is None


def test_domain_name_taken_by_another_account_is_21248(
    client: Client, other_client: Client
) -> None:
    client.trunking.v1.trunks.create(domain_name="taken.pstn.trunkline.test")
    with pytest.raises(TwilioRestException) as err:
        other_client.trunking.v1.trunks.create(domain_name="taken.pstn.trunkline.test")
    assert (err.value.status, err.value.code) == (400, 21248)
    assert "taken.pstn.trunkline.test" in err.value.msg


def test_subdomain_needs_parent_in_account_21247(client: Client, other_client: Client) -> None:
    with pytest.raises(TwilioRestException) as err:
        client.trunking.v1.trunks.create(domain_name="a.nobody.pstn.trunkline.test")
    assert err.value.code == 21247
    parent = client.trunking.v1.trunks.create(domain_name="parent.pstn.trunkline.test")
    child = client.trunking.v1.trunks.create(domain_name="a.parent.pstn.trunkline.test")
    assert child.domain_name == "a.parent.pstn.trunkline.test"
    with pytest.raises(TwilioRestException) as err:
        other_client.trunking.v1.trunks.create(domain_name="b.parent.pstn.trunkline.test")
    assert err.value.code == 21247
    with pytest.raises(TwilioRestException) as err:
        client.trunking.v1.trunks(parent.sid).delete()
    assert err.value.code == 21247
    with pytest.raises(TwilioRestException) as err:
        client.trunking.v1.trunks(parent.sid).update(domain_name="moved.pstn.trunkline.test")
    assert err.value.code == 21247
    client.trunking.v1.trunks(child.sid).delete()
    client.trunking.v1.trunks(parent.sid).delete()


def test_renaming_releases_the_old_domain(client: Client, other_client: Client) -> None:
    trunk = client.trunking.v1.trunks.create(domain_name="first.pstn.trunkline.test")
    client.trunking.v1.trunks(trunk.sid).update(domain_name="second.pstn.trunkline.test")
    reused = other_client.trunking.v1.trunks.create(domain_name="first.pstn.trunkline.test")
    assert reused.domain_name == "first.pstn.trunkline.test"


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"domain_name": "acme.example.com"}, "DomainName"),
        ({"domain_name": "ac_me.pstn.trunkline.test"}, "DomainName"),
        ({"domain_name": "ashburn.pstn.trunkline.test"}, "DomainName"),
        ({"transfer_mode": "sometimes"}, "TransferMode"),
        ({"transfer_caller_id": "nobody"}, "TransferCallerId"),
        ({"disaster_recovery_method": "PUT"}, "DisasterRecoveryMethod"),
        ({"friendly_name": "x" * 65}, "FriendlyName"),
    ],
)
def test_invalid_trunk_parameters_are_400_naming_the_parameter(
    client: Client, params: dict[str, str], parameter: str
) -> None:
    with pytest.raises(TwilioRestException) as err:
        client.trunking.v1.trunks.create(**params)
    assert err.value.status == 400
    assert parameter in err.value.msg
    assert client.trunking.v1.trunks.list() == []  # nothing half-written


def test_invalid_disaster_recovery_url_is_21402(client: Client) -> None:
    with pytest.raises(TwilioRestException) as err:
        client.trunking.v1.trunks.create(disaster_recovery_url="ftp://nope")
    assert (err.value.status, err.value.code) == (400, 21402)


def test_another_accounts_trunk_is_404(client: Client, other_client: Client) -> None:
    trunk = other_client.trunking.v1.trunks.create(friendly_name="theirs")
    for call in (
        lambda: client.trunking.v1.trunks(trunk.sid).fetch(),
        lambda: client.trunking.v1.trunks(trunk.sid).update(friendly_name="mine now"),
        lambda: client.trunking.v1.trunks(trunk.sid).delete(),
    ):
        with pytest.raises(TwilioRestException) as err:
            call()
        assert (err.value.status, err.value.code) == (404, 20404)
    assert other_client.trunking.v1.trunks(trunk.sid).fetch().friendly_name == "theirs"


def test_wrong_credentials_are_401_with_basic_challenge(live_api: LiveApi) -> None:
    sid, _ = live_api.new_account()
    import httpx

    resp = httpx.get(f"{live_api.url}/v1/Trunks", auth=(sid, "not-the-token"))
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Basic")
    body = resp.json()
    assert body["code"] == 20003 and body["status"] == 401
    assert body["more_info"].endswith("/20003")


def test_recording_settings(client: Client) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="rec")
    recording = client.trunking.v1.trunks(trunk.sid).recordings().fetch()
    assert (recording.mode, recording.trim) == ("do-not-record", "do-not-trim")
    updated = (
        client.trunking.v1.trunks(trunk.sid)
        .recordings()
        .update(mode="record-from-answer-dual", trim="trim-silence")
    )
    assert (updated.mode, updated.trim) == ("record-from-answer-dual", "trim-silence")
    assert client.trunking.v1.trunks(trunk.sid).fetch().recording == {
        "mode": "record-from-answer-dual",
        "trim": "trim-silence",
    }
    with pytest.raises(TwilioRestException) as err:
        client.trunking.v1.trunks(trunk.sid).recordings().update(mode="always")
    assert err.value.status == 400 and "Mode" in err.value.msg


def test_max_trunks_per_account_is_21244(live_api: LiveApi) -> None:
    client = live_api.client(*live_api.new_account("many trunks"))
    limit = live_api.settings.max_trunks_per_account
    for i in range(limit):
        client.trunking.v1.trunks.create(friendly_name=f"t{i}")
    with pytest.raises(TwilioRestException) as err:
        client.trunking.v1.trunks.create(friendly_name="one too many")
    assert err.value.code == 21244
