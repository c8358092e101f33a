"""Buying, configuring, tying and releasing numbers, through the official twilio package.

The inventory is shared by every test of the session, so each test stocks its own numbers in
an area code no other test has used (lines 555-0100 on, the range reserved for fiction).
"""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from trunkline.api.resources.phone_numbers import purchase, release
from trunkline.api.testing import LiveApi, fails
from trunkline.domain.model import InventoryNumber, PhoneNumber
from trunkline.domain.sid import new_sid
from trunkline.store.repository import Batch, ClaimConflict
from trunkline.store.sqlite import SqliteRepository

COLUMNS = ("phone_number", "iso_country", "number_type", "locality", "region")
# The properties of `api.v2010.account.incoming_phone_number` and
# `trunking.v1.trunk.phone_number` in Twilio's OpenAPI descriptions.
INCOMING_FIELDS = {
    "account_sid", "address_sid", "address_requirements", "api_version", "beta",
    "capabilities", "date_created", "date_updated", "friendly_name", "identity_sid",
    "phone_number", "origin", "sid", "sms_application_sid", "sms_fallback_method",
    "sms_fallback_url", "sms_method", "sms_url", "status_callback", "status_callback_method",
    "trunk_sid", "uri", "voice_receive_mode", "voice_application_sid", "voice_caller_id_lookup",
    "voice_fallback_method", "voice_fallback_url", "voice_method", "voice_url",
    "emergency_status", "emergency_address_sid", "emergency_address_status", "bundle_sid",
    "status", "type",
}  # fmt: skip
TRUNK_NUMBER_FIELDS = {
    "account_sid", "address_requirements", "api_version", "beta", "capabilities",
    "date_created", "date_updated", "friendly_name", "links", "phone_number", "sid",
    "sms_application_sid", "sms_fallback_method", "sms_fallback_url", "sms_method", "sms_url",
    "status_callback", "status_callback_method", "trunk_sid", "url", "voice_application_sid",
    "voice_caller_id_lookup", "voice_fallback_method", "voice_fallback_url", "voice_method",
    "voice_url",
}  # fmt: skip


def stock(live_api: LiveApi, count: int = 1, number_type: str = "local") -> list[str]:
    """`count` new free US numbers in an area code no other test has stocked; every test
    starts at line 0100, so a used area code shows up as a skipped first line."""
    for _ in range(100):
        npa = str(random.randint(200, 999))
        numbers = [f"+1{npa}55501{i:02d}" for i in range(count)]
        lines = [",".join(COLUMNS)]
        lines += [f"{n},US,{number_type},Springfield,IL" for n in numbers]
        resp = live_api.admin.post(
            "/admin/v1/PhoneNumbers/Import",
            content="\n".join(lines) + "\n",
            headers={"Content-Type": "text/csv"},
        )
        assert resp.status_code == 200, resp.text
        if resp.json()["skipped"] == 0:
            return numbers
    raise AssertionError("no unused area code found in 100 tries")


def npa(number: str) -> str:
    return number[2:5]


def available(client: Client, number: str) -> bool:
    found = client.available_phone_numbers("US").local.list(area_code=npa(number))
    return number in [n.phone_number for n in found]


