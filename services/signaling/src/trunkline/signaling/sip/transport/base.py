"""What the UDP and stream adapters share: the sink they feed, their limits and counters,
RFC 3581 Via stamping and the answer to a malformed request."""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Protocol

from trunkline.signaling.sip.message import (
    MAX_HEADERS,
    MAX_MESSAGE_SIZE,
    ParseError,
    Request,
    Response,
    make_response,
    new_tag,
)
from trunkline.signaling.sip.transaction import Peer, response_destination

__all__ = [
    "MessageSink",
    "TransportLimits",
    "TransportStats",
    "error_response",
    "stamp_via",
]


class MessageSink(Protocol):
    """Where transports deliver parsed messages (the endpoint, in practice)."""

    def message_received(self, message: Request | Response, source: Peer) -> None: ...

    def connection_lost(self, peer: Peer) -> None: ...


@dataclass(frozen=True)
class TransportLimits:
    """Input bounds. `max_message_size` and `max_headers` apply to every message;
    `max_connections_per_source` to TCP and TLS accepts (RFC 3261 26.3.2.2 asks for
    protection against connection floods)."""

    max_message_size: int = MAX_MESSAGE_SIZE
    max_headers: int = MAX_HEADERS
    max_connections_per_source: int = 64
    max_connections: int | None = 10000
    udp_buffer_size: int = 4 * 1024 * 1024  # SO_RCVBUF/SO_SNDBUF asked for; 0 keeps the default


@dataclass
class TransportStats:
    received: int = 0
    sent: int = 0
    rejected: int = 0  # malformed requests answered with 4xx/5xx
    dropped: int = 0  # malformed messages that could not be answered
    pings: int = 0  # RFC 5626 keep-alives answered
    refused_connections: int = 0
    send_errors: int = 0


def _same_address(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def stamp_via(message: Request | Response, source: Peer) -> None:
    """Add `received` (RFC 3261 18.2.1) and fill in `rport` (RFC 3581 4) on a request's top
    Via, so the core and any proxy after us answer the address the request really came
    from. A Via too broken to parse is left as it is: the transaction layer discards it."""
    if not isinstance(message, Request):
        return
    try:
        via = message.top_via
    except ParseError:
        return
    asked_rport = via.rport == ""
    if not asked_rport and _same_address(via.host, source.host):
        return  # the common case: nothing to add, nothing to re-serialize
    params = dict(via.params)
    # RFC 3581 4: with an empty rport, received is added even when it equals sent-by.
    params["received"] = source.host
    if asked_rport:
        params["rport"] = str(source.port)
    message.headers.replace_first("Via", str(dataclasses.replace(via, params=params)))


def error_response(exc: ParseError, source: Peer) -> tuple[bytes, Peer] | None:
    """The answer to a message that failed to parse, with the parser's reason phrase
    (RFC 3261 21.4.1 allows a phrase naming the fault), and where it goes; None when the
    message was a response or too broken to answer, i.e. must be dropped."""
    request = exc.request
    if request is None or request.method == "ACK":
        return None  # RFC 3261 17: an ACK is never answered
    try:
        response = make_response(request, exc.status, exc.reason, to_tag=new_tag())
        return bytes(response), response_destination(request, source)
    except ValueError:
        return None
