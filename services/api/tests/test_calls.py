"""2010-04-01 Calls: the records signaling writes, read through the official SDK."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from twilio.rest import Client

from trunkline.api.resources import calls as calls_resource
from trunkline.api.testing import LiveApi, fails
from trunkline.domain.model import Call, CallDirection, CallStatus
from trunkline.domain.sid import new_sid
from trunkline.store import Batch, open_store

T0 = datetime(2026, 3, 4, 5, 6, 7, 250000, tzinfo=UTC)


def store(live_api: LiveApi, *calls: Call) -> None:
    """Write calls into the API's store, as the signaling service does."""

    async def write() -> None:
        repo = open_store(live_api.settings.store_url)
        try:
            batch = Batch()
            for call in calls:
                batch.put(call)
            await repo.apply(batch)
        finally:
            await repo.close()

    asyncio.run(write())


def a_call(account_sid: str, n: int = 0, **fields: object) -> Call:
    """A completed termination call that started n minutes after T0 and lasted 42 s."""
    start = T0 + timedelta(minutes=n)
    values: dict[str, object] = {
        "sid": new_sid("CA"),
        "account_sid": account_sid,
        "trunk_sid": "TK" + "2" * 32,
        "direction": CallDirection.TRUNKING_TERMINATING,
        "from_": "+14155550100",
        "to": "+15108675309",
        "status": CallStatus.COMPLETED,
        "start_time": start,
        "answer_time": start + timedelta(seconds=5),
        "end_time": start + timedelta(seconds=47),
        "duration": 42,
        "sip_response_code": 200,
        "edge": "ashburn",
        "sip_call_id": f"{n}@pbx.example.com",
        "date_created": start,
        "date_updated": start + timedelta(seconds=47),
        **fields,
    }
    return Call(**values)  # type: ignore[arg-type]


def raw_get(
    live_api: LiveApi, account: tuple[str, str], path: str, **params: str
) -> httpx.Response:
    return httpx.get(f"{live_api.url}{path}", params=params, auth=account)


def test_a_call_reads_back_in_twilios_shape(
    client: Client, live_api: LiveApi, account: tuple[str, str]
) -> None:
    sid = account[0]
    call = a_call(sid, forwarded_from="+14155550199", phone_number_sid="PN" + "3" * 32)
    store(live_api, call)

    fetched = client.api.v2010.accounts(sid).calls(call.sid).fetch()
    assert (fetched.sid, fetched.account_sid, fetched.trunk_sid) == (
        call.sid,
        sid,
        call.trunk_sid,
    )
    assert (fetched.to, fetched._from) == ("+15108675309", "+14155550100")
    assert (fetched.to_formatted, fetched.from_formatted) == ("(510) 867-5309", "(415) 555-0100")
    assert (fetched.status, fetched.direction) == ("completed", "trunking-terminating")
    assert fetched.start_time == T0.replace(microsecond=0)
    assert fetched.end_time == (T0 + timedelta(seconds=47)).replace(microsecond=0)
    assert fetched.date_created == T0.replace(microsecond=0)
    assert fetched.duration == "42"
    assert (fetched.price, fetched.price_unit, fetched.api_version) == (None, "USD", "2010-04-01")
    assert fetched.forwarded_from == "+14155550199"
    assert fetched.phone_number_sid == "PN" + "3" * 32
    assert fetched.parent_call_sid is None and fetched.caller_name is None

    body = raw_get(live_api, account, f"/2010-04-01/Accounts/{sid}/Calls/{call.sid}.json").json()
    schema = httpx.get(f"{live_api.url}/openapi.json").json()["components"]["schemas"]
    assert set(body) == set(schema["api.v2010.account.call"]["properties"])
    assert body["start_time"] == "Wed, 04 Mar 2026 05:06:07 +0000"
    assert body["end_time"] == "Wed, 04 Mar 2026 05:06:54 +0000"
    assert body["uri"] == f"/2010-04-01/Accounts/{sid}/Calls/{call.sid}.json"
    assert body["subresource_uris"] == {
        "recordings": f"/2010-04-01/Accounts/{sid}/Calls/{call.sid}/Recordings.json"
    }
    # The CDR's platform fields stay internal.
    assert not {"edge", "sip_call_id", "sip_response_code", "answer_time"} & set(body)


