"""One relayed call: its two legs and the offer/answer rules that set them up (RFC 3264).

Sans-I/O: these classes turn SDPs into SDPs and into per-leg relay settings (where to send,
which SRTP keys); the relay (`relay.py`) owns the sockets and reads the settings per packet.

A call has two legs, named like rtpengine names them: the leg of the first offer's sender
(the offerer, by its From tag) and the leg of the side that answers (by its To tag). The
relay faces each leg with its own port pair; what a leg sends arrives on its own port and
leaves through the other leg's port, so each peer sees one address for the relay.

RFC 4568 6.1: an ``a=crypto`` line carries the key its sender encrypts with. So a leg's
inbound SRTP session uses the key in that leg's SDP, and its outbound session uses the key
the relay put in the SDP it sent to that leg.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from trunkline.media import sdp as sdpmod
from trunkline.media.latching import Address, Latch, LatchingPolicy
from trunkline.media.ports import PortAllocation
from trunkline.media.sdp import Crypto, MediaSection, Sdp, SdpError
from trunkline.media.srtp import SrtpSession, new_crypto
from trunkline.media.stats import LegStats

__all__ = ["Call", "Leg", "LegPolicy", "MediaError", "Reason", "Role", "Transport", "new_call"]

DEFAULT_SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")


class Transport(enum.Enum):
    UNSPECIFIED = 0
    RTP = 1
    SRTP = 2


class Role(enum.Enum):
    OFFERER = "offerer"
    ANSWERER = "answerer"


class Reason(enum.Enum):
    """Why a request was refused; the gRPC layer maps each to a status code."""

    BAD_SDP = "bad_sdp"  # INVALID_ARGUMENT (SIP 488)
    SRTP = "srtp"  # FAILED_PRECONDITION (SIP 488)
    NOT_FOUND = "not_found"  # NOT_FOUND
    NO_PORTS = "no_ports"  # RESOURCE_EXHAUSTED (SIP 503)


class MediaError(Exception):
    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class LegPolicy:
    symmetric_rtp: bool = False
    transport: Transport = Transport.UNSPECIFIED
    crypto_suites: tuple[str, ...] = ()


class Leg:
    """What the relay knows of one side of the call. Read per packet by the relay."""

    __slots__ = (
        "allocation",
        "chosen_local_crypto",
        "dest",
        "dropped",
        "first_packet_seen",
        "last_rtp",
        "latch",
        "local_cryptos",
        "policy",
        "remote_crypto",
        "role",
        "rtcp_dest",
        "rtcp_mux",
        "rtcp_packets",
        "sdp_rtcp",
        "sends",
        "srtp",
        "srtp_failure_reported",
        "srtp_in",
        "srtp_out",
        "stats",
        "tag",
        "timed_out",
    )

    def __init__(
        self, tag: str, role: Role, policy: LegPolicy, allocation: PortAllocation, now: float
    ) -> None:
        self.tag = tag
        self.role = role
        self.policy = policy
        self.allocation = allocation
        self.latch = Latch(None, LatchingPolicy(symmetric=policy.symmetric_rtp))
        self.stats = LegStats()
        # Where media for this leg goes now (the latch's send_to, cached for the hot path).
        self.dest: Address | None = None
        self.rtcp_dest: Address | None = None
        self.sdp_rtcp: Address | None = None
        self.rtcp_mux = False
        self.srtp = False
        self.srtp_in: SrtpSession | None = None
        self.srtp_out: SrtpSession | None = None
        # The keys the relay offered to this leg, and the one in use.
        self.local_cryptos: list[Crypto] = []
        self.chosen_local_crypto: Crypto | None = None
        # The key in the leg's own SDP, that srtp_in was built with.
        self.remote_crypto: Crypto | None = None
        self.rtcp_packets = 0
        self.dropped = 0
        self.first_packet_seen = False
        self.srtp_failure_reported = False
        self.last_rtp = now
        self.timed_out = False
        # Whether this leg's SDP says it sends media (not recvonly/inactive/held).
        self.sends = True

    @property
    def local_port(self) -> int:
        return self.allocation.rtp

    def refresh_dest(self) -> None:
        """Recompute the cached send-to addresses after an SDP change or a latch."""
        self.dest = self.latch.send_to
        latched = self.latch.latched
        if self.dest is None:
            self.rtcp_dest = None
        elif self.rtcp_mux:
            self.rtcp_dest = self.dest
        elif latched is not None:
            # RFC 3550 11: RTCP on the next port up from where the peer really sends RTP.
            self.rtcp_dest = (latched[0], latched[1] + 1)
        else:
            self.rtcp_dest = self.sdp_rtcp


@dataclass
class _PendingOffer:
    """The offer the relay sent on and is waiting an answer to."""

    sender: Leg
    receiver: Leg
    sent: Sdp  # what the relay sent to the receiver
    index: int  # the relayed stream's m= line


@dataclass
class Call:
    """A call's legs and its offer/answer state."""

    call_id: str
    offerer: Leg
    answerer: Leg
    address: str
    media_timeout: float
    recording: bool = False
    index: int = 0
    pending: _PendingOffer | None = None
    answered: bool = False
    created: float = 0.0
    legs: tuple[Leg, Leg] = field(init=False)

    def __post_init__(self) -> None:
        self.legs = (self.offerer, self.answerer)

    # --- offers -----------------------------------------------------------------------

    @staticmethod
    def parse_offer(data: bytes) -> tuple[Sdp, int]:
        """Parse and filter an offer; the index of the stream the relay carries."""
        try:
            parsed = Sdp.parse(data)
            audio = [i for i, m in enumerate(parsed.media) if m.media == "audio"]
            if audio and all(parsed.media[i].port == 0 for i in audio):
                # RFC 3264 8.2: a re-offer removing the stream (new_call refuses it).
                return _disable_other_streams(parsed, audio[0]), audio[0]
            offer = sdpmod.filter_codecs(parsed)
        except SdpError as error:
            raise MediaError(Reason.BAD_SDP, str(error)) from error
        index = _relayed_stream(offer)
        return _disable_other_streams(offer, index), index

    def leg_by_tag(self, tag: str) -> Leg:
        for leg in self.legs:
            if leg.tag == tag:
                return leg
        raise MediaError(Reason.NOT_FOUND, f"Call {self.call_id} has no leg with tag {tag!r}")

    def other(self, leg: Leg) -> Leg:
        return self.answerer if leg is self.offerer else self.offerer

    def offer(self, sender: Leg, offer: Sdp, index: int) -> bytes:
        """Apply ``sender``'s offer; return the SDP for the other leg."""
        receiver = self.other(sender)
        section = offer.media[index]
        if section.port != 0:
            _check_srtp_policy(sender, section)
        _validate(section)
        _apply_remote(sender, offer, index)
        _apply_remote_crypto(sender, section)
        if receiver.chosen_local_crypto is not None:
            receiver.local_cryptos = [receiver.chosen_local_crypto]
        elif receiver.srtp and not receiver.local_cryptos:
            suites = receiver.policy.crypto_suites or DEFAULT_SUITES
            receiver.local_cryptos = [new_crypto(n, s) for n, s in enumerate(suites, 1)]
        sent = _for_leg(offer, index, receiver, self.address, receiver.local_cryptos)
        self.index = index
        self.pending = _PendingOffer(sender, receiver, sent, index)
        return bytes(sent)

    # --- answers ----------------------------------------------------------------------

    def answer(self, answerer: Leg, data: bytes) -> bytes:
        """Apply the answer of ``answerer`` to the pending offer; return the SDP for the offerer."""
        pending = self.pending
        if pending is None or pending.receiver is not answerer:
            raise MediaError(Reason.NOT_FOUND, f"Call {self.call_id} has no offer to answer")
        index = pending.index
        try:
            parsed = Sdp.parse(data)
            if pending.sent.media[index].port == 0:
                if len(parsed.media) != len(pending.sent.media) or any(
                    m.port for m in parsed.media
                ):
                    raise SdpError("Answer does not match offer: removed stream accepted")
                answer = parsed
            else:
                answer = sdpmod.answer_for(pending.sent, parsed)
        except SdpError as error:
            raise MediaError(Reason.BAD_SDP, str(error)) from error
        section = answer.media[index]
        _validate(section)
        if section.port != 0:
            if section.is_srtp != answerer.srtp:
                wanted = "RTP/SAVP" if answerer.srtp else "RTP/AVP"
                raise MediaError(Reason.SRTP, f"Answer does not match offer: {wanted} expected")
            if answerer.srtp:
                _choose_local_crypto(answerer, section)
        _apply_remote(answerer, answer, index)
        _apply_remote_crypto(answerer, section)
        sender = pending.sender
        if sender.rtcp_mux and not section.rtcp_mux:
            # RFC 5761 5.1.1: without a=rtcp-mux in the answer the offerer does not multiplex.
            sender.rtcp_mux = False
            sender.refresh_dest()
        cryptos = [sender.chosen_local_crypto] if sender.chosen_local_crypto else []
        result = _for_leg(answer, index, sender, self.address, cryptos)
        self.answered = True
        return bytes(result)


