"""SRTP and SRTCP (RFC 3711) keyed by SDES ``a=crypto`` lines (RFC 4568), through libsrtp.

The cryptography is libsrtp's (via pylibsrtp); this module turns a :class:`sdp.Crypto` into
a libsrtp policy and libsrtp's errors into :class:`SrtpError` / :class:`SrtpAuthError`.
With SDES each side's ``a=crypto`` carries the key that side sends with, so a leg has two
sessions: ``SrtpSession.inbound(peer_crypto)`` and ``SrtpSession.outbound(our_crypto)``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Final

import pylibsrtp
from pylibsrtp import Policy, Session

from trunkline.media import sdp

__all__ = ["SrtpAuthError", "SrtpError", "SrtpSession", "new_crypto"]

# RFC 4568 6.2.1 and 6.2.2. For the _32 suite only the SRTP tag is 32 bits: libsrtp's
# profile keeps the SRTCP tag at 80 bits, as RFC 3711 and RFC 4568 want (tested).
_PROFILES: Final = {
    "AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
# RFC 4568 6.2.1: 128-bit master key followed by 112-bit master salt.
_KEY_SALT_LENGTH: Final = 30
# RFC 3711 3.3.2: the replay window is at least 64 packets; 1024 (~20 s of 20 ms audio)
# accepts the reordering a relay sees without accepting replays.
_REPLAY_WINDOW: Final = 1024
# pylibsrtp raises one exception class and passes libsrtp's status only as text. These are
# srtp_err_status_auth_fail, replay_fail, replay_old, pkt_idx_old and cant_check (an SRTCP
# packet whose E flag was cleared, RFC 3711 3.4): a packet not from the key holder, or
# replayed. Anything else (bad_param, parse_err...) is malformed input.
_AUTH_FAILURES: Final = frozenset(
    {
        "authentication failure",
        "replay check failed (bad index)",
        "replay check failed (index too old)",
        "packet index is too old to consider",
        "unable to perform desired validation",
    }
)


class SrtpError(Exception):
    """Unusable key, malformed or oversized packet, or a session used in the wrong direction."""


class SrtpAuthError(SrtpError):
    """An SRTP/SRTCP packet failed authentication or the replay check: drop and count it."""


def _error(error: Exception) -> SrtpError:
    text = str(error)
    return SrtpAuthError(text) if text in _AUTH_FAILURES else SrtpError(text)


def new_crypto(tag: int, suite: str) -> sdp.Crypto:
    """Our ``a=crypto`` for ``suite``: a fresh random master key and salt, no lifetime or MKI."""
    if suite not in _PROFILES:
        raise SrtpError(f"Unsupported SRTP crypto suite {suite}")
    if not 0 <= tag <= 999_999_999:  # RFC 4568 9.1: tag = 1*9DIGIT
        raise SrtpError(f"SRTP crypto tag {tag} not in 0-999999999")
    return sdp.Crypto(tag, suite, secrets.token_bytes(_KEY_SALT_LENGTH))


def _no_protect(packet: bytes) -> bytes:
    raise SrtpError("an inbound SRTP session only unprotects")


def _no_unprotect(packet: bytes) -> bytes:
    raise SrtpError("an outbound SRTP session only protects")


class SrtpSession:
    """One direction of SRTP and SRTCP for one leg, keyed by one ``a=crypto``.

    Any SSRC is accepted; libsrtp keeps a rollover counter and replay window per SSRC and
    clones an inbound stream only once a packet from a new SSRC has authenticated. Packets
    must be ``bytes``; pylibsrtp copies them into a 1500-octet buffer, so at most 1356
    octets of RTP (1352 of RTCP) can be protected. Not thread-safe. The key lifetime
    (RFC 4568 6.1) is not enforced: rekeying is the sender's re-offer.
    """

    __slots__ = ("_protect", "_protect_rtcp", "_unprotect", "_unprotect_rtcp")

    _protect: Callable[[bytes], bytes]
    _protect_rtcp: Callable[[bytes], bytes]
    _unprotect: Callable[[bytes], bytes]
    _unprotect_rtcp: Callable[[bytes], bytes]

    def __init__(self, crypto: sdp.Crypto, *, outbound: bool) -> None:
        try:
            crypto.check()  # suite, 30-octet key, no MKI, no session parameters
        except sdp.SdpError as error:
            raise SrtpError(str(error)) from error
        policy = Policy(
            key=crypto.key_salt,
            ssrc_type=Policy.SSRC_ANY_OUTBOUND if outbound else Policy.SSRC_ANY_INBOUND,
            srtp_profile=_PROFILES[crypto.suite],
        )
        policy.window_size = _REPLAY_WINDOW
        # Lets the relay forward a duplicated packet: same index and same bytes give the same
        # ciphertext, where libsrtp would otherwise fail protect with a replay error.
        policy.allow_repeat_tx = True
        try:
            session = Session(policy)
        except pylibsrtp.Error as error:
            raise SrtpError(str(error)) from error
        # Bound methods chosen once, so the per-packet path has no direction check. A session
        # never works both ways: protecting with the peer's key could repeat its keystream.
        if outbound:
            self._protect, self._protect_rtcp = session.protect, session.protect_rtcp
            self._unprotect = self._unprotect_rtcp = _no_unprotect
        else:
            self._protect = self._protect_rtcp = _no_protect
            self._unprotect, self._unprotect_rtcp = session.unprotect, session.unprotect_rtcp

    @classmethod
    def inbound(cls, crypto: sdp.Crypto) -> SrtpSession:
        """Unprotects what the peer sends, keyed with the peer's ``a=crypto``."""
        return cls(crypto, outbound=False)

    @classmethod
    def outbound(cls, crypto: sdp.Crypto) -> SrtpSession:
        """Protects what the relay sends, keyed with our own ``a=crypto``."""
        return cls(crypto, outbound=True)

    def protect(self, rtp: bytes) -> bytes:
        """SRTP packet for an RTP packet: payload encrypted, auth tag appended (RFC 3711 3.1).

        Raises :class:`SrtpError` (never :class:`SrtpAuthError`) for a packet too short or too
        long, or more than the replay window behind the newest one sent on its SSRC.
        """
        try:
            return self._protect(rtp)
        except (pylibsrtp.Error, ValueError) as error:
            raise SrtpError(str(error)) from error

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        """SRTCP packet: encrypted, E flag and SRTCP index, 80-bit tag (RFC 3711 3.4)."""
        try:
            return self._protect_rtcp(rtcp)
        except (pylibsrtp.Error, ValueError) as error:
            raise SrtpError(str(error)) from error

    def unprotect(self, srtp: bytes) -> bytes:
        """The RTP packet inside ``srtp``; :class:`SrtpAuthError` if forged or replayed."""
        try:
            return self._unprotect(srtp)
        except (pylibsrtp.Error, ValueError) as error:
            raise _error(error) from error

    def unprotect_rtcp(self, srtcp: bytes) -> bytes:
        """The RTCP packet inside ``srtcp``; :class:`SrtpAuthError` if forged or replayed."""
        try:
            return self._unprotect_rtcp(srtcp)
        except (pylibsrtp.Error, ValueError) as error:
            raise _error(error) from error
