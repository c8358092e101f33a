"""The offer/answer model of one relayed call (RFC 3264, RFC 4566, RFC 4568 SDES).

Driven the way ``relay.py`` drives it: ``Call.parse_offer`` then ``new_call`` and
``call.offer(call.offerer, ...)`` give the SDP for leg B; B's answer goes through
``call.answer(call.answerer, ...)`` and gives the SDP for leg A. Re-offers come from either
leg through ``call.leg_by_tag``. No sockets, no sleeps: SRTP keys are checked by running
packets through the legs' libsrtp sessions directly.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from trunkline.media.call import (
    Call,
    LegPolicy,
    MediaError,
    Reason,
    Role,
    Transport,
    new_call,
)
from trunkline.media.ports import PortAllocation
from trunkline.media.sdp import Connection, Crypto, Direction, Rtcp, Sdp
from trunkline.media.srtp import SrtpSession, new_crypto

GOLDEN = Path(__file__).parent / "golden_sdp"
RELAY = "198.51.100.250"
A_HOST = "203.0.113.10"
B_HOST = "192.0.2.50"
A_PORT = 17254
B_PORT = 5004
A_TAG = "tag-a"
B_TAG = "tag-b"
ALLOC_A = PortAllocation(30000, 30001)
ALLOC_B = PortAllocation(30002, 30003)
SHA1_80 = "AES_CM_128_HMAC_SHA1_80"
SHA1_32 = "AES_CM_128_HMAC_SHA1_32"


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def body(
    host: str,
    port: int,
    *,
    proto: str = "RTP/AVP",
    formats: str = "0 8 101",
    lines: Sequence[str] = (),
    version: int = 1,
    direction: str | None = "sendrecv",
) -> bytes:
    """An SDP in the shape Asterisk and rtpengine send: session c=, one audio stream."""
    text = [
        "v=0",
        f"o=- 4711 {version} IN IP4 {host}",
        "s=-",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} {proto} {formats}",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        *lines,
    ]
    if direction is not None:
        text.append(f"a={direction}")
    return "".join(f"{line}\r\n" for line in text).encode()


def crypto_line(crypto: Crypto) -> str:
    return f"a=crypto:{crypto}"


def start(
    offer: bytes,
    offerer: LegPolicy | None = None,
    answerer: LegPolicy | None = None,
) -> tuple[Call, Sdp]:
    """A new call for A's first offer; the call and the SDP the relay sends to B."""
    parsed, index = Call.parse_offer(offer)
    call = new_call(
        "call-1@example.com",
        A_TAG,
        parsed,
        index,
        (offerer or LegPolicy(), answerer or LegPolicy()),
        (ALLOC_A, ALLOC_B),
        address=RELAY,
        media_timeout=30.0,
        now=100.0,
    )
    return call, Sdp.parse(call.offer(call.offerer, parsed, index))


def answer(call: Call, data: bytes) -> Sdp:
    """B's answer to the pending offer, as the relay applies it; the SDP for A."""
    if call.answerer.tag == "":
        call.answerer.tag = B_TAG
    return Sdp.parse(call.answer(call.answerer, data))


def reoffer(call: Call, tag: str, data: bytes) -> Sdp:
    """A re-offer from the leg with ``tag``; the SDP for the other leg."""
    parsed, index = Call.parse_offer(data)
    return Sdp.parse(call.offer(call.leg_by_tag(tag), parsed, index))


def established(
    offer: bytes | None = None, answer_body: bytes | None = None
) -> tuple[Call, Sdp, Sdp]:
    """A plain RTP call A -> B, answered; the call, the SDP to B and the SDP to A."""
    call, to_b = start(offer or body(A_HOST, A_PORT))
    to_a = answer(call, answer_body or body(B_HOST, B_PORT))
    return call, to_b, to_a


def rtp(seq: int, ssrc: int = 0x1234ABCD, payload: bytes = b"\xd5" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, 8, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc) + payload


def attribute_texts(sdp: Sdp, index: int = 0) -> list[str]:
    return [str(a) for a in sdp.media[index].attributes]


@contextmanager
def raises(reason: Reason) -> Iterator[pytest.ExceptionInfo[MediaError]]:
    """Expect a MediaError for ``reason``; the gRPC layer maps the reason to a status."""
    with pytest.raises(MediaError) as caught:
        yield caught
    error = caught.value
    assert error.reason is reason, f"{error.reason} ({error.message}), not {reason}"


# --- the SDP each leg receives ------------------------------------------------------------


def test_offer_to_b_names_the_relay_in_c_and_o_and_the_b_facing_port() -> None:
    _, to_b = start(golden("asterisk-offer.sdp"))
    assert to_b.connection == Connection(RELAY)
    assert to_b.origin.address == RELAY
    assert to_b.media[0].port == ALLOC_B.rtp
    assert A_HOST not in str(to_b)


def test_offer_to_b_keeps_the_offerers_origin_session_and_version() -> None:
    _, to_b = start(golden("asterisk-offer.sdp"))
    assert (to_b.origin.session_id, to_b.origin.session_version) == ("1722246930", 1722246930)


def test_answer_to_a_names_the_relay_and_the_a_facing_port() -> None:
    _, _, to_a = established()
    assert to_a.connection == Connection(RELAY)
    assert to_a.origin.address == RELAY
    assert to_a.media[0].port == ALLOC_A.rtp
    assert B_HOST not in str(to_a)


def test_media_level_connection_is_rewritten_to_the_relay() -> None:
    _, to_b = start(golden("pjsua2-captured-offer.sdp"))
    assert to_b.connection is None
    assert to_b.media[0].connection == Connection(RELAY)
    assert to_b.connection_for(0) == Connection(RELAY)
    assert "192.0.2.2" not in str(to_b)