def test_a_call_in_progress_has_no_end_and_no_duration(
    client: Client, live_api: LiveApi, account: tuple[str, str]
) -> None:
    call = a_call(
        account[0],
        direction=CallDirection.TRUNKING_ORIGINATING,
        status=CallStatus.IN_PROGRESS,
        end_time=None,
        duration=None,
        sip_response_code=None,
        caller_name="ACME CORP",
        to="+442071838750",
    )
    store(live_api, call)
    fetched = client.calls(call.sid).fetch()
    assert (fetched.status, fetched.direction) == ("in-progress", "trunking-originating")
    assert (fetched.end_time, fetched.duration) == (None, None)
    assert fetched.caller_name == "ACME CORP"
    assert fetched.to_formatted == "+442071838750"  # outside North America: E.164


def test_calls_list_newest_first_and_page_both_ways(
    client: Client, live_api: LiveApi, account: tuple[str, str]
) -> None:
    calls = [a_call(account[0], n) for n in range(5)]
    store(live_api, *calls)
    newest_first = [c.sid for c in reversed(calls)]
    listing = client.api.v2010.accounts(account[0]).calls
    assert [c.sid for c in listing.list()] == newest_first
    assert [c.sid for c in listing.list(page_size=2)] == newest_first
    assert [c.sid for c in listing.list(limit=3, page_size=2)] == newest_first[:3]

    first = listing.page(page_size=2)
    assert [c.sid for c in first] == newest_first[:2] and first.previous_page_url is None
    second = first.next_page()
    assert [c.sid for c in second] == newest_first[2:4]
    assert [c.sid for c in second.previous_page()] == newest_first[:2]
    third = second.next_page()
    assert [c.sid for c in third] == newest_first[4:] and third.next_page_url is None
    assert [c.sid for c in third.previous_page()] == newest_first[2:4]

    body = raw_get(
        live_api, account, f"/2010-04-01/Accounts/{account[0]}/Calls.json", PageSize="2"
    ).json()
    assert (body["page"], body["page_size"], body["start"], body["end"]) == (0, 2, 0, 1)
    assert (
        body["first_page_uri"] == f"/2010-04-01/Accounts/{account[0]}/Calls.json?PageSize=2&Page=0"
    )
    assert body["next_page_uri"].startswith(
        f"/2010-04-01/Accounts/{account[0]}/Calls.json?PageSize=2&Page=1&PageToken=PB"
    )
    assert body["previous_page_uri"] is None


def test_calls_list_filters_ride_along_every_page(
    client: Client, live_api: LiveApi, account: tuple[str, str]
) -> None:
    sid = account[0]
    parent = a_call(sid, 0)
    busy = a_call(sid, 1, status=CallStatus.BUSY, end_time=None, duration=None)
    to_london = a_call(sid, 2, to="+442071838750", parent_call_sid=parent.sid)
    from_other = a_call(sid, 60 * 24, from_="+14155550111")  # the next day
    ongoing = a_call(sid, 60 * 24 + 1, status=CallStatus.IN_PROGRESS, end_time=None)
    store(live_api, parent, busy, to_london, from_other, ongoing)

    def listed(**filters: object) -> list[str]:
        return [c.sid for c in client.calls.list(page_size=1, **filters)]

    assert listed() == [ongoing.sid, from_other.sid, to_london.sid, busy.sid, parent.sid]
    assert listed(to="+442071838750") == [to_london.sid]
    assert listed(to="(510) 867-5309") == [ongoing.sid, from_other.sid, busy.sid, parent.sid]
    assert listed(from_="+14155550111") == [from_other.sid]
    assert listed(status="busy") == [busy.sid]
    assert listed(status="in-progress") == [ongoing.sid]
    assert listed(parent_call_sid=parent.sid) == [to_london.sid]
    assert listed(start_time=date(2026, 3, 5)) == [ongoing.sid, from_other.sid]
    assert listed(start_time_before=date(2026, 3, 5)) == [to_london.sid, busy.sid, parent.sid]
    assert listed(start_time_after=T0 + timedelta(minutes=2)) == [
        ongoing.sid,
        from_other.sid,
        to_london.sid,
    ]
    assert listed(end_time=date(2026, 3, 4)) == [to_london.sid, parent.sid]
    assert listed(end_time_after=date(2026, 3, 5)) == [from_other.sid]
    assert listed(status="completed", to="+15108675309", start_time="2026-03-04") == [parent.sid]
    assert listed(status="canceled") == []

    fails(lambda: client.calls.list(status="hung-up"), 400, 20001)
    fails(lambda: client.calls.list(start_time="yesterday"), 400, 20001)
    fails(lambda: client.calls.list(parent_call_sid="CA123"), 400, 20001)


