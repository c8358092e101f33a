"""SRTP/SRTCP sessions (RFC 3711) keyed by SDES a=crypto lines (RFC 4568), over libsrtp.

The known-answer test checks libsrtp against RFC 3711 Appendix B.3: a packet protected with
the B.3 master key and salt must equal one built independently (``cryptography``'s AES-CTR
and ``hmac``) from the session keys B.3 says they derive.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from trunkline.media.rtp import RtpPacket
from trunkline.media.sdp import SUPPORTED_CRYPTO_SUITES, Crypto, Sdp, select_crypto
from trunkline.media.srtp import SrtpAuthError, SrtpError, SrtpSession, new_crypto

GOLDEN = Path(__file__).parent / "golden_sdp"
SUITES = sorted(SUPPORTED_CRYPTO_SUITES)
SHA1_80, SHA1_32 = "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"
SSRC = 0xDEADBEEF
# RFC 4568 6.2.1 / 6.2.2: 80-bit and 32-bit SRTP tags; SRTCP keeps 80 bits with both.
RTP_TAG = {SHA1_80: 10, SHA1_32: 4}
SRTCP_TRAILER = 4 + 10  # E flag + 31-bit SRTCP index, then the 80-bit tag (RFC 3711 3.4)


def g711(seq: int, ssrc: int = SSRC) -> bytes:
    """A 20 ms PCMU packet: 12-octet header + 160 octets = 172 octets."""
    return bytes(RtpPacket(0, seq, seq * 160, ssrc, payload=b"\xd5" * 160))


def sender_report(ssrc: int = SSRC) -> bytes:
    """RFC 3550 6.4.1 SR with no report blocks: 28 octets."""
    return struct.pack("!BBHIIIIII", 0x80, 200, 6, ssrc, 0xE1234567, 0x89ABCDEF, 160, 1, 172)


def pair(suite: str) -> tuple[SrtpSession, SrtpSession]:
    """Our outbound session and the peer's inbound one, both keyed with our a=crypto."""
    crypto = new_crypto(1, suite)
    return SrtpSession.outbound(crypto), SrtpSession.inbound(crypto)


def flip(packet: bytes, index: int, mask: int = 0x01) -> bytes:
    data = bytearray(packet)
    data[index] ^= mask
    return bytes(data)


# --- round trips and packet sizes ----------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_rtp_round_trip_encrypts_payload_and_keeps_header(suite: str) -> None:
    outbound, inbound = pair(suite)
    for seq in (65534, 65535, 0, 1):  # across the rollover (RFC 3711 3.3.1)
        rtp = g711(seq)
        srtp = outbound.protect(rtp)
        assert srtp[:12] == rtp[:12]
        assert srtp[12:172] != rtp[12:]
        assert inbound.unprotect(srtp) == rtp


@pytest.mark.parametrize("suite", SUITES)
def test_rtcp_round_trip(suite: str) -> None:
    outbound, inbound = pair(suite)
    for _ in range(3):
        rtcp = sender_report()
        srtcp = outbound.protect_rtcp(rtcp)
        assert srtcp[:8] == rtcp[:8]
        assert srtcp[8:28] != rtcp[8:]
        assert srtcp[28] & 0x80  # E flag: encrypted
        assert inbound.unprotect_rtcp(srtcp) == rtcp


@pytest.mark.parametrize(("suite", "size"), [(SHA1_80, 182), (SHA1_32, 176)])
def test_g711_packet_grows_by_the_suite_rtp_tag(suite: str, size: int) -> None:
    outbound, _ = pair(suite)
    assert len(g711(1)) == 172
    assert len(outbound.protect(g711(1))) == size


@pytest.mark.parametrize("suite", SUITES)
def test_srtcp_tag_is_80_bits_even_for_the_32_bit_suite(suite: str) -> None:
    outbound, _ = pair(suite)
    assert len(outbound.protect_rtcp(sender_report())) == 28 + SRTCP_TRAILER


def test_any_ssrc_is_accepted_each_with_its_own_replay_window() -> None:
    outbound, inbound = pair(SHA1_80)
    for ssrc in (1, 2, 0xFFFFFFFF):
        assert inbound.unprotect(outbound.protect(g711(7, ssrc))) == g711(7, ssrc)


def test_reordered_packets_inside_the_window_are_accepted() -> None:
    outbound, inbound = pair(SHA1_80)
    packets = [outbound.protect(g711(seq)) for seq in range(1, 601)]
    for seq in (600, 1, 300, 2):
        assert inbound.unprotect(packets[seq - 1]) == g711(seq)


def test_retransmitted_packet_is_protected_again_identically() -> None:
    outbound, inbound = pair(SHA1_80)
    first = outbound.protect(g711(9))
    assert outbound.protect(g711(9)) == first
    assert inbound.unprotect(first) == g711(9)