def test_offer_keeps_codec_order_and_drops_other_codecs_with_their_rtpmap_and_fmtp() -> None:
    _, to_b = start(golden("asterisk-offer.sdp"))
    audio = to_b.media[0]
    assert audio.formats == ["0", "8", "101"]
    assert [(c.payload_type, c.encoding) for c in audio.codecs()] == [
        (0, "PCMU"),
        (8, "PCMA"),
        (101, "telephone-event"),
    ]
    assert audio.fmtp(101) == "0-16"
    text = str(to_b)
    assert "opus" not in text and "GSM" not in text and "useinbandfec" not in text


def test_pcma_first_order_is_kept() -> None:
    _, to_b = start(body(A_HOST, A_PORT, formats="8 0 101"))
    assert to_b.media[0].formats == ["8", "0", "101"]


def test_pjsua2_offer_keeps_g711_and_only_the_8khz_telephone_event() -> None:
    _, to_b = start(golden("pjsua2-captured-offer.sdp"))
    audio = to_b.media[0]
    assert audio.formats == ["0", "8", "121"]
    assert audio.fmtp(121) == "0-16"
    assert audio.fmtp(120) is None and audio.fmtp(122) is None and audio.fmtp(99) is None
    assert "speex" not in str(to_b) and "G722" not in str(to_b)
    # Attributes the relay has no opinion about survive.
    assert "ssrc:1668456548 cname:79f1149a4f2dcf27" in attribute_texts(to_b)


def test_ptime_and_maxptime_are_kept() -> None:
    _, to_b = start(golden("asterisk-offer.sdp"))
    assert to_b.media[0].ptime == 20
    assert "maxptime:150" in attribute_texts(to_b)


def test_second_audio_stream_and_video_stream_are_rejected_with_port_0() -> None:
    offer = (
        body(A_HOST, A_PORT)
        + b"m=audio 17300 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        + b"m=video 17302 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    )
    call, to_b = start(offer)
    assert [m.port for m in to_b.media] == [ALLOC_B.rtp, 0, 0]
    assert [m.media for m in to_b.media] == ["audio", "audio", "video"]
    reply = body(B_HOST, B_PORT) + b"m=audio 0 RTP/AVP 0\r\n" + b"m=video 0 RTP/AVP 96\r\n"
    to_a = answer(call, reply)
    assert [m.port for m in to_a.media] == [ALLOC_A.rtp, 0, 0]
    assert call.index == 0


def test_stream_relayed_is_the_first_active_audio_stream() -> None:
    offer = (
        b"v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\nt=0 0\r\n"
        b"m=video 17302 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
        b"m=audio 17254 RTP/AVP 8\r\n"
    )
    call, to_b = start(offer)
    assert [m.port for m in to_b.media] == [0, ALLOC_B.rtp]
    assert call.index == 1
    assert call.offerer.dest == (A_HOST, A_PORT)


def test_a_rtcp_is_rewritten_to_the_relay_rtcp_port() -> None:
    _, to_b = start(golden("rtpengine-offer.sdp"))
    assert to_b.media[0].rtcp == Rtcp(ALLOC_B.rtp + 1)


def test_a_rtcp_with_an_address_is_rewritten_to_the_relay_address() -> None:
    _, to_b = start(golden("pjsua2-captured-offer.sdp"))
    assert to_b.media[0].rtcp == Rtcp(ALLOC_B.rtp + 1, Connection(RELAY))


def test_answer_a_rtcp_is_rewritten_to_the_a_facing_rtcp_port() -> None:
    _, _, to_a = established(answer_body=body(B_HOST, B_PORT, lines=[f"a=rtcp:{B_PORT + 1}"]))
    assert to_a.media[0].rtcp == Rtcp(ALLOC_A.rtp + 1)


def test_rtcp_mux_is_kept_and_a_rtcp_points_at_the_relay_rtp_port() -> None:
    offer = body(A_HOST, A_PORT, lines=[f"a=rtcp:{A_PORT}", "a=rtcp-mux"])
    _, to_b = start(offer)
    assert to_b.media[0].rtcp_mux
    assert to_b.media[0].rtcp == Rtcp(ALLOC_B.rtp)


def test_rtcp_mux_and_rtcp_feedback_of_an_asterisk_offer_are_kept() -> None:
    _, to_b = start(golden("asterisk-rtcp-mux-offer.sdp"))
    assert to_b.media[0].rtcp_mux
    assert to_b.media[0].proto == "RTP/AVPF"
    assert "rtcp-fb:* transport-cc" in attribute_texts(to_b)


def test_direction_attribute_is_relayed_unchanged() -> None:
    _, to_b = start(golden("asterisk-offer.sdp"))
    assert to_b.direction_for(0) is Direction.SENDRECV
    assert attribute_texts(to_b).count("sendrecv") == 1


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"INVITE sip:bob@example.com SIP/2.0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\nm=audio port RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\nm=audio 4000 RTP/AVP 0 x\r\n",
        b"v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=\xff\r\n",
    ],
)
def test_unparsable_offer_is_refused_as_bad_sdp(data: bytes) -> None:
    with raises(Reason.BAD_SDP) as caught:
        Call.parse_offer(data)
    assert caught.value.message.startswith("Bad SDP")
    assert str(caught.value) == caught.value.message


def test_offer_without_pcmu_or_pcma_is_refused_as_bad_sdp_naming_the_codecs() -> None:
    offer = golden("asterisk-offer.sdp").replace(b"107 0 8 3 101", b"107 3 101")
    with raises(Reason.BAD_SDP) as caught:
        Call.parse_offer(offer)
    assert caught.value.message == "No common codec: PCMU or PCMA required"


