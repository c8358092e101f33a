"""SIP over TCP and TLS (RFC 3261 18.3, RFC 5626 3.5.1), as one asyncio adapter.

Each connection frames its byte stream with `StreamFramer`, answers a double-CRLF ping
with a single-CRLF pong, and is registered under the peer's address so responses go back
over the connection the request came on (RFC 3261 18.2.2) and requests to a peer reuse an
open connection. Accepted connections are counted per source (`ConnectionLimits`).
TLS is TLS 1.2 or 1.3 only.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import cast

from trunkline.signaling.sip.framing import (
    PONG,
    ConnectionLease,
    ConnectionLimits,
    FramedMessage,
    FramingError,
    FramingLimits,
    Ping,
    StreamFramer,
)
from trunkline.signaling.sip.message import ParseError, parse_message
from trunkline.signaling.sip.transaction import Peer
from trunkline.signaling.sip.transport.base import (
    MessageSink,
    TransportLimits,
    TransportStats,
    error_response,
    stamp_via,
)

__all__ = [
    "StreamConnection",
    "StreamTransport",
    "client_tls_context",
    "open_stream",
    "server_tls_context",
]


def server_tls_context(certfile: str | Path, keyfile: str | Path) -> ssl.SSLContext:
    """A server context for TLS 1.2 and 1.3 only, with the certificate and key the
    configuration names."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(certfile), str(keyfile))
    return context


