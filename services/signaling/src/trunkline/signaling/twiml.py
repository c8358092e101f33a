"""TwiML for voice: a document in, the verbs a call runs out (no I/O).

The subset that disaster recovery runs (issue 7): `<Dial>` with `<Number>` and `<Sip>`,
`<Reject>`, `<Hangup>`, `<Redirect>` and `<Pause>`. `<Play>` and `<Say>` parse as
`Unsupported` until the media service can play audio, and so do the Twilio verbs that need
more than a B2BUA (`<Gather>`, `<Record>`, `<Enqueue>`, ...). Anything else is refused with
Twilio's error code, so a customer reads the same code in Trunkline's logs as in Twilio's
debugger.

The document comes from a customer's web server, so it is parsed defensively: at most
64 KiB (Twilio's limit, error 11750), no DOCTYPE at all (no entity declarations, hence no
"billion laughs" and no external entities), a bound on elements, depth and verbs.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urljoin, urlsplit
from xml.parsers import expat

from trunkline.domain.numbers import is_e164
from trunkline.domain.origination import InvalidSipUrl, parse_sip_url

__all__ = [
    "DEFAULT_DIAL_TIMEOUT",
    "DEFAULT_PAUSE_LENGTH",
    "MAX_DIAL_TARGETS",
    "MAX_DIAL_TIMEOUT",
    "MAX_DOCUMENT_BYTES",
    "MAX_PAUSE_LENGTH",
    "MAX_VERBS",
    "Dial",
    "DialTarget",
    "ErrorCode",
    "Hangup",
    "Number",
    "Pause",
    "Redirect",
    "Reject",
    "Sip",
    "TwimlError",
    "Unsupported",
    "Verb",
    "parse_twiml",
]

MAX_DOCUMENT_BYTES = 64 * 1024  # Twilio: "the response body is larger than 64 kB" (11750)
MAX_VERBS = 100
MAX_DIAL_TARGETS = 10  # Twilio dials at most ten nouns of one <Dial> at once
MAX_ELEMENTS = 1_000
MAX_DEPTH = 8  # <Response><Gather><Say> is the deepest TwiML; deeper is not TwiML
DEFAULT_DIAL_TIMEOUT = 30
MAX_DIAL_TIMEOUT = 600  # Twilio's maximum; a longer timeout is capped, as Twilio does
DEFAULT_PAUSE_LENGTH = 1
MAX_PAUSE_LENGTH = 600  # Trunkline's cap: a document must not hold a call for hours

_METHODS = ("GET", "POST")
# What a SIP From user part can carry as is; used for a callerId toward <Sip> only.
_SIP_CALLER_ID = re.compile(r"^[A-Za-z0-9+\-_.]{1,64}$")
_NUMBER_PUNCTUATION = str.maketrans("", "", " \t\r\n-().")


class ErrorCode(enum.IntEnum):
    """Twilio's codes for what goes wrong in fetching and running TwiML.

    `title` is Twilio's title: it is safe to put in a SIP reason phrase (it names no URL).
    """

    INVALID_URL = 11100
    HTTP_RETRIEVAL_FAILURE = 11200
    HTTP_CONNECTION_FAILURE = 11205
    HTTP_PROTOCOL_VIOLATION = 11206
    HTTP_BAD_HOST_NAME = 11210
    HTTP_TOO_MANY_REDIRECTS = 11215
    TLS_HANDSHAKE_ERROR = 11220
    RESPONSE_TOO_LARGE = 11750
    DOCUMENT_PARSE_FAILURE = 12100
    ROOT_NOT_RESPONSE = 12102
    SCHEMA_VALIDATION = 12200
    INVALID_CONTENT_TYPE = 12300
    DIAL_INVALID_TIMEOUT = 13212
    DIAL_INVALID_CALLER_ID = 13214
    DIAL_INVALID_NUMBER = 13223
    PAUSE_INVALID_LENGTH = 13910
    INVALID_DIAL_SIP = 32214

    @property
    def title(self) -> str:
        return _TITLES[self]


_TITLES: dict[ErrorCode, str] = {
    ErrorCode.INVALID_URL: "Invalid URL format",
    ErrorCode.HTTP_RETRIEVAL_FAILURE: "HTTP retrieval failure",
    ErrorCode.HTTP_CONNECTION_FAILURE: "HTTP connection failure",
    ErrorCode.HTTP_PROTOCOL_VIOLATION: "HTTP protocol violation",
    ErrorCode.HTTP_BAD_HOST_NAME: "HTTP bad host name",
    ErrorCode.HTTP_TOO_MANY_REDIRECTS: "HTTP too many redirects",
    ErrorCode.TLS_HANDSHAKE_ERROR: "SSL/TLS Handshake Error",
    ErrorCode.RESPONSE_TOO_LARGE: "TwiML response body too large",
    ErrorCode.DOCUMENT_PARSE_FAILURE: "Document parse failure",
    ErrorCode.ROOT_NOT_RESPONSE: "The root element must be Response",
    ErrorCode.SCHEMA_VALIDATION: "Schema validation warning",
    ErrorCode.INVALID_CONTENT_TYPE: "Invalid Content-Type",
    ErrorCode.DIAL_INVALID_TIMEOUT: "Dial: Invalid timeout value",
    ErrorCode.DIAL_INVALID_CALLER_ID: "Dial: Invalid callerId value",
    ErrorCode.DIAL_INVALID_NUMBER: "Dial: Invalid phone number format",
    ErrorCode.PAUSE_INVALID_LENGTH: "Pause: Invalid length value",
    ErrorCode.INVALID_DIAL_SIP: "SIP: Invalid <Dial><Sip>",
}


class TwimlError(ValueError):
    """The document cannot be run; `code` is Twilio's error code, `message` says why."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{int(code)} {code.title}: {message}")
        self.code = code
        self.message = message


