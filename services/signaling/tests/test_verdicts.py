"""Reused auth verdicts: what the auth service marks reusable answers the same question
until it expires, the configuration changes, or the source fails."""

from __future__ import annotations

import pytest

from trunkline.signaling.verdicts import ReusedVerdicts
from trunkline.store.cache import ConfigCache
from trunkline.store.sqlite import SqliteRepository
from trunkline.v1.auth_pb2 import CallerRequest, TerminationRequest, Verdict

PBX = "198.51.100.7"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config() -> ConfigCache:
    return ConfigCache(SqliteRepository(":memory:"), ttl=30.0)


@pytest.fixture
def verdicts(config: ConfigCache, clock: Clock) -> ReusedVerdicts:
    return ReusedVerdicts(config, clock=clock, max_entries=3)


def request(
    source: str = PBX,
    *,
    caller: str = "+14155550100",
    destination: str = "+4930123456",
    transport: str = "UDP",
    trunk: str = "TK1",
) -> TerminationRequest:
    return TerminationRequest(
        trunk_sid=trunk,
        account_sid="AC1",
        source_ip=source,
        transport=transport,
        caller=CallerRequest(account_sid="AC1", caller_id=caller, destination=destination),
    )


def allow(seconds: int = 10, *, per_destination: bool = False) -> Verdict:
    return Verdict(
        outcome=Verdict.ALLOW, reuse_seconds=seconds, reuse_per_destination=per_destination
    )


def test_a_reusable_allow_answers_the_same_question_until_it_expires(
    verdicts: ReusedVerdicts, config: ConfigCache, clock: Clock
) -> None:
    verdicts.keep(request(), allow(10), config.generation)
    assert verdicts.get(request()) == allow(10)
    # Another destination is the same question for a full account.
    assert verdicts.get(request(destination="+4989000000")) is not None
    # Not the same question: another source, transport, caller ID or trunk.
    assert verdicts.get(request("198.51.100.8")) is None
    assert verdicts.get(request(transport="TCP")) is None
    assert verdicts.get(request(caller="+14155550199")) is None
    assert verdicts.get(request(trunk="TK2")) is None
    clock.now += 9.9
    assert verdicts.get(request()) is not None
    clock.now += 0.1
    assert verdicts.get(request()) is None
    assert len(verdicts) == 0


def test_a_verdict_without_reuse_or_not_allow_is_not_kept(
    verdicts: ReusedVerdicts, config: ConfigCache
) -> None:
    verdicts.keep(request(), allow(0), config.generation)
    verdicts.keep(request(), Verdict(outcome=Verdict.CHALLENGE, challenges=["Digest x"]), 0)
    assert verdicts.get(request()) is None


def test_a_configuration_change_forgets_every_verdict(
    verdicts: ReusedVerdicts, config: ConfigCache
) -> None:
    verdicts.keep(request(), allow(), config.generation)
    config.invalidate_all()
    assert verdicts.get(request()) is None


def test_a_verdict_that_was_on_its_way_during_a_change_is_not_kept(
    verdicts: ReusedVerdicts, config: ConfigCache
) -> None:
    before = config.generation
    config.invalidate_all()  # the change notice arrives while the RPC is in flight
    verdicts.keep(request(), allow(), before)
    assert verdicts.get(request()) is None


def test_reuse_is_bounded_by_the_configuration_cache_ttl(clock: Clock) -> None:
    config = ConfigCache(SqliteRepository(":memory:"), ttl=2.0)
    verdicts = ReusedVerdicts(config, clock=clock)
    verdicts.keep(request(), allow(10), config.generation)
    clock.now += 2.0
    assert verdicts.get(request()) is None
    uncached = ConfigCache(SqliteRepository(":memory:"), ttl=0)
    never = ReusedVerdicts(uncached, clock=clock)
    never.keep(request(), allow(10), uncached.generation)
    assert never.get(request()) is None


def test_a_per_destination_verdict_answers_only_its_destination(
    verdicts: ReusedVerdicts, config: ConfigCache
) -> None:
    verdicts.keep(request(), allow(per_destination=True), config.generation)
    assert verdicts.get(request()) is not None
    assert verdicts.get(request(destination="+4989000000")) is None


@pytest.mark.parametrize("outcome", [Verdict.DENY, Verdict.IGNORE])
def test_a_failure_of_a_source_forgets_its_verdicts(
    verdicts: ReusedVerdicts, config: ConfigCache, outcome: Verdict.Outcome.ValueType
) -> None:
    verdicts.keep(request(), allow(), config.generation)
    verdicts.keep(request(trunk="TK2"), allow(), config.generation)
    verdicts.keep(request("198.51.100.8"), allow(), config.generation)
    verdicts.keep(request(caller="+15005550006"), Verdict(outcome=outcome), config.generation)
    assert verdicts.get(request()) is None
    assert verdicts.get(request(trunk="TK2")) is None
    assert verdicts.get(request("198.51.100.8")) is not None


def test_the_least_recently_used_verdict_goes_first(
    verdicts: ReusedVerdicts, config: ConfigCache
) -> None:
    for source in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        verdicts.keep(request(source), allow(), config.generation)
    assert verdicts.get(request("198.51.100.1")) is not None  # now the most recent
    verdicts.keep(request("198.51.100.4"), allow(), config.generation)
    assert len(verdicts) == 3
    assert verdicts.get(request("198.51.100.2")) is None
    assert verdicts.get(request("198.51.100.1")) is not None
    # Dropping the oldest also forgets it by source: a later failure finds nothing stale.
    verdicts.forget_source("198.51.100.2")
    assert len(verdicts) == 3
