"""SDP (RFC 4566) model and the offer/answer rules (RFC 3264) the relay applies.

Sans-I/O: bytes in, dataclasses out, and back. Attributes are kept as an ordered list of
raw ``name[:value]`` pairs, so whatever a user agent sends (``a=ssrc``, ``a=X-nat``,
``a=rtcp-fb``...) survives a round trip byte for byte; typed views (rtpmap, fmtp, rtcp,
direction, crypto) are read from that list on demand. Lines this model has no field for
(``i=``, ``u=``, ``e=``, ``p=``, ``z=``, ``k=``, ``r=``, unknown letters) are kept verbatim
and written back at their RFC 4566 section 5 position. Output always uses CRLF.
"""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

__all__ = [
    "SUPPORTED_CRYPTO_SUITES",
    "Attribute",
    "Bandwidth",
    "Codec",
    "Connection",
    "Crypto",
    "Direction",
    "MediaSection",
    "Origin",
    "Rtcp",
    "Sdp",
    "SdpError",
    "Timing",
    "answer_direction",
    "answer_for",
    "attributes_from",
    "filter_codecs",
    "rewrite",
    "select_crypto",
]


class SdpError(ValueError):
    """An SDP body the relay cannot use. ``str(error)`` is fit for a SIP 488 reason phrase."""


# RFC 4566 5: "<type>=<value>", type is exactly one case-significant letter.
_LINE = re.compile(r"([a-zA-Z])=(.*)\Z", re.DOTALL)
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+\Z")
# Session-level lines written before c= (RFC 4566 5: v o s i u e p c b t r z k a).
_SESSION_HEADER_EXTRA = frozenset("iuep")
_MEDIA_HEADER_EXTRA = frozenset("i")
_KNOWN_SESSION = frozenset("vosctbam")

PCMU = 0
PCMA = 8
# RFC 3551 table 4: the static payload types the policy cares about.
_STATIC_CODECS: dict[int, tuple[str, int]] = {PCMU: ("PCMU", 8000), PCMA: ("PCMA", 8000)}
_G711 = frozenset({("PCMU", 8000), ("PCMA", 8000)})
_TELEPHONE_EVENT = ("TELEPHONE-EVENT", 8000)
_RTP_PROTOS = frozenset({"RTP/AVP", "RTP/SAVP", "RTP/AVPF", "RTP/SAVPF"})
# Attributes whose value starts with a payload type and that die with it.
_PT_ATTRIBUTES = frozenset({"rtpmap", "fmtp", "rtcp-fb"})

SUPPORTED_CRYPTO_SUITES = frozenset({"AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"})
# RFC 4568 6.2.1: AES_CM_128 master key (16) + master salt (14).
_CRYPTO_KEY_SALT_LENGTH = 30
NO_COMMON_CODEC = "No common codec: PCMU or PCMA required"


def _int(text: str, what: str, low: int = 0, high: int | None = None) -> int:
    if not text.isascii() or not text.isdigit():
        raise SdpError(f"Bad SDP {what}: {text!r}")
    value = int(text)
    if value < low or (high is not None and value > high):
        raise SdpError(f"Bad SDP {what}: {text!r}")
    return value


def _fields(value: str, count: int, letter: str) -> list[str]:
    parts = value.split()
    if len(parts) != count:
        raise SdpError(f"Bad SDP {letter}= line")
    return parts


@dataclass(slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>``."""

    username: str = "-"
    session_id: str = "0"
    session_version: int = 0
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"  # noqa: S104 - an SDP value, not a bind address

    @classmethod
    def parse(cls, value: str) -> Origin:
        user, sid, version, net, addr_type, address = _fields(value, 6, "o")
        _int(sid, "session id")
        return cls(user, sid, _int(version, "session version"), net, addr_type, address)

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(slots=True)
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (multicast /ttl kept in address)."""

    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    @classmethod
    def parse(cls, value: str) -> Connection:
        net, addr_type, address = _fields(value, 3, "c")
        return cls(address, net, addr_type)

    @classmethod
    def for_address(cls, address: str) -> Connection:
        return cls(address, "IN", _addrtype(address))

    @property
    def is_hold(self) -> bool:
        """RFC 3264 8.4: the RFC 2543 way of putting a call on hold."""
        return self.address == "0.0.0.0"  # noqa: S104 - an SDP value, not a bind address

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(slots=True)
class Bandwidth:
    """``b=<bwtype>:<bandwidth>`` (AS, CT, TIAS, RR, RS...)."""

    bwtype: str
    value: int

    @classmethod
    def parse(cls, value: str) -> Bandwidth:
        bwtype, sep, amount = value.partition(":")
        if not sep or not _TOKEN.match(bwtype):
            raise SdpError("Bad SDP b= line")
        return cls(bwtype, _int(amount, "bandwidth"))

    def __str__(self) -> str:
        return f"{self.bwtype}:{self.value}"


@dataclass(slots=True)
class Timing:
    """``t=<start> <stop>`` with its ``r=`` lines kept verbatim."""

    start: int = 0
    stop: int = 0
    repeats: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, value: str) -> Timing:
        start, stop = _fields(value, 2, "t")
        return cls(_int(start, "start time"), _int(stop, "stop time"))


