"""Digest authentication for SIP (RFC 3261 section 22, RFC 7616, RFC 8760), without I/O.

The server side (`DigestServer`) builds the challenges of a 401 (`WWW-Authenticate`) or a 407
(`Proxy-Authenticate`) and verifies the `Authorization` / `Proxy-Authorization` that comes
back. Its nonces are stateless: each carries its own timestamp and an HMAC-SHA256 under a
platform secret, so any auth service pod holding the secret verifies a nonce that another
pod issued, with no shared store. The client side (`DigestClient`) answers the challenges of
carriers that authenticate the B2BUA.

Only header field VALUES go in and out: the caller picks the header name (see `AuthKind`), so
this module depends on no message model.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import unquote_to_bytes

from trunkline.domain.credentials import ha1 as domain_ha1

__all__ = [
    "MAX_HEADER_LENGTH",
    "MAX_PARAMS",
    "MIN_SECRET_LENGTH",
    "SUPPORTED_ALGORITHMS",
    "AuthKind",
    "Authenticated",
    "BadCredentials",
    "Challenge",
    "Credentials",
    "DigestClient",
    "DigestError",
    "DigestServer",
    "Malformed",
    "NonceCountGuard",
    "StaleNonce",
    "Verdict",
    "digest_response",
    "parse_auth_params",
    "parse_challenge",
    "parse_credentials",
]

# Bounds on hostile input: a real Authorization value is a few hundred characters.
MAX_HEADER_LENGTH = 8192
MAX_PARAMS = 32


class DigestError(ValueError):
    """A digest header value that cannot be used; `reason` is a fixed phrase fit for a 400
    response (it never echoes the input)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AuthKind(enum.Enum):
    """Who challenges: the user agent server (401) or a proxy (407), RFC 3261 22.2 and 22.3."""

    USER = 401
    PROXY = 407

    @property
    def status(self) -> int:
        return self.value

    @property
    def challenge_header(self) -> str:
        return "WWW-Authenticate" if self is AuthKind.USER else "Proxy-Authenticate"

    @property
    def credentials_header(self) -> str:
        return "Authorization" if self is AuthKind.USER else "Proxy-Authorization"


# --- algorithms (RFC 7616 section 3.4.2, RFC 8760) -------------------------------------------


@dataclass(frozen=True)
class _Algorithm:
    name: str  # canonical spelling on the wire
    base: str  # the algorithm whose HA1 the store keeps
    session: bool  # "-sess": HA1 is re-keyed with the nonce and cnonce
    hash_name: str  # hashlib name
    rank: int  # client preference, higher is stronger

    def h(self, data: str) -> str:
        # RFC 8760 keeps MD5 only for interop; flagged so that FIPS builds still allow it.
        secure = self.hash_name != "md5"
        return hashlib.new(self.hash_name, _enc(data), usedforsecurity=secure).hexdigest()

    @property
    def hex_length(self) -> int:
        return hashlib.new(self.hash_name).digest_size * 2


def _hash_available(name: str) -> bool:
    try:
        hashlib.new(name)
    except ValueError:
        return False
    return True


def _algorithms() -> dict[str, _Algorithm]:
    table: dict[str, _Algorithm] = {}
    bases = [("MD5", "md5", 1), ("SHA-256", "sha256", 2), ("SHA-512-256", "sha512_256", 3)]
    for base, hash_name, rank in bases:
        # SHA-512/256 depends on the OpenSSL build; RFC 8760 makes it a SHOULD, not a MUST.
        if not _hash_available(hash_name):
            continue
        for session in (False, True):
            name = f"{base}-sess" if session else base
            table[name.upper()] = _Algorithm(name, base, session, hash_name, rank)
    return table


_ALGORITHMS = _algorithms()
SUPPORTED_ALGORITHMS: tuple[str, ...] = tuple(a.name for a in _ALGORITHMS.values())


def _algorithm(name: str) -> _Algorithm | None:
    # RFC 5234 2.3: ABNF literals such as "SHA-256" are case-insensitive.
    return _ALGORITHMS.get(name.upper())


def _enc(text: str) -> bytes:
    # surrogateescape: a message layer that decoded invalid UTF-8 that way gets its bytes back.
    return text.encode("utf-8", "surrogateescape")


