"""SIP messages (RFC 3261 sections 7, 20 and 25): parsing, the header model and serialization.

Design, driven by the cost of Python per operation:

* `parse_message` splits the head once into (name, value) lines and indexes their names. It
  validates what every consumer needs before it can do anything else with a message (the start
  line, framing by Content-Length, the presence of Via, From, To, Call-ID and CSeq, and the
  syntax of the top Via, CSeq, From, To, Call-ID and Max-Forwards), and
  leaves every other structured header (all Vias, Contact, Route, Record-Route, the parsed
  Request-URI) to be parsed on first access. Parsed structures are cached on the `Headers`
  object and dropped whenever it changes.
* `bytes(message)` of a message whose start line, headers and body length are unchanged since
  it was parsed returns the original head bytes plus the body; otherwise it writes the head
  from the header lines, each with the name spelling it was received or added with.
* Every fault in the input raises `ParseError` whose `reason` is a reason phrase naming it; when
  the request got far enough to be answered (RFC 3261 8.2.6: its Via, From, To, Call-ID and
  CSeq can be copied), `request` holds it so the caller can send a 400 (or `status`).

A request without Max-Forwards is accepted (leniently: RFC 3261 8.1.1 makes it mandatory):
`max_forwards` is then None and callers treat it as 70, as a proxy would add it (RFC 3261 16.6
step 3).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TypeAlias, TypeVar

from trunkline.signaling.sip.grammar import (
    TCHAR,
    GrammarError,
    format_params,
    is_token,
    parse_params,
    quote_string,
    quoted_string_end,
    split_commas,
    unquote_string,
)
from trunkline.signaling.sip.uri import SipUri, parse_uri

__all__ = [
    "BRANCH_COOKIE",
    "MAX_HEADERS",
    "MAX_LINE_LENGTH",
    "MAX_MESSAGE_SIZE",
    "REASON_PHRASES",
    "CSeq",
    "Headers",
    "Message",
    "NameAddr",
    "ParseError",
    "Request",
    "Response",
    "Via",
    "make_response",
    "new_branch",
    "new_tag",
    "parse_message",
]

MAX_MESSAGE_SIZE = 65536
MAX_HEADERS = 256
MAX_LINE_LENGTH = 8192

# RFC 3261 8.1.1.7: the magic cookie that marks a branch as unique (RFC 3261 rules apply).
BRANCH_COOKIE = "z9hG4bK"


class ParseError(ValueError):
    """A malformed message. `reason` is a SIP reason phrase naming the fault; `request` is the
    request when enough of it was parsed to answer it; `status` is the status to answer with
    (400, or 505 for an unsupported SIP version, 513 for an oversized message)."""

    def __init__(self, reason: str, request: Request | None = None, *, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request = request
        self.status = status


# --- header names ----------------------------------------------------------------------------

# RFC 3261 7.3.3 and 20 (plus RFC 3265, 3515, 3892, 3841, 4028, 8224): compact forms.
_COMPACT = {
    "i": "call-id",
    "f": "from",
    "t": "to",
    "v": "via",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "u": "allow-events",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "x": "session-expires",
    "y": "identity",
}
_CANONICAL = {
    name.lower(): name
    for name in [
        "Accept",
        "Accept-Contact",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Authentication-Info",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Diversion",
        "Error-Info",
        "Event",
        "Expires",
        "From",
        "History-Info",
        "Identity",
        "In-Reply-To",
        "Max-Forwards",
        "MIME-Version",
        "Min-Expires",
        "Min-SE",
        "Organization",
        "P-Asserted-Identity",
        "P-Early-Media",
        "P-Preferred-Identity",
        "Path",
        "Priority",
        "Privacy",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "RAck",
        "Reason",
        "Record-Route",
        "Refer-To",
        "Referred-By",
        "Reject-Contact",
        "Remote-Party-ID",
        "Replaces",
        "Reply-To",
        "Request-Disposition",
        "Require",
        "Retry-After",
        "Route",
        "RSeq",
        "Server",
        "Service-Route",
        "Session-Expires",
        "Subject",
        "Subscription-State",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
    ]
}
# Headers whose grammar is a comma-separated list (RFC 3261 7.3.1). The authentication headers
# are not: their commas separate parameters of a single value.
_LIST_HEADERS = frozenset(
    [
        "accept",
        "accept-contact",
        "accept-encoding",
        "accept-language",
        "alert-info",
        "allow",
        "allow-events",
        "call-info",
        "contact",
        "diversion",
        "content-encoding",
        "content-language",
        "error-info",
        "history-info",
        "in-reply-to",
        "p-asserted-identity",
        "p-preferred-identity",
        "path",
        "proxy-require",
        "reason",
        "record-route",
        "reject-contact",
        "request-disposition",
        "require",
        "route",
        "service-route",
        "supported",
        "unsupported",
        "via",
        "warning",
    ]
)
# The exact spellings seen on the wire map straight to their key without any string work.
_KEYS: dict[str, str] = {}
for _key, _name in _CANONICAL.items():
    for _spelling in (_name, _key, _key.upper(), _key.title()):
        _KEYS[_spelling] = _key
for _short, _key in _COMPACT.items():
    _KEYS[_short] = _KEYS[_short.upper()] = _key
    _CANONICAL.setdefault(_key, _key.title())


def _compute_key(name: str) -> str | None:
    """The lookup key of a header name not in `_KEYS`, or None if it is not a token."""
    name = name.strip(" \t")
    if not is_token(name):
        return None
    lower = name.lower()
    return _COMPACT.get(lower, lower)


_cached_key = lru_cache(maxsize=2048)(_compute_key)


def _slow_key(name: str) -> str | None:
    # Only short names are cached, so hostile traffic with unique long names cannot pin more
    # than about 2048 * 64 characters.
    return _cached_key(name) if len(name) <= 64 else _compute_key(name)


def _key_of(name: str) -> str | None:
    return _KEYS.get(name) or _slow_key(name)


def _split_list(value: str) -> list[str]:
    try:
        return split_commas(value)
    except GrammarError as exc:
        raise ParseError(exc.reason) from None


class _Parsed:
    """Structures parsed from a `Headers` object, valid until it changes."""

    __slots__ = (
        "contacts",
        "cseq",
        "from_",
        "record_routes",
        "routes",
        "to",
        "top_via",
        "uri",
        "uri_text",
        "vias",
    )

    def __init__(self) -> None:
        self.top_via: Via | None = None
        self.vias: list[Via] | None = None
        self.from_: NameAddr | None = None
        self.to: NameAddr | None = None
        self.cseq: CSeq | None = None
        self.contacts: list[NameAddr] | None = None
        self.routes: list[NameAddr] | None = None
        self.record_routes: list[NameAddr] | None = None
        self.uri_text: str | None = None
        self.uri: SipUri | None = None


class Headers:
    """Ordered multi-map of header lines with case-insensitive names.

    Names are looked up by key (lower-cased full name, compact forms mapped to full names:
    `get("v")`, `get("VIA")` and `get("Via")` are the same). Each line keeps the name spelling
    it was received or added with, which serialization writes back, so unknown headers survive
    byte for byte. List headers (Via, Contact, Route, ...) are split on top-level commas by
    `get` and `get_all`; other headers (including the authentication headers) are not.
    """

    __slots__ = ("_keys", "_names", "_parsed", "_raw", "_raw_cl", "_raw_start", "_values")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._keys: list[str] = []
        self._names: list[str] = []
        self._values: list[str] = []
        self._parsed: _Parsed | None = None
        self._raw: bytes | None = None
        self._raw_start: tuple[object, object] | None = None
        self._raw_cl = -1
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _from_lists(cls, keys: list[str], names: list[str], values: list[str]) -> Headers:
        h = cls.__new__(cls)
        h._keys = keys
        h._names = names
        h._values = values
        h._parsed = None
        h._raw = None
        h._raw_start = None
        h._raw_cl = -1
        return h

    def _changed(self) -> None:
        self._parsed = None
        self._raw = None

    def _cache(self) -> _Parsed:
        parsed = self._parsed
        if parsed is None:
            parsed = self._parsed = _Parsed()
        return parsed

    @staticmethod
    def _checked(name: str, value: str) -> tuple[str, str, str]:
        key = _key_of(name)
        if key is None:
            raise ValueError(f"not a header name: {name!r}")
        if "\r" in value or "\n" in value or "\x00" in value:
            # A CR or LF would let a value (say, an X- header from an API call) inject lines.
            raise ValueError(f"header value contains CR, LF or NUL: {value!r}")
        return key, _CANONICAL.get(key) or name.strip(" \t"), value.strip(" \t")

    def get(self, name: str) -> str | None:
        """The first value (for list headers, the first comma-separated element)."""
        key = _key_of(name)
        if key is None:
            return None
        keys = self._keys
        try:
            i = keys.index(key)
        except ValueError:
            return None
        if key not in _LIST_HEADERS:
            return self._values[i]
        for j in range(i, len(keys)):
            if keys[j] == key:
                parts = _split_list(self._values[j])
                if parts:
                    return parts[0]
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value, in order; list headers split on top-level commas."""
        key = _key_of(name)
        if key is None:
            return []
        values = [v for k, v in zip(self._keys, self._values, strict=True) if k == key]
        if key not in _LIST_HEADERS:
            return values
        out: list[str] = []
        for value in values:
            out.extend(_split_list(value))
        return out

    def set(self, name: str, value: str) -> None:
        """Replace every line of this header by one line, where the first one was."""
        key, written, value = self._checked(name, value)
        keys = self._keys
        if key not in keys:
            self._append(key, written, value)
            return
        first = keys.index(key)
        self._names[first] = written
        self._values[first] = value
        for i in range(len(keys) - 1, first, -1):
            if keys[i] == key:
                del keys[i], self._names[i], self._values[i]
        self._changed()

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Add a line: after all others, or (first=True) before the first line of this header."""
        key, written, value = self._checked(name, value)
        if first and key in self._keys:
            i = self._keys.index(key)
            self._keys.insert(i, key)
            self._names.insert(i, written)
            self._values.insert(i, value)
            self._changed()
        else:
            self._append(key, written, value)

    def _append(self, key: str, written: str, value: str) -> None:
        self._keys.append(key)
        self._names.append(written)
        self._values.append(value)
        self._changed()

    def remove(self, name: str) -> None:
        key = _key_of(name)
        if key is None or key not in self._keys:
            return
        kept = [i for i, k in enumerate(self._keys) if k != key]
        self._keys = [self._keys[i] for i in kept]
        self._names = [self._names[i] for i in kept]
        self._values = [self._values[i] for i in kept]
        self._changed()

    def replace_first(self, name: str, value: str) -> None:
        """Replace the first value of a header (the top Via, say, after adding `received`),
        keeping any further values that share its line."""
        key, written, value = self._checked(name, value)
        for i, k in enumerate(self._keys):
            if k == key:
                parts = _split_list(self._values[i]) if key in _LIST_HEADERS else [""]
                if parts:
                    self._values[i] = ", ".join([value, *parts[1:]])
                    self._changed()
                    return
        self._append(key, written, value)

    def pop_first(self, name: str) -> str | None:
        """Remove and return the first value of a header (for list headers, the first element)."""
        key = _key_of(name)
        if key is None:
            return None
        for i, k in enumerate(self._keys):
            if k != key:
                continue
            parts = _split_list(self._values[i]) if key in _LIST_HEADERS else [self._values[i]]
            if not parts:
                continue
            if len(parts) == 1:
                del self._keys[i], self._names[i], self._values[i]
            else:
                self._values[i] = ", ".join(parts[1:])
            self._changed()
            return parts[0]
        return None

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _key_of(name)
        return key is not None and key in self._keys

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """(name as written, value) for every line, in order."""
        return zip(self._names, self._values, strict=True)

    def __len__(self) -> int:
        return len(self._keys)

    def copy(self) -> Headers:
        h = Headers._from_lists(list(self._keys), list(self._names), list(self._values))
        h._raw, h._raw_start, h._raw_cl = self._raw, self._raw_start, self._raw_cl
        return h

    def __eq__(self, other: object) -> bool:
        # Names compare by key: "v" and "Via" are the same header (RFC 3261 7.3.3).
        if not isinstance(other, Headers):
            return NotImplemented
        return self._keys == other._keys and self._values == other._values

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"


# --- structured header values ------------------------------------------------------------------

_HOST = r"(?:(?P<host>[A-Za-z0-9\-_.]++)|\[(?P<v6>[0-9A-Fa-f:.]++)\])"
# RFC 3261 20.42 and 25.1: sent-protocol = "SIP" SLASH "2.0" SLASH transport, where SLASH and
# COLON allow whitespace around them.
_VIA = re.compile(
    r"(?i:sip)[ \t]*+/[ \t]*+2\.0[ \t]*+/[ \t]*+"
    f"(?P<transport>[{TCHAR}]++)[ \t]++{_HOST}"
    r"(?:[ \t]*+:[ \t]*+(?P<port>[0-9]++))?(?P<params>.*+)",
    re.S,
)
_NAME_ADDR = re.compile(
    r'(?:"(?P<quoted>[^"\\]*+(?:\\.[^"\\]*+)*+)"[ \t]*+|(?P<plain>[^"<]*+))'
    r"<(?P<uri>[^<>]*+)>(?P<params>.*+)",
    re.S,
)
_SURROGATE = re.compile("[\udc80-\udcff]")


def _host_port(host: str | None, v6: str | None, port_text: str | None) -> tuple[str, int | None]:
    if host is None:
        assert v6 is not None
        if ":" not in v6:
            raise GrammarError("Bad host")
        host = v6
    if port_text is None:
        return host, None
    if len(port_text) > 5 or int(port_text) > 65535:
        raise GrammarError("Bad port")
    return host, int(port_text)


@dataclass
class Via:
    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> str | None:
        """None if absent, "" if present without a value (RFC 3581 3: the request asks for it)."""
        if "rport" not in self.params:
            return None
        return self.params["rport"] or ""

    @property
    def sent_by(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Via:
        try:
            return _parse_via(text)
        except GrammarError as exc:
            raise ParseError(exc.reason) from None

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{format_params(self.params)}"


def _parse_via(text: str) -> Via:
    m = _VIA.fullmatch(text)
    if m is None:
        raise GrammarError("Bad Via")
    host, port = _host_port(m.group("host"), m.group("v6"), m.group("port"))
    params_text = m.group("params")
    params = parse_params(params_text) if params_text else {}
    return Via(m.group("transport").upper(), host, port, params)


@dataclass
class NameAddr:
    display_name: str | None
    uri: SipUri
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        try:
            return _parse_name_addr(text)
        except GrammarError as exc:
            raise ParseError(exc.reason) from None

    def __str__(self) -> str:
        # Always name-addr form: an addr-spec would give URI parameters to the header
        # (RFC 3261 20.10), and angle brackets are always allowed.
        display = "" if self.display_name is None else quote_string(self.display_name) + " "
        return f"{display}<{self.uri}>{format_params(self.params)}"


def _parse_name_addr(text: str) -> NameAddr:
    text = text.strip(" \t")
    m = _NAME_ADDR.fullmatch(text)
    if m is not None:
        quoted, plain, uri_text, params_text = m.group("quoted", "plain", "uri", "params")
        if quoted is not None:
            display: str | None = unquote_string(quoted)
        else:
            display = plain.strip(" \t") or None
        uri = parse_uri(uri_text.strip(" \t"))
        return NameAddr(display, uri, parse_params(params_text) if params_text else {})
    if text.startswith('"'):
        quoted_string_end(text, 0)  # raises "Unterminated quoted string" if it is
        raise GrammarError("Bad name-addr")
    if "<" in text or ">" in text:
        raise GrammarError("Bad name-addr")
    # addr-spec: parameters after the URI belong to the header, not the URI (RFC 3261 20.10).
    semi = text.find(";")
    if semi < 0:
        return NameAddr(None, parse_uri(text), {})
    return NameAddr(None, parse_uri(text[:semi].rstrip(" \t")), parse_params(text[semi:]))


@dataclass
class CSeq:
    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        # LWS is SP and HTAB only (RFC 3261 25.1), not every Unicode space str.split() knows.
        parts = [p for p in text.replace("\t", " ").split(" ") if p]
        # RFC 3261 8.1.1.5: the sequence number is a 32-bit unsigned integer below 2**31.
        if (
            len(parts) != 2
            or not (parts[0].isascii() and parts[0].isdigit())
            or len(parts[0]) > 10
            or int(parts[0]) >= 2**31
            or not _is_method(parts[1])
        ):
            raise ParseError("Bad CSeq")
        return cls(int(parts[0]), parts[1])

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


_KNOWN_METHODS = frozenset(
    [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "UPDATE",
        "INFO",
        "REFER",
        "NOTIFY",
        "SUBSCRIBE",
        "MESSAGE",
        "PUBLISH",
    ]
)


def _is_method(text: str) -> bool:
    return text in _KNOWN_METHODS or is_token(text)


# --- messages ----------------------------------------------------------------------------------

_T = TypeVar("_T")
# Headers a response copies from its request (RFC 3261 8.2.6.2): answering needs them all.
_ANSWER_KEYS = ("via", "from", "to", "call-id", "cseq")
_MISSING = {
    "via": "Missing Via",
    "from": "Missing From",
    "to": "Missing To",
    "call-id": "Missing Call-ID",
    "cseq": "Missing CSeq",
}


class _Message:
    headers: Headers
    body: bytes

    def _start_line(self) -> str:
        raise NotImplementedError

    def _start_key(self) -> tuple[object, object]:
        raise NotImplementedError

    # -- errors -------------------------------------------------------------------------------

    def _answerable(self) -> bool:
        if not isinstance(self, Request):
            return False
        h = self.headers
        if any(k not in h._keys for k in _ANSWER_KEYS):
            return False
        for k, v in zip(h._keys, h._values, strict=True):
            if k in _ANSWER_KEYS and _SURROGATE.search(v) is not None:
                return False
        try:
            self._top_via()
        except ParseError:
            return False
        return True

    def _error(self, reason: str, *, status: int = 400) -> ParseError:
        request = self if isinstance(self, Request) and self._answerable() else None
        return ParseError(reason, request, status=status)

    def _structured(self, key: str, parse: Callable[[str], _T]) -> _T:
        value = self.headers.get(key)
        if value is None:
            raise self._error(_MISSING.get(key) or f"Missing {_CANONICAL[key]}")
        try:
            return parse(value)
        except GrammarError as exc:
            raise self._error(_reason(exc, key)) from None
        except ParseError as exc:
            raise self._error(exc.reason) from None

    def _structured_list(self, key: str, parse: Callable[[str], _T]) -> list[_T]:
        try:
            values = self.headers.get_all(key)
            return [parse(v) for v in values]
        except GrammarError as exc:
            raise self._error(_reason(exc, key)) from None
        except ParseError as exc:
            raise self._error(exc.reason) from None

    def validate(self) -> None:
        """Raise ParseError unless the headers every transaction and dialog reads (RFC 3261
        8.1.1: Via, From, To, Call-ID, CSeq, and for requests Max-Forwards if present and a
        CSeq method equal to the request method) are present and well formed.
        `parse_message` has already done this for the messages it returns."""
        for key in _ANSWER_KEYS:
            if key not in self.headers._keys:
                raise self._error(_MISSING[key])
        self._validate()

    def _validate(self) -> None:
        # Each property parses and caches; accessing them is the validation.
        self.top_via  # noqa: B018
        cseq = self.cseq
        if isinstance(self, Request):
            if cseq.method != self.method:
                raise self._error("CSeq method does not match")
            self.max_forwards  # noqa: B018
        self.call_id  # noqa: B018
        self.from_  # noqa: B018
        self.to  # noqa: B018

    # -- header properties --------------------------------------------------------------------

    def _top_via(self) -> Via:
        """The top Via; raises ParseError without answering (answerability depends on it)."""
        cache = self.headers._cache()
        via = cache.top_via
        if via is None:
            value = self.headers.get("via")
            if value is None:
                raise ParseError("Missing Via")
            try:
                via = cache.top_via = _parse_via(value)
            except GrammarError as exc:
                raise ParseError(_reason(exc, "via")) from None
        return via

    @property
    def top_via(self) -> Via:
        try:
            return self._top_via()
        except ParseError as exc:
            raise self._error(exc.reason) from None

    @property
    def vias(self) -> list[Via]:
        cache = self.headers._cache()
        if cache.vias is None:
            vias = self._structured_list("via", _parse_via)
            if not vias:
                raise self._error("Missing Via")
            cache.vias = vias
        return cache.vias

    @property
    def call_id(self) -> str:
        value = self.headers.get("call-id")
        if value is None:
            raise self._error("Missing Call-ID")
        if not value or " " in value or "\t" in value:
            raise self._error("Bad Call-ID")
        return value

    @property
    def cseq(self) -> CSeq:
        cache = self.headers._cache()
        if cache.cseq is None:
            cache.cseq = self._structured("cseq", CSeq.parse)
        return cache.cseq

    @property
    def from_(self) -> NameAddr:
        cache = self.headers._cache()
        if cache.from_ is None:
            cache.from_ = self._structured("from", _parse_name_addr)
        return cache.from_

    @property
    def to(self) -> NameAddr:
        cache = self.headers._cache()
        if cache.to is None:
            cache.to = self._structured("to", _parse_name_addr)
        return cache.to

    @property
    def max_forwards(self) -> int | None:
        """None when absent (callers then use 70, RFC 3261 8.1.1.6); 0..255 otherwise."""
        value = self.headers.get("max-forwards")
        if value is None:
            return None
        if not (value.isascii() and value.isdigit()) or len(value) > 3 or int(value) > 255:
            raise self._error("Bad Max-Forwards")
        return int(value)

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values; the REGISTER wildcard `*` (RFC 3261 10.2.2) raises "Bad Contact"."""
        cache = self.headers._cache()
        if cache.contacts is None:
            cache.contacts = self._structured_list("contact", _parse_name_addr)
        return cache.contacts

    @property
    def routes(self) -> list[NameAddr]:
        cache = self.headers._cache()
        if cache.routes is None:
            cache.routes = self._structured_list("route", _parse_name_addr)
        return cache.routes

    @property
    def record_routes(self) -> list[NameAddr]:
        cache = self.headers._cache()
        if cache.record_routes is None:
            cache.record_routes = self._structured_list("record-route", _parse_name_addr)
        return cache.record_routes

    def __bytes__(self) -> bytes:
        h = self.headers
        body = self.body
        raw = h._raw
        if raw is not None and h._raw_cl == len(body) and h._raw_start == self._start_key():
            return raw + body
        return _serialize(self._start_line(), h, body)


