"""SIP over UDP (RFC 3261 18): one datagram carries one message.

A thin asyncio adapter: it parses each datagram, answers a malformed request it can answer
with 400 (or the status the parser names) and a reason phrase naming the fault, drops
anything else with a count, and hands every good message to a `MessageSink`.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, cast

from trunkline.signaling.sip.message import ParseError, parse_message
from trunkline.signaling.sip.transaction import Peer
from trunkline.signaling.sip.transport.base import (
    MessageSink,
    TransportLimits,
    TransportStats,
    error_response,
    stamp_via,
)

__all__ = ["UdpTransport", "open_udp"]

# RFC 5626 4.4.2 uses STUN on UDP, not CRLF; a bare CRLF datagram is still seen from
# some phones as a NAT keep-alive and is ignored, as RFC 3261 7.5 ignores leading CRLFs.
_KEEPALIVES = (b"\r\n", b"\r\n\r\n", b"\x00", b"")


class UdpTransport(asyncio.DatagramProtocol):
    """One bound UDP socket: receives for the sink and sends what the endpoint asks."""

    def __init__(self, sink: MessageSink, limits: TransportLimits, stats: TransportStats) -> None:
        self._sink = sink
        self._limits = limits
        self.stats = stats
        self._transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self._transport = cast(asyncio.DatagramTransport, transport)
        sockname = transport.get_extra_info("sockname")
        self.local = (sockname[0], sockname[1])
        sock = transport.get_extra_info("socket")
        if sock is not None and self._limits.udp_buffer_size:
            # The default 208 KiB holds about a hundred datagrams (the kernel counts each
            # at its allocation size): a burst from a load generator overflows it and the
            # drops come back as retransmissions. The kernel caps this at rmem_max.
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, self._limits.udp_buffer_size)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        source = Peer("UDP", addr[0], addr[1])
        if data in _KEEPALIVES:
            return
        try:
            message = parse_message(
                data, max_size=self._limits.max_message_size, max_headers=self._limits.max_headers
            )
        except ParseError as exc:
            self._reject(exc, source)
            return
        self.stats.received += 1
        stamp_via(message, source)
        self._sink.message_received(message, source)

    def _reject(self, exc: ParseError, source: Peer) -> None:
        response = error_response(exc, source)
        if response is None:
            self.stats.dropped += 1
            return
        data, destination = response
        self.stats.rejected += 1
        self.send(data, destination)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: UDP has no connection to fail, and the
        # transaction timers already cover a peer that went away (RFC 3261 17.1.1.2).
        self.stats.send_errors += 1

    def send(self, data: bytes, destination: Peer) -> None:
        if self._transport is None or self._transport.is_closing():
            self.stats.send_errors += 1
            return
        self._transport.sendto(data, (destination.host, destination.port))
        self.stats.sent += 1

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def open_udp(
    sink: MessageSink,
    host: str,
    port: int,
    *,
    limits: TransportLimits | None = None,
    stats: TransportStats | None = None,
) -> UdpTransport:
    """Bind `host`:`port` (IPv4 or IPv6; port 0 picks a free one) and return the transport."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    _, protocol = await loop.create_datagram_endpoint(
        lambda: UdpTransport(sink, limits or TransportLimits(), stats or TransportStats()),
        local_addr=(host, port),
        family=family,
    )
    return protocol
