"""The media service as a process: its gRPC API and real UDP packets on loopback."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc
import pytest

from trunkline.media.sdp import Sdp
from trunkline.media.srtp import SrtpAuthError, SrtpSession, new_crypto
from trunkline.media.testing import MediaProcess, media_service
from trunkline.v1 import media_pb2, media_pb2_grpc, recording_pb2, recording_pb2_grpc


def offer_sdp(
    port: int, *, host: str = "127.0.0.1", extra: str = "", proto: str = "RTP/AVP"
) -> bytes:
    return (
        "v=0\r\n"
        f"o=- 1 1 IN IP4 {host}\r\n"
        "s=-\r\n"
        f"c=IN IP4 {host}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} {proto} 0 8 101\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        "a=ptime:20\r\n"
        f"{extra}"
        "a=sendrecv\r\n"
    ).encode()


def rtp(seq: int, ssrc: int, payload: bytes = b"\xff" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + payload


def media_port(sdp: bytes) -> int:
    parsed = Sdp.parse(sdp)
    return parsed.media[0].port


class Peer:
    """A UDP endpoint standing in for a PBX or carrier."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(2.0)
        self.port = self.sock.getsockname()[1]

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, ("127.0.0.1", port))

    def receive(self, count: int) -> list[bytes]:
        return [self.sock.recv(2048) for _ in range(count)]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module", params=["1", "2"], ids=["one-process", "two-workers"])
def media(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MediaProcess]:
    # Every test runs against one relay process and against two workers behind the front.
    env = {"TRUNKLINE_MEDIA_TIMEOUT": "1", "TRUNKLINE_MEDIA_WORKERS": request.param}
    with media_service(tmp_path_factory.mktemp("media"), env=env) as process:
        yield process


@pytest.fixture
async def stub(media: MediaProcess) -> AsyncIterator[media_pb2_grpc.MediaStub]:
    async with grpc.aio.insecure_channel(media.grpc_address) as channel:
        yield media_pb2_grpc.MediaStub(channel)


@pytest.fixture
def peers() -> Iterator[tuple[Peer, Peer]]:
    a, b = Peer(), Peer()
    yield a, b
    a.close()
    b.close()


async def setup_call(
    stub: media_pb2_grpc.MediaStub,
    call_id: str,
    a: Peer,
    b: Peer,
    *,
    offerer: media_pb2.LegPolicy | None = None,
    answerer: media_pb2.LegPolicy | None = None,
    a_sdp: bytes | None = None,
    b_extra: str = "",
    b_proto: str = "RTP/AVP",
) -> tuple[int, int, bytes]:
    """Offer from a, answer from b; the relay ports a and b must send to, and b's offer."""
    offered = await stub.Offer(
        media_pb2.OfferRequest(
            call_id=call_id,
            from_tag="ta",
            sdp=a_sdp or offer_sdp(a.port),
            offerer=offerer or media_pb2.LegPolicy(),
            answerer=answerer or media_pb2.LegPolicy(),
        )
    )
    answered = await stub.Answer(
        media_pb2.AnswerRequest(
            call_id=call_id,
            from_tag="ta",
            to_tag="tb",
            sdp=offer_sdp(b.port, extra=b_extra, proto=b_proto),
        )
    )
    return media_port(answered.sdp), media_port(offered.sdp), offered.sdp