def _base_ha1(algorithm: _Algorithm, username: str, realm: str, password: str) -> str:
    if algorithm.base in ("MD5", "SHA-256"):
        return domain_ha1(algorithm.base, username, realm, password)
    return algorithm.h(f"{username}:{realm}:{password}")


def digest_response(
    algorithm: str,
    *,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The `response` of RFC 7616 section 3.4.1, from the base HA1 the store keeps.

    `ha1` is H(username:realm:password) of the base algorithm (MD5 for "MD5-sess"); the
    session variants are derived here (section 3.4.2). Without qop this is the RFC 2069
    response that RFC 3261 22.4 keeps for backwards compatibility.
    """
    alg = _algorithm(algorithm)
    if alg is None:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    if alg.session:
        if cnonce is None:
            raise ValueError("a -sess algorithm needs a cnonce")
        ha1 = alg.h(f"{ha1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        # RFC 7616 3.4.3: auth-int also covers the body.
        ha2 = alg.h(f"{method}:{uri}:{hashlib.new(alg.hash_name, body).hexdigest()}")
    else:
        ha2 = alg.h(f"{method}:{uri}")
    if qop is None:
        return alg.h(f"{ha1}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise ValueError("qop needs nc and cnonce")
    return alg.h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# --- the auth-param parser (RFC 3261 25.1, RFC 7235 section 2.1) ----------------------------

_TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~#$&^|"
)
# Unquoted values are read tolerantly (real UAs send `uri=sip:a@b` or `nonce=abc/def=`
# unquoted): anything visible up to a comma, a quote or whitespace.
_UNQUOTED_VALUE = re.compile(r'[^\x00-\x20\x7f",\\]+')
# RFC 3261 25.1: qdtext is any text but controls, `"` and `\`; quoted-pair escapes one
# character. Controls other than HTAB are refused even escaped: they have no place in a
# header value and CR/LF would be a header injection once echoed.
_QUOTED = re.compile(r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*)"')
_ANY_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_UNESCAPE = re.compile(r"\\(.)")
_WS = " \t"
_SCHEME = re.compile(r"[ \t]*([^ \t]+)(?:[ \t]+(.*))?", re.DOTALL)

_KNOWN_PARAMS = frozenset(
    [
        "username",
        "username*",
        "realm",
        "nonce",
        "uri",
        "response",
        "algorithm",
        "cnonce",
        "opaque",
        "qop",
        "nc",
        "userhash",
        "stale",
        "domain",
        "charset",
    ]
)


def _named(name: str) -> str:
    # Reason phrases never echo arbitrary input: only names this module knows.
    return name if name in _KNOWN_PARAMS else "parameter"


def _skip_ws(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _WS:
        i += 1
    return i


def parse_auth_params(text: str) -> dict[str, str]:
    """Parse `name=value, name="quoted value", ...` into a dict with lower-cased names and
    unquoted values. Raises `DigestError` (and nothing else) on any fault: an unterminated
    or invalid quoted string, a missing `=`, a duplicate name, too many or too long."""
    if len(text) > MAX_HEADER_LENGTH:
        raise DigestError("Authentication header too long")
    params: dict[str, str] = {}
    n = len(text)
    i = 0
    while True:
        i = _skip_ws(text, i)
        # RFC 7230 section 7: recipients accept empty list elements (", ,").
        while i < n and text[i] == ",":
            i = _skip_ws(text, i + 1)
        if i >= n:
            return params
        start = i
        while i < n and text[i] in _TOKEN_CHARS:
            i += 1
        if i == start:
            raise DigestError("Invalid authentication parameter name")
        name = text[start:i].lower()
        i = _skip_ws(text, i)
        if i >= n or text[i] != "=":
            raise DigestError(f"Missing value for {_named(name)}")
        i = _skip_ws(text, i + 1)
        if i < n and text[i] == '"':
            quoted = _QUOTED.match(text, i)
            if quoted is None:
                if _ANY_QUOTED.match(text, i) is None:
                    raise DigestError("Unterminated quoted string")
                raise DigestError("Invalid character in quoted string")
            value = _UNESCAPE.sub(r"\1", quoted.group(1))
            i = quoted.end()
        else:
            unquoted = _UNQUOTED_VALUE.match(text, i)
            if unquoted is None:
                raise DigestError(f"Missing value for {_named(name)}")
            value = unquoted.group(0)
            i = unquoted.end()
        try:
            _enc(value)
        except UnicodeEncodeError:
            raise DigestError("Invalid character in authentication header") from None
        if name in params:
            raise DigestError(f"Duplicate {_named(name)}")
        if len(params) >= MAX_PARAMS:
            raise DigestError("Too many authentication parameters")
        params[name] = value
        i = _skip_ws(text, i)
        if i < n and text[i] != ",":
            raise DigestError(f"Expected a comma after {_named(name)}")
        i += 1


def _split_scheme(value: str) -> str:
    """The auth-params after the `Digest` scheme, which RFC 7235 2.1 makes case-insensitive."""
    if len(value) > MAX_HEADER_LENGTH:
        raise DigestError("Authentication header too long")
    match = _SCHEME.match(value)
    if match is None or match.group(1).lower() != "digest":
        raise DigestError("Unsupported authentication scheme")
    return match.group(2) or ""


def _quote(value: str) -> str:
    if any((ord(c) < 0x20 and c != "\t") or c == "\x7f" for c in value):
        raise ValueError("control characters cannot be sent in a quoted string")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdefABCDEF" for c in text)


# --- parsed header values ------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """One `WWW-Authenticate` / `Proxy-Authenticate` value (RFC 7616 section 3.3)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"  # section 3.3: absent means MD5
    qop: tuple[str, ...] = ()  # empty: an RFC 2069 challenge
    opaque: str | None = None
    stale: bool = False
    userhash: bool = False
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __str__(self) -> str:
        parts = [f"realm={_quote(self.realm)}", f"nonce={_quote(self.nonce)}"]
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        parts.append(f"algorithm={self.algorithm}")
        if self.qop:
            parts.append(f"qop={_quote(','.join(self.qop))}")
        if self.stale:
            # RFC 3261 25.1 spells it lower-case; RFC 7616 3.3 compares case-insensitively.
            parts.append("stale=true")
        if self.userhash:
            parts.append("userhash=true")
        return "Digest " + ", ".join(parts)


def parse_challenge(value: str) -> Challenge:
    """Parse one challenge value; raises `DigestError`."""
    params = parse_auth_params(_split_scheme(value))
    for required in ("realm", "nonce"):
        if required not in params:
            raise DigestError(f"Missing {required}")
    algorithm = params.get("algorithm", "MD5")
    known = _algorithm(algorithm)
    qop = tuple(q.strip(_WS).lower() for q in params.get("qop", "").split(",") if q.strip(_WS))
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=known.name if known else algorithm,
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
        userhash=params.get("userhash", "").lower() == "true",
        params=MappingProxyType(params),
    )


