"""Disaster recovery: when no origination URI answers, run the trunk's TwiML instead.

The guide: "if a serious failure keeps your calls from reaching the origination SIP URIs,
you can configure a Disaster Recovery URL pointing to a TwiML application". The runner
fetches that URL with the trunk's method, passing the call's parameters as Twilio names them,
and runs the verbs of the TwiML it gets back (see `twiml`). It does no I/O of its own: the
HTTP request and the call's actions (dial, pause) are injected, so the B2BUA plugs in its
own and the tests plug in fakes. `HttpFetcher` is the real fetcher, on httpx.

Decisions (Twilio's behaviour where it fits a B2BUA that cannot play audio yet):

- Leg A is not answered to run the TwiML: it keeps ringing until a `<Dial>` connects. So a
  document that ends the call before any `<Dial>` connected answers leg A with a final
  response instead of 200-then-BYE: `<Reject reason="busy">` 486, `reason="rejected"`
  603, `<Hangup>` or the document's end 480 (after a failed `<Dial>`, that dial's outcome
  is relayed: busy 486, no-answer 480, canceled 487, failed its SIP status or 502).
- Parameters: CallSid, AccountSid, From, To, Caller, Called, Direction
  (`trunking-originating`, the direction of a trunk's origination calls in the Call
  resource), ApiVersion, and CallStatus: `ringing` until a `<Dial>` connects (Twilio sends
  `ringing` on an incoming call's first request), `in-progress` after, `completed` once the
  caller hung up. GET puts them in the query string, POST form-encodes them.
- A failure of a URL (no connection, non-2xx, a wrong Content-Type, a document that does
  not parse or that asks for a verb Trunkline cannot run) ends the call with 32011, its
  reason phrase naming what failed (Twilio's title of the specific code: 11205, 12100,
  ...), never the URL: the reason reaches the caller's carrier. `Ending.failures` keeps the
  URL and the specific code for the customer's logs. No valid URL at all: 32010.
- `<Play>` and `<Say>` are skipped with a notice (`skip_audio`): a recovery document
  usually greets the caller and then dials, and the dial matters more than the greeting.
- Every document after the first, whether a `<Redirect>` or a `<Dial action>` led to it,
  counts toward `max_redirects` (10), which stops loops.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import hmac
import ipaddress
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, NoReturn, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from trunkline.signaling.twiml import (
    MAX_DOCUMENT_BYTES,
    Dial,
    DialTarget,
    ErrorCode,
    Hangup,
    Pause,
    Redirect,
    Reject,
    TwimlError,
    Unsupported,
    Verb,
    parse_twiml,
)

__all__ = [
    "API_VERSION",
    "DIRECTION",
    "MAX_REDIRECTS",
    "NO_VALID_URL",
    "URL_FAILED",
    "CallControl",
    "CallParameters",
    "CallStatus",
    "DialResult",
    "DialStatus",
    "EndKind",
    "Ending",
    "Fetch",
    "FetchError",
    "HttpFetcher",
    "HttpResponse",
    "Resolver",
    "Signer",
    "UrlFailure",
    "redact",
    "run_disaster_recovery",
    "twilio_signature",
]

log = logging.getLogger("trunkline.signaling.disaster_recovery")

API_VERSION = "2010-04-01"
DIRECTION = "trunking-originating"
MAX_REDIRECTS = 10
NO_VALID_URL = 32010  # "SIP: No valid Origination URIs configured"
URL_FAILED = 32011  # "Error communicating with your SIP communications infrastructure"
# Twilio reads TwiML from these; anything else (audio, JSON, plain text) is 12300.
XML_CONTENT_TYPES = frozenset({"text/xml", "application/xml", "text/html"})
SIGNATURE_HEADER = "X-Twilio-Signature"


class CallStatus(enum.StrEnum):
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    CANCELED = "canceled"


class DialStatus(enum.StrEnum):
    """Twilio's DialCallStatus: how a `<Dial>` ended."""

    COMPLETED = "completed"  # answered, bridged, then hung up by the dialed party
    ANSWERED = "answered"  # answered and bridged (Twilio uses it when the caller hung up)
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    CANCELED = "canceled"


_CONNECTED = (DialStatus.COMPLETED, DialStatus.ANSWERED)


