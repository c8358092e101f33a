"""The lookup rules over a real SQLite store: table, provider, cache, refusals, and one usage
event per answered lookup."""

from __future__ import annotations

import logging
import uuid

import pytest

from trunkline.cnam.lookup import CallerNames, InvalidRequest, NotNorthAmerican
from trunkline.cnam.provider import ProviderError
from trunkline.cnam.testing import write_names
from trunkline.store import Repository
from trunkline.v1.cnam_pb2 import CnamLookup, LookupReply, LookupRequest

TABLE_NUMBER = "+14155550100"
OTHER_NUMBER = "+12125550123"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeProvider:
    """Answers from a dict; a number mapped to an exception raises it."""

    def __init__(self, answers: dict[str, str | Exception | None]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def lookup(self, number: str) -> str | None:
        self.asked.append(number)
        answer = self.answers.get(number)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self) -> None:
        return None


def sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def request(number: str, call_sid: str | None = None) -> LookupRequest:
    return LookupRequest(
        account_sid="AC" + "1" * 32,
        trunk_sid="TK" + "2" * 32,
        call_sid=call_sid or sid("CA"),
        number=number,
    )


@pytest.fixture
def events() -> list[CnamLookup]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


def caller_names(
    store: Repository,
    events: list[CnamLookup],
    provider: FakeProvider | None = None,
    clock: Clock | None = None,
) -> CallerNames:
    return CallerNames(
        store,
        provider=provider,
        cache_ttl=60.0,
        cache_size=100,
        record=events.append,
        clock=clock or Clock(),
    )


def reply(found: bool, name: str, source: str) -> LookupReply:
    return LookupReply(found=found, caller_name=name, source=source)


async def test_a_number_in_the_table_has_its_name(
    store: Repository, events: list[CnamLookup]
) -> None:
    await write_names(store, {TABLE_NUMBER: "ACME CORP"})
    provider = FakeProvider({TABLE_NUMBER: "NOT ASKED"})
    names = caller_names(store, events, provider)
    asked = request(TABLE_NUMBER)
    assert await names.lookup(asked) == reply(True, "ACME CORP", "table")
    assert provider.asked == []
    [event] = events
    assert (event.account_sid, event.trunk_sid, event.call_sid, event.number) == (
        asked.account_sid,
        asked.trunk_sid,
        asked.call_sid,
        TABLE_NUMBER,
    )
    assert (event.found, event.source) == (True, "table")
    assert event.HasField("time")


async def test_without_a_provider_a_miss_is_not_found_from_the_table_and_still_billed(
    store: Repository, events: list[CnamLookup]
) -> None:
    names = caller_names(store, events)
    assert await names.lookup(request(OTHER_NUMBER)) == reply(False, "", "table")
    assert [(e.found, e.source) for e in events] == [(False, "table")]


async def test_the_provider_answers_what_the_table_lacks_and_is_asked_once(
    store: Repository, events: list[CnamLookup]
) -> None:
    provider = FakeProvider({OTHER_NUMBER: "SMITH JOHN"})
    names = caller_names(store, events, provider)
    assert await names.lookup(request(OTHER_NUMBER)) == reply(True, "SMITH JOHN", "provider")
    assert await names.lookup(request(OTHER_NUMBER)) == reply(True, "SMITH JOHN", "cache")
    assert await names.lookup(request(OTHER_NUMBER)) == reply(True, "SMITH JOHN", "cache")
    assert provider.asked == [OTHER_NUMBER]
    assert [(e.found, e.source) for e in events] == [
        (True, "provider"),
        (True, "cache"),
        (True, "cache"),
    ]


async def test_no_name_from_the_provider_is_cached_too(
    store: Repository, events: list[CnamLookup]
) -> None:
    provider = FakeProvider({})
    names = caller_names(store, events, provider)
    assert await names.lookup(request(OTHER_NUMBER)) == reply(False, "", "provider")
    assert await names.lookup(request(OTHER_NUMBER)) == reply(False, "", "cache")
    assert provider.asked == [OTHER_NUMBER]
    assert [e.found for e in events] == [False, False]