def test_buy_fetch_update_release(client: Client, live_api: LiveApi) -> None:
    [number] = stock(live_api)
    assert available(client, number)
    bought = client.incoming_phone_numbers.create(
        phone_number=number,
        friendly_name="Front desk",
        voice_url="https://pbx.example.com/voice",
        voice_method="GET",
    )
    account_sid = client.username
    assert bought.sid.startswith("PN") and len(bought.sid) == 34
    assert bought.phone_number == number and bought.friendly_name == "Front desk"
    assert bought.account_sid == account_sid
    assert (
        bought.uri == f"/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers/{bought.sid}.json"
    )
    assert (bought.voice_url, bought.voice_method) == ("https://pbx.example.com/voice", "GET")
    assert (bought.voice_fallback_url, bought.voice_fallback_method) == (None, "POST")
    assert bought.capabilities == {"voice": True, "sms": True, "mms": True, "fax": False}
    assert (bought.api_version, bought.origin, bought.status, bought.type) == (
        "2010-04-01", "twilio", "in-use", "local",
    )  # fmt: skip
    assert (bought.emergency_status, bought.emergency_address_status) == (
        "Inactive", "unregistered",
    )  # fmt: skip
    assert bought.trunk_sid is None and bought.beta is False
    assert bought.date_created is not None
    assert not available(client, number)

    fetched = client.incoming_phone_numbers(bought.sid).fetch()
    assert fetched.friendly_name == "Front desk" and fetched.phone_number == number

    updated = client.incoming_phone_numbers(bought.sid).update(
        friendly_name="Reception", voice_caller_id_lookup=True, voice_url=""
    )
    assert updated.friendly_name == "Reception" and updated.voice_caller_id_lookup is True
    assert updated.voice_url is None  # empty clears it
    assert updated.voice_method == "GET"  # untouched fields stay
    reset = client.incoming_phone_numbers(bought.sid).update(friendly_name="")
    assert reset.friendly_name == f"({npa(number)}) 555-0100"

    assert client.incoming_phone_numbers(bought.sid).delete() is True
    fails(lambda: client.incoming_phone_numbers(bought.sid).fetch(), 404, 20404)
    assert available(client, number)  # released numbers go back to the inventory
    again = client.incoming_phone_numbers.create(phone_number=number)
    assert again.sid != bought.sid and again.friendly_name == f"({npa(number)}) 555-0100"


def test_both_apis_show_every_field_of_their_schemas(
    client: Client, account: tuple[str, str], live_api: LiveApi
) -> None:
    [number] = stock(live_api)
    bought = client.incoming_phone_numbers.create(phone_number=number)
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    client.trunking.v1.trunks(trunk.sid).phone_numbers.create(phone_number_sid=bought.sid)
    auth = account
    incoming = httpx.get(f"{live_api.url}{bought.uri}", auth=auth).json()
    assert set(incoming) == INCOMING_FIELDS
    assert incoming["date_created"].endswith(" +0000")  # RFC 2822
    tied = httpx.get(
        f"{live_api.url}/v1/Trunks/{trunk.sid}/PhoneNumbers/{bought.sid}", auth=auth
    ).json()
    assert set(tied) == TRUNK_NUMBER_FIELDS
    assert tied["date_created"].endswith("Z")  # ISO 8601


def test_buy_by_area_code_takes_free_numbers_in_order(client: Client, live_api: LiveApi) -> None:
    numbers = stock(live_api, 2)
    first = client.incoming_phone_numbers.create(area_code=npa(numbers[0]))
    second = client.incoming_phone_numbers.create(area_code=npa(numbers[0]))
    assert [first.phone_number, second.phone_number] == numbers
    message = fails(
        lambda: client.incoming_phone_numbers.create(area_code=npa(numbers[0])), 400, 21452
    )
    assert npa(numbers[0]) in message
    fails(lambda: client.incoming_phone_numbers.create(area_code="1ab"), 400, 21451)


def test_buying_a_taken_number_is_21421(
    client: Client, other_client: Client, live_api: LiveApi
) -> None:
    [number] = stock(live_api)
    other_client.incoming_phone_numbers.create(phone_number=number)
    message = fails(lambda: client.incoming_phone_numbers.create(phone_number=number), 400, 21421)
    assert "not available" in message and number in message
    fails(lambda: other_client.incoming_phone_numbers.create(phone_number=number), 400, 21421)
    assert client.incoming_phone_numbers.list() == []


def test_numbers_not_in_stock_or_malformed_are_21421(client: Client, live_api: LiveApi) -> None:
    [number] = stock(live_api)
    unknown = number[:-2] + "99"
    message = fails(lambda: client.incoming_phone_numbers.create(phone_number=unknown), 400, 21421)
    assert "not available" in message
    message = fails(
        lambda: client.incoming_phone_numbers.create(phone_number="call me"), 400, 21421
    )
    assert "PhoneNumber" in message
    # A local number bought through TollFree.json is not a toll-free number.
    fails(lambda: client.incoming_phone_numbers.toll_free.create(phone_number=number), 400, 21421)
    assert client.incoming_phone_numbers.list() == []