@dataclass(frozen=True)
class Credentials:
    """One `Authorization` / `Proxy-Authorization` value (RFC 7616 section 3.4)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"  # section 3.4: absent means MD5
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None
    userhash: bool = False
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def _ext_value(text: str) -> str:
    """RFC 8187 ext-value (`UTF-8''J%C3%A4s`), which RFC 7616 3.4.4 uses for `username*`."""
    charset, sep1, rest = text.partition("'")
    _language, sep2, encoded = rest.partition("'")
    if not (sep1 and sep2) or charset.lower() != "utf-8":
        raise DigestError("Invalid username*")
    try:
        return unquote_to_bytes(encoded).decode("utf-8")
    except UnicodeDecodeError:
        raise DigestError("Invalid username*") from None


def parse_credentials(value: str) -> Credentials:
    """Parse one credentials value; raises `DigestError` naming the fault."""
    params = parse_auth_params(_split_scheme(value))
    if "username" in params and "username*" in params:
        # RFC 7616 3.4.4: one or the other, never both.
        raise DigestError("Both username and username*")
    if "username*" in params:
        username = _ext_value(params["username*"])
    elif "username" in params:
        username = params["username"]
    else:
        raise DigestError("Missing username")
    for required in ("realm", "nonce", "uri", "response"):
        if required not in params:
            raise DigestError(f"Missing {required}")
    qop = params.get("qop")
    nc = params.get("nc")
    cnonce = params.get("cnonce")
    if qop is not None:
        qop = qop.lower()
        # RFC 7616 3.4: with qop, cnonce and an 8-digit hex nc are mandatory.
        if cnonce is None or cnonce == "":
            raise DigestError("Missing cnonce")
        if nc is None:
            raise DigestError("Missing nc")
        if not _is_hex(nc, 8):
            raise DigestError("Invalid nc")
        nc = nc.lower()
    algorithm = params.get("algorithm", "MD5")
    known = _algorithm(algorithm)
    return Credentials(
        username=username,
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"],
        algorithm=known.name if known else algorithm,
        qop=qop,
        nc=nc,
        cnonce=cnonce,
        opaque=params.get("opaque"),
        userhash=params.get("userhash", "").lower() == "true",
        params=MappingProxyType(params),
    )


# --- verdicts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Authenticated:
    """The credentials are right and the nonce fresh."""

    username: str
    algorithm: str


@dataclass(frozen=True)
class StaleNonce:
    """The password was right but the nonce expired (or its nc was used already): challenge
    again with `stale=true` so the UA retries without asking its user (RFC 7616 3.3)."""

    reason: str


@dataclass(frozen=True)
class BadCredentials:
    """Authentication failed. `reason` is for logs, not for the wire: it tells an unknown user
    from a wrong password. `rechallenge` is True when the fault lies with the nonce, realm or
    opaque rather than the password (a nonce from an older secret, another realm, or a
    forgery): a fresh 401/407 is then the right answer; otherwise 403."""

    reason: str
    rechallenge: bool = False


@dataclass(frozen=True)
class Malformed:
    """The header value breaks the grammar or asks for what was not offered; `reason` is a
    fixed phrase fit for a 400 response."""

    reason: str


Verdict = Authenticated | StaleNonce | BadCredentials | Malformed


# --- replay tracking ----------------------------------------------------------------------


class NonceCountGuard:
    """Refuses a nonce count seen before for the same nonce: RFC 7616 3.4 has nc so that "if
    the same nc value is seen twice, then the request is a replay".

    The state is per pod: a replay sent to another pod is not caught, and the nonce lifetime
    then bounds the window of a replay. Memory is bounded: at most `max_nonces` nonces (the
    oldest forgotten first, and each dropped once expired), each with a sliding window of the
    last `window` counts like IPsec's anti-replay window (RFC 4303 3.4.3), so requests that
    a UA sends concurrently may arrive out of order.
    """

    def __init__(self, *, max_nonces: int = 100_000, window: int = 64) -> None:
        if max_nonces < 1 or window < 1:
            raise ValueError("max_nonces and window must be positive")
        self._max = max_nonces
        self._window = window
        self._mask = (1 << window) - 1
        # nonce -> [highest nc, bitmap of the counts seen below it, expiry]
        self._seen: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def accept(self, nonce: str, nc: int, *, now: float, expires: float) -> bool:
        """Record `nc` for `nonce`; False when it was seen already (a replay)."""
        while self._seen:
            first = next(iter(self._seen.values()))
            if first[2] > now:
                break
            self._seen.popitem(last=False)
        state = self._seen.get(nonce)
        if state is None:
            if len(self._seen) >= self._max:
                self._seen.popitem(last=False)
            self._seen[nonce] = [nc, 1, expires]
            return True
        highest, bitmap = int(state[0]), int(state[1])
        if nc > highest:
            shift = nc - highest
            bitmap = ((bitmap << shift) | 1) & self._mask if shift < self._window else 1
            state[0], state[1] = nc, bitmap
            return True
        offset = highest - nc
        if offset >= self._window or bitmap & (1 << offset):
            return False
        state[1] = bitmap | (1 << offset)
        return True


# --- server -------------------------------------------------------------------------------

_NONCE_VERSION = 1
_NONCE_LAYOUT = struct.Struct(">BQ8s")  # version, timestamp (s), salt
_MAC_LENGTH = 16
_NONCE_LENGTH = _NONCE_LAYOUT.size + _MAC_LENGTH  # 33 bytes: 44 base64 characters, no padding
_NONCE_TEXT = re.compile(f"[A-Za-z0-9_-]{{{_NONCE_LENGTH * 4 // 3}}}")
MIN_SECRET_LENGTH = 16


def _field(data: bytes) -> bytes:
    # Length-prefixed so (realm, source) pairs can never collide by shifting a boundary.
    return struct.pack(">H", len(data)) + data


class DigestServer:
    """Challenges and verifies for one realm (RFC 3261 22.2 / 22.3, RFC 7616, RFC 8760).

    `secret` signs new nonces; `previous_secrets` still verify, so the secret can be rotated
    across pods without failing nonces in flight. `now` arguments are wall-clock seconds
    (time.time()): a nonce crosses pods, so a monotonic clock would not do. With
    `bind_source`, a nonce is only valid from the address it was issued to; pass the IP
    address alone (no port, which a NAT or a new TCP connection changes).

    The store keeps the base HA1 of MD5 and SHA-256 (trunkline.domain.credentials); the
    "-sess" variants are derived from it, so they may be offered too.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        *,
        previous_secrets: Sequence[bytes] = (),
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
        nonce_lifetime: float = 300.0,
        max_clock_skew: float = 30.0,
        opaque: str | None = None,
        bind_source: bool = False,
        allow_rfc2069: bool = False,
        replay_guard: NonceCountGuard | None = None,
    ) -> None:
        _quote(realm)
        for key in (secret, *previous_secrets):
            if len(key) < MIN_SECRET_LENGTH:
                raise ValueError(f"a nonce secret needs at least {MIN_SECRET_LENGTH} bytes")
        resolved = [_algorithm(a) for a in algorithms]
        if not resolved:
            raise ValueError("offer at least one algorithm")
        offered: list[_Algorithm] = []
        for name, alg in zip(algorithms, resolved, strict=True):
            if alg is None or alg.base not in ("MD5", "SHA-256"):
                raise ValueError(f"the credential store keeps no HA1 for {name!r}")
            offered.append(alg)
        if nonce_lifetime <= 0:
            raise ValueError("nonce_lifetime must be positive")
        self.realm = realm
        self.nonce_lifetime = nonce_lifetime
        self.max_clock_skew = max_clock_skew
        self.bind_source = bind_source
        self.allow_rfc2069 = allow_rfc2069
        self.replay_guard = replay_guard
        self._secrets = (secret, *previous_secrets)
        self._offered = tuple(offered)
        # RFC 7616 3.3: opaque is returned unchanged. Derived from the realm, every pod
        # agrees on it without configuration; it carries no security here.
        self.opaque = opaque if opaque is not None else hashlib.sha256(_enc(realm)).hexdigest()[:32]
        _quote(self.opaque)

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(a.name for a in self._offered)

    # nonces ---------------------------------------------------------------------------

    def _mac(self, key: bytes, head: bytes, source: str | None) -> bytes:
        data = head + _field(_enc(self.realm)) + _field(_enc(source or ""))
        return hmac.new(key, data, hashlib.sha256).digest()[:_MAC_LENGTH]

    def _source(self, source: str | None) -> str | None:
        if not self.bind_source:
            return None
        if source is None:
            raise ValueError("bind_source is set: pass the source address")
        return source

    def new_nonce(self, *, now: float, source: str | None = None) -> str:
        head = _NONCE_LAYOUT.pack(_NONCE_VERSION, max(0, int(now)), secrets.token_bytes(8))
        mac = self._mac(self._secrets[0], head, self._source(source))
        return base64.urlsafe_b64encode(head + mac).rstrip(b"=").decode("ascii")

    def _nonce_time(self, nonce: str, source: str | None) -> int | None:
        """The nonce's timestamp when one of our secrets signed it for this realm and
        source; None for anything else."""
        # Exactly our alphabet and length: b64decode would skip stray characters, and two
        # spellings of one nonce would get past the replay guard's bookkeeping.
        if _NONCE_TEXT.fullmatch(nonce) is None:
            return None
        raw = base64.urlsafe_b64decode(nonce)
        head, mac = raw[: _NONCE_LAYOUT.size], raw[_NONCE_LAYOUT.size :]
        version, timestamp, _salt = _NONCE_LAYOUT.unpack(head)
        if version != _NONCE_VERSION:
            return None
        valid = False
        for key in self._secrets:
            # Every key is tried, so the time taken does not tell which one matched.
            valid |= hmac.compare_digest(mac, self._mac(key, head, source))
        return int(timestamp) if valid else None

    # challenges -----------------------------------------------------------------------

    def challenge(self, *, now: float, source: str | None = None, stale: bool = False) -> list[str]:
        """The header values of a 401 / 407: one challenge per offered algorithm in order of
        preference (RFC 8760), SHA-256 before MD5 by default. They share one nonce, as in
        the example of RFC 7616 3.9.1."""
        nonce = self.new_nonce(now=now, source=source)
        return [
            str(
                Challenge(
                    realm=self.realm,
                    nonce=nonce,
                    algorithm=alg.name,
                    qop=("auth",),
                    opaque=self.opaque,
                    stale=stale,
                )
            )
            for alg in self._offered
        ]

    def select(self, values: Iterable[str]) -> str | None:
        """Of several credentials values, the one for this realm: RFC 3261 22.3 says a proxy
        must not consume credentials whose realm is not its own. None when no value names
        our realm (then challenge as if there were no credentials)."""
        for value in values:
            try:
                realm = parse_auth_params(_split_scheme(value)).get("realm")
            except DigestError:
                continue
            if realm == self.realm:
                return value
        return None

    # verification ---------------------------------------------------------------------

    def verify(
        self,
        value: str,
        *,
        method: str,
        request_uri: str,
        lookup: Callable[[str, str], str | None],
        now: float,
        source: str | None = None,
    ) -> Verdict:
        """Verify one credentials value. `lookup(username, base_algorithm)` returns the stored
        HA1 ("MD5" or "SHA-256") or None for an unknown user; it is called only once the
        header is well formed. Never raises on any input: faults come back as verdicts.
        A caller whose store is asynchronous uses `parse_credentials` then `check`."""
        try:
            credentials = parse_credentials(value)
        except DigestError as error:
            return Malformed(error.reason)
        alg = _algorithm(credentials.algorithm)
        base = alg.base if alg is not None else credentials.algorithm
        return self.check(
            credentials,
            method=method,
            request_uri=request_uri,
            ha1=lambda: lookup(credentials.username, base),
            now=now,
            source=source,
        )

    def check(
        self,
        credentials: Credentials,
        *,
        method: str,
        request_uri: str,
        ha1: str | Callable[[], str | None] | None,
        now: float,
        source: str | None = None,
    ) -> Verdict:
        """Verify parsed credentials against the stored base HA1 of `credentials.username`
        (a string, None for an unknown user, or a callable fetching it once the cheap checks
        pass). `method` is the request's; an ACK or CANCEL that copies the INVITE's credentials
        (RFC 3261 22.1) is checked with method "INVITE"."""
        source = self._source(source)
        alg = _algorithm(credentials.algorithm)
        if alg is None or alg not in self._offered:
            return Malformed("Unsupported algorithm")
        if credentials.userhash:
            return Malformed("Unsupported userhash")
        if credentials.qop is None:
            if not self.allow_rfc2069:
                # RFC 7616 3.4: qop was offered, so the client must use it.
                return Malformed("Missing qop")
            if alg.session:
                return Malformed("Missing cnonce")
        elif credentials.qop != "auth":
            return Malformed("Unsupported qop")
        if not _is_hex(credentials.response, alg.hex_length):
            return Malformed("Invalid response")
        if credentials.realm != self.realm:
            return BadCredentials("Realm mismatch", rechallenge=True)
        if credentials.opaque is not None and not hmac.compare_digest(
            _enc(credentials.opaque), _enc(self.opaque)
        ):
            return BadCredentials("Opaque mismatch", rechallenge=True)
        issued = self._nonce_time(credentials.nonce, source)
        if issued is None or issued > now + self.max_clock_skew:
            return BadCredentials("Invalid nonce", rechallenge=True)
        # RFC 7616 3.4.6 (as RFC 2617 3.2.2.5): the uri must name the request's resource,
        # else 400 Bad Request. Compared exactly: the UA copies its Request-URI.
        if credentials.uri != request_uri:
            return Malformed("URI mismatch")
        stored = ha1() if callable(ha1) else ha1
        if stored is None:
            return BadCredentials("Unknown user")
        expected = digest_response(
            alg.name,
            ha1=stored,
            nonce=credentials.nonce,
            method=method,
            uri=credentials.uri,
            qop=credentials.qop,
            nc=credentials.nc,
            cnonce=credentials.cnonce,
        )
        if not hmac.compare_digest(_enc(expected), _enc(credentials.response.lower())):
            return BadCredentials("Wrong password")
        # Stale only now: RFC 2617 3.2.1 sets stale=true only for a valid digest, so a UA with
        # the wrong password is not told to retry silently.
        expires = issued + self.nonce_lifetime
        if now > expires:
            return StaleNonce("Nonce expired")
        if self.replay_guard is not None:
            # Without qop there is no nc: each RFC 2069 nonce is then good for one request.
            count = int(credentials.nc, 16) if credentials.nc is not None else 1
            if not self.replay_guard.accept(credentials.nonce, count, now=now, expires=expires):
                return StaleNonce("Nonce count reused")
        return Authenticated(credentials.username, alg.name)