def _relayed_stream(offer: Sdp) -> int:
    for index, section in enumerate(offer.media):
        if section.port != 0 and section.media == "audio" and section.is_rtp:
            return index
    # filter_codecs refuses an offer without an active audio stream, but a re-offer may
    # put the stream on port 0 (RFC 3264 8.2: removing it) and still be relayed as such.
    for index, section in enumerate(offer.media):
        if section.media == "audio":
            return index
    raise MediaError(Reason.BAD_SDP, sdpmod.NO_COMMON_CODEC)


def _disable_other_streams(offer: Sdp, index: int) -> Sdp:
    # One audio stream is relayed; RFC 3264 8.2 lets the relay reject the others (port 0).
    media = [
        section if i == index or section.port == 0 else replace(section, port=0)
        for i, section in enumerate(offer.media)
    ]
    return replace(offer, media=media)


def _validate(section: MediaSection) -> None:
    """Read what the apply steps read, so a refusal comes before any change (RFC 3264 8)."""
    try:
        _ = section.rtcp
    except SdpError as error:
        raise MediaError(Reason.BAD_SDP, str(error)) from error
    if section.port != 0 and section.is_srtp:
        try:
            section.cryptos()
            sdpmod.select_crypto(section)
        except SdpError as error:
            raise MediaError(Reason.SRTP, str(error)) from error


