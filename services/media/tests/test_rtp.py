"""RTP packets (RFC 3550 5.1) on golden bytes, peek, and RTCP demultiplexing (RFC 5761 4)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.media.rtp import RtpError, RtpExtension, RtpPacket, is_rtcp, peek

# PCMU, seq 1, ts 160, SSRC 0xdeadbeef, 4 payload octets; written out by hand.
PCMU = bytes.fromhex("80 00 0001 000000a0 deadbeef ffff7f7f")

# PCMA with marker, 2 CSRC, a one-word extension and 4 octets of padding, built with struct.
FULL = (
    struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 0x80 | 8, 0xFFFF, 0xFFFFFFFF, 0x01020304)
    + struct.pack("!II", 0x11111111, 0x22222222)
    + struct.pack("!HH", 0xBEDE, 1)
    + bytes.fromhex("10aa0000")
    + b"\xd5" * 160
    + b"\x00\x00\x00\x04"
)


def test_parse_pcmu_packet_written_by_hand() -> None:
    packet = RtpPacket.parse(PCMU)
    assert packet == RtpPacket(
        payload_type=0,
        sequence_number=1,
        timestamp=160,
        ssrc=0xDEADBEEF,
        payload=b"\xff\xff\x7f\x7f",
    )
    assert not packet.marker
    assert isinstance(packet.payload, memoryview)
    assert bytes(packet) == PCMU


def test_parse_packet_with_every_optional_part() -> None:
    packet = RtpPacket.parse(FULL)
    assert packet.payload_type == 8
    assert packet.marker
    assert packet.sequence_number == 0xFFFF
    assert packet.timestamp == 0xFFFFFFFF
    assert packet.ssrc == 0x01020304
    assert packet.csrc == (0x11111111, 0x22222222)
    assert packet.extension == RtpExtension(0xBEDE, bytes.fromhex("10aa0000"))
    assert packet.padding == 4
    assert bytes(packet.payload) == b"\xd5" * 160
    assert bytes(packet) == FULL


def test_payload_is_a_view_into_the_received_buffer() -> None:
    buffer = bytearray(PCMU)
    packet = RtpPacket.parse(buffer)
    buffer[-1] = 0x00
    assert bytes(packet.payload) == b"\xff\xff\x7f\x00"


def test_parse_accepts_a_memoryview_slice() -> None:
    data = memoryview(b"junk" + PCMU)[4:]
    assert RtpPacket.parse(data).ssrc == 0xDEADBEEF


def test_serialise_a_constructed_packet() -> None:
    packet = RtpPacket(
        payload_type=101,
        sequence_number=7,
        timestamp=8000,
        ssrc=42,
        marker=True,
        padding=1,
        payload=b"\x01\x80\x00\xa0",
    )
    data = bytes(packet)
    assert data == struct.pack("!BBHII", 0xA0, 0x80 | 101, 7, 8000, 42) + b"\x01\x80\x00\xa0\x01"
    assert RtpPacket.parse(data) == packet


def test_peek_reads_the_hot_path_fields() -> None:
    assert peek(PCMU) == (0, 1, 160, 0xDEADBEEF)
    assert peek(FULL) == (8, 0xFFFF, 0xFFFFFFFF, 0x01020304)
    assert peek(memoryview(PCMU)) == (0, 1, 160, 0xDEADBEEF)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short: 0 octets"),
        (PCMU[:11], "too short: 11 octets"),
        (b"\x40" + PCMU[1:], "version 1"),
        (b"\x00" + PCMU[1:], "version 0"),
        (b"\xc0" + PCMU[1:], "version 3"),
        (b"\x83" + PCMU[1:], "too short for 3 CSRC"),
        (b"\x90" + PCMU[1:12] + b"\xbe\xde", "too short for its header extension"),
        (b"\x90" + PCMU[1:12] + b"\xbe\xde\x00\x02abcd", "extension of 2 words overruns"),
        (b"\xa0" + PCMU[1:-1] + b"\x00", "padding count 0 invalid"),
        (b"\xa0" + PCMU[1:-1] + b"\x05", "padding count 5 invalid"),
        (b"\xa0" + PCMU[1:12], "padding count"),
    ],
)
def test_malformed_packets_raise_rtp_error(data: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        RtpPacket.parse(data)


@pytest.mark.parametrize("data", [b"", PCMU[:11], b"\x40" + PCMU[1:]])
def test_peek_rejects_short_and_wrong_version_packets(data: bytes) -> None:
    with pytest.raises(RtpError):
        peek(data)


def test_every_truncation_of_a_full_packet_raises_rtp_error() -> None:
    for end in range(len(FULL)):
        with pytest.raises(RtpError):
            RtpPacket.parse(FULL[:end])


@given(st.binary(max_size=80))
def test_arbitrary_bytes_never_raise_anything_but_rtp_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    assert RtpPacket.parse(bytes(packet)) == packet


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"payload_type": 128}, "payload type 128"),
        ({"sequence_number": 65536}, "sequence number"),
        ({"sequence_number": -1}, "sequence number"),
        ({"timestamp": 1 << 32}, "timestamp"),
        ({"ssrc": -1}, "SSRC"),
        ({"csrc": tuple(range(16))}, "16 CSRC"),
        ({"csrc": (1 << 32,)}, "CSRC must be"),
        ({"padding": 256}, "padding 256"),
        ({"extension": RtpExtension(0x10000)}, "extension profile"),
        ({"extension": RtpExtension(1, b"abc")}, "whole 32-bit words"),
    ],
)
def test_serialising_out_of_range_fields_raises_rtp_error(
    fields: dict[str, object], message: str
) -> None:
    base: dict[str, object] = {"payload_type": 0, "sequence_number": 0, "timestamp": 0, "ssrc": 0}
    packet = RtpPacket(**{**base, **fields})  # type: ignore[arg-type]
    with pytest.raises(RtpError, match=message):
        bytes(packet)


@pytest.mark.parametrize(
    ("second_octet", "rtcp"),
    [
        (200, True),  # SR
        (201, True),  # RR
        (202, True),  # SDES
        (203, True),  # BYE
        (192, True),  # lowest of RFC 5761's 192-223
        (223, True),  # highest
        (0, False),  # PCMU
        (0x80 | 8, False),  # PCMA with marker
        (101, False),  # telephone-event
        (0x80 | 96, False),  # dynamic type 96 with marker
        (63, False),
        (96, False),
    ],
)
def test_rtcp_is_told_from_rtp_by_payload_type_range(second_octet: int, rtcp: bool) -> None:
    assert is_rtcp(bytes((0x80, second_octet)) + bytes(10)) is rtcp


def test_rtcp_receiver_report_built_with_struct_is_rtcp() -> None:
    rr = struct.pack("!BBHI", 0x80, 201, 1, 0xDEADBEEF)
    assert is_rtcp(rr)
    assert not is_rtcp(PCMU)


def test_rtcp_demultiplexing_rejects_packets_too_short_to_tell() -> None:
    with pytest.raises(RtpError, match="too short to demultiplex"):
        is_rtcp(b"\x80")