def test_offer_with_only_video_is_refused_as_bad_sdp() -> None:
    offer = (
        b"v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\nt=0 0\r\n"
        b"m=video 17302 RTP/AVP 0\r\n"
    )
    with raises(Reason.BAD_SDP) as caught:
        Call.parse_offer(offer)
    assert "PCMU or PCMA" in caught.value.message


@pytest.mark.parametrize(
    "offer",
    [
        body(A_HOST, A_PORT),
        body(A_HOST, A_PORT, proto="RTP/SAVP"),  # SAVP without a key
        body(A_HOST, A_PORT, lines=[crypto_line(new_crypto(1, SHA1_80))]),  # key on AVP
    ],
    ids=["rtp-avp", "savp-without-crypto", "avp-with-crypto"],
)
def test_offerer_requiring_srtp_refuses_an_offer_without_usable_srtp(offer: bytes) -> None:
    with raises(Reason.SRTP) as caught:
        start(offer, offerer=LegPolicy(transport=Transport.SRTP))
    assert "SRTP required" in caught.value.message


def test_offerer_requiring_srtp_accepts_an_srtp_offer() -> None:
    call, to_b = start(
        golden("asterisk-srtp-offer.sdp"), offerer=LegPolicy(transport=Transport.SRTP)
    )
    assert call.offerer.srtp
    assert to_b.media[0].is_srtp


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 "
            "inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd|2^20|1:4",
            "SRTP MKI not supported",
        ),
        (
            "a=crypto:1 AEAD_AES_256_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g"
            "ISIjJCUmJygpKiss",
            "Unsupported SRTP crypto suite AEAD_AES_256_GCM",
        ),
        (
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAR",
            "Bad SRTP key length",
        ),
    ],
    ids=["mki", "unknown-suite", "short-key"],
)
def test_offer_whose_only_crypto_is_unusable_is_refused_as_srtp(line: str, message: str) -> None:
    with raises(Reason.SRTP) as caught:
        start(body(A_HOST, A_PORT, proto="RTP/SAVP", lines=[line]))
    assert caught.value.message == message


def test_answer_with_a_different_number_of_streams_is_refused_as_bad_sdp() -> None:
    call, _ = start(body(A_HOST, A_PORT))
    reply = body(B_HOST, B_PORT) + b"m=video 5006 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    with raises(Reason.BAD_SDP) as caught:
        answer(call, reply)
    assert "wrong number of media streams" in caught.value.message


@pytest.mark.parametrize(
    ("offer", "reply"),
    [
        (
            body(A_HOST, A_PORT),
            body(B_HOST, B_PORT, formats="18", lines=["a=rtpmap:18 G729/8000"]),
        ),
        (golden("sipp-uac-offer.sdp"), body(B_HOST, B_PORT, formats="8")),
    ],
    ids=["g729", "pcma-when-only-pcmu-offered"],
)
def test_answer_choosing_a_codec_not_offered_is_refused_as_bad_sdp(
    offer: bytes, reply: bytes
) -> None:
    call, _ = start(offer)
    with raises(Reason.BAD_SDP) as caught:
        answer(call, reply)
    assert caught.value.message == "Answer does not match offer: codec not offered"


def test_unparsable_answer_is_refused_as_bad_sdp() -> None:
    call, _ = start(body(A_HOST, A_PORT))
    with raises(Reason.BAD_SDP):
        answer(call, b"v=0\r\nnonsense\r\n")
    assert not call.answered


def test_answer_in_rtp_avp_to_an_savp_offer_is_refused_as_srtp() -> None:
    call, to_b = start(body(A_HOST, A_PORT), answerer=LegPolicy(transport=Transport.SRTP))
    assert to_b.media[0].is_srtp
    with raises(Reason.SRTP) as caught:
        answer(call, body(B_HOST, B_PORT))
    assert caught.value.message == "Answer does not match offer: RTP/SAVP expected"


def test_answer_in_savp_to_an_rtp_offer_is_refused_as_srtp() -> None:
    call, _ = start(body(A_HOST, A_PORT))
    reply = body(B_HOST, B_PORT, proto="RTP/SAVP", lines=[crypto_line(new_crypto(1, SHA1_80))])
    with raises(Reason.SRTP) as caught:
        answer(call, reply)
    assert caught.value.message == "Answer does not match offer: RTP/AVP expected"


@pytest.mark.parametrize(
    ("tag", "suite"),
    [(7, SHA1_80), (1, SHA1_32)],
    ids=["unknown-tag", "tag-1-with-the-suite-of-tag-2"],
)
def test_answer_choosing_a_crypto_the_relay_did_not_offer_is_refused_as_srtp(
    tag: int, suite: str
) -> None:
    call, _ = start(body(A_HOST, A_PORT), answerer=LegPolicy(transport=Transport.SRTP))
    reply = body(B_HOST, B_PORT, proto="RTP/SAVP", lines=[crypto_line(new_crypto(tag, suite))])
    with raises(Reason.SRTP) as caught:
        answer(call, reply)
    assert caught.value.message == "Answer does not match offer: unknown a=crypto tag"


def test_answer_in_savp_without_a_crypto_is_refused_as_srtp() -> None:
    call, _ = start(body(A_HOST, A_PORT), answerer=LegPolicy(transport=Transport.SRTP))
    with raises(Reason.SRTP) as caught:
        answer(call, body(B_HOST, B_PORT, proto="RTP/SAVP"))
    assert "crypto" in caught.value.message