async def test_two_buyers_of_one_free_entry_cannot_both_win(tmp_path: Path) -> None:
    """What the claim guarantees when two requests read the same free entry concurrently
    (the live server runs one request at a time, so this drives the batches directly)."""
    repo = SqliteRepository(tmp_path / "race.db")
    await repo.apply(Batch().put(InventoryNumber(phone_number="+12025550100", iso_country="US")))
    seen = await repo.get(InventoryNumber, "+12025550100")
    assert seen is not None and seen.owner_phone_number_sid is None
    mine = new_number("AC" + "1" * 32, seen.phone_number)
    theirs = new_number("AC" + "2" * 32, seen.phone_number)
    await repo.apply(purchase(seen, mine))
    with pytest.raises(ClaimConflict):
        await repo.apply(purchase(seen, theirs))  # read "free" before the first buy landed
    assert await repo.get(PhoneNumber, theirs.sid) is None
    owned = await repo.get(InventoryNumber, seen.phone_number)
    assert owned is not None and owned.owner_phone_number_sid == mine.sid

    # A stale second release must not free the number under its next owner either.
    await repo.apply(release(mine, owned))
    free = await repo.get(InventoryNumber, seen.phone_number)
    assert free is not None and free.owner_phone_number_sid is None
    await repo.apply(purchase(free, theirs))
    with pytest.raises(ClaimConflict):
        await repo.apply(release(mine, owned))
    kept = await repo.get(InventoryNumber, seen.phone_number)
    assert kept is not None and kept.owner_phone_number_sid == theirs.sid
    assert await repo.get(PhoneNumber, theirs.sid) is not None
    await repo.close()


def new_number(account_sid: str, e164: str) -> PhoneNumber:
    return PhoneNumber(
        sid=new_sid("PN"),
        account_sid=account_sid,
        phone_number=e164,
        friendly_name=e164,
        iso_country="US",
    )


@pytest.mark.parametrize(
    ("params", "parameter", "code"),
    [
        ({"voice_url": "ftp://pbx.example.com"}, "VoiceUrl", 21402),
        ({"status_callback": "not a url"}, "StatusCallback", 21402),
        ({"voice_method": "PUT"}, "VoiceMethod", 20001),
        ({"voice_fallback_method": "DELETE"}, "VoiceFallbackMethod", 20001),
        ({"voice_caller_id_lookup": "perhaps"}, "VoiceCallerIdLookup", 20001),
        ({"friendly_name": "x" * 65}, "FriendlyName", 20001),
        ({"trunk_sid": "TK123"}, "TrunkSid", 20001),
        ({"area_code": "415"}, "AreaCode", 20001),  # with PhoneNumber: one or the other
    ],
)
def test_invalid_buy_parameters_are_400_and_nothing_is_bought(
    client: Client, live_api: LiveApi, params: dict[str, str], parameter: str, code: int
) -> None:
    [number] = stock(live_api)
    message = fails(
        lambda: client.incoming_phone_numbers.create(phone_number=number, **params), 400, code
    )
    assert parameter in message
    assert client.incoming_phone_numbers.list() == []
    assert available(client, number)


