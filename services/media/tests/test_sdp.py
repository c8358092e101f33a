"""SDP model and offer/answer rules, fed real bodies from the user agents Trunkline meets.

``pjsua2-captured-offer.sdp`` is the body of a real pjsua2 INVITE (the signaling golden
file); the others are written in the exact shapes sipp, Asterisk (chan_pjsip) and
Kamailio with rtpengine send.
"""

from __future__ import annotations

import base64
import contextlib
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkline.media.sdp import (
    Attribute,
    Bandwidth,
    Connection,
    Crypto,
    Direction,
    MediaSection,
    Origin,
    Rtcp,
    Sdp,
    SdpError,
    Timing,
    answer_direction,
    answer_for,
    filter_codecs,
    rewrite,
    select_crypto,
)

GOLDEN = Path(__file__).parent / "golden_sdp"
RELAY = "10.0.0.5"
KEY = base64.b64encode(bytes(range(30))).decode()


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def sdp_of(text: str) -> Sdp:
    return Sdp.parse(text.replace("\n", "\r\n"))


ALL_GOLDEN = sorted(p.name for p in GOLDEN.glob("*.sdp"))


# --- parsing and round trips ------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_GOLDEN)
def test_golden_sdp_round_trips_byte_exact(name: str) -> None:
    assert bytes(Sdp.parse(golden(name))) == golden(name)


def test_parse_pjsua2_offer_fields() -> None:
    sdp = Sdp.parse(golden("pjsua2-captured-offer.sdp"))
    assert sdp.origin == Origin("-", "4004680210", 4004680210, "IN", "IP4", "192.0.2.2")
    assert sdp.name == "pjmedia"
    assert sdp.connection is None
    assert sdp.bandwidths == [Bandwidth("AS", 84)]
    assert sdp.timings == [Timing(0, 0)]
    assert sdp.attributes == [Attribute("X-nat", "0")]
    (audio,) = sdp.media
    assert audio.port == 4000
    assert audio.payload_types == [96, 97, 98, 99, 3, 0, 8, 9, 120, 121, 122]
    assert audio.connection == Connection("192.0.2.2")
    assert audio.bandwidths == [Bandwidth("TIAS", 64000)]
    assert audio.rtcp == Rtcp(4001, Connection("192.0.2.2"))
    assert not audio.rtcp_mux
    assert sdp.direction_for(0) is Direction.SENDRECV
    assert audio.fmtp(121) == "0-16"
    assert [c.encoding for c in audio.codecs()][:4] == ["speex", "speex", "speex", "iLBC"]
    assert audio.attributes[-1] == Attribute("ssrc", "1668456548 cname:79f1149a4f2dcf27")


def test_parse_accepts_bare_lf_and_writes_crlf() -> None:
    text = golden("sipp-uac-offer.sdp").decode().replace("\r\n", "\n")
    assert bytes(Sdp.parse(text)) == golden("sipp-uac-offer.sdp")


def test_static_payload_type_without_rtpmap_is_known() -> None:
    sdp = sdp_of(
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5000 RTP/AVP 8\n"
    )
    (codec,) = sdp.media[0].codecs()
    assert (codec.encoding, codec.clock_rate) == ("PCMA", 8000)


def test_unknown_lines_are_kept_verbatim() -> None:
    text = (
        "v=0\no=alice 2890844526 2890844526 IN IP4 192.0.2.1\ns=Call  \ni=A  seminar\n"
        "u=http://example.com/x\ne=j@example.com (J)\np=+1 617 555-6011\n"
        "c=IN IP4 192.0.2.1\nb=CT:128\nt=2873397496 2873404696\nr=7d 1h 0 25h\n"
        "z=2882844526 -1h 2898848070 0\nk=prompt\na=tool:x y  z\na=recvonly\n"
        "m=audio 49170 RTP/AVP 0\ni=voice  channel\nc=IN IP4 192.0.2.1\nb=AS:64\n"
        "k=prompt\na=rtpmap:0 PCMU/8000\na=X-weird:  spaced : value \na=flag\na=empty:\n"
    ).replace("\n", "\r\n")
    sdp = Sdp.parse(text)
    assert str(sdp) == text
    assert sdp.timings[0].repeats == ["r=7d 1h 0 25h"]
    assert sdp.media[0].extra == ["i=voice  channel", "k=prompt"]
    assert sdp.media[0].attributes[-2:] == [Attribute("flag"), Attribute("empty", "")]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n",
        b"o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\ns=-\r\n",
        b"v=0\r\no=- 1 1 IN IP4\r\ns=-\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio port RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 70000 RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nnot a line\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nb=AS\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=\xff\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0\r\n",
    ],
)
def test_malformed_sdp_raises_sdp_error(body: bytes) -> None:
    with pytest.raises(SdpError):
        Sdp.parse(body)