# --- authentication and replay ------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize(
    "where",
    [
        pytest.param(3, id="header-sequence"),
        pytest.param(12, id="payload-first"),
        pytest.param(171, id="payload-last"),
        pytest.param(-1, id="tag"),
    ],
)
def test_tampered_srtp_raises_auth_error(suite: str, where: int) -> None:
    outbound, inbound = pair(suite)
    with pytest.raises(SrtpAuthError, match="authentication failure"):
        inbound.unprotect(flip(outbound.protect(g711(1)), where))


@pytest.mark.parametrize(
    ("where", "mask"),
    [
        pytest.param(20, 0x01, id="payload"),
        pytest.param(-1, 0x01, id="tag"),
        pytest.param(-11, 0x01, id="srtcp-index"),
        pytest.param(-14, 0x80, id="e-flag-cleared"),
    ],
)
def test_tampered_srtcp_raises_auth_error(where: int, mask: int) -> None:
    outbound, inbound = pair(SHA1_32)
    with pytest.raises(SrtpAuthError):
        inbound.unprotect_rtcp(flip(outbound.protect_rtcp(sender_report()), where, mask))


def test_replayed_srtp_and_srtcp_raise_auth_error() -> None:
    outbound, inbound = pair(SHA1_32)
    srtp, srtcp = outbound.protect(g711(1)), outbound.protect_rtcp(sender_report())
    inbound.unprotect(srtp)
    inbound.unprotect_rtcp(srtcp)
    with pytest.raises(SrtpAuthError, match="replay"):
        inbound.unprotect(srtp)
    with pytest.raises(SrtpAuthError, match="replay"):
        inbound.unprotect_rtcp(srtcp)


def test_packet_older_than_the_replay_window_raises_auth_error() -> None:
    outbound, inbound = pair(SHA1_32)
    old = outbound.protect(g711(1))
    inbound.unprotect(outbound.protect(g711(2000)))
    with pytest.raises(SrtpAuthError, match="too old"):
        inbound.unprotect(old)


@pytest.mark.parametrize("suite", SUITES)
def test_wrong_key_raises_auth_error(suite: str) -> None:
    outbound, _ = pair(suite)
    _, stranger = pair(suite)
    with pytest.raises(SrtpAuthError):
        stranger.unprotect(outbound.protect(g711(1)))
    with pytest.raises(SrtpAuthError):
        stranger.unprotect_rtcp(outbound.protect_rtcp(sender_report()))


def test_a_forged_packet_does_not_block_the_genuine_one() -> None:
    outbound, inbound = pair(SHA1_32)
    genuine = outbound.protect(g711(1))
    with pytest.raises(SrtpAuthError):
        inbound.unprotect(flip(genuine, 20))
    assert inbound.unprotect(genuine) == g711(1)


# --- keys from SDP ------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_new_crypto_round_trips_through_sdp_and_interoperates(suite: str) -> None:
    ours = new_crypto(7, suite)
    line = str(ours)
    assert line.startswith(f"7 {suite} inline:")
    assert "|" not in line  # no lifetime, no MKI
    parsed = Crypto.parse(line)
    assert parsed == ours
    parsed.check()
    assert len(parsed.key_salt) == 30
    # We protect with our key; the peer, having read our SDP, unprotects with the same one.
    outbound, peer = SrtpSession.outbound(ours), SrtpSession.inbound(parsed)
    assert peer.unprotect(outbound.protect(g711(1))) == g711(1)
    assert peer.unprotect_rtcp(outbound.protect_rtcp(sender_report())) == sender_report()


def test_new_crypto_keys_are_fresh() -> None:
    keys = {new_crypto(1, SHA1_80).key_salt for _ in range(20)}
    assert len(keys) == 20


@pytest.mark.parametrize(("tag", "suite"), [(1, "AEAD_AES_128_GCM"), (1, "F8_128_HMAC_SHA1_80")])
def test_new_crypto_refuses_unsupported_suite(tag: int, suite: str) -> None:
    with pytest.raises(SrtpError, match="Unsupported SRTP crypto suite"):
        new_crypto(tag, suite)


@pytest.mark.parametrize("tag", [-1, 1_000_000_000])
def test_new_crypto_refuses_tag_outside_nine_digits(tag: int) -> None:
    with pytest.raises(SrtpError, match="tag"):
        new_crypto(tag, SHA1_80)


def test_asterisk_offer_key_unprotects_what_asterisk_sends() -> None:
    audio = Sdp.parse((GOLDEN / "asterisk-srtp-offer.sdp").read_bytes()).media[0]
    theirs = select_crypto(audio)
    asterisk = SrtpSession.outbound(theirs)  # Asterisk sends with the key it offered
    assert SrtpSession.inbound(theirs).unprotect(asterisk.protect(g711(1))) == g711(1)


KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (f"1 AES_256_CM_HMAC_SHA1_80 inline:{KEY}", "Unsupported SRTP crypto suite"),
        (f"1 AEAD_AES_128_GCM inline:{KEY}", "Unsupported SRTP crypto suite"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4", "MKI"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1:1", "MKI"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODw==", "key length"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}AAAA", "key length"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP", "session parameters"),
    ],
)
@pytest.mark.parametrize("direction", [SrtpSession.inbound, SrtpSession.outbound])
def test_session_refuses_unusable_crypto(
    value: str, reason: str, direction: Callable[[Crypto], SrtpSession]
) -> None:
    with pytest.raises(SrtpError, match=reason):
        direction(Crypto.parse(value))