@dataclass(slots=True)
class Attribute:
    """``a=<name>`` (``value`` None) or ``a=<name>:<value>``, value kept verbatim."""

    name: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Attribute:
        name, sep, value = text.partition(":")
        if not name:
            raise SdpError("Bad SDP a= line")
        return cls(name, value if sep else None)

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


class Direction(enum.Enum):
    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def of(cls, sends: bool, receives: bool) -> Direction:
        if sends and receives:
            return cls.SENDRECV
        if sends:
            return cls.SENDONLY
        if receives:
            return cls.RECVONLY
        return cls.INACTIVE


_DIRECTIONS = frozenset(d.value for d in Direction)


@dataclass(frozen=True, slots=True)
class Codec:
    """One payload type as the offer describes it (rtpmap, or RFC 3551 for static types)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.encoding.upper(), self.clock_rate)


@dataclass(frozen=True, slots=True)
class Rtcp:
    """RFC 3605 ``a=rtcp:<port> [<nettype> <addrtype> <address>]``."""

    port: int
    connection: Connection | None = None

    @classmethod
    def parse(cls, value: str) -> Rtcp:
        parts = value.split()
        if len(parts) not in (1, 4):
            raise SdpError("Bad SDP a=rtcp attribute")
        port = _int(parts[0], "RTCP port", 0, 65535)
        if len(parts) == 1:
            return cls(port)
        return cls(port, Connection(parts[3], parts[1], parts[2]))

    def __str__(self) -> str:
        return str(self.port) if self.connection is None else f"{self.port} {self.connection}"


@dataclass(frozen=True, slots=True)
class Crypto:
    """RFC 4568 ``a=crypto:<tag> <suite> inline:<key||salt>[|<lifetime>][|<MKI>:<len>]``.

    Data only: the SRTP library does the cryptography.
    """

    tag: int
    suite: str
    key_salt: bytes
    lifetime: int | None = None
    mki: tuple[int, int] | None = None  # (value, length in bytes)
    session_params: tuple[str, ...] = ()
    extra_keys: int = 0  # further key-params after the first (only valid with MKI)

    @classmethod
    def parse(cls, value: str) -> Crypto:
        """Parse the syntax; :meth:`check` says whether the relay can use it."""
        parts = value.split()
        if len(parts) < 3:
            raise SdpError("Bad SDP a=crypto attribute")
        tag_text, suite, key_params, *session_params = parts
        tag = _int(tag_text, "crypto tag")
        if len(tag_text) > 9 or not _TOKEN.match(suite):
            raise SdpError("Bad SDP a=crypto attribute")
        keys = key_params.split(";")
        method, sep, info = keys[0].partition(":")
        if method != "inline" or not sep:
            raise SdpError("Bad SDP a=crypto key method")
        key_text, *rest = info.split("|")
        if len(rest) > 2:
            raise SdpError("Bad SDP a=crypto key parameters")
        try:
            key_salt = base64.b64decode(key_text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SdpError("Bad SDP a=crypto key: not base64") from exc
        lifetime: int | None = None
        mki: tuple[int, int] | None = None
        for item in rest:
            if ":" in item:
                if mki is not None:
                    raise SdpError("Bad SDP a=crypto MKI")
                mki_value, _, mki_length = item.partition(":")
                mki = (_int(mki_value, "crypto MKI"), _int(mki_length, "crypto MKI", 1, 128))
            elif lifetime is None and mki is None:
                lifetime = _lifetime(item)
            else:
                raise SdpError("Bad SDP a=crypto key parameters")
        return cls(tag, suite, key_salt, lifetime, mki, tuple(session_params), len(keys) - 1)

    def check(self) -> None:
        """Raise :class:`SdpError` unless this is a key the relay accepts."""
        if self.suite not in SUPPORTED_CRYPTO_SUITES:
            raise SdpError(f"Unsupported SRTP crypto suite {self.suite}")
        if self.mki is not None or self.extra_keys:
            raise SdpError("SRTP MKI not supported")
        if len(self.key_salt) != _CRYPTO_KEY_SALT_LENGTH:
            raise SdpError("Bad SRTP key length")
        if self.session_params:
            raise SdpError("SRTP session parameters not supported")

    def __str__(self) -> str:
        key = "inline:" + base64.b64encode(self.key_salt).decode("ascii")
        if self.lifetime is not None:
            exponent = self.lifetime.bit_length() - 1
            is_power = self.lifetime > 0 and 1 << exponent == self.lifetime
            key += f"|2^{exponent}" if is_power else f"|{self.lifetime}"
        if self.mki is not None:
            key += f"|{self.mki[0]}:{self.mki[1]}"
        return " ".join((str(self.tag), self.suite, key, *self.session_params))


def _lifetime(text: str) -> int:
    if text.startswith("2^"):
        return 1 << _int(text[2:], "crypto lifetime", 0, 64)
    return _int(text, "crypto lifetime", 1)


def _addrtype(address: str) -> str:
    try:
        return "IP6" if ipaddress.ip_address(address).version == 6 else "IP4"
    except ValueError:
        return "IP4"


def _attribute(attributes: Sequence[Attribute], name: str) -> Attribute | None:
    return next((a for a in attributes if a.name == name), None)


def _direction(attributes: Sequence[Attribute]) -> Direction | None:
    for attribute in attributes:
        if attribute.value is None and attribute.name in _DIRECTIONS:
            return Direction(attribute.name)
    return None


def _with_direction(attributes: Sequence[Attribute], direction: Direction) -> list[Attribute]:
    result: list[Attribute] = []
    placed = False
    for attribute in attributes:
        if attribute.value is None and attribute.name in _DIRECTIONS:
            if not placed:
                result.append(Attribute(direction.value))
                placed = True
        else:
            result.append(attribute)
    if not placed:
        result.append(Attribute(direction.value))
    return result


@dataclass(slots=True)
class MediaSection:
    """``m=<media> <port>[/<count>] <proto> <fmt> ...`` and the lines under it."""

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @classmethod
    def parse_m_line(cls, value: str) -> MediaSection:
        parts = value.split()
        if len(parts) < 4:
            raise SdpError("Bad SDP m= line")
        media, port_text, proto, *formats = parts
        port, sep, count = port_text.partition("/")
        return cls(
            media,
            _int(port, "media port", 0, 65535),
            proto,
            formats,
            _int(count, "port count", 1) if sep else None,
        )

    def m_line(self) -> str:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        return " ".join((self.media, port, self.proto, *self.formats))

    @property
    def is_rtp(self) -> bool:
        return self.proto.upper() in _RTP_PROTOS

    @property
    def is_srtp(self) -> bool:
        return self.proto.upper() in ("RTP/SAVP", "RTP/SAVPF")

    @property
    def payload_types(self) -> list[int]:
        return [_int(f, "payload type", 0, 127) for f in self.formats]

    def attribute(self, name: str) -> Attribute | None:
        return _attribute(self.attributes, name)

    def attributes_named(self, name: str) -> list[Attribute]:
        return [a for a in self.attributes if a.name == name]

    def codecs(self) -> list[Codec]:
        """The offered payload types in order; unknown dynamic ones have encoding ''."""
        rtpmaps: dict[int, Codec] = {}
        for attribute in self.attributes_named("rtpmap"):
            codec = _parse_rtpmap(attribute.value or "")
            rtpmaps.setdefault(codec.payload_type, codec)
        result: list[Codec] = []
        for pt in self.payload_types:
            if pt in rtpmaps:
                result.append(rtpmaps[pt])
            elif pt in _STATIC_CODECS:
                name, rate = _STATIC_CODECS[pt]
                result.append(Codec(pt, name, rate))
            else:
                result.append(Codec(pt, "", 0))
        return result

    def fmtp(self, payload_type: int) -> str | None:
        for attribute in self.attributes_named("fmtp"):
            pt, _, params = (attribute.value or "").partition(" ")
            if pt == str(payload_type):
                return params
        return None

    @property
    def ptime(self) -> int | None:
        attribute = self.attribute("ptime")
        return None if attribute is None else _int(attribute.value or "", "ptime", 1)

    @property
    def rtcp(self) -> Rtcp | None:
        attribute = self.attribute("rtcp")
        return None if attribute is None else Rtcp.parse(attribute.value or "")

    @property
    def rtcp_mux(self) -> bool:
        return any(a.name == "rtcp-mux" for a in self.attributes)

    def cryptos(self) -> list[Crypto]:
        return [Crypto.parse(a.value or "") for a in self.attributes_named("crypto")]


def _parse_rtpmap(value: str) -> Codec:
    # RFC 4566 6: a=rtpmap:<payload type> <encoding name>/<clock rate>[/<parameters>]
    pt_text, _, encoding = value.partition(" ")
    pieces = encoding.strip().split("/")
    if len(pieces) not in (2, 3) or not pieces[0]:
        raise SdpError("Bad SDP a=rtpmap attribute")
    channels = _int(pieces[2], "rtpmap channels", 1) if len(pieces) == 3 else None
    return Codec(
        _int(pt_text, "payload type", 0, 127),
        pieces[0],
        _int(pieces[1], "clock rate", 1),
        channels,
    )


@dataclass(slots=True)
class Sdp:
    """A session description: session-level lines and its media sections."""

    origin: Origin
    name: str = "-"
    version: int = 0
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=lambda: [Timing()])
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaSection] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes | str) -> Sdp:
        """Parse an SDP body; raises only :class:`SdpError`."""
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SdpError("Bad SDP: not UTF-8") from exc
        lines = [line for line in re.split(r"\r?\n", data) if line]
        return cls._from_lines(lines)

    @classmethod
    def _from_lines(cls, lines: list[str]) -> Sdp:
        parsed: list[tuple[str, str]] = []
        for line in lines:
            match = _LINE.match(line)
            if match is None or "\r" in line or "\0" in line:
                raise SdpError("Bad SDP line")
            parsed.append((match.group(1), match.group(2)))
        if len(parsed) < 3 or parsed[0] != ("v", "0"):
            raise SdpError("Bad SDP: must start with v=0")
        if parsed[1][0] != "o" or parsed[2][0] != "s":
            raise SdpError("Bad SDP: o= and s= must follow v=")
        sdp = cls(Origin.parse(parsed[1][1]), parsed[2][1], timings=[])
        section: MediaSection | None = None
        for (letter, value), line in zip(parsed[3:], lines[3:], strict=True):
            if letter == "m":
                section = MediaSection.parse_m_line(value)
                sdp.media.append(section)
            elif section is not None:
                _add_media_line(section, letter, value, line)
            else:
                _add_session_line(sdp, letter, value, line)
        return sdp

    def lines(self) -> Iterator[str]:
        yield f"v={self.version}"
        yield f"o={self.origin}"
        yield f"s={self.name}"
        yield from (x for x in self.extra if x[0] in _SESSION_HEADER_EXTRA)
        if self.connection is not None:
            yield f"c={self.connection}"
        yield from (f"b={b}" for b in self.bandwidths)
        for timing in self.timings:
            yield f"t={timing.start} {timing.stop}"
            yield from timing.repeats
        yield from (x for x in self.extra if x[0] not in _SESSION_HEADER_EXTRA)
        yield from (f"a={a}" for a in self.attributes)
        for section in self.media:
            yield f"m={section.m_line()}"
            yield from (x for x in section.extra if x[0] in _MEDIA_HEADER_EXTRA)
            if section.connection is not None:
                yield f"c={section.connection}"
            yield from (f"b={b}" for b in section.bandwidths)
            yield from (x for x in section.extra if x[0] not in _MEDIA_HEADER_EXTRA)
            yield from (f"a={a}" for a in section.attributes)

    def __str__(self) -> str:
        return "".join(f"{line}\r\n" for line in self.lines())

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8")

    def connection_for(self, index: int) -> Connection | None:
        """RFC 4566 5.7: the media-level c= wins over the session-level one."""
        return self.media[index].connection or self.connection

    def direction_for(self, index: int) -> Direction:
        """RFC 3264 5.1: media-level, else session-level, else sendrecv."""
        return (
            _direction(self.media[index].attributes)
            or _direction(self.attributes)
            or Direction.SENDRECV
        )

    def is_hold_for(self, index: int) -> bool:
        """Hold is sendonly/inactive (RFC 3264 8.4) or c=0.0.0.0 (RFC 2543)."""
        connection = self.connection_for(index)
        if connection is not None and connection.is_hold:
            return True
        return self.direction_for(index) in (Direction.SENDONLY, Direction.INACTIVE)

    @property
    def is_hold(self) -> bool:
        """True when every active stream is held (a hold re-offer)."""
        active = [i for i, m in enumerate(self.media) if m.port != 0]
        return bool(active) and all(self.is_hold_for(i) for i in active)

    def with_direction(self, index: int, direction: Direction) -> Sdp:
        """A copy where stream ``index`` carries ``direction`` explicitly."""
        media = list(self.media)
        media[index] = replace(
            media[index], attributes=_with_direction(media[index].attributes, direction)
        )
        return replace(self, media=media)


def _add_session_line(sdp: Sdp, letter: str, value: str, line: str) -> None:
    if letter == "c":
        if sdp.connection is not None:
            raise SdpError("Bad SDP: two session c= lines")
        sdp.connection = Connection.parse(value)
    elif letter == "b":
        sdp.bandwidths.append(Bandwidth.parse(value))
    elif letter == "t":
        sdp.timings.append(Timing.parse(value))
    elif letter == "r" and sdp.timings:
        sdp.timings[-1].repeats.append(line)
    elif letter == "a":
        sdp.attributes.append(Attribute.parse(value))
    elif letter in _KNOWN_SESSION:
        raise SdpError(f"Bad SDP: unexpected {letter}= line")
    else:
        sdp.extra.append(line)


def _add_media_line(section: MediaSection, letter: str, value: str, line: str) -> None:
    if letter == "c":
        if section.connection is not None:
            raise SdpError("Bad SDP: two media c= lines")
        section.connection = Connection.parse(value)
    elif letter == "b":
        section.bandwidths.append(Bandwidth.parse(value))
    elif letter == "a":
        section.attributes.append(Attribute.parse(value))
    elif letter in _KNOWN_SESSION:
        raise SdpError(f"Bad SDP: unexpected {letter}= line in media")
    else:
        section.extra.append(line)


# --- what the relay does with an SDP ----------------------------------------------------


def _is_held_address(connection: Connection | None) -> bool:
    return connection is not None and connection.is_hold


def rewrite(sdp: Sdp, address: str, ports: Sequence[int], *, replace_origin: bool = True) -> Sdp:
    """Point every stream at the relay: ``address`` and one RTP port per m= line.

    Codec order and every attribute are kept. A stream with port 0 (rejected) keeps port 0.
    ``a=rtcp`` is rewritten to ``port + 1`` on the relay, or to the RTP port itself when
    ``a=rtcp-mux`` is present (RFC 5761 5.1.3); rtcp-mux is kept so the far end may accept
    it. A c=0.0.0.0 hold (RFC 3264 8.4) is kept so the far end still sees the hold.
    """
    if len(ports) != len(sdp.media):
        raise ValueError(f"{len(sdp.media)} media sections but {len(ports)} ports")
    relay = Connection.for_address(address)
    session_held = _is_held_address(sdp.connection)
    media: list[MediaSection] = []
    for section, port in zip(sdp.media, ports, strict=True):
        if not 0 < port < 65535:
            raise ValueError(f"bad relay port {port}")
        if section.port == 0:
            media.append(replace(section, attributes=list(section.attributes)))
            continue
        held = _is_held_address(section.connection) or (section.connection is None and session_held)
        connection: Connection | None
        if section.connection is None:
            connection = None
        else:
            connection = replace(section.connection) if held else relay
        attributes: list[Attribute] = []
        for attribute in section.attributes:
            if attribute.name == "rtcp":
                rtcp_port = port if section.rtcp_mux else port + 1
                kept = section.connection if held and section.connection else relay
                has_address = Rtcp.parse(attribute.value or "").connection is not None
                rtcp = Rtcp(rtcp_port, kept if has_address else None)
                attributes.append(Attribute("rtcp", str(rtcp)))
            else:
                attributes.append(attribute)
        media.append(replace(section, port=port, connection=connection, attributes=attributes))
    # The session c= is the relay unless it carries a hold, or is needed and missing.
    session_connection = sdp.connection
    needs_session = any(m.connection is None for m in media)
    if session_connection is not None:
        if not session_held:
            session_connection = relay
    elif needs_session:
        session_connection = relay
    origin = sdp.origin
    if replace_origin:
        origin = replace(origin, addrtype=relay.addrtype, address=address)
    return replace(
        sdp,
        origin=origin,
        connection=session_connection,
        media=media,
        attributes=list(sdp.attributes),
    )


def _keep(codec: Codec) -> bool:
    if codec.key in _G711 and codec.channels in (None, 1):
        return True
    # RFC 4733 7.1.1: telephone-event has a dynamic payload type; 8 kHz matches G.711.
    return codec.key == _TELEPHONE_EVENT and 96 <= codec.payload_type <= 127


def _filter_section(section: MediaSection) -> MediaSection:
    codecs = section.codecs()
    kept = [c for c in codecs if _keep(c)]
    if not any(c.key in _G711 for c in kept):
        raise SdpError(NO_COMMON_CODEC)
    kept_pts = {str(c.payload_type) for c in kept}
    attributes: list[Attribute] = []
    for attribute in section.attributes:
        if attribute.name in _PT_ATTRIBUTES and attribute.value is not None:
            pt = attribute.value.split(" ", 1)[0]
            if pt != "*" and pt not in kept_pts:
                continue
        attributes.append(attribute)
    formats = [f for f in section.formats if f in kept_pts]
    return replace(section, formats=formats, attributes=attributes)


def filter_codecs(sdp: Sdp) -> Sdp:
    """Apply the relay's codec policy, keeping the offerer's order.

    PCMU (0), PCMA (8) and telephone-event/8000 (RFC 4733) stay; every other payload
    type goes, with its rtpmap, fmtp and rtcp-fb lines. Non-audio or non-RTP streams are
    disabled with port 0 (RFC 3264 8.2). Raises :class:`SdpError` with a 488-ready reason
    when no active audio stream offers PCMU or PCMA.
    """
    media: list[MediaSection] = []
    usable = False
    for section in sdp.media:
        if section.port == 0:
            media.append(section)
        elif section.media != "audio" or not section.is_rtp:
            media.append(replace(section, port=0))
        else:
            media.append(_filter_section(section))
            usable = True
    if not usable:
        raise SdpError(NO_COMMON_CODEC)
    return replace(sdp, media=media)


def answer_direction(offered: Direction, wanted: Direction = Direction.SENDRECV) -> Direction:
    """RFC 3264 6.1: the answerer may only send where the offerer receives, and back."""
    return Direction.of(
        sends=wanted.sends and offered.receives, receives=wanted.receives and offered.sends
    )


def answer_for(offer: Sdp, answer: Sdp) -> Sdp:
    """Check the far end's ``answer`` against the ``offer`` it answers (RFC 3264 6).

    Same number and kinds of m= lines; each accepted stream's codecs are among the
    offered ones (compared by encoding and clock rate, as RFC 3264 6.1 lets dynamic
    payload types be renumbered); each direction is one the offer allows. Returns the
    answer unchanged; raises :class:`SdpError` otherwise.
    """
    if len(answer.media) != len(offer.media):
        raise SdpError("Answer does not match offer: wrong number of media streams")
    accepted = False
    for index, (offered, answered) in enumerate(zip(offer.media, answer.media, strict=True)):
        if answered.media != offered.media:
            raise SdpError("Answer does not match offer: media type changed")
        if answered.port == 0:
            continue
        if offered.port == 0:
            raise SdpError("Answer does not match offer: rejected stream accepted")
        if not answered.is_rtp:
            continue
        offered_keys = {c.key for c in offered.codecs()}
        answered_codecs = answered.codecs()
        if not all(c.key in offered_keys for c in answered_codecs):
            raise SdpError("Answer does not match offer: codec not offered")
        direction = answer.direction_for(index)
        allowed = answer_direction(offer.direction_for(index), direction)
        if direction is not allowed:
            raise SdpError(f"Answer does not match offer: direction {direction.value}")
        if any(c.key in _G711 for c in answered_codecs):
            accepted = True
    if not accepted:
        raise SdpError(NO_COMMON_CODEC)
    return answer


def select_crypto(section: MediaSection) -> Crypto:
    """The first ``a=crypto`` the relay accepts (RFC 4568 7.1.1 lets the answerer pick).

    Raises :class:`SdpError` with the first refusal's reason when none is acceptable.
    """
    first_error: SdpError | None = None
    for crypto in section.cryptos():
        try:
            crypto.check()
        except SdpError as error:
            first_error = first_error or error
        else:
            return crypto
    raise first_error or SdpError("No SRTP crypto attribute offered")


def attributes_from(texts: Iterable[str]) -> list[Attribute]:
    """Attributes from ``name[:value]`` texts, for building SDPs in code."""
    return [Attribute.parse(text) for text in texts]