# --- verbs and nouns ------------------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    """`<Number>`: a phone number in E.164, as the carrier is sent it."""

    number: str


@dataclass(frozen=True)
class Sip:
    """`<Sip>`: a sip: or sips: URI, with digest credentials if the far end challenges."""

    uri: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)


DialTarget = Number | Sip


@dataclass(frozen=True)
class Dial:
    """`<Dial>`: ring every target at once (Twilio's rule); the first to answer is bridged."""

    targets: tuple[DialTarget, ...]
    timeout: int = DEFAULT_DIAL_TIMEOUT
    caller_id: str | None = None  # None: the caller's own number
    action: str | None = None  # an absolute URL: fetched when the dialed call ends
    method: str = "POST"


@dataclass(frozen=True)
class Reject:
    """`<Reject>`: refuse the call without answering it."""

    reason: Literal["busy", "rejected"] = "rejected"


@dataclass(frozen=True)
class Hangup:
    """`<Hangup>`: end the call."""


@dataclass(frozen=True)
class Redirect:
    """`<Redirect>`: continue with the TwiML at another URL (resolved to an absolute one)."""

    url: str
    method: str = "POST"


@dataclass(frozen=True)
class Pause:
    """`<Pause>`: wait `length` seconds."""

    length: int = DEFAULT_PAUSE_LENGTH


@dataclass(frozen=True)
class Unsupported:
    """A Twilio verb that Trunkline cannot run yet; `message` says which and why.

    `audio` is true for verbs that only play something to the caller (`<Play>`, `<Say>`):
    skipping them leaves the rest of the document meaningful, which is not so for others.
    """

    verb: str
    message: str
    audio: bool = False


Verb = Dial | Reject | Hangup | Redirect | Pause | Unsupported

_AUDIO_VERBS = ("Play", "Say")
_UNSUPPORTED_VERBS = (
    "Gather",
    "Record",
    "Enqueue",
    "Leave",
    "Connect",
    "Start",
    "Stop",
    "Pay",
    "Prompt",
    "Refer",
    "Echo",
    "Sms",
)
_UNSUPPORTED_DIAL_NOUNS = ("Client", "Conference", "Queue", "Sim", "Application", "WhatsApp")