_LEXICAL_FAULTS = frozenset(("Unterminated quoted string", "Unterminated angle bracket"))


def _reason(exc: GrammarError, key: str) -> str:
    # A lexical fault is named as such; anything else names the header it is in.
    if exc.reason in _LEXICAL_FAULTS:
        return exc.reason
    return f"Bad {_CANONICAL.get(key, key)}"


@dataclass
class Request(_Message):
    method: str
    uri: str
    headers: Headers
    body: bytes = b""

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def _start_key(self) -> tuple[object, object]:
        return (self.method, self.uri)

    @property
    def parsed_uri(self) -> SipUri:
        cache = self.headers._cache()
        if cache.uri is None or cache.uri_text != self.uri:
            try:
                cache.uri = parse_uri(self.uri)
            except GrammarError as exc:
                if exc.reason == "Unsupported URI scheme":
                    # RFC 3261 8.2.2.1: 416 (Unsupported URI Scheme).
                    raise self._error("Unsupported URI Scheme", status=416) from None
                raise self._error("Bad Request-URI") from None
            cache.uri_text = self.uri
        return cache.uri


@dataclass
class Response(_Message):
    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def _start_key(self) -> tuple[object, object]:
        return (self.status, self.reason)


Message: TypeAlias = Request | Response


def _serialize(start: str, h: Headers, body: bytes) -> bytes:
    lines = [start]
    append = lines.append
    length = str(len(body))
    wrote_length = False
    for key, name, value in zip(h._keys, h._names, h._values, strict=True):
        if key == "content-length":
            # RFC 3261 18.3 / 20.14: the length always describes the body being sent.
            if not wrote_length:
                append(name + ": " + length)
                wrote_length = True
        else:
            append(name + ": " + value)
    if not wrote_length:
        append("Content-Length: " + length)
    append("\r\n")
    # surrogateescape gives back the original bytes of a value that was not valid UTF-8.
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body


