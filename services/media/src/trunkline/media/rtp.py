"""RTP packets (RFC 3550 section 5.1), parsed and serialised without I/O.

`RtpPacket.parse` / `bytes(packet)` handle the full fixed header, CSRC list, header
extension (RFC 3550 5.3.1) and padding; `peek` reads only the fields the relay's hot path
needs; `is_rtcp` tells RTCP from RTP on an rtcp-mux port (RFC 5761 section 4).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
HEADER_SIZE = 12
MAX_CSRC = 15

_FIXED = struct.Struct("!BBHII")
_EXT = struct.Struct("!HH")
_WORD = struct.Struct("!I")

Buffer = bytes | bytearray | memoryview


class RtpError(ValueError):
    """The bytes are not a well-formed RTP packet, or a field is out of range."""


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """RFC 3550 5.3.1 header extension: a 16-bit profile id and whole 32-bit words."""

    profile: int
    data: bytes = b""


@dataclass(slots=True)
class RtpPacket:
    """An RTP packet; `payload` is a memoryview into the parsed buffer (no copy)."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    payload: bytes | memoryview = b""
    # Number of padding octets including the final count octet (RFC 3550 5.1 "P"); 0 = none.
    padding: int = 0

    @classmethod
    def parse(cls, data: Buffer) -> RtpPacket:
        view = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
        size = len(view)
        if size < HEADER_SIZE:
            raise RtpError(f"RTP packet too short: {size} octets, header needs {HEADER_SIZE}")
        b0, b1, seq, ts, ssrc = _FIXED.unpack_from(view)
        version = b0 >> 6
        if version != RTP_VERSION:
            raise RtpError(f"RTP version {version}, expected {RTP_VERSION}")
        cc = b0 & 0x0F
        offset = HEADER_SIZE + 4 * cc
        if offset > size:
            raise RtpError(f"RTP packet too short for {cc} CSRC: {size} octets")
        csrc = struct.unpack_from(f"!{cc}I", view, HEADER_SIZE) if cc else ()
        extension = None
        if b0 & 0x10:
            # RFC 3550 5.3.1: 16-bit profile, 16-bit length in 32-bit words (excl. this word).
            if offset + 4 > size:
                raise RtpError("RTP packet too short for its header extension")
            profile, words = _EXT.unpack_from(view, offset)
            end = offset + 4 + 4 * words
            if end > size:
                raise RtpError(
                    f"RTP header extension of {words} words overruns the {size}-octet packet"
                )
            extension = RtpExtension(profile, bytes(view[offset + 4 : end]))
            offset = end
        padding = 0
        if b0 & 0x20:
            # RFC 3550 5.1: the last octet counts the padding octets, itself included.
            padding = view[size - 1]
            if padding == 0 or offset + padding > size:
                raise RtpError(
                    f"RTP padding count {padding} invalid for {size - offset} octets after header"
                )
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            marker=bool(b1 & 0x80),
            csrc=tuple(csrc),
            extension=extension,
            payload=view[offset : size - padding],
            padding=padding,
        )

    def __bytes__(self) -> bytes:
        self._check()
        b0 = RTP_VERSION << 6 | len(self.csrc)
        if self.padding:
            b0 |= 0x20
        if self.extension is not None:
            b0 |= 0x10
        parts = [
            _FIXED.pack(
                b0,
                self.payload_type | (0x80 if self.marker else 0),
                self.sequence_number,
                self.timestamp,
                self.ssrc,
            )
        ]
        parts.extend(_WORD.pack(c) for c in self.csrc)
        if self.extension is not None:
            parts.append(_EXT.pack(self.extension.profile, len(self.extension.data) // 4))
            parts.append(self.extension.data)
        parts.append(bytes(self.payload))
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)

    def _check(self) -> None:
        if not 0 <= self.payload_type <= 0x7F:
            raise RtpError(f"payload type {self.payload_type} not in 0-127")
        if not 0 <= self.sequence_number <= 0xFFFF:
            raise RtpError(f"sequence number {self.sequence_number} not in 0-65535")
        for name, value in (("timestamp", self.timestamp), ("SSRC", self.ssrc)):
            if not 0 <= value <= 0xFFFFFFFF:
                raise RtpError(f"{name} {value} not a 32-bit unsigned value")
        if len(self.csrc) > MAX_CSRC:
            raise RtpError(f"{len(self.csrc)} CSRC, at most {MAX_CSRC} fit the CC field")
        if any(not 0 <= c <= 0xFFFFFFFF for c in self.csrc):
            raise RtpError("CSRC must be 32-bit unsigned values")
        if not 0 <= self.padding <= 0xFF:
            raise RtpError(f"padding {self.padding} not in 0-255")
        ext = self.extension
        if ext is not None:
            if not 0 <= ext.profile <= 0xFFFF:
                raise RtpError(f"extension profile {ext.profile} not in 0-65535")
            if len(ext.data) % 4 or len(ext.data) > 4 * 0xFFFF:
                raise RtpError("extension data must be whole 32-bit words, at most 65535")


def peek(data: Buffer) -> tuple[int, int, int, int]:
    """`(payload_type, sequence_number, timestamp, ssrc)` of an RTP packet, for the hot path.

    Checks only the length and the version; the relay forwards the bytes unchanged.
    """
    if len(data) < HEADER_SIZE:
        raise RtpError(f"RTP packet too short: {len(data)} octets, header needs {HEADER_SIZE}")
    b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data)
    if b0 >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {b0 >> 6}, expected {RTP_VERSION}")
    return b1 & 0x7F, seq, ts, ssrc


def is_rtcp(data: Buffer) -> bool:
    """Whether a packet on an rtcp-mux port is RTCP rather than RTP.

    RFC 5761 4: RTCP packet types 192-223 appear as marker bit + payload type 64-95 in the
    RTP header's second octet, a range RTP payload types must not use under rtcp-mux.
    """
    if len(data) < 2:
        raise RtpError(f"packet too short to demultiplex: {len(data)} octets")
    return 64 <= (data[1] & 0x7F) <= 95