# --- parsing --------------------------------------------------------------------------------


def parse_twiml(document: bytes | str, *, url: str | None = None) -> list[Verb]:
    """The verbs of a TwiML document, in order, or `TwimlError`.

    `url` is the document's own URL: relative URLs in `<Redirect>` and `<Dial action>` are
    resolved against it (RFC 3986 section 5).
    """
    data = document.encode() if isinstance(document, str) else document
    if len(data) > MAX_DOCUMENT_BYTES:
        raise TwimlError(
            ErrorCode.RESPONSE_TOO_LARGE,
            f"the document has {len(data)} bytes; TwiML may have at most {MAX_DOCUMENT_BYTES}",
        )
    # Whitespace before the XML declaration is a common slip (Twilio's 12100 lists it);
    # it carries nothing, so it is dropped rather than refused.
    data = data.lstrip(b" \t\r\n")
    if not data:
        raise TwimlError(ErrorCode.DOCUMENT_PARSE_FAILURE, "the document is empty")
    root = _parse_xml(data, utf8=isinstance(document, str))
    if root.tag != "Response":
        raise TwimlError(
            ErrorCode.ROOT_NOT_RESPONSE,
            f"the root element is <{root.tag}>; a TwiML document is a <Response>",
        )
    _no_text(root, "<Response> may contain only verbs")
    if len(root.children) > MAX_VERBS:
        raise TwimlError(
            ErrorCode.SCHEMA_VALIDATION,
            f"the document has {len(root.children)} verbs; Trunkline runs at most {MAX_VERBS}",
        )
    return [_verb(element, url) for element in root.children]


@dataclass
class _Element:
    tag: str
    attrs: dict[str, str]
    line: int
    children: list[_Element] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)  # its own character data, not children's

    @property
    def text(self) -> str:
        return "".join(self.chunks).strip()

    def where(self) -> str:
        return f"<{self.tag}> on line {self.line}"


def _parse_xml(data: bytes, *, utf8: bool) -> _Element:
    # expat directly rather than ElementTree: only then can a DOCTYPE be refused at its
    # first byte, before any entity is declared, let alone expanded.
    parser = expat.ParserCreate("UTF-8" if utf8 else None)
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[_Element] = []
    roots: list[_Element] = []
    count = 0

    def refuse_doctype(*_: object) -> None:
        raise TwimlError(
            ErrorCode.DOCUMENT_PARSE_FAILURE,
            f"line {parser.CurrentLineNumber}: a DOCTYPE is not allowed in TwiML "
            "(entity declarations are refused)",
        )

    def refuse_entity(*_: object) -> int:
        raise TwimlError(
            ErrorCode.DOCUMENT_PARSE_FAILURE,
            f"line {parser.CurrentLineNumber}: entities are not allowed in TwiML",
        )

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal count
        count += 1
        if count > MAX_ELEMENTS:
            raise TwimlError(
                ErrorCode.SCHEMA_VALIDATION,
                f"the document has more than {MAX_ELEMENTS} elements",
            )
        if len(stack) >= MAX_DEPTH:
            raise TwimlError(
                ErrorCode.SCHEMA_VALIDATION,
                f"line {parser.CurrentLineNumber}: elements nested deeper than {MAX_DEPTH}",
            )
        element = _Element(tag, attrs, parser.CurrentLineNumber)
        if stack:
            stack[-1].children.append(element)
        else:
            roots.append(element)
        stack.append(element)

    def end(_tag: str) -> None:
        stack.pop()

    def characters(text: str) -> None:
        if stack:
            stack[-1].chunks.append(text)

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_entity
    parser.UnparsedEntityDeclHandler = refuse_entity
    parser.ExternalEntityRefHandler = refuse_entity
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    try:
        parser.Parse(data, True)
    except expat.ExpatError as error:
        raise TwimlError(
            ErrorCode.DOCUMENT_PARSE_FAILURE,
            f"line {error.lineno}, column {error.offset + 1}: {expat.ErrorString(error.code)}",
        ) from None
    return roots[0]  # expat refuses a document without exactly one root element