def test_answer_before_any_offer_is_not_found() -> None:
    parsed, index = Call.parse_offer(body(A_HOST, A_PORT))
    call = new_call(
        "call-2",
        A_TAG,
        parsed,
        index,
        (LegPolicy(), LegPolicy()),
        (ALLOC_A, ALLOC_B),
        address=RELAY,
        media_timeout=30.0,
        now=0.0,
    )
    with raises(Reason.NOT_FOUND) as caught:
        call.answer(call.answerer, body(B_HOST, B_PORT))
    assert "call-2" in caught.value.message


def test_answer_from_the_leg_that_sent_the_offer_is_not_found() -> None:
    call, _ = start(body(A_HOST, A_PORT))
    with raises(Reason.NOT_FOUND):
        call.answer(call.offerer, body(B_HOST, B_PORT))


def test_unknown_tag_is_not_found() -> None:
    call, _, _ = established()
    with raises(Reason.NOT_FOUND) as caught:
        call.leg_by_tag("tag-c")
    assert "'tag-c'" in caught.value.message


def test_legs_are_found_by_their_tags() -> None:
    call, _, _ = established()
    assert call.leg_by_tag(A_TAG) is call.offerer
    assert call.leg_by_tag(B_TAG) is call.answerer
    assert call.other(call.offerer) is call.answerer
    assert call.other(call.answerer) is call.offerer
    assert call.answered


# --- SRTP ---------------------------------------------------------------------------------


def test_srtp_offer_is_answered_with_a_new_key_under_the_offerers_tag_and_suite() -> None:
    a_key = new_crypto(5, SHA1_32)
    call, to_b = start(body(A_HOST, A_PORT, proto="RTP/SAVP", lines=[crypto_line(a_key)]))
    assert all(c.key_salt != a_key.key_salt for c in to_b.media[0].cryptos())
    reply_b = new_crypto(1, SHA1_80)
    to_a = answer(call, body(B_HOST, B_PORT, proto="RTP/SAVP", lines=[crypto_line(reply_b)]))
    audio = to_a.media[0]
    assert audio.proto == "RTP/SAVP"
    (relay_key,) = audio.cryptos()
    assert (relay_key.tag, relay_key.suite) == (5, SHA1_32)
    assert relay_key.key_salt not in (a_key.key_salt, reply_b.key_salt)
    assert call.offerer.chosen_local_crypto == relay_key


def test_srtp_round_trip_with_the_offerer() -> None:
    a_key = new_crypto(1, SHA1_80)
    call, _ = start(body(A_HOST, A_PORT, proto="RTP/SAVP", lines=[crypto_line(a_key)]))
    to_a = answer(
        call, body(B_HOST, B_PORT, proto="RTP/SAVP", lines=[crypto_line(new_crypto(1, SHA1_80))])
    )
    (relay_key,) = to_a.media[0].cryptos()
    a_in, a_out = call.offerer.srtp_in, call.offerer.srtp_out
    assert a_in is not None and a_out is not None
    packet = rtp(1000)
    assert a_in.unprotect(SrtpSession.outbound(a_key).protect(packet)) == packet
    assert SrtpSession.inbound(relay_key).unprotect(a_out.protect(packet)) == packet


def test_first_usable_crypto_is_chosen_after_an_unknown_suite() -> None:
    unknown = (
        "a=crypto:1 AEAD_AES_256_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g"
        "ISIjJCUmJygpKiss"
    )
    usable = new_crypto(2, SHA1_80)
    call, _ = start(body(A_HOST, A_PORT, proto="RTP/SAVP", lines=[unknown, crypto_line(usable)]))
    to_a = answer(
        call, body(B_HOST, B_PORT, proto="RTP/SAVP", lines=[crypto_line(new_crypto(1, SHA1_80))])
    )
    (relay_key,) = to_a.media[0].cryptos()
    assert (relay_key.tag, relay_key.suite) == (2, SHA1_80)


def test_asterisk_srtp_offer_is_answered_on_its_first_crypto() -> None:
    call, to_b = start(golden("asterisk-srtp-offer.sdp"))
    # The offerer's keys never leave toward B: the relay offers keys of its own.
    assert "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd" not in str(to_b)
    assert "Hh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7" not in str(to_b)
    b_key = new_crypto(1, SHA1_80)
    to_a = answer(call, body(B_HOST, B_PORT, proto="RTP/SAVP", lines=[crypto_line(b_key)]))
    (relay_key,) = to_a.media[0].cryptos()
    assert (relay_key.tag, relay_key.suite, relay_key.lifetime) == (1, SHA1_80, None)
    assert [m.formats for m in to_a.media] == [["0", "8", "101"]]


def test_answerer_srtp_policy_with_one_suite_offers_b_one_crypto_line() -> None:
    policy = LegPolicy(transport=Transport.SRTP, crypto_suites=(SHA1_80,))
    call, to_b = start(body(A_HOST, A_PORT), answerer=policy)
    audio = to_b.media[0]
    assert audio.proto == "RTP/SAVP"
    (offered,) = audio.cryptos()
    assert offered.suite == SHA1_80
    offered.check()
    assert call.answerer.srtp and not call.offerer.srtp


def test_answerer_srtp_policy_with_default_suites_offers_two_tagged_lines() -> None:
    _, to_b = start(body(A_HOST, A_PORT), answerer=LegPolicy(transport=Transport.SRTP))
    cryptos = to_b.media[0].cryptos()
    assert [(c.tag, c.suite) for c in cryptos] == [(1, SHA1_80), (2, SHA1_32)]
    assert cryptos[0].key_salt != cryptos[1].key_salt


