"""Admission limits: token buckets (CPS), concurrent calls and the OPTIONS ping guard."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.signaling.limits import (
    DEFAULT_CPS,
    PING_INTERVAL,
    PING_PENALTY,
    ConcurrencyLimit,
    CpsLimiter,
    PingGuard,
    TokenBucket,
    default_burst,
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- TokenBucket --------------------------------------------------------------------------------


def test_bucket_starts_full_and_refills_at_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=3.0, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.advance(0.49)
    assert not bucket.take()
    clock.advance(0.01)  # 0.5 s at 2/s is one token
    assert bucket.take()
    assert not bucket.take()


def test_one_cps_admits_one_call_per_second() -> None:
    clock = FakeClock()
    bucket = TokenBucket(DEFAULT_CPS, default_burst(DEFAULT_CPS), clock)
    assert bucket.take()
    clock.advance(0.999)
    assert not bucket.take()
    clock.advance(0.001)
    assert bucket.take()


def test_refill_is_capped_at_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10.0, burst=2.0, clock=clock)
    clock.advance(3600)
    assert bucket.tokens == 2.0
    assert [bucket.take() for _ in range(3)] == [True, True, False]


def test_fractional_rates_do_not_lose_tokens_to_rounding() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(rate=3.0, burst=1.0, clock=clock)
    assert bucket.take()
    for _ in range(30):
        clock.advance(1 / 3)
        assert bucket.take()


def test_a_clock_stepping_back_adds_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, burst=1.0, clock=clock)
    assert bucket.take()
    clock.advance(-100)
    assert not bucket.take()
    clock.advance(100.5)  # back where it was plus 0.5 s: still half a token
    assert not bucket.take()
    clock.advance(0.5)
    assert bucket.take()


def test_take_several_tokens() -> None:
    bucket = TokenBucket(rate=1.0, burst=5.0, clock=FakeClock())
    assert bucket.take(4)
    assert not bucket.take(2)
    assert bucket.take(1)
    with pytest.raises(ValueError, match="tokens must be"):
        bucket.take(6)
    with pytest.raises(ValueError, match="tokens must be"):
        bucket.take(0)


@pytest.mark.parametrize(
    ("rate", "burst"), [(0, 1), (-1, 1), (math.inf, 1), (math.nan, 1), (1, 0.5), (1, math.inf)]
)
def test_bucket_rejects_bad_parameters(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match=r"rate|burst"):
        TokenBucket(rate, burst, FakeClock())


def test_reconfigure_keeps_earned_tokens_capped_at_new_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, burst=5.0, clock=clock)
    bucket.reconfigure(rate=10.0, burst=2.0)
    assert bucket.tokens == 2.0
    assert bucket.take() and bucket.take() and not bucket.take()
    clock.advance(0.1)
    assert bucket.take()
    with pytest.raises(ValueError, match="burst"):
        bucket.reconfigure(1.0, 0.5)


def test_full_at() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(rate=2.0, burst=4.0, clock=clock)
    assert bucket.full_at() == 0.0
    bucket.take(3)
    assert bucket.full_at() == 1.5


@given(
    rate=st.floats(0.1, 50),
    burst=st.floats(1, 20),
    steps=st.lists(st.floats(0, 2), min_size=1, max_size=60),
)
def test_bucket_never_admits_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: float, steps: list[float]
) -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(rate, burst, clock)
    admitted = 0
    for step in steps:
        clock.advance(step)
        while bucket.take():
            admitted += 1
        assert 0 <= bucket.tokens < 1 + 1e-6
    assert admitted <= burst + rate * clock.now + 1e-6
    assert admitted >= math.floor(burst)  # it started full


# --- CpsLimiter ---------------------------------------------------------------------------------


def test_cps_per_key_with_platform_default() -> None:
    clock = FakeClock()
    limiter: CpsLimiter[tuple[str, str]] = CpsLimiter(clock)
    a, b = ("TKa", "ashburn"), ("TKa", "dublin")
    assert limiter.take(a)
    assert not limiter.take(a)
    assert limiter.take(b)  # another edge has its own bucket
    clock.advance(1.0)
    assert limiter.take(a)


def test_cps_trunk_own_rate_and_changes_to_it() -> None:
    clock = FakeClock()
    limiter: CpsLimiter[str] = CpsLimiter(clock)
    assert [limiter.take("TK", rate=5.0) for _ in range(6)] == [True] * 5 + [False]
    clock.advance(0.2)
    assert limiter.take("TK", rate=5.0)
    # The trunk drops to the default: what is left is capped at the new burst of 1.
    clock.advance(1.0)
    assert limiter.take("TK")
    assert not limiter.take("TK")


def test_cps_explicit_burst() -> None:
    limiter: CpsLimiter[str] = CpsLimiter(FakeClock())
    assert [limiter.take("TK", rate=1.0, burst=3.0) for _ in range(4)] == [True] * 3 + [False]


def test_cps_forgets_refilled_buckets() -> None:
    clock = FakeClock()
    limiter: CpsLimiter[int] = CpsLimiter(clock)
    for key in range(100):
        limiter.take(key)
    assert len(limiter) == 100
    clock.advance(1.0)
    limiter.take(-1)
    assert len(limiter) == 1


def test_cps_memory_is_capped() -> None:
    limiter: CpsLimiter[int] = CpsLimiter(FakeClock(), max_keys=10)
    for key in range(1000):
        assert limiter.take(key)
    assert len(limiter) == 10
    assert not limiter.take(999)  # the most recent keys are still limited


def test_cps_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="default_rate"):
        CpsLimiter(FakeClock(), default_rate=0)
    with pytest.raises(ValueError, match="max_keys"):
        CpsLimiter(FakeClock(), max_keys=0)


# --- ConcurrencyLimit ---------------------------------------------------------------------------


def test_concurrency_acquire_up_to_limit_then_release() -> None:
    limit: ConcurrencyLimit[str] = ConcurrencyLimit(2)
    assert limit.acquire("TK") and limit.acquire("TK")
    assert not limit.acquire("TK")
    assert limit.acquire("other")
    assert limit.active("TK") == 2
    limit.release("TK")
    assert limit.acquire("TK")


def test_concurrency_release_never_goes_negative() -> None:
    limit: ConcurrencyLimit[str] = ConcurrencyLimit(1)
    limit.release("TK")
    limit.release("TK")
    assert limit.active("TK") == 0
    assert limit.acquire("TK")
    assert not limit.acquire("TK")  # the extra releases did not buy an extra slot
    assert len(limit) == 1
    limit.release("TK")
    assert len(limit) == 0  # idle keys are not kept


def test_concurrency_per_key_limit_and_unlimited() -> None:
    limit: ConcurrencyLimit[str] = ConcurrencyLimit(None)
    assert all(limit.acquire("TK") for _ in range(1000))
    assert limit.acquire("small", limit=1)
    assert not limit.acquire("small", limit=1)
    zero: ConcurrencyLimit[str] = ConcurrencyLimit(0)
    assert not zero.acquire("TK")
    with pytest.raises(ValueError, match="negative"):
        ConcurrencyLimit(-1)


@given(st.lists(st.tuples(st.booleans(), st.sampled_from("abc")), max_size=200))
def test_concurrency_model(ops: list[tuple[bool, str]]) -> None:
    limit: ConcurrencyLimit[str] = ConcurrencyLimit(3)
    model = dict.fromkeys("abc", 0)
    for is_acquire, key in ops:
        if is_acquire:
            assert limit.acquire(key) == (model[key] < 3)
            model[key] = min(3, model[key] + 1)
        else:
            limit.release(key)
            model[key] = max(0, model[key] - 1)
        assert limit.active(key) == model[key]
    assert len(limit) == sum(1 for v in model.values() if v)


# --- PingGuard ----------------------------------------------------------------------------------


def test_one_ping_per_ten_seconds_is_answered() -> None:
    clock = FakeClock()
    guard: PingGuard[str] = PingGuard(clock)
    for _ in range(10):
        assert guard.allow("192.0.2.1")
        clock.advance(PING_INTERVAL)
    assert not guard.ignored("192.0.2.1")


def test_pinging_too_often_is_ignored_for_the_penalty() -> None:
    clock = FakeClock()
    guard: PingGuard[str] = PingGuard(clock)
    assert guard.allow("pbx")
    clock.advance(5)
    assert not guard.allow("pbx")  # the violation itself is not answered
    assert guard.ignored("pbx")
    assert guard.allow("other")  # other sources are unaffected
    clock.advance(PING_PENALTY - 0.001)
    assert not guard.allow("pbx")  # pings during the penalty do not extend it...
    clock.advance(0.001)
    assert not guard.ignored("pbx")
    assert guard.allow("pbx")  # ...so it ends 60 s after the violation


def test_ping_guard_configurable_interval_and_penalty() -> None:
    clock = FakeClock()
    guard: PingGuard[str] = PingGuard(clock, interval=2.0, penalty=0.0)
    assert guard.allow("s")
    clock.advance(1.0)
    assert not guard.allow("s")
    assert guard.allow("s")  # no penalty: answered again at once


def test_ping_guard_forgets_quiet_sources() -> None:
    clock = FakeClock()
    guard: PingGuard[int] = PingGuard(clock)
    for source in range(500):
        guard.allow(source)
    assert len(guard) == 500
    clock.advance(PING_INTERVAL)
    guard.allow(-1)
    assert len(guard) == 1


def test_ping_guard_memory_is_capped() -> None:
    clock = FakeClock()
    guard: PingGuard[int] = PingGuard(clock, max_sources=50)
    for source in range(10_000):
        assert guard.allow(source)
    assert len(guard) == 50
    assert not guard.allow(9_999)  # recent sources are still tracked


def test_ping_guard_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="interval"):
        PingGuard(FakeClock(), interval=0)
    with pytest.raises(ValueError, match="penalty"):
        PingGuard(FakeClock(), penalty=-1)
    with pytest.raises(ValueError, match="max_sources"):
        PingGuard(FakeClock(), max_sources=0)


@given(st.lists(st.floats(0, 30), max_size=80))
def test_ping_guard_never_answers_two_pings_within_the_interval(gaps: list[float]) -> None:
    clock = FakeClock(0.0)
    guard: PingGuard[str] = PingGuard(clock)
    answered: list[float] = []
    for gap in gaps:
        clock.advance(gap)
        if guard.allow("s"):
            answered.append(clock.now)
    assert all(b - a >= PING_INTERVAL - 1e-9 for a, b in pairwise(answered))


@given(st.lists(st.floats(PING_INTERVAL, 100), max_size=50))
def test_ping_guard_always_answers_a_well_behaved_source(gaps: list[float]) -> None:
    clock = FakeClock(0.0)
    guard: PingGuard[str] = PingGuard(clock)
    assert guard.allow("s")
    for gap in gaps:
        clock.advance(gap)
        assert guard.allow("s")


def test_defaults_read_the_monotonic_clock() -> None:
    cps: CpsLimiter[str] = CpsLimiter()
    pings: PingGuard[str] = PingGuard()
    concurrent: ConcurrencyLimit[str] = ConcurrencyLimit()
    assert TokenBucket(1.0, 1.0).take()
    assert cps.take("TK")
    assert pings.allow("192.0.2.1")
    assert concurrent.acquire("TK")