def test_buying_needs_a_number_or_an_area_code(client: Client) -> None:
    assert "PhoneNumber" in fails(lambda: client.incoming_phone_numbers.create(), 400, 20001)


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"voice_url": "gopher://x"}, "VoiceUrl"),
        ({"friendly_name": "y" * 65, "voice_method": "GET"}, "FriendlyName"),
        ({"trunk_sid": "TKnope", "voice_method": "GET"}, "TrunkSid"),
        ({"account_sid": "AC" + "0" * 32}, "AccountSid"),
    ],
)
def test_invalid_update_changes_nothing(
    client: Client, live_api: LiveApi, params: dict[str, str], parameter: str
) -> None:
    [number] = stock(live_api)
    bought = client.incoming_phone_numbers.create(phone_number=number, friendly_name="Kept")
    with pytest.raises(TwilioRestException) as err:
        client.incoming_phone_numbers(bought.sid).update(**params)
    assert err.value.status == 400 and parameter in err.value.msg
    fetched = client.incoming_phone_numbers(bought.sid).fetch()
    assert (fetched.friendly_name, fetched.voice_method) == ("Kept", "POST")


def test_list_pages_forward_and_back(client: Client, live_api: LiveApi) -> None:
    numbers = stock(live_api, 5)
    sids = [client.incoming_phone_numbers.create(phone_number=n).sid for n in numbers]
    assert [n.sid for n in client.incoming_phone_numbers.list(page_size=2)] == sids
    first = client.incoming_phone_numbers.page(page_size=2)
    assert [n.sid for n in first] == sids[:2] and first.previous_page_url is None
    second = first.next_page()
    assert [n.sid for n in second] == sids[2:4]
    assert [n.sid for n in second.previous_page()] == sids[:2]
    third = second.next_page()
    assert [n.sid for n in third] == sids[4:] and third.next_page_url is None


def test_list_filters_and_type_lists(client: Client, live_api: LiveApi) -> None:
    local = stock(live_api, 3)
    [toll_free] = stock(live_api, 1, number_type="tollfree")
    for n in local:
        client.incoming_phone_numbers.create(phone_number=n, friendly_name=f"line {n[-1]}")
    free_call = client.incoming_phone_numbers.toll_free.create(phone_number=toll_free)
    assert client.incoming_phone_numbers(free_call.sid).fetch().type == "tollfree"

    def listed(**filters: object) -> list[str]:
        return [n.phone_number for n in client.incoming_phone_numbers.list(**filters)]

    assert listed() == [*local, toll_free]
    assert listed(phone_number=local[1]) == [local[1]]
    assert listed(phone_number=f"({npa(local[0])}) 555-0102") == [local[2]]
    # Filters ride along to every page.
    assert listed(phone_number=f"{npa(local[0])}55501*", page_size=1) == local
    assert listed(friendly_name="line 1") == [local[1]]
    assert listed(origin="hosted") == []
    assert [n.phone_number for n in client.incoming_phone_numbers.local.list()] == local
    assert [n.phone_number for n in client.incoming_phone_numbers.toll_free.list()] == [toll_free]
    assert client.incoming_phone_numbers.mobile.list() == []
    fails(lambda: client.incoming_phone_numbers.list(phone_number="abc"), 400, 20001)


def test_subaccount_numbers_are_bought_through_the_subaccount_path(
    client: Client, live_api: LiveApi
) -> None:
    [number] = stock(live_api)
    sub = client.api.v2010.accounts.create(friendly_name="branch office")
    bought = client.api.v2010.accounts(sub.sid).incoming_phone_numbers.create(phone_number=number)
    assert bought.account_sid == sub.sid
    assert client.incoming_phone_numbers.list() == []
    listed = client.api.v2010.accounts(sub.sid).incoming_phone_numbers.list()
    assert [n.sid for n in listed] == [bought.sid]