def _verb(element: _Element, base: str | None) -> Verb:
    tag = element.tag
    if tag == "Dial":
        return _dial(element, base)
    if tag == "Reject":
        _empty(element)
        reason = element.attrs.get("reason", "rejected")
        if reason == "busy":
            return Reject("busy")
        if reason == "rejected":
            return Reject("rejected")
        raise TwimlError(
            ErrorCode.SCHEMA_VALIDATION,
            f"{element.where()}: reason={reason!r}; it must be 'busy' or 'rejected'",
        )
    if tag == "Hangup":
        _empty(element)
        return Hangup()
    if tag == "Redirect":
        _no_children(element)
        return Redirect(_url(element.text, base, element), _method(element))
    if tag == "Pause":
        _empty(element)
        length = _integer(
            element,
            "length",
            DEFAULT_PAUSE_LENGTH,
            MAX_PAUSE_LENGTH,
            ErrorCode.PAUSE_INVALID_LENGTH,
        )
        return Pause(length)
    if tag in _AUDIO_VERBS:
        return Unsupported(
            tag,
            f"{element.where()}: Trunkline cannot play audio yet, so <{tag}> is not supported",
            audio=True,
        )
    if tag in _UNSUPPORTED_VERBS:
        return Unsupported(tag, f"{element.where()}: <{tag}> is not supported by Trunkline")
    raise TwimlError(ErrorCode.SCHEMA_VALIDATION, f"{element.where()}: {_unknown(tag, 'verb')}")


def _dial(element: _Element, base: str | None) -> Verb:
    targets: list[DialTarget] = []
    for child in element.children:
        if child.tag == "Number":
            _no_children(child)
            targets.append(Number(_number(child.text, child)))
        elif child.tag == "Sip":
            _no_children(child)
            targets.append(_sip(child))
        elif child.tag in _UNSUPPORTED_DIAL_NOUNS:
            return Unsupported(
                "Dial",
                f"{child.where()}: <Dial><{child.tag}> is not supported by Trunkline; "
                "dial a <Number> or a <Sip> URI",
            )
        else:
            raise TwimlError(
                ErrorCode.SCHEMA_VALIDATION,
                f"{child.where()}: {_unknown(child.tag, 'noun of <Dial>')}",
            )
    if element.text:
        if targets:
            raise TwimlError(
                ErrorCode.SCHEMA_VALIDATION,
                f"{element.where()} has both text and nouns; put the number in a <Number>",
            )
        targets.append(Number(_number(element.text, element)))  # <Dial>+1...</Dial>
    if not targets:
        raise TwimlError(
            ErrorCode.DIAL_INVALID_NUMBER,
            f"{element.where()} has nothing to dial: give it a <Number> or a <Sip>",
        )
    if len(targets) > MAX_DIAL_TARGETS:
        raise TwimlError(
            ErrorCode.SCHEMA_VALIDATION,
            f"{element.where()} has {len(targets)} nouns; at most {MAX_DIAL_TARGETS} are "
            "dialed at once",
        )
    timeout = _integer(
        element, "timeout", DEFAULT_DIAL_TIMEOUT, MAX_DIAL_TIMEOUT, ErrorCode.DIAL_INVALID_TIMEOUT
    )
    caller_id = _caller_id(element, targets)
    action_text = element.attrs.get("action")
    action = None if action_text is None else _url(action_text, base, element, "action")
    return Dial(tuple(targets), timeout, caller_id, action, _method(element))


def _number(text: str, element: _Element) -> str:
    number = text.translate(_NUMBER_PUNCTUATION)
    if is_e164(number):
        return number
    hint = " (to dial a SIP URI, put it in a <Sip>)" if ":" in text else ""
    raise TwimlError(
        ErrorCode.DIAL_INVALID_NUMBER,
        f"{element.where()}: {text!r} is not a phone number in E.164 format, "
        f"like +14155550100{hint}",
    )