def test_srtp_round_trip_with_the_answerer_after_it_picks_tag_2() -> None:
    call, to_b = start(body(A_HOST, A_PORT), answerer=LegPolicy(transport=Transport.SRTP))
    offered = {c.tag: c for c in to_b.media[0].cryptos()}
    b_key = new_crypto(2, SHA1_32)
    to_a = answer(call, body(B_HOST, B_PORT, proto="RTP/SAVP", lines=[crypto_line(b_key)]))
    # A offered plain RTP and gets plain RTP back.
    assert to_a.media[0].proto == "RTP/AVP"
    assert to_a.media[0].cryptos() == []
    assert call.answerer.chosen_local_crypto == offered[2]
    b_in, b_out = call.answerer.srtp_in, call.answerer.srtp_out
    assert b_in is not None and b_out is not None
    packet = rtp(4242)
    # What B encrypts with the key in its answer, the relay decrypts...
    assert b_in.unprotect(SrtpSession.outbound(b_key).protect(packet)) == packet
    # ...and what the relay sends B, B decrypts with the relay's tag-2 key from the offer.
    protected = b_out.protect(packet)
    assert len(protected) == len(packet) + 4  # the 32-bit tag of the chosen suite
    assert SrtpSession.inbound(offered[2]).unprotect(protected) == packet
    assert call.offerer.srtp_in is None and call.offerer.srtp_out is None


def test_rtcp_round_trip_with_the_answerer() -> None:
    call, to_b = start(body(A_HOST, A_PORT), answerer=LegPolicy(transport=Transport.SRTP))
    offered = to_b.media[0].cryptos()[0]
    b_key = new_crypto(1, SHA1_80)
    answer(call, body(B_HOST, B_PORT, proto="RTP/SAVP", lines=[crypto_line(b_key)]))
    assert call.answerer.srtp_out is not None
    report = struct.pack("!BBHI", 0x80, 200, 6, 0x1234ABCD) + bytes(20)
    protected = call.answerer.srtp_out.protect_rtcp(report)
    assert SrtpSession.inbound(offered).unprotect_rtcp(protected) == report


def test_rtp_offer_with_unspecified_answerer_policy_stays_rtp() -> None:
    call, to_b = start(body(A_HOST, A_PORT))
    assert to_b.media[0].proto == "RTP/AVP"
    assert to_b.media[0].attributes_named("crypto") == []
    to_a = answer(call, body(B_HOST, B_PORT))
    assert to_a.media[0].proto == "RTP/AVP"
    for leg in call.legs:
        assert not leg.srtp
        assert leg.srtp_in is None and leg.srtp_out is None


def test_savp_offer_with_unspecified_answerer_policy_stays_savp_with_relay_keys() -> None:
    a_key = new_crypto(1, SHA1_80)
    call, to_b = start(body(A_HOST, A_PORT, proto="RTP/SAVP", lines=[crypto_line(a_key)]))
    audio = to_b.media[0]
    assert audio.proto == "RTP/SAVP"
    assert [(c.tag, c.suite) for c in audio.cryptos()] == [(1, SHA1_80), (2, SHA1_32)]
    assert all(c.key_salt != a_key.key_salt for c in audio.cryptos())
    assert call.answerer.srtp


def test_answerer_rtp_policy_bridges_an_srtp_offerer_to_plain_rtp() -> None:
    a_key = new_crypto(1, SHA1_80)
    call, to_b = start(
        body(A_HOST, A_PORT, proto="RTP/SAVP", lines=[crypto_line(a_key)]),
        answerer=LegPolicy(transport=Transport.RTP),
    )
    assert to_b.media[0].proto == "RTP/AVP"
    assert to_b.media[0].attributes_named("crypto") == []
    to_a = answer(call, body(B_HOST, B_PORT))
    assert to_a.media[0].proto == "RTP/SAVP"
    assert len(to_a.media[0].cryptos()) == 1
    assert call.offerer.srtp and not call.answerer.srtp


@pytest.mark.parametrize(
    ("offered", "policy", "to_b_proto"),
    [
        ("RTP/AVPF", Transport.SRTP, "RTP/SAVPF"),
        ("RTP/SAVPF", Transport.RTP, "RTP/AVPF"),
        ("RTP/SAVPF", Transport.UNSPECIFIED, "RTP/SAVPF"),
        ("RTP/AVPF", Transport.UNSPECIFIED, "RTP/AVPF"),
    ],
)
def test_feedback_profile_is_kept_when_the_transport_changes(
    offered: str, policy: Transport, to_b_proto: str
) -> None:
    lines = [crypto_line(new_crypto(1, SHA1_80))] if "SAVP" in offered else []
    call, to_b = start(
        body(A_HOST, A_PORT, proto=offered, lines=lines), answerer=LegPolicy(transport=policy)
    )
    assert to_b.media[0].proto == to_b_proto
    reply_lines = []
    if "SAVP" in to_b_proto:
        chosen = to_b.media[0].cryptos()[0]
        reply_lines = [crypto_line(new_crypto(chosen.tag, chosen.suite))]
    to_a = answer(call, body(B_HOST, B_PORT, proto=to_b_proto, lines=reply_lines))
    assert to_a.media[0].proto == offered


# --- directions and re-offers ---------------------------------------------------------------


def test_hold_reoffer_from_a_reaches_b_as_sendonly_on_the_same_relay_port() -> None:
    call, first, _ = established()
    to_b = reoffer(call, A_TAG, body(A_HOST, A_PORT, version=2, direction="sendonly"))
    assert to_b.direction_for(0) is Direction.SENDONLY
    assert to_b.media[0].port == first.media[0].port == ALLOC_B.rtp
    assert to_b.is_hold
    assert call.offerer.sends