# --- client -------------------------------------------------------------------------------


def _new_cnonce() -> str:
    return secrets.token_urlsafe(16)


class DigestClient:
    """Answers the challenges of a carrier (RFC 3261 22.2 / 22.3) with one username and
    password. Keeps the nonce counts of the nonces it answered (RFC 7616 3.4: nc counts the
    requests sent with one nonce), at most `max_nonces` of them."""

    def __init__(
        self,
        username: str,
        password: str,
        *,
        cnonce_factory: Callable[[], str] = _new_cnonce,
        max_nonces: int = 64,
    ) -> None:
        _quote(username)
        self.username = username
        self.password = password
        self._cnonce = cnonce_factory
        self._max_nonces = max_nonces
        self._counts: OrderedDict[str, int] = OrderedDict()

    def _next_nc(self, nonce: str) -> str:
        count = self._counts.pop(nonce, 0) + 1
        self._counts[nonce] = count
        while len(self._counts) > self._max_nonces:
            self._counts.popitem(last=False)
        return f"{count:08x}"

    @staticmethod
    def usable(challenge: Challenge) -> bool:
        """Whether this client can answer the challenge: a known algorithm, and a qop it
        speaks when any is offered; another challenge of the same response may do."""
        if _algorithm(challenge.algorithm) is None:
            return False
        return not challenge.qop or bool({"auth", "auth-int"} & set(challenge.qop))

    def answer(self, challenge: Challenge, *, method: str, uri: str, body: bytes = b"") -> str:
        """The credentials value answering one challenge. Raises `DigestError` when the
        challenge is not `usable`."""
        alg = _algorithm(challenge.algorithm)
        if alg is None or not self.usable(challenge):
            raise DigestError("Unsupported challenge")
        if not challenge.qop:
            qop = None
        elif "auth" in challenge.qop:
            qop = "auth"
        else:
            qop = "auth-int"
        cnonce = self._cnonce() if qop is not None or alg.session else None
        nc = self._next_nc(challenge.nonce) if qop is not None else None
        response = digest_response(
            alg.name,
            ha1=_base_ha1(alg, self.username, challenge.realm, self.password),
            nonce=challenge.nonce,
            method=method,
            uri=uri,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
            body=body,
        )
        # RFC 7616 3.4.4: with userhash the username goes out as H(username:realm).
        username = (
            alg.h(f"{self.username}:{challenge.realm}") if challenge.userhash else self.username
        )
        parts = [
            f"username={_quote(username)}",
            f"realm={_quote(challenge.realm)}",
            f"nonce={_quote(challenge.nonce)}",
            f"uri={_quote(uri)}",
            f'response="{response}"',
            f"algorithm={alg.name}",
        ]
        if cnonce is not None:
            parts.append(f"cnonce={_quote(cnonce)}")
        if challenge.opaque is not None:
            parts.append(f"opaque={_quote(challenge.opaque)}")
        if qop is not None and nc is not None:
            # RFC 7616 3.4: qop and nc are tokens, unquoted.
            parts.append(f"qop={qop}")
            parts.append(f"nc={nc}")
        if challenge.userhash:
            parts.append("userhash=true")
        return "Digest " + ", ".join(parts)

    def authorize(
        self, challenges: Iterable[str], *, method: str, uri: str, body: bytes = b""
    ) -> list[str]:
        """Credentials values for the challenge values of a 401 / 407: one per realm (RFC 3261
        22.3: several proxies may each challenge), each answering the strongest algorithm
        offered for that realm: SHA-512-256, then SHA-256, then MD5, the first offered on a
        tie (RFC 8760 has the UAC take the topmost it supports: the same choice when a server
        lists its algorithms strongest first). Unparseable or unsupported challenges are
        skipped; raises `DigestError` when none is left."""
        best: dict[str, tuple[int, Challenge]] = {}
        for value in challenges:
            try:
                challenge = parse_challenge(value)
            except DigestError:
                continue
            alg = _algorithm(challenge.algorithm)
            if alg is None or not self.usable(challenge):
                continue
            current = best.get(challenge.realm)
            if current is None or alg.rank > current[0]:
                best[challenge.realm] = (alg.rank, challenge)
        if not best:
            raise DigestError("No supported challenge")
        return [
            self.answer(challenge, method=method, uri=uri, body=body)
            for _, challenge in best.values()
        ]