def _sip(element: _Element) -> Sip:
    uri = element.text
    try:
        parse_sip_url(uri)
    except InvalidSipUrl as error:
        raise TwimlError(ErrorCode.INVALID_DIAL_SIP, f"{element.where()}: {error}") from None
    username = element.attrs.get("username")
    password = element.attrs.get("password")
    if (username is None) != (password is None):
        raise TwimlError(
            ErrorCode.INVALID_DIAL_SIP,
            f"{element.where()}: username and password go together; one is missing",
        )
    return Sip(uri, username, password)


def _caller_id(element: _Element, targets: list[DialTarget]) -> str | None:
    value = element.attrs.get("callerId")
    if value is None:
        return None
    value = value.strip()
    if is_e164(value):
        return value
    if all(isinstance(t, Sip) for t in targets) and _SIP_CALLER_ID.match(value):
        return value  # toward SIP, Twilio lets callerId be any SIP user name
    raise TwimlError(
        ErrorCode.DIAL_INVALID_CALLER_ID,
        f"{element.where()}: callerId={value!r} is not a phone number in E.164 format",
    )


def _integer(element: _Element, name: str, default: int, cap: int, code: ErrorCode) -> int:
    text = element.attrs.get(name)
    if text is None:
        return default
    text = text.strip()
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise TwimlError(
            code, f"{element.where()}: {name}={text!r} must be a positive whole number of seconds"
        )
    return min(int(text), cap)


def _method(element: _Element) -> str:
    method = element.attrs.get("method", "POST").strip().upper()
    if method not in _METHODS:
        raise TwimlError(
            ErrorCode.SCHEMA_VALIDATION,
            f"{element.where()}: method={element.attrs['method']!r} must be GET or POST",
        )
    return method


def _url(text: str, base: str | None, element: _Element, attribute: str | None = None) -> str:
    what = f"{element.where()}: " + (f"{attribute}=" if attribute else "")
    text = text.strip()
    if not text:
        raise TwimlError(ErrorCode.INVALID_URL, f"{what}has no URL")
    if any(c.isspace() or ord(c) < 32 for c in text):
        raise TwimlError(ErrorCode.INVALID_URL, f"{what}{text!r} contains spaces")
    try:
        # A URL with a scheme stands alone: urljoin would read "https://" as the base itself.
        absolute = urljoin(base, text) if base and not urlsplit(text).scheme else text
        parts = urlsplit(absolute)
        host = parts.hostname
    except ValueError as error:
        raise TwimlError(ErrorCode.INVALID_URL, f"{what}{text!r}: {error}") from None
    if parts.scheme not in ("http", "https") or not host:
        relative = "" if base else " (a relative URL needs the document's URL to resolve it)"
        raise TwimlError(
            ErrorCode.INVALID_URL, f"{what}{text!r} is not an http: or https: URL{relative}"
        )
    return absolute


def _no_children(element: _Element) -> None:
    if element.children:
        child = element.children[0]
        raise TwimlError(
            ErrorCode.SCHEMA_VALIDATION,
            f"{child.where()}: <{element.tag}> takes no nested elements",
        )


def _no_text(element: _Element, why: str) -> None:
    if element.text:
        raise TwimlError(ErrorCode.SCHEMA_VALIDATION, f"{element.where()}: {why}")


def _empty(element: _Element) -> None:
    _no_children(element)
    _no_text(element, f"<{element.tag}> takes no text")


_KNOWN = ("Dial", "Reject", "Hangup", "Redirect", "Pause", *_AUDIO_VERBS, *_UNSUPPORTED_VERBS)
_KNOWN_NOUNS = ("Number", "Sip", *_UNSUPPORTED_DIAL_NOUNS)


def _unknown(tag: str, what: str) -> str:
    known = _KNOWN_NOUNS if what.startswith("noun") else _KNOWN
    for name in known:
        if name.lower() == tag.lower():
            return f"<{tag}> is not a TwiML {what}; TwiML is case-sensitive: write <{name}>"
    return f"<{tag}> is not a TwiML {what}"