def test_recvonly_answer_to_a_hold_reaches_a_and_b_stops_sending() -> None:
    call, _, _ = established()
    reoffer(call, A_TAG, body(A_HOST, A_PORT, version=2, direction="sendonly"))
    to_a = answer(call, body(B_HOST, B_PORT, version=2, direction="recvonly"))
    assert to_a.direction_for(0) is Direction.RECVONLY
    assert to_a.media[0].port == ALLOC_A.rtp
    assert call.offerer.sends
    assert not call.answerer.sends
    # The held leg's address is still known: only whether it sends changed.
    assert call.answerer.dest == (B_HOST, B_PORT)


def test_resume_reoffer_makes_both_legs_send_again() -> None:
    call, _, _ = established()
    reoffer(call, A_TAG, body(A_HOST, A_PORT, version=2, direction="sendonly"))
    answer(call, body(B_HOST, B_PORT, version=2, direction="recvonly"))
    to_b = reoffer(call, A_TAG, body(A_HOST, A_PORT, version=3))
    assert to_b.direction_for(0) is Direction.SENDRECV
    answer(call, body(B_HOST, B_PORT, version=3))
    assert call.offerer.sends and call.answerer.sends


@pytest.mark.parametrize("direction", ["recvonly", "inactive"])
def test_leg_that_does_not_send_per_its_sdp_has_sends_false(direction: str) -> None:
    call, _ = start(body(A_HOST, A_PORT, direction=direction))
    assert not call.offerer.sends
    assert call.offerer.dest == (A_HOST, A_PORT)


def test_session_level_direction_applies_to_the_stream() -> None:
    offer = body(A_HOST, A_PORT, direction=None).replace(b"t=0 0\r\n", b"t=0 0\r\na=inactive\r\n")
    call, to_b = start(offer)
    assert not call.offerer.sends
    assert to_b.direction_for(0) is Direction.INACTIVE


def test_sendrecv_is_the_default_direction() -> None:
    call, _ = start(golden("sipp-uac-offer.sdp"))
    assert call.offerer.sends


def test_rfc2543_hold_with_a_zero_address_does_not_send_and_is_relayed_as_such() -> None:
    call, _, _ = established(offer=golden("rtpengine-offer.sdp"))
    to_b = reoffer(call, A_TAG, golden("rfc2543-hold-reoffer.sdp"))
    assert to_b.connection is not None and to_b.connection.is_hold
    assert to_b.origin.address == RELAY
    assert to_b.media[0].port == ALLOC_B.rtp
    assert not call.offerer.sends
    assert call.offerer.dest is None
    assert call.offerer.rtcp_dest is None


def test_reoffer_from_b_swaps_offer_and_answer_roles_and_keeps_ports() -> None:
    call, _, _ = established()
    to_a = reoffer(call, B_TAG, body(B_HOST, 5010, version=2, direction="sendonly"))
    assert to_a.media[0].port == ALLOC_A.rtp
    assert to_a.direction_for(0) is Direction.SENDONLY
    assert call.answerer.dest == (B_HOST, 5010)
    assert call.pending is not None
    assert call.pending.sender is call.answerer and call.pending.receiver is call.offerer
    # B cannot answer its own offer; A answers it.
    with raises(Reason.NOT_FOUND):
        call.answer(call.answerer, body(B_HOST, B_PORT))
    a_reply = body(A_HOST, A_PORT, version=2, direction="recvonly")
    to_b = Sdp.parse(call.answer(call.offerer, a_reply))
    assert to_b.media[0].port == ALLOC_B.rtp
    assert to_b.direction_for(0) is Direction.RECVONLY
    assert call.offerer.role is Role.OFFERER and call.answerer.role is Role.ANSWERER
    assert call.offerer.allocation == ALLOC_A and call.answerer.allocation == ALLOC_B
    assert call.offerer.local_port == ALLOC_A.rtp
    assert not call.offerer.sends and call.answerer.sends


def srtp_call() -> tuple[Call, Crypto, Crypto]:
    """An SRTP call on both legs, answered; the call and the keys A and B sent."""
    a_key = new_crypto(1, SHA1_80)
    call, to_b = start(body(A_HOST, A_PORT, proto="RTP/SAVP", lines=[crypto_line(a_key)]))
    offered = to_b.media[0].cryptos()[1]
    b_key = new_crypto(offered.tag, offered.suite)
    answer(call, body(B_HOST, B_PORT, proto="RTP/SAVP", lines=[crypto_line(b_key)]))
    return call, a_key, b_key


def test_reoffer_from_b_keeps_the_relay_keys_toward_both_legs() -> None:
    call, a_key, _ = srtp_call()
    toward_a = call.offerer.chosen_local_crypto
    toward_b = call.answerer.chosen_local_crypto
    assert toward_a is not None and toward_b is not None
    assert toward_b.tag == 2
    # B now offers, numbering its crypto lines from 1 (a new key is its right).
    b_new = new_crypto(1, SHA1_32)
    to_a = reoffer(
        call, B_TAG, body(B_HOST, B_PORT, proto="RTP/SAVP", version=2, lines=[crypto_line(b_new)])
    )
    (offered_a,) = to_a.media[0].cryptos()
    assert offered_a == toward_a  # the same key, under A's tag
    a_again = body(A_HOST, A_PORT, proto="RTP/SAVP", version=2, lines=[crypto_line(a_key)])
    to_b = Sdp.parse(call.answer(call.offerer, a_again))
    (answered_b,) = to_b.media[0].cryptos()
    # RFC 4568 7.1.2: the answer carries the tag of the offer line it accepts.
    assert answered_b.tag == 1
    assert (answered_b.suite, answered_b.key_salt) == (toward_b.suite, toward_b.key_salt)
    assert call.offerer.chosen_local_crypto == toward_a
    after_b = call.answerer.chosen_local_crypto
    assert after_b is not None
    assert (after_b.suite, after_b.key_salt) == (toward_b.suite, toward_b.key_salt)
    # B's new key is the one its packets are now decrypted with.
    assert call.answerer.srtp_in is not None
    packet = rtp(7)
    assert call.answerer.srtp_in.unprotect(SrtpSession.outbound(b_new).protect(packet)) == packet