# --- rewriting --------------------------------------------------------------------------


def test_rewrite_pjsua2_offer_points_media_and_separate_rtcp_at_relay() -> None:
    offer = Sdp.parse(golden("pjsua2-captured-offer.sdp"))
    out = rewrite(offer, RELAY, [20000])
    audio = out.media[0]
    assert audio.port == 20000
    assert audio.connection == Connection(RELAY)
    assert audio.rtcp == Rtcp(20001, Connection(RELAY))
    assert str(audio.attribute("rtcp")) == f"rtcp:20001 IN IP4 {RELAY}"
    assert out.origin.address == RELAY
    assert audio.formats == offer.media[0].formats
    assert "192.0.2.2" not in str(out)
    # The input is left alone.
    assert bytes(offer) == golden("pjsua2-captured-offer.sdp")


def test_rewrite_session_level_connection_and_port_only_rtcp() -> None:
    out = rewrite(Sdp.parse(golden("rtpengine-offer.sdp")), RELAY, [40000])
    assert out.connection == Connection(RELAY)
    assert out.media[0].connection is None
    assert out.media[0].rtcp == Rtcp(40001)
    assert "a=rtcp:40001\r\n" in str(out)


def test_rewrite_keeps_rtcp_mux_and_points_rtcp_at_rtp_port() -> None:
    text = (
        golden("asterisk-rtcp-mux-offer.sdp")
        .decode()
        .replace("a=rtcp-mux", "a=rtcp:17259\r\na=rtcp-mux")
    )
    out = rewrite(Sdp.parse(text), RELAY, [40002])
    assert out.media[0].rtcp_mux
    assert out.media[0].rtcp == Rtcp(40002)


def test_rewrite_ipv6_relay_address() -> None:
    out = rewrite(Sdp.parse(golden("sipp-uac-offer.sdp")), "2001:db8::5", [40004])
    assert out.connection == Connection("2001:db8::5", "IN", "IP6")
    assert out.origin.addrtype == "IP6"


def test_rewrite_can_keep_origin() -> None:
    offer = Sdp.parse(golden("asterisk-offer.sdp"))
    assert rewrite(offer, RELAY, [40000], replace_origin=False).origin == offer.origin


def test_rewrite_keeps_rejected_stream_port_zero() -> None:
    text = golden("sipp-uac-offer.sdp") + b"m=video 0 RTP/AVP 31\r\n"
    out = rewrite(Sdp.parse(text), RELAY, [40000, 40002])
    assert [m.port for m in out.media] == [40000, 0]


def test_rewrite_needs_one_port_per_stream() -> None:
    with pytest.raises(ValueError, match="ports"):
        rewrite(Sdp.parse(golden("sipp-uac-offer.sdp")), RELAY, [])


def test_rewrite_keeps_rfc2543_hold_address() -> None:
    out = rewrite(Sdp.parse(golden("rfc2543-hold-reoffer.sdp")), RELAY, [40000])
    assert out.connection is not None and out.connection.is_hold
    assert out.media[0].port == 40000
    assert out.is_hold


# --- codec policy -----------------------------------------------------------------------


def test_filter_pjsua2_offer_keeps_g711_and_8khz_telephone_event_in_order() -> None:
    out = filter_codecs(Sdp.parse(golden("pjsua2-captured-offer.sdp")))
    audio = out.media[0]
    assert audio.formats == ["0", "8", "121"]
    assert [str(a) for a in audio.attributes] == [
        "rtcp:4001 IN IP4 192.0.2.2",
        "sendrecv",
        "rtpmap:0 PCMU/8000",
        "rtpmap:8 PCMA/8000",
        "rtpmap:121 telephone-event/8000",
        "fmtp:121 0-16",
        "ssrc:1668456548 cname:79f1149a4f2dcf27",
    ]


def test_filter_keeps_offerer_order_pcma_first() -> None:
    out = filter_codecs(Sdp.parse(golden("asterisk-srtp-offer.sdp")))
    assert out.media[0].formats == ["8", "0", "101"]


def test_filter_drops_opus_and_its_fmtp_and_keeps_ptime() -> None:
    out = filter_codecs(Sdp.parse(golden("asterisk-offer.sdp")))
    audio = out.media[0]
    assert audio.formats == ["0", "8", "101"]
    assert audio.fmtp(107) is None
    assert audio.ptime == 20
    assert audio.attribute("maxptime") == Attribute("maxptime", "150")