@dataclass(frozen=True)
class CallParameters:
    """The call, as the TwiML application is told about it."""

    call_sid: str
    account_sid: str
    from_: str
    to: str
    direction: str = DIRECTION
    extra: Mapping[str, str] = field(default_factory=dict)  # CallerName, ForwardedFrom, ...

    def form(self, status: CallStatus) -> dict[str, str]:
        return {
            "CallSid": self.call_sid,
            "AccountSid": self.account_sid,
            "From": self.from_,
            "To": self.to,
            "Caller": self.from_,
            "Called": self.to,
            "Direction": self.direction,
            "CallStatus": str(status),
            "ApiVersion": API_VERSION,
            **self.extra,
        }


@dataclass(frozen=True)
class DialResult:
    """How the B2BUA's attempt at a `<Dial>` ended."""

    status: DialStatus
    call_sid: str | None = None  # DialCallSid: the SID of the dialed leg, if one was created
    duration: int = 0  # DialCallDuration: seconds bridged
    sip_status: int | None = None  # DialSipResponseCode: the far leg's final SIP status
    caller_hung_up: bool = False  # leg A ended during the dial: run nothing more


class CallControl(Protocol):
    """What the runner asks of the B2BUA. Cancel the runner's task when the caller hangs up
    outside a dial (during a fetch or a pause)."""

    async def dial(
        self, targets: Sequence[DialTarget], timeout: int, caller_id: str | None
    ) -> DialResult: ...

    async def pause(self, seconds: int) -> None: ...


class HttpResponse(NamedTuple):
    status: int
    content_type: str
    body: bytes
    url: str | None = None  # the URL that answered, after HTTP redirects: the document's URL


class FetchError(Exception):
    """The request got no usable answer; `code` is Twilio's (11205, 11210, 11220, ...)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{int(code)} {code.title}: {message}")
        self.code = code
        self.message = message


class Fetch(Protocol):
    async def __call__(self, url: str, method: str, params: Mapping[str, str]) -> HttpResponse: ...


class EndKind(enum.StrEnum):
    REJECTED = "rejected"  # <Reject>
    HUNG_UP = "hung-up"  # <Hangup>, or the document ran out of verbs
    CALLER_HUNG_UP = "caller-hung-up"  # leg A ended during a <Dial>
    FAILED = "failed"  # no valid URL, or a URL failed


@dataclass(frozen=True)
class UrlFailure:
    url: str  # credentials removed
    method: str
    code: ErrorCode
    message: str


@dataclass(frozen=True)
class Ending:
    """How the call ends. If leg A was never answered (`answered` false), it gets the final
    response `sip_status` with `reason`; otherwise the B2BUA ends it with a BYE."""

    kind: EndKind
    sip_status: int
    reason: str  # a reason phrase that says what happened; names no URL
    call_status: CallStatus
    code: int = 0  # Twilio error code for X-Trunkline-Error-Code and the CDR; 0: none
    answered: bool = False  # a <Dial> connected, so leg A was answered
    detail: str = ""  # for the customer's logs: which URL, what went wrong
    failures: tuple[UrlFailure, ...] = ()
    notices: tuple[str, ...] = ()  # what was skipped (<Play>, <Say>)


async def run_disaster_recovery(
    url: str | None,
    method: str,
    call: CallParameters,
    *,
    fetch: Fetch,
    control: CallControl,
    max_redirects: int = MAX_REDIRECTS,
    skip_audio: bool = True,
) -> Ending:
    """Fetch the trunk's disaster recovery URL and run its TwiML until the call ends."""
    return await _Run(call, fetch, control, max_redirects, skip_audio).run(url, method)


@dataclass(frozen=True)
class _Next:
    url: str
    method: str
    params: Mapping[str, str]