def _check_srtp_policy(sender: Leg, section: MediaSection) -> None:
    # A secure leg stays secure: its first offer and any later re-offer must carry SRTP.
    required = sender.policy.transport is Transport.SRTP
    if required and (not section.is_srtp or not section.attributes_named("crypto")):
        raise MediaError(Reason.SRTP, "SRTP required: the offer carries no a=crypto")


def _apply_remote(leg: Leg, description: Sdp, index: int) -> None:
    """Take the leg's address, RTCP address, rtcp-mux and direction from its own SDP."""
    section = description.media[index]
    connection = description.connection_for(index)
    direction = description.direction_for(index)
    held = connection is not None and connection.is_hold
    leg.sends = section.port != 0 and not held and direction.sends
    if section.port == 0 or connection is None:
        address: Address | None = None
    else:
        address = (connection.address, section.port)
    leg.latch.update_sdp(address)
    leg.rtcp_mux = section.rtcp_mux
    rtcp = section.rtcp
    if address is None:
        leg.sdp_rtcp = None
    elif rtcp is not None:
        host = rtcp.connection.address if rtcp.connection is not None else address[0]
        leg.sdp_rtcp = (host, rtcp.port)
    else:
        leg.sdp_rtcp = (address[0], address[1] + 1)
    leg.refresh_dest()