def test_a_filtered_list_that_scans_far_carries_on_over_short_pages(
    client: Client, live_api: LiveApi, account: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = account[0]
    wanted = a_call(sid, 0, status=CallStatus.FAILED)
    others = [a_call(sid, n) for n in range(1, 8)]
    store(live_api, wanted, *others)
    monkeypatch.setattr(calls_resource, "SCAN_LIMIT", 3)
    page = client.calls.page(status="failed")
    assert list(page) == [] and page.next_page_url is not None  # the scan ran out, not the list
    assert [c.sid for c in client.calls.list(status="failed")] == [wanted.sid]


def test_another_accounts_calls_are_not_found(
    client: Client, other_client: Client, live_api: LiveApi
) -> None:
    theirs = a_call(other_client.username)
    store(live_api, theirs)
    assert client.calls.list() == []
    fails(lambda: client.calls(theirs.sid).fetch(), 404, 20404)
    fails(lambda: client.api.v2010.accounts(other_client.username).calls.list(), 404, 20404)
    fails(
        lambda: client.api.v2010.accounts(other_client.username).calls(theirs.sid).fetch(),
        404,
        20404,
    )
    fails(lambda: client.calls("CA" + "0" * 32).fetch(), 404, 20404)
    fails(lambda: client.calls("not-a-sid").fetch(), 404, 20404)
    assert other_client.calls(theirs.sid).fetch().sid == theirs.sid


def test_subaccount_calls_are_read_through_the_subaccount_path(
    client: Client, live_api: LiveApi
) -> None:
    sub = client.api.v2010.accounts.create(friendly_name="branch office")
    call = a_call(sub.sid)
    store(live_api, call)
    assert client.calls.list() == []
    assert [c.sid for c in client.api.v2010.accounts(sub.sid).calls.list()] == [call.sid]
    assert client.api.v2010.accounts(sub.sid).calls(call.sid).fetch().account_sid == sub.sid


def test_calls_are_read_only(client: Client, live_api: LiveApi, account: tuple[str, str]) -> None:
    call = a_call(account[0])
    store(live_api, call)
    fails(
        lambda: client.calls.create(to="+15108675309", from_="+14155550100", url="https://x.test"),
        405,
        20004,
    )
    fails(lambda: client.calls(call.sid).update(status="completed"), 405, 20004)
    fails(lambda: client.calls(call.sid).delete(), 405, 20004)
    assert client.calls(call.sid).fetch().status == "completed"


def test_an_update_of_the_record_shows_in_the_api(
    client: Client, live_api: LiveApi, account: tuple[str, str]
) -> None:
    ringing = a_call(
        account[0],
        status=CallStatus.RINGING,
        answer_time=None,
        end_time=None,
        duration=None,
        sip_response_code=None,
    )
    store(live_api, ringing)
    assert client.calls(ringing.sid).fetch().status == "ringing"
    store(live_api, replace(ringing, status=CallStatus.NO_ANSWER, sip_response_code=480))
    assert [c.status for c in client.calls.list()] == ["no-answer"]