def test_filter_keeps_static_pt_without_rtpmap() -> None:
    sdp = sdp_of(
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"
        "m=audio 5000 RTP/AVP 18 8 0\na=rtpmap:18 G729/8000\n"
    )
    out = filter_codecs(sdp)
    assert out.media[0].formats == ["8", "0"]
    assert out.media[0].attributes == []


def test_filter_keeps_wildcard_rtcp_fb() -> None:
    out = filter_codecs(Sdp.parse(golden("asterisk-rtcp-mux-offer.sdp")))
    assert out.media[0].attribute("rtcp-fb") == Attribute("rtcp-fb", "* transport-cc")


@pytest.mark.parametrize(
    "m_line",
    [
        "m=audio 5000 RTP/AVP 96 101\na=rtpmap:96 opus/48000/2\na=rtpmap:101 telephone-event/8000",
        "m=audio 5000 RTP/AVP 9 18\na=rtpmap:9 G722/8000",
        "m=audio 5000 RTP/AVP 0\na=rtpmap:0 speex/8000",
    ],
)
def test_filter_refuses_offer_without_pcmu_or_pcma_with_488_reason(m_line: str) -> None:
    sdp = sdp_of(f"v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n{m_line}\n")
    with pytest.raises(SdpError) as info:
        filter_codecs(sdp)
    assert str(info.value) == "No common codec: PCMU or PCMA required"


def test_filter_disables_video_and_keeps_audio() -> None:
    text = golden("asterisk-offer.sdp") + b"m=video 17300 RTP/AVP 99\r\na=rtpmap:99 H264/90000\r\n"
    out = filter_codecs(Sdp.parse(text))
    assert [m.port for m in out.media] == [17254, 0]


def test_filter_refuses_video_only_offer() -> None:
    body = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=video 5000 RTP/AVP 0\n"
    with pytest.raises(SdpError, match="PCMU or PCMA"):
        filter_codecs(sdp_of(body))


# --- direction, hold and resume ---------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "wanted", "expected"),
    [
        (Direction.SENDRECV, Direction.SENDRECV, Direction.SENDRECV),
        (Direction.SENDONLY, Direction.SENDRECV, Direction.RECVONLY),
        (Direction.RECVONLY, Direction.SENDRECV, Direction.SENDONLY),
        (Direction.INACTIVE, Direction.SENDRECV, Direction.INACTIVE),
        (Direction.SENDRECV, Direction.INACTIVE, Direction.INACTIVE),
        (Direction.SENDONLY, Direction.SENDONLY, Direction.INACTIVE),
    ],
)
def test_answer_direction_follows_rfc3264_6_1(
    offered: Direction, wanted: Direction, expected: Direction
) -> None:
    assert answer_direction(offered, wanted) is expected


def test_pjsua2_hold_and_resume_reoffers() -> None:
    offer = Sdp.parse(golden("pjsua2-captured-offer.sdp"))
    assert not offer.is_hold
    hold = offer.with_direction(0, Direction.SENDONLY)
    assert "a=sendonly\r\n" in str(hold) and "a=sendrecv" not in str(hold)
    reparsed = Sdp.parse(bytes(hold))
    assert reparsed.is_hold
    relayed = rewrite(filter_codecs(reparsed), RELAY, [20000])
    assert relayed.direction_for(0) is Direction.SENDONLY
    resume = Sdp.parse(bytes(reparsed.with_direction(0, Direction.SENDRECV)))
    assert not resume.is_hold
    inactive = offer.with_direction(0, Direction.INACTIVE)
    assert inactive.is_hold


def test_session_level_direction_applies_to_media() -> None:
    sdp = Sdp.parse(golden("sipp-uac-offer.sdp").replace(b"t=0 0\r\n", b"t=0 0\r\na=inactive\r\n"))
    assert sdp.direction_for(0) is Direction.INACTIVE
    assert sdp.is_hold


def test_rfc2543_hold_is_detected() -> None:
    assert Sdp.parse(golden("rfc2543-hold-reoffer.sdp")).is_hold


# --- answers ----------------------------------------------------------------------------

ANSWER = """v=0
o=- 1 1 IN IP4 198.51.100.9
s=-
c=IN IP4 198.51.100.9
t=0 0
m=audio 31000 RTP/AVP {formats}
{attributes}
"""


def make_answer(formats: str, attributes: str = "a=sendrecv") -> Sdp:
    return sdp_of(ANSWER.format(formats=formats, attributes=attributes))