def _apply_remote_crypto(leg: Leg, section: MediaSection) -> None:
    """The leg's own key decrypts what it sends (RFC 4568 6.1)."""
    if section.port == 0 or not section.is_srtp:
        if section.port != 0:
            leg.srtp = False
            leg.srtp_in = leg.srtp_out = None
        return
    try:
        remote = sdpmod.select_crypto(section)
    except SdpError as error:
        raise MediaError(Reason.SRTP, str(error)) from error
    leg.srtp = True
    old = leg.remote_crypto
    if (
        leg.srtp_in is None
        or old is None
        or (old.suite, old.key_salt) != (remote.suite, remote.key_salt)
    ):
        leg.srtp_in = SrtpSession.inbound(remote)
    leg.remote_crypto = remote
    local = leg.chosen_local_crypto
    if local is None or local.suite != remote.suite:
        local = next((c for c in leg.local_cryptos if c.suite == remote.suite), None)
        if local is None:
            local = new_crypto(remote.tag, remote.suite)
    # RFC 4568 7.1.2: the answer's crypto line carries the tag of the accepted offer line.
    local = replace(local, tag=remote.tag)
    chosen = leg.chosen_local_crypto
    if leg.srtp_out is None or chosen is None or chosen.key_salt != local.key_salt:
        leg.srtp_out = SrtpSession.outbound(local)
    leg.chosen_local_crypto = local


def _choose_local_crypto(leg: Leg, section: MediaSection) -> None:
    """The answerer accepted one of the relay's a=crypto lines: that key is the outbound one."""
    answered = section.cryptos()
    if not answered:
        raise MediaError(Reason.SRTP, "Answer does not match offer: no a=crypto")
    tag = answered[0].tag
    chosen = next((c for c in leg.local_cryptos if c.tag == tag), None)
    if chosen is None or chosen.suite != answered[0].suite:
        raise MediaError(Reason.SRTP, "Answer does not match offer: unknown a=crypto tag")
    old = leg.chosen_local_crypto
    if leg.srtp_out is None or old is None or old.key_salt != chosen.key_salt:
        leg.srtp_out = SrtpSession.outbound(chosen)
    leg.chosen_local_crypto = chosen


def _for_leg(
    description: Sdp, index: int, leg: Leg, address: str, cryptos: Sequence[Crypto]
) -> Sdp:
    """The SDP the relay sends to ``leg``: the relay's address and ports, the leg's transport."""
    media: list[MediaSection] = []
    for i, section in enumerate(description.media):
        if i != index or section.port == 0:
            media.append(section)
            continue
        attributes = [a for a in section.attributes if a.name != "crypto"]
        if leg.srtp:
            attributes += [sdpmod.Attribute("crypto", str(c)) for c in cryptos]
        media.append(replace(section, proto=_proto(section.proto, leg.srtp), attributes=attributes))
    ports = [leg.allocation.rtp] * len(media)
    return sdpmod.rewrite(replace(description, media=media), address, ports)


def _proto(proto: str, srtp: bool) -> str:
    feedback = proto.upper().endswith("F")
    if srtp:
        return "RTP/SAVPF" if feedback else "RTP/SAVP"
    return "RTP/AVPF" if feedback else "RTP/AVP"


def new_call(
    call_id: str,
    from_tag: str,
    offer: Sdp,
    index: int,
    policies: tuple[LegPolicy, LegPolicy],
    allocations: tuple[PortAllocation, PortAllocation],
    *,
    address: str,
    media_timeout: float,
    now: float,
) -> Call:
    """A call for a first offer: the offerer's leg, and the answerer's leg (tag unknown yet)."""
    offerer = Leg(from_tag, Role.OFFERER, policies[0], allocations[0], now)
    answerer = Leg("", Role.ANSWERER, policies[1], allocations[1], now)
    section = offer.media[index]
    if policies[1].transport is Transport.UNSPECIFIED:
        answerer.srtp = section.is_srtp
    else:
        answerer.srtp = policies[1].transport is Transport.SRTP
    return Call(call_id, offerer, answerer, address, media_timeout, created=now)