def test_another_accounts_numbers_are_404_everywhere(
    client: Client, other_client: Client, live_api: LiveApi
) -> None:
    [number] = stock(live_api)
    theirs = other_client.incoming_phone_numbers.create(phone_number=number)
    their_trunk = other_client.trunking.v1.trunks.create(friendly_name="theirs")
    my_trunk = client.trunking.v1.trunks.create(friendly_name="mine")
    other_sid = other_client.username
    for call in (
        lambda: client.incoming_phone_numbers(theirs.sid).fetch(),
        lambda: client.incoming_phone_numbers(theirs.sid).update(friendly_name="mine now"),
        lambda: client.incoming_phone_numbers(theirs.sid).delete(),
        lambda: client.api.v2010.accounts(other_sid).incoming_phone_numbers.list(),
        lambda: client.api.v2010.accounts(other_sid).incoming_phone_numbers(theirs.sid).fetch(),
        lambda: client.trunking.v1.trunks(my_trunk.sid).phone_numbers.create(
            phone_number_sid=theirs.sid
        ),
        lambda: client.trunking.v1.trunks(my_trunk.sid).phone_numbers(theirs.sid).fetch(),
        lambda: client.trunking.v1.trunks(my_trunk.sid).phone_numbers(theirs.sid).delete(),
        lambda: client.trunking.v1.trunks(their_trunk.sid).phone_numbers.list(),
        lambda: client.trunking.v1.trunks(their_trunk.sid).phone_numbers(theirs.sid).fetch(),
        lambda: client.trunking.v1.trunks(their_trunk.sid).phone_numbers(theirs.sid).delete(),
    ):
        fails(call, 404, 20404)
    # Pointing one's own number at another account's trunk is refused the same way.
    [mine] = stock(live_api)
    fails(
        lambda: client.incoming_phone_numbers.create(phone_number=mine, trunk_sid=their_trunk.sid),
        404,
        20404,
    )
    assert other_client.incoming_phone_numbers(theirs.sid).fetch().friendly_name is not None
    assert available(client, mine)


def test_tie_numbers_to_trunks_and_move_them(client: Client, live_api: LiveApi) -> None:
    [number] = stock(live_api)
    bought = client.incoming_phone_numbers.create(phone_number=number)
    first = client.trunking.v1.trunks.create(friendly_name="first")
    second = client.trunking.v1.trunks.create(friendly_name="second")

    tied = client.trunking.v1.trunks(first.sid).phone_numbers.create(phone_number_sid=bought.sid)
    assert tied.sid == bought.sid and tied.trunk_sid == first.sid
    assert tied.url == f"{live_api.url}/v1/Trunks/{first.sid}/PhoneNumbers/{bought.sid}"
    assert tied.links["phone_number"] == live_api.url + bought.uri
    assert tied.phone_number == number and tied.api_version == "2010-04-01"
    assert tied.capabilities == {"voice": True, "sms": True, "mms": True, "fax": False}
    assert client.incoming_phone_numbers(bought.sid).fetch().trunk_sid == first.sid
    fetched = client.trunking.v1.trunks(first.sid).phone_numbers(bought.sid).fetch()
    assert fetched.friendly_name == bought.friendly_name
    # Tying it again changes nothing.
    again = client.trunking.v1.trunks(first.sid).phone_numbers.create(phone_number_sid=bought.sid)
    assert again.trunk_sid == first.sid

    # A number is on at most one trunk: tying it elsewhere moves it.
    client.trunking.v1.trunks(second.sid).phone_numbers.create(phone_number_sid=bought.sid)
    assert client.trunking.v1.trunks(first.sid).phone_numbers.list() == []
    assert [n.sid for n in client.trunking.v1.trunks(second.sid).phone_numbers.list()] == [
        bought.sid
    ]
    fails(
        lambda: client.trunking.v1.trunks(first.sid).phone_numbers(bought.sid).fetch(), 404, 20404
    )

    # Untying keeps the number in the account.
    assert client.trunking.v1.trunks(second.sid).phone_numbers(bought.sid).delete() is True
    assert client.trunking.v1.trunks(second.sid).phone_numbers.list() == []
    assert client.incoming_phone_numbers(bought.sid).fetch().trunk_sid is None
    fails(
        lambda: client.trunking.v1.trunks(second.sid).phone_numbers(bought.sid).delete(),
        404,
        20404,
    )