def test_answer_with_offered_codecs_is_accepted() -> None:
    offer = filter_codecs(Sdp.parse(golden("asterisk-offer.sdp")))
    answer = make_answer("8 101", "a=rtpmap:101 telephone-event/8000\na=sendrecv")
    assert answer_for(offer, answer) is answer


def test_answer_may_renumber_dynamic_payload_type() -> None:
    offer = filter_codecs(Sdp.parse(golden("asterisk-offer.sdp")))
    answer = make_answer("0 96", "a=rtpmap:96 telephone-event/8000")
    assert answer_for(offer, answer) is answer


def test_answer_with_codec_not_offered_is_refused() -> None:
    offer = filter_codecs(Sdp.parse(golden("asterisk-offer.sdp")))
    with pytest.raises(SdpError, match="codec not offered"):
        answer_for(offer, make_answer("0 9", "a=rtpmap:9 G722/8000"))


def test_answer_with_only_telephone_event_is_refused() -> None:
    offer = filter_codecs(Sdp.parse(golden("asterisk-offer.sdp")))
    with pytest.raises(SdpError, match="PCMU or PCMA"):
        answer_for(offer, make_answer("101", "a=rtpmap:101 telephone-event/8000"))


def test_answer_to_hold_must_not_send() -> None:
    offer = Sdp.parse(golden("asterisk-offer.sdp")).with_direction(0, Direction.SENDONLY)
    assert answer_for(offer, make_answer("0", "a=recvonly"))
    with pytest.raises(SdpError, match="direction sendrecv"):
        answer_for(offer, make_answer("0", "a=sendrecv"))


def test_answer_with_wrong_stream_count_is_refused() -> None:
    offer = Sdp.parse(golden("asterisk-offer.sdp"))
    answer = Sdp.parse(bytes(make_answer("0")) + b"m=video 0 RTP/AVP 31\r\n")
    with pytest.raises(SdpError, match="number of media"):
        answer_for(offer, answer)


# --- SDES crypto ------------------------------------------------------------------------


def test_asterisk_srtp_offer_crypto_lines_parse() -> None:
    audio = Sdp.parse(golden("asterisk-srtp-offer.sdp")).media[0]
    assert audio.is_srtp
    first, second = audio.cryptos()
    assert first == Crypto(1, "AES_CM_128_HMAC_SHA1_80", bytes(range(30)))
    assert second.suite == "AES_CM_128_HMAC_SHA1_32"
    assert second.lifetime == 2**31
    assert second.key_salt == bytes(range(30, 60))
    first.check()
    second.check()
    assert select_crypto(audio) == first
    assert str(second) == audio.attributes_named("crypto")[1].value


def test_crypto_with_mki_is_refused() -> None:
    crypto = Crypto.parse(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4")
    assert crypto.mki == (1, 4)
    assert crypto.lifetime == 2**20
    with pytest.raises(SdpError, match="SRTP MKI not supported"):
        crypto.check()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (f"1 AES_256_CM_HMAC_SHA1_80 inline:{KEY}", "Unsupported SRTP crypto suite"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODw==", "Bad SRTP key length"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP", "session parameters"),
    ],
)
def test_unusable_crypto_is_refused(value: str, reason: str) -> None:
    with pytest.raises(SdpError, match=reason):
        Crypto.parse(value).check()


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1 AES_CM_128_HMAC_SHA1_80",
        f"x AES_CM_128_HMAC_SHA1_80 inline:{KEY}",
        f"1 AES_CM_128_HMAC_SHA1_80 uri:{KEY}",
        "1 AES_CM_128_HMAC_SHA1_80 inline:not*base64",
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^x",
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1:4|2^20",
    ],
)
def test_malformed_crypto_raises_sdp_error(value: str) -> None:
    with pytest.raises(SdpError):
        Crypto.parse(value)


def test_select_crypto_skips_unsupported_and_reports_first_refusal() -> None:
    text = (
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"
        "m=audio 5000 RTP/SAVP 0\n"
        f"a=crypto:1 AEAD_AES_256_GCM inline:{KEY}\n"
        f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}\n"
    )
    assert select_crypto(sdp_of(text).media[0]).tag == 2
    # Both unusable (AEAD suite, then MKI): the first refusal is the reason given.
    only_mki = text.replace(f"inline:{KEY}\n", f"inline:{KEY}|1:1\n")
    with pytest.raises(SdpError, match="Unsupported SRTP crypto suite"):
        select_crypto(sdp_of(only_mki).media[0])
    with pytest.raises(SdpError, match="No SRTP crypto"):
        select_crypto(Sdp.parse(golden("sipp-uac-offer.sdp")).media[0])