# --- parsing -----------------------------------------------------------------------------------

# Control characters other than HTAB, CR and LF are not allowed in a head (RFC 3261 25.1:
# TEXT-UTF8char = %x21-7E / UTF8-NONASCII, plus LWS). NUL in particular truncates C peers.
_HEAD_FORBIDDEN = bytes([*range(0, 9), 11, 12, *range(14, 32), 127])
# Deleting these from a head leaves only its CRs, LFs and forbidden bytes.
_NOT_CONTROL = bytes(b for b in range(256) if b not in _HEAD_FORBIDDEN and b not in (10, 13))
_CRLF = b"\r\n"


def parse_message(
    data: bytes | bytearray | memoryview,
    *,
    max_size: int = MAX_MESSAGE_SIZE,
    max_headers: int = MAX_HEADERS,
    max_line: int = MAX_LINE_LENGTH,
) -> Request | Response:
    """Parse one complete message (a datagram, or a message framed by Content-Length).

    Extra bytes after Content-Length are ignored (RFC 3261 18.3); without Content-Length the
    body is the rest of the datagram. Both CRLF and lone LF line endings are accepted, and
    folded header lines are unfolded.
    """
    if type(data) is not bytes:
        data = bytes(data)
    size = len(data)
    if size > max_size:
        raise ParseError("Message too large", status=513)
    start = 0
    if size and data[0] in (13, 10):
        # RFC 3261 7.5: CRLFs before the start line (keep-alives on streams) are ignored.
        start = size - len(data.lstrip(b"\r\n"))

    # Fast path: the head ends at the first CRLFCRLF and holds nothing but CRLF line breaks:
    # when every CR and LF left by deleting the ordinary bytes belongs to a CRLF pair of the
    # head itself, there is no lone CR or LF (hence no earlier empty line) and no control
    # character. (Comparing `breaks` alone would take "\r3\n" for a CRLF.)
    head_end = data.find(b"\r\n\r\n", start)
    canonical = False
    if head_end >= 0:
        head = data[start:head_end]
        breaks = head.translate(None, _NOT_CONTROL)
        pairs = head.count(_CRLF)
        canonical = len(breaks) == 2 * pairs
    if canonical:
        body_start = head_end + 4
        if pairs >= max_headers * 4:
            raise ParseError("Too many headers")  # before any per-line work on a flood
        try:
            text = head.decode()
            bad_utf8 = False
        except UnicodeDecodeError:
            text = head.decode("utf-8", "surrogateescape")
            bad_utf8 = True
        lines = text.split("\r\n")
    else:
        text, body_start, bad_utf8 = _head_slow(data, start, max_headers)
        lines = text.split("\n")

    if len(lines) - 1 > max_headers:
        raise ParseError("Too many headers")
    folded = False
    indexed = _index_lines(lines)
    if indexed is None:
        # RFC 3261 7.3.1: a line starting with whitespace continues the previous one.
        folded = True
        lines = _unfold(lines)
        indexed = _index_lines(lines)
        assert indexed is not None
    if len(text) > max_line and max(map(len, lines)) > max_line:
        raise ParseError("Header line too long")
    keys, names, values = indexed

    first = lines[0]
    version_ok = True
    is_request = not first.startswith("SIP/")
    if is_request:
        parts = first.split(" ")
        if len(parts) != 3:
            # Tolerate runs of SP (but no other whitespace: RFC 3261 7.1 has only SP here).
            parts = [p for p in parts if p]
            if len(parts) != 3:
                raise ParseError("Bad request line")
        method, uri, version = parts
        if not _is_method(method) or ":" not in uri:
            raise ParseError("Bad request line")
        if version != "SIP/2.0":
            if not version.upper().startswith("SIP/"):
                raise ParseError("Bad request line")
            version_ok = version.upper() == "SIP/2.0"
    else:
        version, _, rest = first.partition(" ")
        code, _, phrase = rest.partition(" ")
        if len(code) != 3 or not (code.isascii() and code.isdigit()) or code[0] not in "123456":
            raise ParseError("Bad status line")
        version_ok = version == "SIP/2.0"
    headers = Headers._from_lists(keys, names, values)
    msg: Request | Response = (
        Request(method, uri, headers) if is_request else Response(int(code), phrase, headers)
    )

    for key in _ANSWER_KEYS:
        if key not in keys:
            raise ParseError(_MISSING[key])
    if bad_utf8:
        where = "start line" if _SURROGATE.search(first) else "header"
        raise msg._error(f"Invalid UTF-8 in {where}")

    # RFC 3261 18.3 / 20.14: the body is Content-Length bytes; a datagram may carry more
    # (ignored) but not fewer, and without Content-Length it is the rest of the datagram.
    available = size - body_start
    length = available
    if "content-length" in keys:
        i = keys.index("content-length")
        text_length = values[i]
        if not (text_length.isascii() and text_length.isdigit()):
            raise msg._error("Bad Content-Length")
        length = int(text_length) if len(text_length) <= 10 else size + 1
        if length > available:
            raise msg._error("Bad Content-Length")
        if keys.count("content-length") == 1:
            if canonical and not folded:
                # bytes() gives back this head verbatim while nothing in it changes.
                headers._raw = data[start:body_start]
                headers._raw_start = msg._start_key()
                headers._raw_cl = length
        elif any(
            k == "content-length" and v != text_length for k, v in zip(keys, values, strict=True)
        ):
            raise msg._error("Bad Content-Length")
        if length != available:
            msg.body = data[body_start : body_start + length]
        else:
            msg.body = data[body_start:]
    else:
        msg.body = data[body_start:]

    msg._validate()
    if not version_ok:
        raise msg._error("Version Not Supported", status=505)
    return msg