def test_trunk_sid_on_the_number_ties_and_empty_unties(client: Client, live_api: LiveApi) -> None:
    [number] = stock(live_api)
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    bought = client.incoming_phone_numbers.create(phone_number=number, trunk_sid=trunk.sid)
    assert bought.trunk_sid == trunk.sid
    listed = client.trunking.v1.trunks(trunk.sid).phone_numbers.list()
    assert [n.sid for n in listed] == [bought.sid]
    assert client.incoming_phone_numbers(bought.sid).update(trunk_sid="").trunk_sid is None
    assert client.trunking.v1.trunks(trunk.sid).phone_numbers.list() == []
    assert client.incoming_phone_numbers(bought.sid).update(trunk_sid=trunk.sid).trunk_sid == (
        trunk.sid
    )
    # Releasing a tied number takes it off the trunk too.
    client.incoming_phone_numbers(bought.sid).delete()
    assert client.trunking.v1.trunks(trunk.sid).phone_numbers.list() == []


def test_invalid_phone_number_sid_is_400(client: Client) -> None:
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    message = fails(
        lambda: client.trunking.v1.trunks(trunk.sid).phone_numbers.create(phone_number_sid="PN1"),
        400,
        20001,
    )
    assert "PhoneNumberSid" in message
    missing = "PN" + "0" * 32
    fails(
        lambda: client.trunking.v1.trunks(trunk.sid).phone_numbers.create(phone_number_sid=missing),
        404,
        20404,
    )


def test_trunk_numbers_page(client: Client, live_api: LiveApi) -> None:
    numbers = stock(live_api, 3)
    trunk = client.trunking.v1.trunks.create(friendly_name="pbx")
    sids = [
        client.incoming_phone_numbers.create(phone_number=n, trunk_sid=trunk.sid).sid
        for n in numbers
    ]
    tied = client.trunking.v1.trunks(trunk.sid).phone_numbers
    assert [n.sid for n in tied.list(page_size=2)] == sids
    first = tied.page(page_size=2)
    assert [n.sid for n in first] == sids[:2]
    second = first.next_page()
    assert [n.sid for n in second] == sids[2:] and second.next_page_url is None
    assert [n.sid for n in second.previous_page()] == sids[:2]


def test_deleting_a_trunk_unties_its_numbers(client: Client, live_api: LiveApi) -> None:
    [number] = stock(live_api)
    trunk = client.trunking.v1.trunks.create(friendly_name="going away")
    bought = client.incoming_phone_numbers.create(phone_number=number)
    client.trunking.v1.trunks(trunk.sid).phone_numbers.create(phone_number_sid=bought.sid)
    client.trunking.v1.trunks(trunk.sid).delete()
    kept = client.incoming_phone_numbers(bought.sid).fetch()
    assert kept.trunk_sid is None and kept.phone_number == number
    assert [n.sid for n in client.incoming_phone_numbers.list()] == [bought.sid]


def test_number_changes_are_announced(client: Client, live_api: LiveApi) -> None:
    [number] = stock(live_api)
    first = client.trunking.v1.trunks.create(friendly_name="first")
    second = client.trunking.v1.trunks.create(friendly_name="second")
    start = len(live_api.announcer.sent)
    bought = client.incoming_phone_numbers.create(phone_number=number, trunk_sid=first.sid)
    client.trunking.v1.trunks(second.sid).phone_numbers.create(phone_number_sid=bought.sid)
    client.incoming_phone_numbers(bought.sid).update(friendly_name="renamed")
    client.trunking.v1.trunks(second.sid).phone_numbers(bought.sid).delete()
    client.incoming_phone_numbers(bought.sid).delete()
    mine = {bought.sid, first.sid, second.sid}
    sent = [(r, s, a) for (_, r, s, a, _) in live_api.announcer.sent[start:] if s in mine]
    assert sent == [
        ("phone_numbers", bought.sid, "created"),
        ("trunks", first.sid, "updated"),
        ("phone_numbers", bought.sid, "updated"),
        ("trunks", first.sid, "updated"),
        ("trunks", second.sid, "updated"),
        ("phone_numbers", bought.sid, "updated"),
        ("phone_numbers", bought.sid, "updated"),
        ("trunks", second.sid, "updated"),
        ("phone_numbers", bought.sid, "deleted"),
    ]