async def until_counted(
    stub: media_pb2_grpc.MediaStub,
    call_id: str,
    role: str,
    check: Callable[[media_pb2.LegStatistics], bool],
    timeout: float = 5.0,
) -> None:
    """Poll the call's statistics until `check` holds for the leg (packets are asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        legs = (await stub.Query(media_pb2.QueryRequest(call_id=call_id))).legs
        if check(next(leg for leg in legs if leg.role == role)):
            return
        assert time.monotonic() < deadline, f"{call_id}: {role} statistics never matched"
        await asyncio.sleep(0.02)


async def test_relay_forwards_rtp_both_ways_and_reports_statistics(
    stub: media_pb2_grpc.MediaStub, peers: tuple[Peer, Peer]
) -> None:
    a, b = peers
    to_relay_from_a, to_relay_from_b, _ = await setup_call(stub, "both-ways", a, b)
    for seq in range(20):
        a.send(rtp(seq, 0xA), to_relay_from_a)
        b.send(rtp(seq, 0xB), to_relay_from_b)
    at_b = await asyncio.to_thread(b.receive, 20)
    at_a = await asyncio.to_thread(a.receive, 20)
    assert [struct.unpack("!H", p[2:4])[0] for p in at_b] == list(range(20))
    assert all(p[8:12] == struct.pack("!I", 0xA) for p in at_b)
    assert all(p[8:12] == struct.pack("!I", 0xB) for p in at_a)
    reply = await stub.Delete(media_pb2.DeleteRequest(call_id="both-ways"))
    legs = {leg.role: leg for leg in reply.legs}
    assert legs["offerer"].packets == 20 and legs["answerer"].packets == 20
    assert legs["offerer"].lost == 0 and legs["offerer"].bytes == 20 * 172
    assert legs["offerer"].tag == "ta" and legs["answerer"].tag == "tb"


async def test_offer_sdp_names_the_relay_and_keeps_codec_order(
    stub: media_pb2_grpc.MediaStub, peers: tuple[Peer, Peer]
) -> None:
    a, b = peers
    _, _, sent = await setup_call(stub, "sdp-shape", a, b)
    parsed = Sdp.parse(sent)
    section = parsed.media[0]
    assert section.formats == ["0", "8", "101"]
    assert section.port != a.port and section.port % 2 == 0
    assert section.attribute("ptime") is not None
    await stub.Delete(media_pb2.DeleteRequest(call_id="sdp-shape"))


async def test_offer_without_g711_is_refused_with_invalid_argument(
    stub: media_pb2_grpc.MediaStub,
) -> None:
    sdp = offer_sdp(4000).replace(b"0 8 101", b"18 101")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Offer(media_pb2.OfferRequest(call_id="g729", from_tag="x", sdp=sdp))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "PCMU or PCMA" in (caught.value.details() or "")


async def test_offer_without_srtp_is_refused_when_srtp_is_required(
    stub: media_pb2_grpc.MediaStub,
) -> None:
    policy = media_pb2.LegPolicy(transport=media_pb2.TRANSPORT_SRTP)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Offer(
            media_pb2.OfferRequest(
                call_id="secure", from_tag="x", sdp=offer_sdp(4000), offerer=policy
            )
        )
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await stub.Query(media_pb2.QueryRequest(call_id="secure"))
    assert gone.value.code() is grpc.StatusCode.NOT_FOUND


async def test_delete_releases_ports_so_unknown_calls_are_not_found(
    stub: media_pb2_grpc.MediaStub, peers: tuple[Peer, Peer]
) -> None:
    a, b = peers
    port_a, _, _ = await setup_call(stub, "released", a, b)
    await stub.Delete(media_pb2.DeleteRequest(call_id="released"))
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", port_a))  # the relay closed its socket
    probe.close()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Delete(media_pb2.DeleteRequest(call_id="released"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_srtp_leg_is_bridged_to_rtp_leg_and_bad_packets_are_counted(
    stub: media_pb2_grpc.MediaStub, peers: tuple[Peer, Peer]
) -> None:
    a, b = peers
    b_key = new_crypto(1, "AES_CM_128_HMAC_SHA1_80")
    srtp = media_pb2.LegPolicy(
        transport=media_pb2.TRANSPORT_SRTP, crypto_suites=["AES_CM_128_HMAC_SHA1_80"]
    )
    to_relay_from_a, to_relay_from_b, sent_to_b = await setup_call(
        stub, "srtp", a, b, answerer=srtp, b_extra=f"a=crypto:{b_key}\r\n", b_proto="RTP/SAVP"
    )
    relay_key = Sdp.parse(sent_to_b).media[0].cryptos()
    assert [c.suite for c in relay_key] == ["AES_CM_128_HMAC_SHA1_80"]
    b_in = SrtpSession.inbound(relay_key[0])
    b_out = SrtpSession.outbound(b_key)
    for seq in range(10):
        a.send(rtp(seq, 0xA), to_relay_from_a)
        b.send(b_out.protect(rtp(seq, 0xB)), to_relay_from_b)
    at_b = await asyncio.to_thread(b.receive, 10)
    at_a = await asyncio.to_thread(a.receive, 10)
    assert [b_in.unprotect(p)[12:] for p in at_b] == [b"\xff" * 160] * 10
    assert all(len(p) == 172 for p in at_a)  # decrypted: plain RTP toward a
    forged = bytearray(b_out.protect(rtp(50, 0xB)))
    forged[20] ^= 1
    b.send(bytes(forged), to_relay_from_b)
    await until_counted(stub, "srtp", "answerer", lambda leg: leg.srtp_auth_failures >= 1)
    legs = {
        leg.role: leg for leg in (await stub.Delete(media_pb2.DeleteRequest(call_id="srtp"))).legs
    }
    assert legs["answerer"].srtp_auth_failures == 1
    assert legs["answerer"].packets == 10
    with pytest.raises(SrtpAuthError):
        b_in.unprotect(at_b[0])  # replay of an already accepted packet


async def test_symmetric_rtp_sends_to_the_latched_source_not_the_sdp_address(
    stub: media_pb2_grpc.MediaStub, peers: tuple[Peer, Peer]
) -> None:
    a, b = peers
    behind_nat = offer_sdp(4000, host="10.255.255.1")
    symmetric = media_pb2.LegPolicy(symmetric_rtp=True)
    to_relay_from_a, to_relay_from_b, _ = await setup_call(
        stub, "latch", a, b, offerer=symmetric, a_sdp=behind_nat
    )
    events = stub.Events(media_pb2.EventsRequest())
    a.send(rtp(1, 0xA), to_relay_from_a)
    await asyncio.to_thread(b.receive, 1)
    b.send(rtp(1, 0xB), to_relay_from_b)
    got = await asyncio.to_thread(a.receive, 1)
    assert got[0][8:12] == struct.pack("!I", 0xB)
    query = await stub.Query(media_pb2.QueryRequest(call_id="latch"))
    offerer = next(leg for leg in query.legs if leg.role == "offerer")
    assert offerer.remote_address == f"127.0.0.1:{a.port}"
    await stub.Delete(media_pb2.DeleteRequest(call_id="latch"))
    events.cancel()


async def test_without_symmetric_rtp_media_goes_to_the_sdp_address(
    stub: media_pb2_grpc.MediaStub, peers: tuple[Peer, Peer]
) -> None:
    a, b = peers
    elsewhere = Peer()
    try:
        to_relay_from_a, to_relay_from_b, _ = await setup_call(
            stub, "no-latch", a, b, a_sdp=offer_sdp(elsewhere.port)
        )
        a.send(rtp(1, 0xA), to_relay_from_a)
        b.send(rtp(1, 0xB), to_relay_from_b)
        got = await asyncio.to_thread(elsewhere.receive, 1)
        assert got[0][8:12] == struct.pack("!I", 0xB)
        a.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            a.sock.recv(2048)
    finally:
        elsewhere.close()
    await stub.Delete(media_pb2.DeleteRequest(call_id="no-latch"))


async def test_media_timeout_raises_an_event_for_the_silent_leg(
    stub: media_pb2_grpc.MediaStub, peers: tuple[Peer, Peer]
) -> None:
    a, b = peers
    events = stub.Events(media_pb2.EventsRequest())
    await events.initial_metadata()  # subscribed: the call's events cannot be missed
    to_relay_from_a, _, _ = await setup_call(stub, "timeout", a, b)
    started = time.monotonic()

    async def keep_talking() -> None:  # a keeps sending; only b goes silent
        for seq in range(100):
            a.send(rtp(seq, 0xA), to_relay_from_a)
            await asyncio.sleep(0.05)

    talker = asyncio.create_task(keep_talking())
    seen = []
    async for event in events:
        if event.call_id != "timeout":
            continue
        seen.append((event.kind, event.tag))
        if event.kind == media_pb2.MediaEvent.MEDIA_TIMEOUT:
            break
    elapsed = time.monotonic() - started
    talker.cancel()
    events.cancel()
    assert (media_pb2.MediaEvent.FIRST_PACKET, "ta") in seen
    assert seen[-1] == (media_pb2.MediaEvent.MEDIA_TIMEOUT, "tb")  # b never sent
    assert 0.9 <= elapsed < 5
    await stub.Delete(media_pb2.DeleteRequest(call_id="timeout"))


async def test_hold_reoffer_is_relayed_with_the_same_relay_ports(
    stub: media_pb2_grpc.MediaStub, peers: tuple[Peer, Peer]
) -> None:
    a, b = peers
    _, _, first = await setup_call(stub, "hold", a, b)
    hold = offer_sdp(a.port).replace(b"a=sendrecv", b"a=sendonly").replace(b"o=- 1 1", b"o=- 1 2")
    again = await stub.Offer(media_pb2.OfferRequest(call_id="hold", from_tag="ta", sdp=hold))
    assert media_port(again.sdp) == media_port(first)
    assert b"a=sendonly" in again.sdp
    reply = await stub.Answer(
        media_pb2.AnswerRequest(
            call_id="hold",
            from_tag="ta",
            to_tag="tb",
            sdp=offer_sdp(b.port).replace(b"a=sendrecv", b"a=recvonly"),
        )
    )
    assert b"a=recvonly" in reply.sdp
    # and b re-offers to resume: the roles of offer and answer swap, the legs stay.
    resume = await stub.Offer(
        media_pb2.OfferRequest(call_id="hold", from_tag="tb", sdp=offer_sdp(b.port))
    )
    assert b"a=sendrecv" in resume.sdp
    await stub.Answer(
        media_pb2.AnswerRequest(call_id="hold", from_tag="tb", to_tag="ta", sdp=offer_sdp(a.port))
    )
    await stub.Delete(media_pb2.DeleteRequest(call_id="hold"))


class Recorder(recording_pb2_grpc.RecorderServicer):
    def __init__(self) -> None:
        self.packets: list[recording_pb2.RecordedPacket] = []
        self.ended = asyncio.Event()

    async def Record(
        self, request_iterator: AsyncIterator[recording_pb2.RecordedPacket], context: object
    ) -> recording_pb2.RecordSummary:
        async for packet in request_iterator:
            self.packets.append(packet)
            if packet.end and sum(p.end for p in self.packets) == 2:
                self.ended.set()
        return recording_pb2.RecordSummary(packets=len(self.packets))


async def test_recording_fork_carries_both_legs_in_order(tmp_path: Path) -> None:
    recorder = Recorder()
    server = grpc.aio.server()
    recording_pb2_grpc.add_RecorderServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    a, b = Peer(), Peer()
    try:
        env = {"TRUNKLINE_RECORDING_ADDRESS": f"127.0.0.1:{port}"}
        with media_service(tmp_path, env=env) as process:
            async with grpc.aio.insecure_channel(process.grpc_address) as channel:
                stub = media_pb2_grpc.MediaStub(channel)
                to_a, to_b, _ = await setup_call(stub, "rec", a, b)
                await stub.StartRecording(media_pb2.RecordingRequest(call_id="rec"))
                for seq in range(30):
                    a.send(rtp(seq, 0xA, bytes([seq]) * 160), to_a)
                    b.send(rtp(seq, 0xB, bytes([100 + seq]) * 160), to_b)
                await asyncio.to_thread(b.receive, 30)
                await asyncio.to_thread(a.receive, 30)
                await stub.Delete(media_pb2.DeleteRequest(call_id="rec"))
                await asyncio.wait_for(recorder.ended.wait(), 10)
    finally:
        a.close()
        b.close()
        await server.stop(None)
    by_leg: dict[str, list[recording_pb2.RecordedPacket]] = {}
    for packet in recorder.packets:
        by_leg.setdefault(packet.role, []).append(packet)
    for role, first_byte in (("offerer", 0), ("answerer", 100)):
        media = [p for p in by_leg[role] if not p.end]
        assert [p.sequence_number for p in media] == list(range(30))
        assert [p.payload[0] for p in media] == [first_byte + s for s in range(30)]
        assert by_leg[role][-1].end


async def test_delete_many_ends_each_call_and_names_the_unknown_ones(
    stub: media_pb2_grpc.MediaStub,
) -> None:
    # Enough calls that, behind the front, both workers own some of them.
    parties = [(Peer(), Peer()) for _ in range(6)]
    try:
        ports = []
        for index, (a, b) in enumerate(parties):
            port_a, _, _ = await setup_call(stub, f"many-{index}", a, b)
            ports.append(port_a)
        ids = ["many-0", "never-offered", *(f"many-{i}" for i in range(1, 6))]
        reply = await stub.DeleteMany(media_pb2.DeleteManyRequest(call_ids=ids))
        assert [call.call_id for call in reply.deleted] == [f"many-{i}" for i in range(6)]
        assert all(len(call.legs) == 2 for call in reply.deleted)
        assert list(reply.not_found) == ["never-offered"]
        for port in ports:
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind(("127.0.0.1", port))  # released
            probe.close()
        again = await stub.DeleteMany(media_pb2.DeleteManyRequest(call_ids=["many-3"]))
        assert (list(again.deleted), list(again.not_found)) == ([], ["many-3"])
    finally:
        for a, b in parties:
            a.close()
            b.close()
