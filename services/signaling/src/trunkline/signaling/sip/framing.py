"""Stream framing for SIP over TCP and TLS (RFC 3261 18.3), without I/O.

A stream carries messages back to back, so a receiver finds where one ends: the head ends
at the first empty line (CRLF CRLF) and the body is exactly Content-Length bytes, a header
that is mandatory on streams. Between messages the stream may carry RFC 5626 keep-alives:
a double CRLF "ping" that the receiver answers with a single CRLF "pong", and that pong.

`StreamFramer` takes the bytes a connection reads and returns events: a framed message's
bytes (the message layer parses them), a ping to answer, or an error after which the
transport closes the connection, since where the next message starts is lost. Only the
Content-Length line of the head is looked at here.

`ConnectionLimits` counts connections per source address for the transport's accept loop.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = [
    "PING",
    "PONG",
    "ConnectionLease",
    "ConnectionLimits",
    "FramedMessage",
    "FramingError",
    "FramingEvent",
    "FramingLimits",
    "Ping",
    "StreamFramer",
]

# RFC 5626 3.5.1: a ping is a double CRLF, its pong a single CRLF.
PING = b"\r\n\r\n"
PONG = b"\r\n"

_CRLF = b"\r\n"
_HEAD_END = b"\r\n\r\n"
# RFC 3261 7.3.1 / 20.14: Content-Length or its compact form "l", any case, optional blanks
# before the colon (HCOLON), a value that may be folded onto continuation lines. The leading
# CRLF keeps the start line (which may well contain "l:") out of the search.
_CONTENT_LENGTH = re.compile(
    rb"\r\n(?:content-length|l)[ \t]*:((?:[^\r\n]|\r\n[ \t])*)", re.IGNORECASE
)
_DIGITS = re.compile(rb"[0-9]+")
_BLANKS = b" \t\r\n"
# More digits than any message limit could need; also keeps int() away from huge strings.
_MAX_LENGTH_DIGITS = 12


@dataclass(frozen=True)
class FramingLimits:
    """Bounds on one connection's input.

    `max_head_size` and `max_message_size` bound one message (the head counts its final
    CRLF CRLF). `max_buffer_size` bounds the bytes a framer holds at any moment, whatever
    the size of the chunks fed to it: keep it at least `max_message_size` + 3 (a message
    may sit behind the start of a keep-alive) so that it only matters as a memory cap.
    `max_header_lines` bounds the lines of a head, folded continuation lines included.
    """

    max_head_size: int = 16 * 1024
    max_message_size: int = 64 * 1024
    max_buffer_size: int = 128 * 1024
    max_header_lines: int = 256

    def __post_init__(self) -> None:
        if min(self.max_head_size, self.max_message_size, self.max_buffer_size) < 4:
            raise ValueError("framing limits must be at least 4 bytes")
        if self.max_header_lines < 1:
            raise ValueError("max_header_lines must be positive")
        if self.max_head_size > self.max_message_size:
            raise ValueError("max_head_size cannot exceed max_message_size")


@dataclass(frozen=True)
class FramedMessage:
    """One complete message: the head with its final CRLF CRLF, then Content-Length bytes."""

    data: bytes


@dataclass(frozen=True)
class Ping:
    """An RFC 5626 keep-alive ping: write `PONG` back. Pings that arrive back to back in one
    chunk come out as one event, since one pong keeps the flow alive and a flood of pings
    should not become a flood of writes. Two pongs in a row cannot be told from a ping;
    answering them is harmless, as the peer skips a lone CRLF."""


@dataclass(frozen=True)
class FramingError:
    """The stream cannot be framed any further: close the connection. When `head` is set it
    is a complete message head (ending in CRLF CRLF, no body) that the transport may parse
    to answer `status` (400, or 513 Message Too Large, RFC 3261 21.5.14) before closing."""

    reason: str
    status: int | None = None
    head: bytes | None = None


FramingEvent = FramedMessage | Ping | FramingError


def _content_length(head: bytes) -> tuple[int | None, FramingError | None]:
    """The Content-Length of a head (without its final CRLF CRLF): (value, None), or
    (None, error) for a missing, malformed or conflicting one."""
    found: int | None = None
    for match in _CONTENT_LENGTH.finditer(head):
        text = match.group(1).strip(_BLANKS)
        if _DIGITS.fullmatch(text) is None:
            return None, FramingError("Bad Content-Length", 400, head + _HEAD_END)
        if len(text) > _MAX_LENGTH_DIGITS:
            return None, FramingError("Message Too Large", 513, head + _HEAD_END)
        value = int(text)
        if found is not None and value != found:
            # Two lengths would let two parsers frame the stream differently (smuggling);
            # identical repeats are harmless (as RFC 9112 6.3 allows).
            return None, FramingError("Conflicting Content-Length", 400, head + _HEAD_END)
        found = value
    if found is None:
        # RFC 3261 18.3: "In the case of stream-oriented transports such as TCP, the
        # Content-Length header field indicates the size of the body ... MUST be used".
        return None, FramingError("Missing Content-Length", 400, head + _HEAD_END)
    return found, None


class StreamFramer:
    """Splits one connection's byte stream into SIP messages (RFC 3261 18.3).

    Feed it what the socket reads, in chunks of any size; it returns the events that the
    bytes completed. After a `FramingError` it is spent and ignores further input.
    """

    def __init__(self, limits: FramingLimits | None = None) -> None:
        self.limits = limits or FramingLimits()
        self._buffer = bytearray()
        # The message being framed always starts at _buffer[0] between feeds.
        self._in_head = False  # keep-alive CRLFs were skipped and a head has begun
        self._scan_from = 0  # where the search for CRLF CRLF resumes
        self._total: int | None = None  # the whole message's length once the head is read
        self._failed = False
        self._pinged = False  # a Ping was returned for the current run of pings

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def buffered(self) -> int:
        """Bytes held for a message not yet complete."""
        return len(self._buffer)

    @property
    def mid_message(self) -> bool:
        """Whether part of a message is held: an end of stream now truncates it."""
        return self._in_head

    def feed(self, data: bytes) -> list[FramingEvent]:
        if self._failed:
            return []
        events: list[FramingEvent] = []
        self._pinged = False
        view = memoryview(data)
        limit = self.limits.max_buffer_size
        while view:
            # Take no more than the buffer has room for, so it never outgrows its bound
            # whatever the chunk size; frame, drop what was framed, take the next part.
            room = limit - len(self._buffer)
            if room <= 0:
                return self._fail(events, FramingError("Buffer limit exceeded"))
            self._buffer += view[:room]
            view = view[room:]
            self._frame(events)
            if self._failed:
                return events
        return events

    def _fail(self, events: list[FramingEvent], error: FramingError) -> list[FramingEvent]:
        self._failed = True
        self._buffer = bytearray()
        events.append(error)
        return events

    def _frame(self, events: list[FramingEvent]) -> None:
        buf = self._buffer
        limits = self.limits
        pos = 0
        end = len(buf)
        while pos < end:
            if not self._in_head:
                # RFC 3261 7.5: CRLFs before a start line are ignored; RFC 5626 3.5.1 makes
                # a double CRLF a ping. A lone CRLF (a pong) needs the next two bytes to be
                # told from the first half of a ping, so wait for them.
                if buf.startswith(_HEAD_END, pos):
                    if not self._pinged:
                        events.append(Ping())
                        self._pinged = True
                    pos += 4
                    continue
                rest = end - pos
                if buf.startswith(_CRLF, pos):
                    if rest == 2 or (rest == 3 and buf[pos + 2] == 0x0D):
                        break
                    pos += 2
                    continue
                if rest == 1 and buf[pos] == 0x0D:
                    break
                self._in_head = True
                self._scan_from = pos
            if self._total is None:
                head_end = buf.find(_HEAD_END, self._scan_from)
                if head_end < 0:
                    if end - pos > limits.max_head_size:
                        self._fail(events, FramingError("Message head too large"))
                        return
                    # Resume where a CRLF CRLF split across chunks could still begin, so
                    # the head is scanned once, not once per chunk.
                    self._scan_from = max(pos, end - 3)
                    break
                head_size = head_end + 4 - pos
                if head_size > limits.max_head_size:
                    self._fail(events, FramingError("Message head too large"))
                    return
                head = bytes(buf[pos:head_end])
                if head.count(_CRLF) + 1 > limits.max_header_lines:
                    too_many = FramingError("Too many header lines", 513, head + _HEAD_END)
                    self._fail(events, too_many)
                    return
                length, error = _content_length(head)
                if error is not None or length is None:
                    self._fail(events, error or FramingError("Bad Content-Length", 400))
                    return
                if head_size + length > limits.max_message_size:
                    too_large = FramingError("Message Too Large", 513, head + _HEAD_END)
                    self._fail(events, too_large)
                    return
                self._total = head_size + length
            if end - pos < self._total:
                break
            events.append(FramedMessage(bytes(buf[pos : pos + self._total])))
            self._pinged = False
            pos += self._total
            self._in_head = False
            self._total = None
        del buf[:pos]
        self._scan_from = max(0, self._scan_from - pos)


# --- connections per source ---------------------------------------------------------------


class ConnectionLease:
    """One accepted connection counted against its source; `release` it when the
    connection closes (twice is harmless)."""

    def __init__(self, limits: ConnectionLimits, key: str) -> None:
        self._limits = limits
        self.key = key
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._limits._release(self.key)


class ConnectionLimits:
    """At most `max_per_source` open connections from one source, and optionally
    `max_total` overall, so one peer cannot exhaust a pod's sockets.

    Sources are counted by IP address: an IPv4-mapped IPv6 address counts as its IPv4
    address (a dual-stack socket reports both forms), and IPv6 addresses count by their
    `ipv6_prefix` network, since one host commonly holds a whole /64.
    """

    def __init__(
        self, max_per_source: int, *, max_total: int | None = None, ipv6_prefix: int = 64
    ) -> None:
        if max_per_source < 1 or (max_total is not None and max_total < 1):
            raise ValueError("connection limits must be positive")
        if not 0 <= ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix must be between 0 and 128")
        self.max_per_source = max_per_source
        self.max_total = max_total
        self.ipv6_prefix = ipv6_prefix
        self._counts: dict[str, int] = {}
        self._total = 0

    def source_key(self, address: str) -> str:
        """The key `address` is counted under; a string that is no IP address is its own."""
        text = address.strip("[]").split("%", 1)[0]
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            return address
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return str(ip.ipv4_mapped)
            return str(ipaddress.IPv6Network((ip, self.ipv6_prefix), strict=False))
        return str(ip)

    @property
    def total(self) -> int:
        return self._total

    def count(self, address: str) -> int:
        return self._counts.get(self.source_key(address), 0)

    def acquire(self, address: str) -> ConnectionLease | None:
        """A lease for a new connection from `address`, or None when a limit is reached
        (the transport then closes the connection at once)."""
        key = self.source_key(address)
        current = self._counts.get(key, 0)
        if current >= self.max_per_source:
            return None
        if self.max_total is not None and self._total >= self.max_total:
            return None
        self._counts[key] = current + 1
        self._total += 1
        return ConnectionLease(self, key)

    def _release(self, key: str) -> None:
        remaining = self._counts[key] - 1
        if remaining:
            self._counts[key] = remaining
        else:
            # Dropped at zero so the table holds only sources with open connections.
            del self._counts[key]
        self._total -= 1