async def test_cached_answers_expire(
    store: Repository, events: list[CnamLookup], clock: Clock
) -> None:
    provider = FakeProvider({OTHER_NUMBER: "SMITH JOHN"})
    names = caller_names(store, events, provider, clock)
    await names.lookup(request(OTHER_NUMBER))
    clock.now += 59
    assert (await names.lookup(request(OTHER_NUMBER))).source == "cache"
    clock.now += 2
    assert (await names.lookup(request(OTHER_NUMBER))).source == "provider"
    assert provider.asked == [OTHER_NUMBER, OTHER_NUMBER]


async def test_a_provider_failure_is_not_found_logged_and_not_cached(
    store: Repository, events: list[CnamLookup], caplog: pytest.LogCaptureFixture
) -> None:
    provider = FakeProvider({OTHER_NUMBER: ProviderError("no answer within 1.0 s")})
    names = caller_names(store, events, provider)
    call_sid = sid("CA")
    with caplog.at_level(logging.WARNING, logger="trunkline.cnam.lookup"):
        assert await names.lookup(request(OTHER_NUMBER, call_sid)) == reply(False, "", "provider")
    [record] = caplog.records
    assert record.call_sid == call_sid  # type: ignore[attr-defined]
    assert "no answer within" in record.error  # type: ignore[attr-defined]
    # The next call asks again, and gets the name once the provider is back.
    provider.answers[OTHER_NUMBER] = "SMITH JOHN"
    assert await names.lookup(request(OTHER_NUMBER)) == reply(True, "SMITH JOHN", "provider")
    assert [(e.found, e.source) for e in events] == [(False, "provider"), (True, "provider")]


async def test_the_table_is_not_cached_so_an_import_shows_at_once(
    store: Repository, events: list[CnamLookup]
) -> None:
    provider = FakeProvider({OTHER_NUMBER: None})
    names = caller_names(store, events, provider)
    assert (await names.lookup(request(OTHER_NUMBER))).found is False
    await write_names(store, {OTHER_NUMBER: "NEW NAME"})
    assert await names.lookup(request(OTHER_NUMBER)) == reply(True, "NEW NAME", "table")


async def test_a_cache_ttl_of_zero_asks_the_provider_every_time(
    store: Repository, events: list[CnamLookup]
) -> None:
    provider = FakeProvider({OTHER_NUMBER: "SMITH JOHN"})
    names = CallerNames(store, provider=provider, cache_ttl=0, record=events.append)
    for _ in range(2):
        assert (await names.lookup(request(OTHER_NUMBER))).source == "provider"
    assert provider.asked == [OTHER_NUMBER, OTHER_NUMBER]


@pytest.mark.parametrize(
    "number",
    [
        "+4930555777",  # Germany
        "+442071838750",  # United Kingdom
        "+11155550100",  # +1, but area codes never start with 0 or 1
        "+14151550100",  # +1, but exchanges never start with 0 or 1
        "+1415555010",  # +1 and nine digits
    ],
)
async def test_numbers_outside_north_america_are_refused_unbilled(
    store: Repository, events: list[CnamLookup], number: str
) -> None:
    provider = FakeProvider({number: "NOT ASKED"})
    names = caller_names(store, events, provider)
    with pytest.raises(NotNorthAmerican, match="not a North American number"):
        await names.lookup(request(number))
    assert events == [] and provider.asked == []


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"number": "4155550100"}, "not E.164"),
        ({"number": ""}, "not E.164"),
        ({"account_sid": ""}, "account_sid"),
        ({"trunk_sid": "TK123"}, "trunk_sid"),
        ({"call_sid": "CA.with.dots" + "0" * 20}, "call_sid"),
    ],
)
async def test_unreadable_requests_are_invalid_and_unbilled(
    store: Repository, events: list[CnamLookup], change: dict[str, str], why: str
) -> None:
    asked = request(TABLE_NUMBER)
    for field, value in change.items():
        setattr(asked, field, value)
    with pytest.raises(InvalidRequest, match=why):
        await caller_names(store, events).lookup(asked)
    assert events == []
