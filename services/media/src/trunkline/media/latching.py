"""Symmetric RTP latching (the trunking guide's "Symmetrisches RTP"), as pure logic.

A leg's peer announces where it wants media in its SDP (`c=` and `m=` lines). Behind a NAT
that does not understand SIP, that address is the peer's private one and useless to us, so
when the trunk enables symmetric RTP (RFC 4961) the relay "latches": it sends to the
address the peer's packets come from. The rules here decide which packets may latch:

1. **Disabled**: media goes to the SDP address only; packet sources are ignored and every
   packet is accepted (the guide's recommended, safer setting).
2. **Who may latch**: if the SDP address is *usable* (a global unicast address), only a
   source with the same IP may latch; the port may differ, because NATs rewrite ports. If
   the SDP address is *unusable* (missing, unspecified, RFC 1918, RFC 6598 shared, loopback,
   link-local, documentation or other non-global ranges, or multicast), the peer is behind a
   NAT whose public address we cannot know in advance, so any source may latch.
3. **First latch**: the first packet from an eligible source latches its address and SSRC.
4. **Locked stream**: once latched, only packets from that address *and* with that SSRC are
   accepted; a stray packet from elsewhere, or a second stream from the same address, is
   dropped and cannot steal the stream.
5. **Re-latch**: an eligible source (or a new SSRC) may take over only after the latched
   stream has been silent for `relatch_idle` seconds, and at most `max_relatches` times in
   any `relatch_window` seconds, so a flood cannot move the stream around.
6. **New SDP**: when a re-offer changes the SDP address, the latch is dropped (the call may
   now go to another endpoint); the re-latch rate limit keeps its history.

Until a latch exists the relay sends to the SDP address. An unspecified SDP address
(`0.0.0.0`, `::`, the RFC 3264 8.4 hold convention) means "do not send". The clock is an
input, in seconds from a monotonic source.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum

Address = tuple[str, int]

DEFAULT_RELATCH_IDLE = 0.5
DEFAULT_MAX_RELATCHES = 3
DEFAULT_RELATCH_WINDOW = 60.0


class Verdict(Enum):
    """What to do with one received packet."""

    ACCEPTED = "accepted"
    """Forward it; the send-to address did not change."""
    LATCHED = "latched"
    """Forward it; its source is now the send-to address (first latch)."""
    RELATCHED = "relatched"
    """Forward it; its source replaced an idle latched stream."""
    INELIGIBLE_SOURCE = "ineligible_source"
    """Drop it: its source IP cannot belong to the SDP peer."""
    STREAM_ACTIVE = "stream_active"
    """Drop it: another source/SSRC holds the latch and is still sending."""
    RELATCH_LIMITED = "relatch_limited"
    """Drop it: too many re-latches in the window."""

    @property
    def accepted(self) -> bool:
        return self in (Verdict.ACCEPTED, Verdict.LATCHED, Verdict.RELATCHED)


@dataclass(frozen=True, slots=True)
class LatchingPolicy:
    symmetric: bool
    relatch_idle: float = DEFAULT_RELATCH_IDLE
    max_relatches: int = DEFAULT_MAX_RELATCHES
    relatch_window: float = DEFAULT_RELATCH_WINDOW

    def __post_init__(self) -> None:
        if self.relatch_idle < 0 or self.relatch_window < 0 or self.max_relatches < 0:
            raise ValueError(f"latching limits must not be negative: {self}")


def is_usable(host: str | None) -> bool:
    """Whether an SDP connection address can be trusted as the peer's reachable address."""
    if host is None:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        # A host name in c= (RFC 4566 allows FQDNs) gives no IP to compare sources with.
        return False
    return ip.is_global and not ip.is_multicast


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


class Latch:
    """The send-to address of one leg and the rules that move it."""

    __slots__ = (
        "_last_seen",
        "_latched",
        "_relatches",
        "_sdp_address",
        "_ssrc",
        "_usable",
        "policy",
    )

    def __init__(self, sdp_address: Address | None, policy: LatchingPolicy) -> None:
        self.policy = policy
        self._sdp_address = sdp_address
        self._usable = sdp_address is not None and is_usable(sdp_address[0])
        self._latched: Address | None = None
        self._ssrc: int | None = None
        self._last_seen = 0.0
        # Times of recent re-latches; a list, not a deque: it holds at most max_relatches
        # entries, and an empty list is a fifth of an empty deque's memory (per leg).
        self._relatches: list[float] = []

    @property
    def sdp_address(self) -> Address | None:
        return self._sdp_address

    @property
    def latched(self) -> Address | None:
        return self._latched

    @property
    def ssrc(self) -> int | None:
        return self._ssrc

    @property
    def send_to(self) -> Address | None:
        """Where to send this leg's media now, or None for nowhere."""
        if self._latched is not None:
            return self._latched
        sdp = self._sdp_address
        if sdp is None or sdp[1] == 0 or _is_unspecified(sdp[0]):
            return None
        return sdp

    def update_sdp(self, sdp_address: Address | None) -> None:
        """Apply the address of a new offer/answer; a changed IP drops the latch (rule 6)."""
        old = self._sdp_address
        if old is not None and sdp_address is not None and _same_ip(old[0], sdp_address[0]):
            self._sdp_address = sdp_address
            return
        self._sdp_address = sdp_address
        self._usable = sdp_address is not None and is_usable(sdp_address[0])
        self._latched = None
        self._ssrc = None

    def may_latch(self, source: Address) -> bool:
        """Rule 2: whether packets from `source` could belong to this leg's peer."""
        sdp = self._sdp_address
        if not self._usable or sdp is None:
            return True
        return _same_ip(source[0], sdp[0])

    def on_packet(self, source: Address, ssrc: int, now: float) -> Verdict:
        """Judge one received RTP packet; may move `send_to`."""
        if not self.policy.symmetric:
            return Verdict.ACCEPTED
        if self._latched is None:
            if not self.may_latch(source):
                return Verdict.INELIGIBLE_SOURCE
            self._latch(source, ssrc, now)
            return Verdict.LATCHED
        if source == self._latched and ssrc == self._ssrc:
            self._last_seen = now
            return Verdict.ACCEPTED
        if not self.may_latch(source):
            return Verdict.INELIGIBLE_SOURCE
        if now - self._last_seen < self.policy.relatch_idle:
            return Verdict.STREAM_ACTIVE
        window = self._relatches
        while window and now - window[0] >= self.policy.relatch_window:
            del window[0]
        if len(window) >= self.policy.max_relatches:
            return Verdict.RELATCH_LIMITED
        window.append(now)
        self._latch(source, ssrc, now)
        return Verdict.RELATCHED

    def _latch(self, source: Address, ssrc: int, now: float) -> None:
        self._latched = source
        self._ssrc = ssrc
        self._last_seen = now