def client_tls_context(cafile: str | Path | None = None) -> ssl.SSLContext:
    """A client context for TLS 1.2 and 1.3 only that verifies the server against `cafile`
    (or the system store) and its host name."""
    context = ssl.create_default_context(cafile=str(cafile) if cafile is not None else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection, accepted or opened by us."""

    def __init__(self, owner: StreamTransport, *, outgoing: bool = False) -> None:
        self._owner = owner
        self._outgoing = outgoing
        self._lease: ConnectionLease | None = None
        self._framer = StreamFramer(owner.framing_limits)
        self._transport: asyncio.Transport | None = None
        self.peer: Peer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        address = transport.get_extra_info("peername")
        peer = Peer(self._owner.name, address[0], address[1])
        if not self._outgoing:
            lease = self._owner.connection_limits.acquire(peer.host)
            if lease is None:
                # A source over its share of connections is closed at once, before it
                # costs a TLS handshake's worth of buffers or a framer.
                self._owner.stats.refused_connections += 1
                transport.abort()
                return
            self._lease = lease
        self.peer = peer
        self._owner.register(peer, self)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None:
            return
        owner = self._owner
        for event in self._framer.feed(data):
            if isinstance(event, FramedMessage):
                try:
                    message = parse_message(
                        event.data,
                        max_size=owner.limits.max_message_size,
                        max_headers=owner.limits.max_headers,
                    )
                except ParseError as exc:
                    # The framing held, so only this message is lost; the stream goes on.
                    self._reject(exc, peer)
                    continue
                owner.stats.received += 1
                stamp_via(message, peer)
                owner.sink.message_received(message, peer)
            elif isinstance(event, Ping):
                owner.stats.pings += 1
                self.write(PONG)
            else:
                self._framing_failed(event, peer)
                return

    def _reject(self, exc: ParseError, peer: Peer) -> None:
        response = error_response(exc, peer)
        if response is None:
            self._owner.stats.dropped += 1
            return
        self._owner.stats.rejected += 1
        self.write(response[0])

    def _framing_failed(self, error: FramingError, peer: Peer) -> None:
        # Where the next message starts is lost: answer what can be answered, then close.
        if error.head is not None and error.status is not None:
            try:
                parse_message(error.head)
            except ParseError as exc:
                exc.status = error.status
                exc.reason = error.reason
                self._reject(exc, peer)
            else:
                self._owner.stats.dropped += 1
        else:
            self._owner.stats.dropped += 1
        if self._transport is not None:
            self._transport.close()

    def write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            self._owner.stats.send_errors += 1
            return
        self._transport.write(data)
        self._owner.stats.sent += 1

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lease is not None:
            self._lease.release()
            self._lease = None
        if self.peer is not None:
            self._owner.unregister(self.peer, self)


class StreamTransport:
    """The TCP or TLS side of an endpoint: one listening socket, the open connections by
    peer, and outgoing connections opened on demand for requests."""

    def __init__(
        self,
        name: str,
        sink: MessageSink,
        *,
        limits: TransportLimits | None = None,
        stats: TransportStats | None = None,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
    ) -> None:
        if name not in ("TCP", "TLS"):
            raise ValueError(f"stream transport must be TCP or TLS, not {name!r}")
        if name == "TLS" and (server_ssl is None and client_ssl is None):
            raise ValueError("TLS needs a server or a client SSL context")
        self.name = name
        self.sink = sink
        self.limits = limits or TransportLimits()
        self.stats = stats or TransportStats()
        self.framing_limits = FramingLimits(
            max_head_size=min(16 * 1024, self.limits.max_message_size),
            max_message_size=self.limits.max_message_size,
            max_buffer_size=2 * self.limits.max_message_size + 4,
            max_header_lines=self.limits.max_headers,
        )
        self.connection_limits = ConnectionLimits(
            self.limits.max_connections_per_source, max_total=self.limits.max_connections
        )
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.local: tuple[str, int] = ("", 0)
        self._server: asyncio.Server | None = None
        self._connections: dict[Peer, StreamConnection] = {}
        # Outgoing connections being opened, with the writes waiting for them.
        self._pending: dict[Peer, list[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_send_failed: Callable[[Peer], None] | None = None

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def listen(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = await loop.create_server(
            lambda: StreamConnection(self),
            host,
            port,
            family=family,
            ssl=self.server_ssl,
            reuse_address=True,
        )
        sockname = self._server.sockets[0].getsockname()
        self.local = (sockname[0], sockname[1])

    def register(self, peer: Peer, connection: StreamConnection) -> None:
        self._connections[peer] = connection

    def unregister(self, peer: Peer, connection: StreamConnection) -> None:
        if self._connections.get(peer) is connection:
            del self._connections[peer]
            self.sink.connection_lost(peer)

    def send(self, data: bytes, destination: Peer) -> None:
        """Write to the open connection to `destination`, or open one (RFC 3261 18.1.1:
        requests reuse an existing connection; 18.2.2: responses go back on the one the
        request came on and, if it closed, on a new one to the same address)."""
        connection = self._connections.get(destination)
        if connection is not None:
            connection.write(data)
            return
        waiting = self._pending.get(destination)
        if waiting is not None:
            waiting.append(data)
            return
        self._pending[destination] = [data]
        task = asyncio.get_running_loop().create_task(self._connect(destination))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, destination: Peer) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                lambda: StreamConnection(self, outgoing=True),
                destination.host,
                destination.port,
                ssl=self.client_ssl if self.name == "TLS" else None,
                server_hostname=destination.host if self.name == "TLS" else None,
            )
        except (OSError, ssl.SSLError):
            self._pending.pop(destination, None)
            self.stats.send_errors += 1
            if self.on_send_failed is not None:
                self.on_send_failed(destination)
            return
        waiting = self._pending.pop(destination, [])
        if connection.peer is not None and connection.peer != destination:
            # The kernel may report the peer in another form (an IPv4-mapped address):
            # answer later sends to the name they were addressed to as well.
            self._connections[destination] = connection
        for data in waiting:
            connection.write(data)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections.values()):
            connection.close()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()


async def open_stream(
    name: str,
    sink: MessageSink,
    host: str,
    port: int,
    *,
    limits: TransportLimits | None = None,
    stats: TransportStats | None = None,
    server_ssl: ssl.SSLContext | None = None,
    client_ssl: ssl.SSLContext | None = None,
) -> StreamTransport:
    """A listening TCP or TLS transport on `host`:`port` (0 picks a free port)."""
    transport = StreamTransport(
        name, sink, limits=limits, stats=stats, server_ssl=server_ssl, client_ssl=client_ssl
    )
    await transport.listen(host, port)
    return transport
