"""A SIP endpoint: the transaction layer driven by asyncio sockets and timers.

The endpoint owns a `TransactionLayer` and the transports. Messages the transports parse
go into the layer with the loop's clock; the `Send` actions that come out are written to
the transport they name; events go to the transaction user (TU) callback. One
`asyncio.TimerHandle` is kept armed for the layer's `next_deadline()`, so timers cost one
loop callback however many transactions run.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from trunkline.signaling.sip.message import Request, Response, new_branch
from trunkline.signaling.sip.transaction import (
    Event,
    Output,
    Peer,
    Send,
    TransactionKey,
    TransactionLayer,
)
from trunkline.signaling.sip.transport.base import TransportLimits, TransportStats
from trunkline.signaling.sip.transport.stream import StreamTransport, open_stream
from trunkline.signaling.sip.transport.udp import UdpTransport, open_udp

__all__ = ["Endpoint", "EndpointStats"]


@dataclass
class EndpointStats:
    transport: TransportStats = field(default_factory=TransportStats)
    unroutable: int = 0  # Send actions for a transport this endpoint does not run


class Endpoint:
    """Transports plus a transaction layer; `on_event` receives every TU event."""

    def __init__(
        self,
        layer: TransactionLayer | None = None,
        *,
        limits: TransportLimits | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.layer = layer if layer is not None else TransactionLayer()
        self.limits = limits or TransportLimits()
        self.stats = EndpointStats()
        self.on_event: Callable[[Event], None] = on_event or (lambda event: None)
        # A filter before the transaction layer: a message it refuses is dropped unanswered
        # and starts no transaction (an unknown domain, a locked-out source).
        self.admit: Callable[[Request | Response, Peer], bool] | None = None
        self.refused = 0
        self.udp: UdpTransport | None = None
        self.streams: dict[str, StreamTransport] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    # -- setup

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def listen_udp(self, host: str, port: int = 0) -> UdpTransport:
        self.udp = await open_udp(self, host, port, limits=self.limits, stats=self.stats.transport)
        return self.udp

    async def listen_stream(
        self,
        name: str,
        host: str,
        port: int = 0,
        *,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
    ) -> StreamTransport:
        """Listen on TCP or TLS ("TCP" / "TLS"); `client_ssl` is used for connections this
        endpoint opens to send requests over TLS."""
        transport = await open_stream(
            name,
            self,
            host,
            port,
            limits=self.limits,
            stats=self.stats.transport,
            server_ssl=server_ssl,
            client_ssl=client_ssl,
        )
        transport.on_send_failed = self._send_failed
        self.streams[name] = transport
        return transport

    def local_address(self, transport: str) -> tuple[str, int]:
        """The address a transport is bound to, for Via sent-by and Contact."""
        name = transport.upper()
        if name == "UDP":
            if self.udp is None:
                raise ValueError("no UDP transport")
            return self.udp.local
        stream = self.streams.get(name)
        if stream is None:
            raise ValueError(f"no {name} transport")
        return stream.local

    def via(self, transport: str) -> str:
        """A top Via for a new request over `transport`: our sent-by, a new branch, and
        rport (RFC 3581) so responses come back to the port we sent from through NATs."""
        host, port = self.local_address(transport)
        sent_by = f"[{host}]" if ":" in host else host
        return f"SIP/2.0/{transport.upper()} {sent_by}:{port};branch={new_branch()};rport"

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.udp is not None:
            self.udp.close()
        for stream in self.streams.values():
            await stream.close()

    # -- TU commands

    def send_request(self, request: Request, destination: Peer) -> TransactionKey:
        """Start a client transaction; returns its key."""
        outputs = self.layer.send_request(request, destination, self.loop.time())
        key = outputs[0].key if outputs and isinstance(outputs[0], Send) else None
        self._run(outputs)
        if key is None:
            raise RuntimeError("the transaction layer sent nothing for a new request")
        return key

    def respond(self, key: TransactionKey, response: Response) -> None:
        self._run(self.layer.respond(key, response, self.loop.time()))

    def answer_cancel(self, key: TransactionKey) -> None:
        self._run(self.layer.answer_cancel(key, self.loop.time()))

    def cancel(self, key: TransactionKey, reason: str | None = None) -> None:
        self._run(self.layer.cancel(key, self.loop.time(), reason=reason))

    def send_stateless(self, message: Request | Response, destination: Peer) -> None:
        self._run(self.layer.send_stateless(message, destination))

    # -- MessageSink

    def message_received(self, message: Request | Response, source: Peer) -> None:
        admit = self.admit
        if admit is not None and not admit(message, source):
            self.refused += 1
            return
        self._run(self.layer.receive(message, source, self.loop.time()))

    def forget(self, key: TransactionKey) -> None:
        self.layer.forget(key)

    def connection_lost(self, peer: Peer) -> None:
        # 17.1.4 / 17.2.4: only transactions that still need the connection fail; a
        # response for a server transaction is re-sent on a new connection instead.
        pending = [
            t for t in self.layer.transactions() if t.peer == peer and t.key.role == "client"
        ]
        for txn in pending:
            self._run(self.layer.transport_error(txn.key, self.loop.time(), "connection lost"))

    # -- internals

    def _send_failed(self, peer: Peer) -> None:
        self._run(self.layer.transport_error_to(peer, self.loop.time(), "connection refused"))

    def _run(self, outputs: Iterable[Output]) -> None:
        for output in outputs:
            if type(output) is Send:
                self._write(output)
            else:
                self.on_event(output)  # type: ignore[arg-type]
        self._arm()

    def _write(self, send: Send) -> None:
        destination = send.destination
        name = destination.transport.upper()
        if name == "UDP":
            if self.udp is not None:
                self.udp.send(send.data, destination)
                return
        else:
            stream = self.streams.get(name)
            if stream is not None:
                stream.send(send.data, destination)
                return
        self.stats.unroutable += 1
        if send.key is not None:
            self.loop.call_soon(self._fail_key, send.key)

    def _fail_key(self, key: TransactionKey) -> None:
        self._run(self.layer.transport_error(key, self.loop.time(), "no such transport"))

    def _arm(self) -> None:
        deadline = self.layer.next_deadline()
        if deadline is None:
            return
        if self._timer_at is not None and self._timer_at <= deadline:
            return  # an earlier wake-up is already set; it re-arms after ticking
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        self._run(self.layer.tick(self.loop.time()))