class _Failed(Exception):
    def __init__(self, failure: UrlFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class _Run:
    def __init__(
        self,
        call: CallParameters,
        fetch: Fetch,
        control: CallControl,
        max_redirects: int,
        skip_audio: bool,
    ) -> None:
        self.call = call
        self.fetch = fetch
        self.control = control
        self.max_redirects = max_redirects
        self.skip_audio = skip_audio
        self.answered = False
        self.caller_gone = False
        self.last_dial: DialResult | None = None
        self.failures: list[UrlFailure] = []
        self.notices: list[str] = []
        self.url = ""
        self.method = ""

    async def run(self, url: str | None, method: str) -> Ending:
        method = method.strip().upper()
        if not url or not _is_http_url(url) or method not in ("GET", "POST"):
            what = "none" if not url else f"{redact(url)} ({method})"
            return self._ending(
                EndKind.FAILED,
                480,
                "Temporarily Unavailable: no origination URI answered and the trunk has no "
                f"valid disaster recovery URL ({NO_VALID_URL})",
                CallStatus.FAILED,
                code=NO_VALID_URL,
                detail=f"no valid disaster recovery URL: {what}",
            )
        followed = 0
        step: _Next | Ending = _Next(url, method, {})
        try:
            while isinstance(step, _Next):
                if followed > self.max_redirects:
                    self._fail(
                        ErrorCode.HTTP_TOO_MANY_REDIRECTS,
                        f"more than {self.max_redirects} documents followed one another "
                        "(<Redirect> or <Dial action>): a loop?",
                        url=step.url,
                        method=step.method,
                    )
                verbs = await self._load(step)
                followed += 1
                step = await self._execute(verbs)
        except _Failed as failed:
            return self._failed(failed.failure)
        return step

    # --- documents ------------------------------------------------------------------------

    async def _load(self, step: _Next) -> list[Verb]:
        self.url, self.method = step.url, step.method
        params = self.call.form(self._status()) | dict(step.params)
        try:
            response = await self.fetch(step.url, step.method, params)
        except FetchError as error:
            self._fail(error.code, error.message)
        if not 200 <= response.status < 300:
            self._fail(ErrorCode.HTTP_RETRIEVAL_FAILURE, f"answered HTTP {response.status}")
        media_type = response.content_type.split(";", 1)[0].strip().lower()
        if media_type not in XML_CONTENT_TYPES:
            shown = media_type or "no Content-Type"
            self._fail(
                ErrorCode.INVALID_CONTENT_TYPE,
                f"answered {shown}; TwiML is served as text/xml or application/xml",
            )
        try:
            return parse_twiml(response.body, url=response.url or step.url)
        except TwimlError as error:
            self._fail(error.code, error.message)

    async def _execute(self, verbs: list[Verb]) -> _Next | Ending:
        for verb in verbs:
            if isinstance(verb, Dial):
                outcome = await self._dial(verb)
                if outcome is not None:
                    return outcome
            elif isinstance(verb, Pause):
                await self.control.pause(verb.length)
            elif isinstance(verb, Redirect):
                return _Next(verb.url, verb.method, {})
            elif isinstance(verb, Reject):
                return self._rejected(verb)
            elif isinstance(verb, Hangup):
                return self._hung_up("<Hangup>")
            elif isinstance(verb, Unsupported):
                if not (verb.audio and self.skip_audio):
                    self._fail(ErrorCode.SCHEMA_VALIDATION, verb.message)
                self.notices.append(f"skipped: {verb.message}")
        return self._hung_up("the end of the document")

    async def _dial(self, dial: Dial) -> _Next | Ending | None:
        result = await self.control.dial(dial.targets, dial.timeout, dial.caller_id)
        self.last_dial = result
        self.answered = self.answered or result.status in _CONNECTED
        params = _dial_params(result)
        if result.caller_hung_up:
            self.caller_gone = True
            if dial.action is not None:
                await self._notify(_Next(dial.action, dial.method, params))
            connected = self.answered
            return self._ending(
                EndKind.CALLER_HUNG_UP,
                487,
                "Request Terminated: the caller hung up",
                CallStatus.COMPLETED if connected else CallStatus.CANCELED,
            )
        if dial.action is not None:
            return _Next(dial.action, dial.method, params)  # verbs after it are unreachable
        return None

    async def _notify(self, step: _Next) -> None:
        """Twilio requests the action URL even when the caller is gone; its TwiML is moot."""
        try:
            await self._load(step)
        except _Failed as failed:
            self.failures.append(failed.failure)

    # --- endings --------------------------------------------------------------------------

    def _status(self) -> CallStatus:
        if self.caller_gone:
            return CallStatus.COMPLETED
        return CallStatus.IN_PROGRESS if self.answered else CallStatus.RINGING

    def _rejected(self, reject: Reject) -> Ending:
        if reject.reason == "busy":
            return self._ending(EndKind.REJECTED, 486, "Busy Here", CallStatus.BUSY)
        # Twilio: a call refused with reason "rejected" ends with status no-answer.
        return self._ending(EndKind.REJECTED, 603, "Decline", CallStatus.NO_ANSWER)

    def _hung_up(self, by: str) -> Ending:
        if self.answered:
            return self._ending(EndKind.HUNG_UP, 200, f"OK: {by}", CallStatus.COMPLETED)
        dial = self.last_dial
        if dial is not None:
            status, phrase, call_status = _DIAL_FAILURES[dial.status]
            if dial.status is DialStatus.FAILED and dial.sip_status and dial.sip_status >= 400:
                status = dial.sip_status
            return self._ending(
                EndKind.HUNG_UP, status, f"{phrase}: the dialed call {dial.status}", call_status
            )
        return self._ending(
            EndKind.HUNG_UP,
            480,
            f"Temporarily Unavailable: {by} of the disaster recovery TwiML",
            CallStatus.COMPLETED,
        )

    def _fail(
        self, code: ErrorCode, message: str, *, url: str | None = None, method: str | None = None
    ) -> NoReturn:
        raise _Failed(UrlFailure(redact(url or self.url), method or self.method, code, message))

    def _failed(self, failure: UrlFailure) -> Ending:
        self.failures.append(failure)
        log.warning(
            "disaster recovery failed",
            extra={
                "call_sid": self.call.call_sid,
                "url": failure.url,
                "code": int(failure.code),
                "error": failure.message,
            },
        )
        return self._ending(
            EndKind.FAILED,
            502,
            f"Bad Gateway: disaster recovery failed: {int(failure.code)} {failure.code.title}",
            CallStatus.COMPLETED if self.answered else CallStatus.FAILED,
            code=URL_FAILED,
            detail=f"{failure.method} {failure.url}: {int(failure.code)} {failure.message}",
        )

    def _ending(
        self,
        kind: EndKind,
        sip_status: int,
        reason: str,
        call_status: CallStatus,
        *,
        code: int = 0,
        detail: str = "",
    ) -> Ending:
        return Ending(
            kind,
            sip_status,
            reason,
            call_status,
            code=code,
            answered=self.answered,
            detail=detail,
            failures=tuple(self.failures),
            notices=tuple(self.notices),
        )


_DIAL_FAILURES: dict[DialStatus, tuple[int, str, CallStatus]] = {
    DialStatus.BUSY: (486, "Busy Here", CallStatus.BUSY),
    DialStatus.NO_ANSWER: (480, "Temporarily Unavailable", CallStatus.NO_ANSWER),
    DialStatus.CANCELED: (487, "Request Terminated", CallStatus.CANCELED),
    DialStatus.FAILED: (502, "Bad Gateway", CallStatus.FAILED),
    # Not reached (a connected dial answers leg A), but total over DialStatus:
    DialStatus.COMPLETED: (200, "OK", CallStatus.COMPLETED),
    DialStatus.ANSWERED: (200, "OK", CallStatus.COMPLETED),
}


def _dial_params(result: DialResult) -> dict[str, str]:
    params = {"DialCallStatus": str(result.status)}
    if result.call_sid is not None:
        params["DialCallSid"] = result.call_sid
    if result.status in _CONNECTED:
        params["DialCallDuration"] = str(result.duration)
    if result.sip_status is not None:
        params["DialSipResponseCode"] = str(result.sip_status)
    return params


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def redact(url: str) -> str:
    """The URL without a password (Twilio lets a URL carry HTTP basic credentials)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return url


# --- the real fetcher -------------------------------------------------------------------------

Signer = Callable[[str, Mapping[str, str]], str]
Resolver = Callable[[str, int], Awaitable[list[str]]]

DEFAULT_TIMEOUT = 10.0  # seconds for the whole request; the caller is waiting
DEFAULT_CONNECT_TIMEOUT = 5.0
HTTP_MAX_REDIRECTS = 5
USER_AGENT = "Trunkline (disaster recovery)"


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(auth token, URL + each POST name and value in
    name order)), so applications that validate Twilio's requests accept these too."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class HttpFetcher:
    """Fetches TwiML over HTTP(S) with httpx: TLS verified, a few HTTP redirects followed,
    the body read up to 64 KiB, the whole request bounded by `timeout`.

    The URL is the customer's, so by default it may not lead (nor redirect) to a private,
    loopback or link-local address (Twilio refuses those too). A name is resolved before
    the request; the connection resolves it again, so DNS rebinding is not excluded.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_redirects: int = HTTP_MAX_REDIRECTS,
        max_body: int = MAX_DOCUMENT_BYTES,
        allow_private: bool = False,
        sign: Signer | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        resolve: Resolver | None = None,
    ) -> None:
        self._timeout = timeout
        self._max_body = max_body
        self._sign = sign
        self._resolve = resolve or _resolve
        hooks = {} if allow_private else {"request": [self._check_destination]}
        self._client = httpx.AsyncClient(
            transport=transport,
            follow_redirects=True,
            max_redirects=max_redirects,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            headers={
                "User-Agent": USER_AGENT,
                "Accept": "text/xml, application/xml, text/html;q=0.5",
                # A compressed body could expand far past its size on the wire.
                "Accept-Encoding": "identity",
            },
            event_hooks=hooks,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> HttpFetcher:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def __call__(self, url: str, method: str, params: Mapping[str, str]) -> HttpResponse:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._fetch(url, method, params)
        except TimeoutError:
            raise FetchError(
                ErrorCode.HTTP_CONNECTION_FAILURE, f"no answer within {self._timeout:g} s"
            ) from None
        except httpx.TimeoutException as error:
            raise FetchError(
                ErrorCode.HTTP_CONNECTION_FAILURE, f"timed out: {_describe(error)}"
            ) from None
        except httpx.TooManyRedirects:
            raise FetchError(
                ErrorCode.HTTP_TOO_MANY_REDIRECTS, "too many HTTP redirects (a loop?)"
            ) from None
        except httpx.ConnectError as error:
            raise _connect_failure(error) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:
            raise FetchError(ErrorCode.INVALID_URL, _describe(error)) from None
        except httpx.ProtocolError as error:
            raise FetchError(ErrorCode.HTTP_PROTOCOL_VIOLATION, _describe(error)) from None
        except httpx.HTTPError as error:
            raise FetchError(ErrorCode.HTTP_RETRIEVAL_FAILURE, _describe(error)) from None

    async def _fetch(self, url: str, method: str, params: Mapping[str, str]) -> HttpResponse:
        form = dict(params)
        if method == "GET":
            # `params=` would replace the URL's own query; Twilio appends to it.
            merged = httpx.URL(url).copy_merge_params(form)
            request = self._client.build_request("GET", merged)
            signed: Mapping[str, str] = {}  # GET: the parameters are signed as part of the URL
        else:
            request = self._client.build_request("POST", url, data=form)
            signed = form
        if self._sign is not None:
            request.headers[SIGNATURE_HEADER] = self._sign(str(request.url), signed)
        response = await self._client.send(request, stream=True)
        try:
            content_type = response.headers.get("content-type", "")
            if not response.is_success:
                return HttpResponse(response.status_code, content_type, b"", str(response.url))
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding != "identity":
                raise FetchError(
                    ErrorCode.HTTP_RETRIEVAL_FAILURE,
                    f"the body is compressed ({encoding}) though identity was asked for",
                )
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > self._max_body:
                raise _too_large(int(length), self._max_body)
            body = bytearray()
            # Identity encoding was checked above, so these are the bytes on the wire.
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self._max_body:
                    raise _too_large(len(body), self._max_body)
            return HttpResponse(response.status_code, content_type, bytes(body), str(response.url))
        finally:
            await response.aclose()

    async def _check_destination(self, request: httpx.Request) -> None:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        try:
            addresses = await self._resolve(host, port)
        except OSError as error:
            raise FetchError(
                ErrorCode.HTTP_BAD_HOST_NAME, f"cannot resolve {host}: {error}"
            ) from None
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            if not address.is_global:
                raise FetchError(
                    ErrorCode.HTTP_CONNECTION_FAILURE,
                    f"{host} is {address}, not a public address; Trunkline fetches TwiML "
                    "only from the public internet",
                )


async def _resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _connect_failure(error: httpx.ConnectError) -> FetchError:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return FetchError(ErrorCode.TLS_HANDSHAKE_ERROR, _describe(cause))
        if isinstance(cause, socket.gaierror):
            return FetchError(ErrorCode.HTTP_BAD_HOST_NAME, _describe(cause))
        cause = cause.__cause__ or cause.__context__
    return FetchError(ErrorCode.HTTP_CONNECTION_FAILURE, _describe(error))


def _too_large(size: int, limit: int) -> FetchError:
    return FetchError(
        ErrorCode.RESPONSE_TOO_LARGE, f"the body has more than {limit} bytes ({size} read)"
    )


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
