"""The asyncio adapters around the SIP core: real sockets on the loopback, no sleeps.

Every wait is bounded by a deadline (`asyncio.wait_for`), never a fixed pause.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from trunkline.signaling.sip.message import Request, parse_message
from trunkline.signaling.sip.timers import TimerConfig
from trunkline.signaling.sip.transaction import Peer, TransactionLayer
from trunkline.signaling.sip.transport import (
    Endpoint,
    TransportLimits,
    client_tls_context,
    server_tls_context,
    stamp_via,
)
from trunkline.signaling.testing import write_self_signed
from trunkline.signaling.testua import Uac, Uas

DEADLINE = 10.0


def options(host: str, port: int, *, branch: str = "z9hG4bKopt1", via_port: int = 5999) -> bytes:
    sent_by = f"[{host}]" if ":" in host else host
    uri_host = sent_by
    return (
        f"OPTIONS sip:uas@{uri_host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by}:{via_port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:t@example.com>;tag=f1\r\n"
        f"To: <sip:uas@{uri_host}>\r\nCall-ID: {branch}@test\r\nCSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def udp_exchange(host: str, port: int, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        s.bind((host, 0))
        await loop.sock_sendto(s, data, (host, port))
        reply: bytes = await asyncio.wait_for(loop.sock_recv(s, 65536), DEADLINE)
        return reply


@pytest.fixture
async def udp_uas() -> AsyncIterator[tuple[Endpoint, Uas]]:
    endpoint = Endpoint(TransactionLayer(TimerConfig(trying_delay=None)))
    await endpoint.listen_udp("127.0.0.1", 0)
    try:
        yield endpoint, Uas(endpoint, "udp")
    finally:
        await endpoint.close()


# ---- Via stamping (RFC 3261 18.2.1, RFC 3581) ------------------------------------------


def test_stamp_via_fills_rport_and_received() -> None:
    request = parse_message(options("10.0.0.1", 5060))
    stamp_via(request, Peer("UDP", "192.0.2.7", 40000))
    assert isinstance(request, Request)
    assert request.top_via.params["rport"] == "40000"
    assert request.top_via.received == "192.0.2.7"


def test_stamp_via_leaves_matching_via_without_rport_alone() -> None:
    data = options("192.0.2.7", 5060).replace(b";rport", b"")
    request = parse_message(data)
    stamp_via(request, Peer("UDP", "192.0.2.7", 5060))
    assert request.top_via.received is None
    assert bytes(request) == data


def test_stamp_via_adds_received_when_sent_by_differs() -> None:
    request = parse_message(options("pbx.example.com", 5060).replace(b";rport", b""))
    stamp_via(request, Peer("TCP", "192.0.2.7", 33000))
    assert request.top_via.received == "192.0.2.7"
    assert request.top_via.rport is None


# ---- UDP ------------------------------------------------------------------------------


async def test_udp_answers_options_to_the_source_port_with_rport(
    udp_uas: tuple[Endpoint, Uas],
) -> None:
    endpoint, uas = udp_uas
    port = endpoint.local_address("UDP")[1]
    reply = await udp_exchange("127.0.0.1", port, options("127.0.0.1", port))
    response = parse_message(reply)
    assert reply.startswith(b"SIP/2.0 200 OK\r\n")
    assert response.top_via.received == "127.0.0.1"
    assert response.top_via.rport not in (None, "", "5999")
    assert uas.stats.options == 1


async def test_udp_answers_malformed_request_with_400_naming_the_fault(
    udp_uas: tuple[Endpoint, Uas],
) -> None:
    endpoint, _ = udp_uas
    port = endpoint.local_address("UDP")[1]
    bad = options("127.0.0.1", port).replace(b"CSeq: 1 OPTIONS", b"CSeq: one OPTIONS")
    reply = await udp_exchange("127.0.0.1", port, bad)
    status_line = reply.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"SIP/2.0 400 ")
    assert b"CSeq" in status_line
    assert endpoint.stats.transport.rejected == 1


async def test_udp_drops_garbage_and_counts_it(udp_uas: tuple[Endpoint, Uas]) -> None:
    endpoint, uas = udp_uas
    port = endpoint.local_address("UDP")[1]
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        await loop.sock_sendto(s, b"\xff\xfe not sip at all\r\n\r\n", ("127.0.0.1", port))
    # A good request afterwards proves the garbage was processed (datagrams are ordered on
    # the loopback) and that the transport lives on.
    await udp_exchange("127.0.0.1", port, options("127.0.0.1", port))
    assert endpoint.stats.transport.dropped == 1
    assert uas.stats.options == 1


async def test_udp_client_transaction_retransmits_on_the_loop_clock() -> None:
    endpoint = Endpoint(TransactionLayer(TimerConfig(t1=0.02, t2=0.08)))
    await endpoint.listen_udp("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.setblocking(False)
        peer.bind(("127.0.0.1", 0))
        target = Peer("UDP", "127.0.0.1", peer.getsockname()[1])
        uac = Uac(endpoint, "udp", target, calls=1, rate=1.0)
        running = asyncio.ensure_future(uac.run())
        try:
            first = await asyncio.wait_for(loop.sock_recv(peer, 65536), DEADLINE)
            second = await asyncio.wait_for(loop.sock_recv(peer, 65536), DEADLINE)
        finally:
            running.cancel()
            await endpoint.close()
    assert first == second  # Timer A: the same INVITE again (RFC 3261 17.1.1.2)
    assert first.startswith(b"INVITE ")


async def test_uac_and_uas_complete_calls_over_udp(udp_uas: tuple[Endpoint, Uas]) -> None:
    server, uas = udp_uas
    client = Endpoint()
    await client.listen_udp("127.0.0.1", 0)
    try:
        target = Peer("UDP", "127.0.0.1", server.local_address("UDP")[1])
        stats = await asyncio.wait_for(
            Uac(client, "udp", target, calls=5, rate=100.0).run(), DEADLINE
        )
    finally:
        await client.close()
    assert (stats.successful, stats.failed) == (5, 0)
    assert uas.stats.answered == uas.stats.byes == 5


# ---- TCP ------------------------------------------------------------------------------


@pytest.fixture
async def tcp_uas() -> AsyncIterator[tuple[Endpoint, Uas]]:
    limits = TransportLimits(max_connections_per_source=2, max_message_size=4096)
    endpoint = Endpoint(TransactionLayer(TimerConfig(trying_delay=None)), limits=limits)
    await endpoint.listen_stream("TCP", "127.0.0.1", 0)
    try:
        yield endpoint, Uas(endpoint, "tcp")
    finally:
        await endpoint.close()


async def read_message(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
    return head


async def test_tcp_answers_ping_with_pong_and_requests_on_the_same_connection(
    tcp_uas: tuple[Endpoint, Uas],
) -> None:
    endpoint, uas = tcp_uas
    port = endpoint.local_address("TCP")[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(2), DEADLINE) == b"\r\n"
        # Two requests in one segment: the framer splits them, both answered here.
        writer.write(
            options("127.0.0.1", port, branch="z9hG4bKa")
            + options("127.0.0.1", port, branch="z9hG4bKb")
        )
        first = await read_message(reader)
        second = await read_message(reader)
    finally:
        writer.close()
    assert first.startswith(b"SIP/2.0 200 OK") and second.startswith(b"SIP/2.0 200 OK")
    assert b"z9hG4bKa" in first and b"z9hG4bKb" in second
    assert uas.stats.options == 2
    assert endpoint.stats.transport.pings == 1


async def test_tcp_refuses_connections_beyond_the_per_source_limit(
    tcp_uas: tuple[Endpoint, Uas],
) -> None:
    endpoint, _ = tcp_uas
    port = endpoint.local_address("TCP")[1]
    kept = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    try:
        # The kept ones are registered once they answer a ping.
        for reader, writer in kept:
            writer.write(b"\r\n\r\n")
            await asyncio.wait_for(reader.readexactly(2), DEADLINE)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            assert await asyncio.wait_for(reader.read(), DEADLINE) == b""
        finally:
            writer.close()
    finally:
        for _, w in kept:
            w.close()
    assert endpoint.stats.transport.refused_connections == 1


async def test_tcp_answers_oversized_message_with_513_and_closes(
    tcp_uas: tuple[Endpoint, Uas],
) -> None:
    endpoint, _ = tcp_uas
    port = endpoint.local_address("TCP")[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        big = options("127.0.0.1", port).replace(b"Content-Length: 0", b"Content-Length: 9000")
        writer.write(big)
        answer = await asyncio.wait_for(reader.read(), DEADLINE)  # then EOF
    finally:
        writer.close()
    assert answer.startswith(b"SIP/2.0 513 ")


async def test_uac_and_uas_complete_calls_over_tcp(tcp_uas: tuple[Endpoint, Uas]) -> None:
    server, uas = tcp_uas
    client = Endpoint()
    await client.listen_stream("TCP", "127.0.0.1", 0)
    try:
        target = Peer("TCP", "127.0.0.1", server.local_address("TCP")[1])
        stats = await asyncio.wait_for(
            Uac(client, "tcp", target, calls=5, rate=100.0).run(), DEADLINE
        )
        # Every call reused the one connection the first INVITE opened (RFC 3261 18.1.1).
        assert client.streams["TCP"].connection_count == 1
    finally:
        await client.close()
    assert (stats.successful, stats.failed) == (5, 0)
    assert uas.stats.acks == 5


async def test_connection_refused_fails_the_call_instead_of_waiting_for_timer_b() -> None:
    client = Endpoint()
    await client.listen_stream("TCP", "127.0.0.1", 0)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connects are refused
        try:
            stats = await asyncio.wait_for(
                Uac(client, "tcp", Peer("TCP", "127.0.0.1", port), calls=1, rate=1.0).run(),
                DEADLINE,
            )
        finally:
            await client.close()
    assert stats.failed == 1
    assert stats.failures == {"INVITE transport": 1}


# ---- IPv6 -----------------------------------------------------------------------------


async def test_udp_and_tcp_serve_ipv6_loopback() -> None:
    endpoint = Endpoint(TransactionLayer(TimerConfig(trying_delay=None)))
    await endpoint.listen_udp("::1", 0)
    await endpoint.listen_stream("TCP", "::1", 0)
    uas = Uas(endpoint, "udp")
    try:
        udp_port = endpoint.local_address("UDP")[1]
        reply = await udp_exchange("::1", udp_port, options("::1", udp_port))
        assert reply.startswith(b"SIP/2.0 200 OK")
        assert parse_message(reply).top_via.received == "::1"
        tcp_port = endpoint.local_address("TCP")[1]
        reader, writer = await asyncio.open_connection("::1", tcp_port)
        try:
            writer.write(options("::1", tcp_port, branch="z9hG4bKv6"))
            assert (await read_message(reader)).startswith(b"SIP/2.0 200 OK")
        finally:
            writer.close()
    finally:
        await endpoint.close()
    assert uas.stats.options == 2


# ---- TLS ------------------------------------------------------------------------------


@pytest.fixture
async def tls_uas(tmp_path: Path) -> AsyncIterator[tuple[Endpoint, Uas, Path]]:
    cert, key = write_self_signed(tmp_path)
    endpoint = Endpoint(TransactionLayer(TimerConfig(trying_delay=None)))
    await endpoint.listen_stream("TLS", "127.0.0.1", 0, server_ssl=server_tls_context(cert, key))
    try:
        yield endpoint, Uas(endpoint, "tls"), cert
    finally:
        await endpoint.close()


async def test_uac_and_uas_complete_calls_over_tls(
    tls_uas: tuple[Endpoint, Uas, Path],
) -> None:
    server, uas, cert = tls_uas
    client = Endpoint()
    await client.listen_stream("TLS", "127.0.0.1", 0, client_ssl=client_tls_context(cert))
    try:
        target = Peer("TLS", "127.0.0.1", server.local_address("TLS")[1])
        stats = await asyncio.wait_for(
            Uac(client, "tls", target, calls=3, rate=100.0).run(), DEADLINE
        )
    finally:
        await client.close()
    assert (stats.successful, stats.failed) == (3, 0)
    assert uas.stats.byes == 3


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_tls_refuses_tls_1_1(tls_uas: tuple[Endpoint, Uas, Path]) -> None:
    server, _, cert = tls_uas
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cert)
    # OpenSSL's default security level forbids TLS 1.1 outright; level 0 lets the client
    # offer it, so the refusal comes from the server's minimum version.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1_1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", server.local_address("TLS")[1], ssl=context),
            DEADLINE,
        )


def test_server_tls_context_requires_tls_1_2(tmp_path: Path) -> None:
    cert, key = write_self_signed(tmp_path)
    assert server_tls_context(cert, key).minimum_version == ssl.TLSVersion.TLSv1_2
    assert client_tls_context(cert).minimum_version == ssl.TLSVersion.TLSv1_2