def _head_slow(data: bytes, start: int, max_headers: int) -> tuple[str, int, bool]:
    """The head of a message that is not pure CRLF: lone LF line ends, a head that is not
    followed by an empty line, or one with control characters. Returns the head text with
    LF line ends, where the body starts, and whether the head was invalid UTF-8."""
    size = len(data)
    crlf_end = data.find(b"\n\r\n", start)
    lf_end = data.find(b"\n\n", start, crlf_end + 1 if crlf_end >= 0 else size)
    if lf_end >= 0:
        head_end, body_start = lf_end, lf_end + 2
    elif crlf_end >= 0:
        head_end, body_start = crlf_end, crlf_end + 3
    elif size > start and data[-1] == 10:
        head_end, body_start = size - 1, size  # no empty line, but the last line is complete
    else:
        raise ParseError("Incomplete message" if size > start else "Empty message")
    head = data[start:head_end]
    if head.endswith(b"\r"):
        head = head[:-1]
    breaks = head.translate(None, _NOT_CONTROL)
    if breaks.translate(None, b"\r\n"):
        raise ParseError("Invalid control character in header")
    if head.count(b"\r") != head.count(_CRLF):
        raise ParseError("Invalid control character in header")  # a CR outside CRLF
    if breaks.count(b"\n") >= max_headers * 4:
        raise ParseError("Too many headers")
    head = head.replace(b"\r\n", b"\n")
    try:
        return head.decode(), body_start, False
    except UnicodeDecodeError:
        return head.decode("utf-8", "surrogateescape"), body_start, True