# --- properties -------------------------------------------------------------------------

tokens = st.text(string.ascii_letters + string.digits + "-_.+", min_size=1, max_size=12)
free_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\0"), max_size=20)
ports = st.integers(0, 65535)
connections = st.builds(Connection, tokens, st.just("IN"), st.sampled_from(["IP4", "IP6"]))
bandwidths = st.builds(Bandwidth, tokens, st.integers(0, 10**9))
attributes = st.builds(
    Attribute,
    st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=12),
    st.none() | free_text,
)
extra_lines = st.builds(
    lambda letter, value: f"{letter}={value}", st.sampled_from(list("iuepzkxy")), free_text
)
media_sections = st.builds(
    MediaSection,
    st.sampled_from(["audio", "video", "application"]),
    ports,
    st.sampled_from(["RTP/AVP", "RTP/SAVP", "RTP/AVPF", "udp"]),
    st.lists(st.integers(0, 127).map(str), min_size=1, max_size=6),
    st.none() | st.integers(1, 4),
    st.none() | connections,
    st.lists(bandwidths, max_size=2),
    st.lists(attributes, max_size=6),
    st.lists(extra_lines.filter(lambda x: x[0] in "ik"), max_size=2),
)
timings = st.builds(
    Timing,
    st.integers(0, 2**40),
    st.integers(0, 2**40),
    st.lists(st.builds(lambda v: f"r={v}", free_text), max_size=1),
)
sdps = st.builds(
    Sdp,
    st.builds(
        Origin,
        tokens,
        st.integers(0, 2**64).map(str),
        st.integers(0, 2**64),
        st.just("IN"),
        st.just("IP4"),
        tokens,
    ),
    free_text,
    st.just(0),
    st.none() | connections,
    st.lists(bandwidths, max_size=2),
    st.lists(timings, min_size=1, max_size=2),
    st.lists(attributes, max_size=4),
    st.lists(media_sections, max_size=3),
    st.lists(extra_lines.filter(lambda x: x[0] != "r"), max_size=3),
)


def canonical(sdp: Sdp) -> Sdp:
    """Extra lines come back grouped by their RFC 4566 slot, in order within each group."""
    sdp.extra = [x for x in sdp.extra if x[0] in "iuep"] + [
        x for x in sdp.extra if x[0] not in "iuep"
    ]
    for section in sdp.media:
        section.extra = [x for x in section.extra if x[0] == "i"] + [
            x for x in section.extra if x[0] != "i"
        ]
    return sdp


@settings(max_examples=300)
@given(sdps)
def test_parse_of_bytes_is_identity(sdp: Sdp) -> None:
    expected = canonical(sdp)
    assert Sdp.parse(bytes(expected)) == expected
    assert bytes(Sdp.parse(bytes(expected))) == bytes(expected)


@settings(max_examples=500)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_parse_raises_only_sdp_error_on_arbitrary_input(data: bytes | str) -> None:
    with contextlib.suppress(SdpError):
        Sdp.parse(data)


sdp_ish = st.lists(
    st.sampled_from(
        [
            "v=0",
            "o=- 1 1 IN IP4 1.2.3.4",
            "s=-",
            "c=IN IP4 1.2.3.4",
            "t=0 0",
            "m=audio 5000 RTP/AVP 0 8 101",
            "m=audio 0 RTP/SAVP 96",
            "a=rtpmap:101 telephone-event/8000",
            "a=rtpmap:96 x",
            "a=rtcp:abc",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA|1:1",
            "a=ptime:x",
            "r=1",
            "b=AS:x",
        ]
    ),
    max_size=12,
)


@settings(max_examples=500)
@given(sdp_ish)
def test_every_view_raises_only_sdp_error_on_sdp_like_input(lines: list[str]) -> None:
    with contextlib.suppress(SdpError):
        sdp = Sdp.parse("\r\n".join(["v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", *lines]))
        for section in sdp.media:
            section.codecs()
            _ = section.rtcp, section.ptime
            section.cryptos()
        out = filter_codecs(sdp)
        rewrite(out, RELAY, [40000] * len(out.media))
        answer_for(sdp, sdp)


def test_answer_check_skips_non_rtp_streams() -> None:
    tail = b"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    offer = Sdp.parse(golden("sipp-uac-offer.sdp") + tail)
    answer = Sdp.parse(bytes(make_answer("0")) + tail)
    assert answer_for(offer, answer) is answer