def test_reoffer_from_b_with_its_old_tag_leaves_the_relay_key_equal() -> None:
    call, a_key, b_key = srtp_call()
    toward_a = call.offerer.chosen_local_crypto
    toward_b = call.answerer.chosen_local_crypto
    reoffer(
        call, B_TAG, body(B_HOST, B_PORT, proto="RTP/SAVP", version=2, lines=[crypto_line(b_key)])
    )
    call.answer(
        call.offerer,
        body(A_HOST, A_PORT, proto="RTP/SAVP", version=2, lines=[crypto_line(a_key)]),
    )
    assert call.offerer.chosen_local_crypto == toward_a
    assert call.answerer.chosen_local_crypto == toward_b


def test_reoffer_from_a_offers_b_only_the_key_b_chose() -> None:
    call, a_key, _ = srtp_call()
    toward_a = call.offerer.chosen_local_crypto
    toward_b = call.answerer.chosen_local_crypto
    to_b = reoffer(
        call, A_TAG, body(A_HOST, A_PORT, proto="RTP/SAVP", version=2, lines=[crypto_line(a_key)])
    )
    assert to_b.media[0].cryptos() == [toward_b]
    assert call.offerer.chosen_local_crypto == toward_a


def test_reoffer_that_moves_a_updates_its_destination() -> None:
    call, _, _ = established()
    reoffer(call, A_TAG, body("203.0.113.77", 18000, version=2))
    assert call.offerer.dest == ("203.0.113.77", 18000)
    assert call.offerer.rtcp_dest == ("203.0.113.77", 18001)


# --- where the relay sends ------------------------------------------------------------------


def test_dest_is_the_sdp_address_and_port_and_rtcp_goes_to_the_next_port() -> None:
    call, _, _ = established()
    assert call.offerer.dest == (A_HOST, A_PORT)
    assert call.offerer.rtcp_dest == (A_HOST, A_PORT + 1)
    assert call.answerer.dest == (B_HOST, B_PORT)
    assert call.answerer.rtcp_dest == (B_HOST, B_PORT + 1)


def test_dest_is_known_before_the_answer_only_for_the_offerer() -> None:
    call, _ = start(body(A_HOST, A_PORT))
    assert call.offerer.dest == (A_HOST, A_PORT)
    assert call.answerer.dest is None and call.answerer.rtcp_dest is None
    assert not call.answered


def test_rtcp_dest_follows_the_a_rtcp_port_and_address() -> None:
    offer = body(A_HOST, A_PORT, lines=["a=rtcp:17999 IN IP4 203.0.113.11"])
    reply = body(B_HOST, B_PORT, lines=["a=rtcp:6000"])
    call, _, _ = established(offer=offer, answer_body=reply)
    assert call.offerer.rtcp_dest == ("203.0.113.11", 17999)
    assert call.answerer.rtcp_dest == (B_HOST, 6000)


def test_rtcp_dest_uses_the_media_level_connection() -> None:
    call, _ = start(golden("pjsua2-captured-offer.sdp"))
    assert call.offerer.dest == ("192.0.2.2", 4000)
    assert call.offerer.rtcp_dest == ("192.0.2.2", 4001)


def test_rtcp_dest_is_the_rtp_address_under_rtcp_mux() -> None:
    offer = body(A_HOST, A_PORT, lines=["a=rtcp-mux"])
    reply = body(B_HOST, B_PORT, lines=["a=rtcp-mux"])
    call, _, to_a = established(offer=offer, answer_body=reply)
    assert to_a.media[0].rtcp_mux
    assert call.offerer.rtcp_mux and call.answerer.rtcp_mux
    assert call.offerer.rtcp_dest == (A_HOST, A_PORT)
    assert call.answerer.rtcp_dest == (B_HOST, B_PORT)


def test_symmetric_rtp_latch_moves_dest_and_rtcp_dest() -> None:
    call, _ = start(body(A_HOST, A_PORT), offerer=LegPolicy(symmetric_rtp=True))
    leg = call.offerer
    verdict = leg.latch.on_packet((A_HOST, 40000), 0xA, now=101.0)
    assert verdict.accepted
    leg.refresh_dest()
    assert leg.dest == (A_HOST, 40000)
    assert leg.rtcp_dest == (A_HOST, 40001)


def test_answer_rejecting_the_relayed_stream_is_refused_and_leaves_dest_none() -> None:
    call, _ = start(body(A_HOST, A_PORT))
    with raises(Reason.BAD_SDP) as caught:
        answer(call, body(B_HOST, 0))
    assert "PCMU or PCMA" in caught.value.message
    assert call.answerer.dest is None


# --- regressions: bugs these tests found, fixed ------------------------------------------


def test_rtcp_mux_declined_by_the_answer_sends_a_rtcp_to_its_rtcp_port() -> None:
    offer = body(A_HOST, A_PORT, lines=["a=rtcp-mux"])
    call, _, to_a = established(offer=offer, answer_body=body(B_HOST, B_PORT))
    assert not to_a.media[0].rtcp_mux  # so A will not multiplex
    assert not call.offerer.rtcp_mux
    assert call.offerer.rtcp_dest == (A_HOST, A_PORT + 1)


def test_offer_with_a_malformed_a_rtcp_is_refused_as_bad_sdp() -> None:
    with raises(Reason.BAD_SDP):
        start(body(A_HOST, A_PORT, lines=["a=rtcp:17255 IN IP4"]))