def _index_lines(lines: list[str]) -> tuple[list[str], list[str], list[str]] | None:
    """(keys, names, values) of the header lines, or None if a line is a continuation."""
    keys: list[str] = []
    names: list[str] = []
    values: list[str] = []
    key_get = _KEYS.get
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = key_get(name)
        if key is None or not colon:
            if line[:1] in (" ", "\t"):
                return None
            if not colon:
                raise ParseError("Bad header line")
            name = name.rstrip(" \t")
            key = _slow_key(name)
            if key is None:
                raise ParseError("Bad header name")
        keys.append(key)
        names.append(name)
        values.append(value.strip(" \t"))
    return keys, names, values


def _unfold(lines: list[str]) -> list[str]:
    """Join continuation lines (RFC 3261 7.3.1: LWS with a line break equals one SP)."""
    out: list[list[str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if len(out) < 2:
                raise ParseError("Bad header line")  # a continuation of the start line
            out[-1].append(line.strip(" \t"))
        else:
            out.append([line])
    # Joining pieces once keeps this linear in the message size however many lines are folded.
    return [
        parts[0] if len(parts) == 1 else " ".join([parts[0].rstrip(" \t"), *parts[1:]])
        for parts in out
    ]


# --- responses, branches and tags --------------------------------------------------------------

REASON_PHRASES = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    433: "Anonymity Disallowed",
    436: "Bad Identity Info",
    437: "Unsupported Credential",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}
_CLASS_PHRASES = {
    1: "Informational",
    2: "Success",
    3: "Redirection",
    4: "Client Error",
    5: "Server Error",
    6: "Global Failure",
}


def make_response(
    request: Request, status: int, reason: str | None = None, *, to_tag: str | None = None
) -> Response:
    """A response to `request` (RFC 3261 8.2.6): Via (all, in order), From, To, Call-ID and
    CSeq copied, a tag added to To when `to_tag` is given and To has none, and Timestamp
    copied into a 100 (RFC 3261 8.2.6.1). Values are copied verbatim, so this also answers a
    request whose From, To or CSeq failed to parse (the 400 for it)."""
    if not 100 <= status <= 699:
        raise ValueError(f"status out of range: {status}")
    src = request.headers
    keys: list[str] = []
    names: list[str] = []
    values: list[str] = []
    copied = (*_ANSWER_KEYS, "timestamp") if status == 100 else _ANSWER_KEYS
    for key, value in zip(src._keys, src._values, strict=True):
        if key not in copied:
            continue
        if key == "to" and to_tag is not None:
            try:
                has_tag = request.to.tag is not None
            except ParseError:
                has_tag = True  # leave an unparseable To as it came
            if not has_tag:
                value = f"{value};tag={to_tag}"
        keys.append(key)
        names.append(_CANONICAL[key])
        values.append(value)
    if reason is None:
        reason = REASON_PHRASES.get(status) or _CLASS_PHRASES[status // 100]
    return Response(status, reason, Headers._from_lists(keys, names, values))


# Tags and branches take their bits from the kernel's CSPRNG as secrets.token_hex does,
# 4 KiB per getrandom call instead of one call per tag: a call uses about six, and one
# syscall each cost signaling 1.5 % of its CPU at 250 calls/s (py-spy). A forked child
# starts with an empty pool, so it never repeats its parent's values.
_RANDOM_CHUNK = 4096
_random_pool = bytearray()


def _random_hex(size: int) -> str:
    global _random_pool
    if len(_random_pool) < size:
        _random_pool = bytearray(os.urandom(_RANDOM_CHUNK))
    taken = _random_pool[-size:]
    del _random_pool[-size:]
    return taken.hex()


def _forget_random_pool() -> None:
    _random_pool.clear()


os.register_at_fork(after_in_child=_forget_random_pool)


def new_branch() -> str:
    """A branch unique across space and time (RFC 3261 8.1.1.7), with the magic cookie."""
    return BRANCH_COOKIE + _random_hex(10)


def new_tag() -> str:
    """A From/To tag with 64 random bits (RFC 3261 19.3 asks for at least 32)."""
    return _random_hex(8)