# --- malformed input and misuse -------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 7, 11])
def test_truncated_input_raises_srtp_error_not_auth_error(size: int) -> None:
    outbound, inbound = pair(SHA1_80)
    srtp, srtcp = outbound.protect(g711(1)), outbound.protect_rtcp(sender_report())
    for call, data in (
        (inbound.unprotect, srtp[:size]),
        (inbound.unprotect_rtcp, srtcp[:size]),
        (outbound.protect, g711(2)[:size]),
    ):
        with pytest.raises(SrtpError) as caught:
            call(data)
        assert not isinstance(caught.value, SrtpAuthError)


def test_bare_rtp_header_is_not_srtp() -> None:
    _, inbound = pair(SHA1_80)
    with pytest.raises(SrtpError) as caught:
        inbound.unprotect(g711(1)[:12])
    assert not isinstance(caught.value, SrtpAuthError)


def test_oversized_packet_raises_srtp_error() -> None:
    # pylibsrtp's buffer is 1500 octets less room for the longest trailer it allows.
    outbound, inbound = pair(SHA1_80)
    big = bytes(RtpPacket(96, 1, 0, SSRC, payload=bytes(1344)))
    assert len(big) == 1356
    assert inbound.unprotect(outbound.protect(big)) == big
    with pytest.raises(SrtpError, match="too long"):
        outbound.protect(big + b"\x00")
    with pytest.raises(SrtpError, match="too long"):
        inbound.unprotect(bytes(1501))


def test_protecting_a_packet_behind_the_window_is_an_srtp_error_not_auth_error() -> None:
    outbound, _ = pair(SHA1_80)
    outbound.protect(g711(2000))
    with pytest.raises(SrtpError, match="too old") as caught:
        outbound.protect(g711(1))
    assert not isinstance(caught.value, SrtpAuthError)


def test_a_session_works_in_one_direction_only() -> None:
    outbound, inbound = pair(SHA1_80)
    with pytest.raises(SrtpError, match="inbound"):
        inbound.protect(g711(1))
    with pytest.raises(SrtpError, match="inbound"):
        inbound.protect_rtcp(sender_report())
    with pytest.raises(SrtpError, match="outbound"):
        outbound.unprotect(outbound.protect(g711(1)))
    with pytest.raises(SrtpError, match="outbound"):
        outbound.unprotect_rtcp(outbound.protect_rtcp(sender_report()))


# --- RFC 3711 Appendix B.3 known answer -----------------------------------------------------

# RFC 3711 B.3: master key and salt, and the SRTP session keys they derive (labels 0, 2, 1;
# the authentication key is the 160 bits HMAC-SHA1 uses).
B3_MASTER_KEY = bytes.fromhex("E1F97A0D3E018BE0D64FA32C06DE4139")
B3_MASTER_SALT = bytes.fromhex("0EC675AD498AFEEBB6960B3AABE6")
B3_CIPHER_KEY = bytes.fromhex("C61E7A93744F39EE10734AFE3FF7A087")
B3_CIPHER_SALT = bytes.fromhex("30CBBC08863D8C85D49DB34A9AE1")
B3_AUTH_KEY = bytes.fromhex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")


def reference_srtp(rtp: bytes, tag_length: int) -> bytes:
    """RFC 3711 4.1.1 AES-CM and 4.2 HMAC-SHA1 from the B.3 session keys, ROC 0."""
    seq, ssrc = struct.unpack_from("!H", rtp, 2)[0], struct.unpack_from("!I", rtp, 8)[0]
    salt = int.from_bytes(B3_CIPHER_SALT, "big")
    iv = (salt << 16) ^ (ssrc << 64) ^ (seq << 16)  # packet index = ROC * 2^16 + SEQ
    encryptor = Cipher(algorithms.AES(B3_CIPHER_KEY), modes.CTR(iv.to_bytes(16, "big"))).encryptor()
    authenticated = rtp[:12] + encryptor.update(rtp[12:]) + encryptor.finalize()
    roc = bytes(4)
    tag = hmac.new(B3_AUTH_KEY, authenticated + roc, hashlib.sha1).digest()[:tag_length]
    return authenticated + tag


@pytest.mark.parametrize("suite", SUITES)
def test_rfc3711_b3_key_derivation_reproduced_by_protect(suite: str) -> None:
    crypto = Crypto(1, suite, B3_MASTER_KEY + B3_MASTER_SALT)
    outbound, inbound = SrtpSession.outbound(crypto), SrtpSession.inbound(crypto)
    for seq in (0x1234, 0x1235):
        rtp = bytes(RtpPacket(15, seq, 0xDECAFBAD, 0xCAFEBABE, payload=b"\xab" * 160))
        srtp = outbound.protect(rtp)
        assert srtp == reference_srtp(rtp, RTP_TAG[suite])
        assert inbound.unprotect(srtp) == rtp
