"""The brute-force lockout on its own, with an injected clock."""

from __future__ import annotations

import ipaddress

import pytest

from trunkline.auth.lockout import Lockout, source_key


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


A = ip("198.51.100.7")
B = ip("198.51.100.8")


def test_the_nth_failure_within_the_window_locks_out_for_the_duration() -> None:
    clock = Clock()
    lockout = Lockout(failures=3, window=10.0, duration=100.0, clock=clock)
    assert lockout.failed(A) is False
    clock.now = 5
    assert lockout.failed(A) is False
    assert not lockout.locked(A)
    clock.now = 9.9
    assert lockout.failed(A) is True
    assert lockout.locked(A)
    assert not lockout.locked(B)
    assert lockout.failed(A) is False  # already locked: reported once
    clock.now = 109.8
    assert lockout.locked(A)
    clock.now = 109.9
    assert not lockout.locked(A)
    # Counting starts afresh after a lockout.
    assert lockout.failed(A) is False
    assert not lockout.locked(A)


def test_failures_older_than_the_window_no_longer_count() -> None:
    clock = Clock()
    lockout = Lockout(failures=3, window=10.0, duration=100.0, clock=clock)
    lockout.failed(A)
    clock.now = 6
    lockout.failed(A)
    clock.now = 10  # the first failure (t=0) has left the window
    assert lockout.failed(A) is False
    clock.now = 15.9  # t=6 and t=10 still inside
    assert lockout.failed(A) is True


def test_an_ipv6_source_is_its_64() -> None:
    assert source_key(ip("2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64"
    assert source_key(A) == "198.51.100.7"
    lockout = Lockout(failures=2, window=10.0, duration=100.0, clock=Clock())
    lockout.failed(ip("2001:db8:1:2::1"))
    assert lockout.failed(ip("2001:db8:1:2:ffff::9")) is True
    assert lockout.locked(ip("2001:db8:1:2::abcd"))
    assert not lockout.locked(ip("2001:db8:1:3::1"))


def test_memory_is_bounded() -> None:
    clock = Clock()
    lockout = Lockout(failures=2, window=10.0, duration=100.0, max_sources=2, clock=clock)
    for n in range(5):
        lockout.failed(ip(f"192.0.2.{n}"))
    # Only the two most recent sources are still counted.
    assert lockout.failed(ip("192.0.2.0")) is False
    assert lockout.failed(ip("192.0.2.4")) is True
    for n in range(10, 14):
        clock.now += 1
        lockout.failed(ip(f"192.0.2.{n}"))
        lockout.failed(ip(f"192.0.2.{n}"))
    locked = [n for n in range(10, 14) if lockout.locked(ip(f"192.0.2.{n}"))]
    assert locked == [12, 13]  # the soonest to expire were forgotten first


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        Lockout(failures=0)
    with pytest.raises(ValueError):
        Lockout(window=0)