def test_answer_with_a_malformed_a_rtcp_is_refused_as_bad_sdp() -> None:
    call, _ = start(body(A_HOST, A_PORT))
    with raises(Reason.BAD_SDP):
        answer(call, body(B_HOST, B_PORT, lines=["a=rtcp:70000"]))


def test_answer_with_a_malformed_crypto_is_refused_as_srtp() -> None:
    call, _ = start(body(A_HOST, A_PORT), answerer=LegPolicy(transport=Transport.SRTP))
    with raises(Reason.SRTP):
        answer(
            call,
            body(B_HOST, B_PORT, proto="RTP/SAVP", lines=["a=crypto:1 AES_CM_128_HMAC_SHA1_80"]),
        )


def test_refused_reoffer_leaves_the_leg_as_it_was() -> None:
    call, _, _ = established()
    mki = (
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 "
        "inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd|2^20|1:4"
    )
    refused = body(
        "203.0.113.99", 7000, proto="RTP/SAVP", version=2, direction="inactive", lines=[mki]
    )
    with raises(Reason.SRTP):
        reoffer(call, A_TAG, refused)
    assert call.offerer.dest == (A_HOST, A_PORT)
    assert call.offerer.sends


def wrap_and_reoffer(call: Call, a_key: Crypto, b_key: Crypto) -> None:
    """A same-key re-offer from A, answered by B with the same key (a session refresh)."""
    reoffer(
        call, A_TAG, body(A_HOST, A_PORT, proto="RTP/SAVP", version=2, lines=[crypto_line(a_key)])
    )
    answer(call, body(B_HOST, B_PORT, proto="RTP/SAVP", version=2, lines=[crypto_line(b_key)]))


def test_same_key_reoffer_keeps_the_outbound_srtp_context_across_a_sequence_wrap() -> None:
    call, a_key, b_key = srtp_call()
    toward_b = call.answerer.chosen_local_crypto
    assert toward_b is not None
    at_b = SrtpSession.inbound(toward_b)  # B's receive context
    out = call.answerer.srtp_out
    assert out is not None
    for seq in range(65530, 65536 + 6):  # crosses the 16-bit wrap: ROC becomes 1
        assert at_b.unprotect(out.protect(rtp(seq))) == rtp(seq)
    wrap_and_reoffer(call, a_key, b_key)
    out = call.answerer.srtp_out
    assert out is not None
    assert call.answerer.chosen_local_crypto == toward_b
    assert at_b.unprotect(out.protect(rtp(65536 + 6))) == rtp(65536 + 6)


def test_same_key_reoffer_keeps_the_inbound_srtp_context_across_a_sequence_wrap() -> None:
    call, a_key, b_key = srtp_call()
    from_a = SrtpSession.outbound(a_key)  # A's send context
    relay_in = call.offerer.srtp_in
    assert relay_in is not None
    for seq in range(65530, 65536 + 6):
        assert relay_in.unprotect(from_a.protect(rtp(seq))) == rtp(seq)
    wrap_and_reoffer(call, a_key, b_key)
    relay_in = call.offerer.srtp_in
    assert relay_in is not None
    assert relay_in.unprotect(from_a.protect(rtp(65536 + 6))) == rtp(65536 + 6)


def test_reoffer_removing_the_stream_is_relayed_with_port_0_and_clears_dest() -> None:
    call, _, _ = established()
    to_b = reoffer(call, A_TAG, body(A_HOST, 0, version=2))
    assert to_b.media[0].port == 0
    assert call.offerer.dest is None and not call.offerer.sends
    to_a = answer(call, body(B_HOST, 0, version=2))
    assert to_a.media[0].port == 0
    assert call.answerer.dest is None and call.answerer.rtcp_dest is None
    assert not call.answerer.sends


def test_srtp_restored_by_a_reoffer_after_plain_rtp_encrypts_toward_the_leg_again() -> None:
    call, a_key, _ = srtp_call()
    toward_b = call.answerer.chosen_local_crypto
    assert toward_b is not None
    reoffer(call, A_TAG, body(A_HOST, A_PORT, version=2))
    answer(
        call,
        body(B_HOST, B_PORT, proto="RTP/SAVP", version=2, lines=[crypto_line(toward_b)]),
    )
    assert not call.offerer.srtp and call.offerer.srtp_out is None
    reoffer(
        call, A_TAG, body(A_HOST, A_PORT, proto="RTP/SAVP", version=3, lines=[crypto_line(a_key)])
    )
    to_a = answer(
        call,
        body(B_HOST, B_PORT, proto="RTP/SAVP", version=3, lines=[crypto_line(toward_b)]),
    )
    (relay_key,) = to_a.media[0].cryptos()
    assert call.offerer.srtp
    out = call.offerer.srtp_out
    assert out is not None
    assert SrtpSession.inbound(relay_key).unprotect(out.protect(rtp(9))) == rtp(9)


def test_secure_answerer_leg_cannot_be_downgraded_to_plain_rtp_by_a_reoffer() -> None:
    secure = LegPolicy(transport=Transport.SRTP, crypto_suites=("AES_CM_128_HMAC_SHA1_80",))
    call, to_b = start(body(A_HOST, A_PORT), answerer=secure)
    relay_key = to_b.media[0].cryptos()[0]
    b_key = new_crypto(relay_key.tag, relay_key.suite)
    answer(call, body(B_HOST, B_PORT, proto="RTP/SAVP", lines=[crypto_line(b_key)]))
    with raises(Reason.SRTP):
        reoffer(call, B_TAG, body(B_HOST, B_PORT, version=2))
    assert call.answerer.srtp and call.answerer.srtp_out is not None
