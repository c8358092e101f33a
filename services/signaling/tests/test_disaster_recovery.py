"""Disaster recovery: fetching the trunk's TwiML, running it, and how each path ends the call."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx
import pytest
from twilio.request_validator import RequestValidator

from trunkline.signaling.disaster_recovery import (
    MAX_REDIRECTS,
    NO_VALID_URL,
    SIGNATURE_HEADER,
    URL_FAILED,
    CallParameters,
    CallStatus,
    DialResult,
    DialStatus,
    Ending,
    EndKind,
    FetchError,
    HttpFetcher,
    HttpResponse,
    Resolver,
    Signer,
    UrlFailure,
    redact,
    run_disaster_recovery,
    twilio_signature,
)
from trunkline.signaling.twiml import MAX_DOCUMENT_BYTES, DialTarget, ErrorCode, Number, Sip

DR_URL = "https://dr.example.com/trunk/recover"
CALL = CallParameters(
    call_sid="CA" + "1" * 32,
    account_sid="AC" + "2" * 32,
    from_="+14155550100",
    to="+14155550199",
)


def twiml(body: str) -> HttpResponse:
    return HttpResponse(200, "text/xml; charset=utf-8", f"<Response>{body}</Response>".encode())


@dataclass
class Request:
    url: str
    method: str
    params: dict[str, str]


@dataclass
class FakeFetch:
    """Answers from a table of URL to response (or FetchError); records every request."""

    pages: Mapping[str, HttpResponse | FetchError]
    requests: list[Request] = field(default_factory=list)

    async def __call__(self, url: str, method: str, params: Mapping[str, str]) -> HttpResponse:
        self.requests.append(Request(url, method, dict(params)))
        page = self.pages.get(url, HttpResponse(404, "text/html", b"Not Found"))
        if isinstance(page, FetchError):
            raise page
        return page


@dataclass
class FakeControl:
    """Dials answer from a script, in order; pauses are recorded, not slept."""

    dials: list[DialResult] = field(default_factory=list)
    dialed: list[tuple[tuple[DialTarget, ...], int, str | None]] = field(default_factory=list)
    paused: list[int] = field(default_factory=list)

    async def dial(
        self, targets: Sequence[DialTarget], timeout: int, caller_id: str | None
    ) -> DialResult:
        self.dialed.append((tuple(targets), timeout, caller_id))
        return self.dials.pop(0)

    async def pause(self, seconds: int) -> None:
        self.paused.append(seconds)


async def run(
    pages: Mapping[str, HttpResponse | FetchError],
    *dials: DialResult,
    url: str | None = DR_URL,
    method: str = "POST",
    max_redirects: int = MAX_REDIRECTS,
    skip_audio: bool = True,
) -> tuple[Ending, FakeFetch, FakeControl]:
    fetch = FakeFetch(pages)
    control = FakeControl(list(dials))
    ending = await run_disaster_recovery(
        url,
        method,
        CALL,
        fetch=fetch,
        control=control,
        max_redirects=max_redirects,
        skip_audio=skip_audio,
    )
    return ending, fetch, control


# --- the request ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "get"])
async def test_the_url_is_fetched_with_the_trunks_method_and_twilios_parameters(
    method: str,
) -> None:
    _, fetch, _ = await run({DR_URL: twiml("<Hangup/>")}, method=method)
    [request] = fetch.requests
    assert request.url == DR_URL
    assert request.method == method.upper()
    assert request.params == {
        "CallSid": CALL.call_sid,
        "AccountSid": CALL.account_sid,
        "From": "+14155550100",
        "To": "+14155550199",
        "Caller": "+14155550100",
        "Called": "+14155550199",
        "Direction": "trunking-originating",
        "CallStatus": "ringing",
        "ApiVersion": "2010-04-01",
    }


async def test_extra_parameters_are_passed_along() -> None:
    call = CallParameters(
        "CA1", "AC1", "+14155550100", "+14155550199", extra={"CallerName": "ACME"}
    )
    fetch = FakeFetch({DR_URL: twiml("<Hangup/>")})
    await run_disaster_recovery(DR_URL, "POST", call, fetch=fetch, control=FakeControl())
    assert fetch.requests[0].params["CallerName"] == "ACME"


# --- no valid URL: 32010 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "method"),
    [
        (None, "POST"),
        ("", "POST"),
        ("ftp://dr.example.com/x", "POST"),
        ("/relative", "POST"),
        ("https://", "POST"),
        ("https://[::1", "POST"),
        (DR_URL, "PUT"),
    ],
)
async def test_without_a_valid_url_the_call_ends_with_32010(url: str | None, method: str) -> None:
    ending, fetch, _ = await run({}, url=url, method=method)
    assert fetch.requests == []
    assert ending.kind is EndKind.FAILED
    assert ending.code == NO_VALID_URL == 32010
    assert ending.sip_status == 480
    assert "(32010)" in ending.reason
    assert ending.call_status is CallStatus.FAILED


# --- Dial -----------------------------------------------------------------------------------------


async def test_dial_passes_targets_timeout_and_caller_id() -> None:
    doc = twiml(
        '<Dial timeout="15" callerId="+14155550100"><Number>+14155550101</Number>'
        "<Sip>sip:backup@pbx.example.com</Sip></Dial>"
    )
    _, _, control = await run({DR_URL: doc}, DialResult(DialStatus.COMPLETED, duration=42))
    assert control.dialed == [
        ((Number("+14155550101"), Sip("sip:backup@pbx.example.com")), 15, "+14155550100")
    ]


async def test_a_connected_dial_then_the_documents_end_completes_the_call() -> None:
    ending, _, _ = await run(
        {DR_URL: twiml("<Dial>+14155550101</Dial>")}, DialResult(DialStatus.COMPLETED, "CA9", 42)
    )
    assert ending == Ending(
        EndKind.HUNG_UP, 200, "OK: the end of the document", CallStatus.COMPLETED, answered=True
    )


@pytest.mark.parametrize(
    ("result", "sip_status", "call_status"),
    [
        (DialResult(DialStatus.BUSY, sip_status=486), 486, CallStatus.BUSY),
        (DialResult(DialStatus.NO_ANSWER), 480, CallStatus.NO_ANSWER),
        (DialResult(DialStatus.CANCELED), 487, CallStatus.CANCELED),
        (DialResult(DialStatus.FAILED, sip_status=404), 404, CallStatus.FAILED),
        (DialResult(DialStatus.FAILED, sip_status=503), 503, CallStatus.FAILED),
        (DialResult(DialStatus.FAILED), 502, CallStatus.FAILED),
    ],
)
async def test_a_failed_dial_at_the_documents_end_is_relayed_to_the_caller(
    result: DialResult, sip_status: int, call_status: CallStatus
) -> None:
    ending, _, _ = await run({DR_URL: twiml("<Dial>+14155550101</Dial>")}, result)
    assert ending.kind is EndKind.HUNG_UP
    assert ending.sip_status == sip_status
    assert ending.call_status is call_status
    assert not ending.answered
    assert ending.code == 0
    assert f"the dialed call {result.status}" in ending.reason


async def test_without_action_the_next_verb_runs_after_a_dial() -> None:
    doc = twiml("<Dial>+14155550101</Dial><Dial>+14155550102</Dial>")
    ending, _, control = await run(
        {DR_URL: doc}, DialResult(DialStatus.BUSY), DialResult(DialStatus.COMPLETED, duration=3)
    )
    assert [d[0] for d in control.dialed] == [
        (Number("+14155550101"),),
        (Number("+14155550102"),),
    ]
    assert ending.answered
    assert ending.call_status is CallStatus.COMPLETED


async def test_dial_action_gets_the_outcome_and_its_twiml_continues_the_call() -> None:
    action = "https://dr.example.com/trunk/after-dial"
    pages = {
        DR_URL: twiml('<Dial action="after-dial" method="GET">+14155550101</Dial><Hangup/>'),
        action: twiml('<Dial action="/done">+14155550102</Dial>'),
        "https://dr.example.com/done": twiml("<Reject/>"),
    }
    ending, fetch, control = await run(
        pages,
        DialResult(DialStatus.NO_ANSWER, call_sid="CA" + "3" * 32),
        DialResult(DialStatus.COMPLETED, call_sid="CA" + "4" * 32, duration=61, sip_status=200),
    )
    assert [(r.url, r.method) for r in fetch.requests] == [
        (DR_URL, "POST"),
        (action, "GET"),
        ("https://dr.example.com/done", "POST"),
    ]
    first_action, second_action = fetch.requests[1].params, fetch.requests[2].params
    assert first_action["DialCallStatus"] == "no-answer"
    assert first_action["DialCallSid"] == "CA" + "3" * 32
    assert "DialCallDuration" not in first_action
    assert first_action["CallStatus"] == "ringing"
    assert second_action["DialCallStatus"] == "completed"
    assert second_action["DialCallDuration"] == "61"
    assert second_action["DialSipResponseCode"] == "200"
    assert second_action["CallStatus"] == "in-progress"
    assert len(control.dialed) == 2  # the <Hangup/> after the first <Dial action> never ran
    # <Reject> after a connected dial: leg A was answered, so the B2BUA sends a BYE.
    assert ending.kind is EndKind.REJECTED
    assert ending.answered


async def test_the_caller_hanging_up_during_a_dial_ends_the_run() -> None:
    pages = {
        DR_URL: twiml('<Dial action="/status">+14155550101</Dial>'),
        "https://dr.example.com/status": twiml("<Dial>+14155550109</Dial>"),
    }
    ending, fetch, control = await run(pages, DialResult(DialStatus.CANCELED, caller_hung_up=True))
    assert ending.kind is EndKind.CALLER_HUNG_UP
    assert ending.call_status is CallStatus.CANCELED
    assert len(control.dialed) == 1  # the action's TwiML is not run
    notify = fetch.requests[1]
    assert notify.params["CallStatus"] == "completed"
    assert notify.params["DialCallStatus"] == "canceled"


async def test_a_failing_action_after_the_caller_left_is_only_recorded() -> None:
    pages = {DR_URL: twiml('<Dial action="/gone">+14155550101</Dial>')}
    ending, _, _ = await run(
        pages, DialResult(DialStatus.ANSWERED, duration=5, caller_hung_up=True)
    )
    assert ending.kind is EndKind.CALLER_HUNG_UP
    assert ending.call_status is CallStatus.COMPLETED
    assert ending.code == 0
    assert [f.code for f in ending.failures] == [ErrorCode.HTTP_RETRIEVAL_FAILURE]


# --- Reject, Hangup, Pause ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "sip_status", "reason", "call_status"),
    [
        ('<Reject reason="busy"/>', 486, "Busy Here", CallStatus.BUSY),
        ('<Reject reason="rejected"/>', 603, "Decline", CallStatus.NO_ANSWER),
        ("<Reject/>", 603, "Decline", CallStatus.NO_ANSWER),
    ],
)
async def test_reject_refuses_the_call_unanswered(
    body: str, sip_status: int, reason: str, call_status: CallStatus
) -> None:
    ending, _, control = await run({DR_URL: twiml(body + "<Dial>+14155550101</Dial>")})
    assert ending == Ending(EndKind.REJECTED, sip_status, reason, call_status)
    assert control.dialed == []  # verbs after <Reject> are unreachable


async def test_hangup_ends_the_call_and_nothing_after_it_runs() -> None:
    ending, _, control = await run({DR_URL: twiml("<Pause/><Hangup/><Dial>+14155550101</Dial>")})
    assert ending.kind is EndKind.HUNG_UP
    assert ending.sip_status == 480
    assert ending.reason == "Temporarily Unavailable: <Hangup> of the disaster recovery TwiML"
    assert ending.call_status is CallStatus.COMPLETED
    assert control.dialed == []
    assert control.paused == [1]


async def test_an_empty_response_ends_the_call_like_hangup() -> None:
    ending, _, _ = await run({DR_URL: twiml("")})
    assert (ending.kind, ending.sip_status) == (EndKind.HUNG_UP, 480)
    assert "the end of the document" in ending.reason


async def test_pause_waits_through_the_call_control() -> None:
    _, _, control = await run({DR_URL: twiml('<Pause length="3"/><Pause/><Pause length="9999"/>')})
    assert control.paused == [3, 1, 600]


# --- Redirect -------------------------------------------------------------------------------------


async def test_redirect_follows_the_new_url_with_its_method() -> None:
    pages = {
        DR_URL: twiml('<Redirect method="GET">step2?x=1</Redirect><Hangup/>'),
        "https://dr.example.com/trunk/step2?x=1": twiml(
            "<Redirect>https://b.example.net/3</Redirect>"
        ),
        "https://b.example.net/3": twiml('<Reject reason="busy"/>'),
    }
    ending, fetch, _ = await run(pages)
    assert [(r.url, r.method) for r in fetch.requests] == [
        (DR_URL, "POST"),
        ("https://dr.example.com/trunk/step2?x=1", "GET"),
        ("https://b.example.net/3", "POST"),
    ]
    assert all(r.params["CallSid"] == CALL.call_sid for r in fetch.requests)
    assert ending.sip_status == 486


async def test_relative_urls_resolve_against_the_url_that_answered() -> None:
    moved = HttpResponse(
        200,
        "text/xml",
        b"<Response><Redirect>next</Redirect></Response>",
        "https://new.example.com/v2/start",
    )
    pages: dict[str, HttpResponse | FetchError] = {
        DR_URL: moved,
        "https://new.example.com/v2/next": twiml("<Reject/>"),
    }
    ending, fetch, _ = await run(pages)
    assert fetch.requests[1].url == "https://new.example.com/v2/next"
    assert ending.kind is EndKind.REJECTED


async def test_a_chain_of_max_redirects_is_followed() -> None:
    pages: dict[str, HttpResponse | FetchError] = {
        f"https://dr.example.com/{i}": twiml(f"<Redirect>/{i + 1}</Redirect>")
        for i in range(MAX_REDIRECTS)
    }
    pages[f"https://dr.example.com/{MAX_REDIRECTS}"] = twiml("<Reject/>")
    ending, fetch, _ = await run(pages, url="https://dr.example.com/0")
    assert len(fetch.requests) == MAX_REDIRECTS + 1
    assert ending.kind is EndKind.REJECTED


async def test_a_redirect_loop_ends_the_call() -> None:
    ending, fetch, _ = await run({DR_URL: twiml("<Redirect>recover</Redirect>")})
    assert len(fetch.requests) == MAX_REDIRECTS + 1
    assert ending.kind is EndKind.FAILED
    assert ending.code == URL_FAILED
    [failure] = ending.failures
    assert failure.code is ErrorCode.HTTP_TOO_MANY_REDIRECTS
    assert "a loop?" in failure.message
    assert ending.reason == "Bad Gateway: disaster recovery failed: 11215 HTTP too many redirects"


async def test_max_redirects_is_configurable_and_counts_dial_actions() -> None:
    doc = twiml('<Dial action="recover">+14155550101</Dial>')
    results = [DialResult(DialStatus.FAILED) for _ in range(4)]
    ending, fetch, control = await run({DR_URL: doc}, *results, max_redirects=2)
    assert len(fetch.requests) == 3
    assert len(control.dialed) == 3
    assert ending.failures[0].code is ErrorCode.HTTP_TOO_MANY_REDIRECTS


# --- failures: 32011 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "code"),
    [
        (FetchError(ErrorCode.HTTP_CONNECTION_FAILURE, "connection refused"), 11205),
        (FetchError(ErrorCode.TLS_HANDSHAKE_ERROR, "certificate verify failed"), 11220),
        (HttpResponse(500, "text/html", b"oops"), 11200),
        (HttpResponse(404, "text/xml", b"<Response><Hangup/></Response>"), 11200),
        (HttpResponse(302, "text/html", b""), 11200),
        (HttpResponse(200, "application/json", b'{"a": 1}'), 12300),
        (HttpResponse(200, "audio/mpeg", b"ID3"), 12300),
        (HttpResponse(200, "", b"<Response/>"), 12300),
        (HttpResponse(200, "text/xml", b"<Response><Hangup></Response>"), 12100),
        (HttpResponse(200, "text/xml", b"<html/>"), 12102),
        (HttpResponse(200, "text/xml", b"<Response><Dance/></Response>"), 12200),
        (HttpResponse(200, "text/xml", b"<Response><Gather/></Response>"), 12200),
        (HttpResponse(200, "text/xml", b"<Response><Dial>555-0101</Dial></Response>"), 13223),
        (HttpResponse(200, "text/xml", b" " * MAX_DOCUMENT_BYTES + b"<Response/>"), 11750),
    ],
)
async def test_a_failed_url_ends_the_call_with_32011_and_says_what_failed(
    page: HttpResponse | FetchError, code: int
) -> None:
    ending, _, control = await run({DR_URL: page})
    assert ending.kind is EndKind.FAILED
    assert ending.code == URL_FAILED == 32011
    assert ending.sip_status == 502
    assert ending.call_status is CallStatus.FAILED
    assert not ending.answered
    [failure] = ending.failures
    assert failure.url == DR_URL
    assert failure.method == "POST"
    assert failure.code == code
    title = ErrorCode(code).title
    assert ending.reason == f"Bad Gateway: disaster recovery failed: {code} {title}"
    assert "example.com" not in ending.reason  # the reason reaches the caller's carrier
    assert ending.detail.startswith(f"POST {DR_URL}: {code} ")
    assert control.dialed == []


@pytest.mark.parametrize(
    "content_type", ["text/xml", "application/xml", "text/html", "Text/XML; charset=ISO-8859-1"]
)
async def test_twiml_content_types(content_type: str) -> None:
    ending, _, _ = await run(
        {DR_URL: HttpResponse(200, content_type, b"<Response><Reject/></Response>")}
    )
    assert ending.kind is EndKind.REJECTED


async def test_a_failure_after_a_connected_dial_hangs_up_the_answered_call() -> None:
    pages = {DR_URL: twiml('<Dial action="/broken">+14155550101</Dial>')}
    ending, _, _ = await run(pages, DialResult(DialStatus.COMPLETED, duration=10))
    assert ending.kind is EndKind.FAILED
    assert ending.answered
    assert ending.call_status is CallStatus.COMPLETED
    assert ending.failures == (
        UrlFailure(
            "https://dr.example.com/broken",
            "POST",
            ErrorCode.HTTP_RETRIEVAL_FAILURE,
            "answered HTTP 404",
        ),
    )


async def test_the_detail_does_not_show_a_urls_password() -> None:
    url = "https://twilio:pa55word@dr.example.com/recover"
    ending, _, _ = await run({url: HttpResponse(500, "text/plain", b"")}, url=url)
    assert "pa55word" not in ending.detail
    assert ending.failures[0].url == "https://twilio:***@dr.example.com/recover"
    assert redact(DR_URL) == DR_URL


# --- Play, Say ------------------------------------------------------------------------------------


async def test_play_and_say_are_skipped_with_a_notice() -> None:
    doc = twiml(
        "<Say>We are having trouble; connecting you.</Say>"
        "<Play>x.mp3</Play><Dial>+14155550101</Dial>"
    )
    ending, _, control = await run({DR_URL: doc}, DialResult(DialStatus.COMPLETED, duration=1))
    assert len(control.dialed) == 1
    assert ending.kind is EndKind.HUNG_UP
    assert len(ending.notices) == 2
    assert "skipped: <Say> on line 1: Trunkline cannot play audio yet" in ending.notices[0]


async def test_play_ends_the_call_when_audio_may_not_be_skipped() -> None:
    ending, _, control = await run(
        {DR_URL: twiml("<Play>x.mp3</Play><Dial>+14155550101</Dial>")}, skip_audio=False
    )
    assert control.dialed == []
    assert ending.code == URL_FAILED
    assert ending.failures[0].code is ErrorCode.SCHEMA_VALIDATION
    assert "<Play> is not supported" in ending.failures[0].message


async def test_an_unsupported_dial_noun_ends_the_call() -> None:
    ending, _, control = await run({DR_URL: twiml("<Dial><Conference>room</Conference></Dial>")})
    assert control.dialed == []
    assert ending.kind is EndKind.FAILED
    assert "<Dial><Conference> is not supported" in ending.failures[0].message


# --- the X-Twilio-Signature -----------------------------------------------------------------------


def test_the_signature_is_what_twilios_validator_expects() -> None:
    token = "12345678901234567890123456789012"
    params = {"CallSid": "CA1", "From": "+14155550100", "To": "+14155550199", "Digits": "1234"}
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert RequestValidator(token).validate(url, params, twilio_signature(token, url, params))
    assert not RequestValidator(token).validate(url, params, twilio_signature("x", url, params))


# --- HttpFetcher over httpx.MockTransport ---------------------------------------------------------

PARAMS = CALL.form(CallStatus.RINGING)


async def public(host: str, port: int) -> list[str]:
    """A resolver for the tests: every name is a public address (TEST-NET is not global)."""
    return ["93.184.216.34"]


def fetcher(
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    resolve: Resolver = public,
    sign: Signer | None = None,
    max_redirects: int = 5,
) -> HttpFetcher:
    return HttpFetcher(
        transport=httpx.MockTransport(handler),
        resolve=resolve,
        sign=sign,
        max_redirects=max_redirects,
    )


async def test_get_puts_the_parameters_in_the_query_string() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"Content-Type": "text/xml"}, content=b"<Response/>")

    async with fetcher(handler) as fetch:
        response = await fetch("https://dr.example.com/r?trunk=TK1", "GET", PARAMS)
    [request] = seen
    assert response == HttpResponse(200, "text/xml", b"<Response/>", str(request.url))
    assert request.method == "GET"
    assert request.content == b""
    query = parse_qs(request.url.query.decode(), strict_parsing=True)
    assert query == {"trunk": ["TK1"], **{name: [value] for name, value in PARAMS.items()}}
    assert request.headers["Accept-Encoding"] == "identity"


async def test_post_form_encodes_the_parameters() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"Content-Type": "text/xml"}, content=b"<Response/>")

    async with fetcher(handler) as fetch:
        await fetch("https://dr.example.com/r?trunk=TK1", "POST", PARAMS)
    [request] = seen
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.url.query == b"trunk=TK1"
    form = parse_qs(request.content.decode(), strict_parsing=True)
    assert form == {name: [value] for name, value in PARAMS.items()}
    assert form["From"] == ["+14155550100"]  # '+' is escaped, not a space


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_requests_are_signed_like_twilios(method: str) -> None:
    token = "0123456789abcdef0123456789abcdef"
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"Content-Type": "text/xml"}, content=b"<Response/>")

    def sign(url: str, params: Mapping[str, str]) -> str:
        return twilio_signature(token, url, params)

    async with fetcher(handler, sign=sign) as fetch:
        await fetch("https://dr.example.com/r", method, PARAMS)
    [request] = seen
    form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
    assert RequestValidator(token).validate(
        str(request.url), form, request.headers[SIGNATURE_HEADER]
    )


async def test_http_redirects_are_followed_and_the_final_url_reported() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/old":
            return httpx.Response(301, headers={"Location": "https://new.example.com/v2/start"})
        return httpx.Response(200, headers={"Content-Type": "text/xml"}, content=b"<Response/>")

    async with fetcher(handler) as fetch:
        response = await fetch("https://dr.example.com/old", "GET", {})
    assert response.url == "https://new.example.com/v2/start"


async def test_too_many_http_redirects_are_11215() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "/again"})

    async with fetcher(handler, max_redirects=3) as fetch:
        with pytest.raises(FetchError) as caught:
            await fetch("https://dr.example.com/r", "GET", {})
    assert caught.value.code is ErrorCode.HTTP_TOO_MANY_REDIRECTS


async def test_an_error_status_is_returned_without_its_body() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Content-Type": "text/html"}, content=b"x" * 10**6)

    async with fetcher(handler) as fetch:
        response = await fetch("https://dr.example.com/r", "POST", PARAMS)
    assert (response.status, response.body) == (503, b"")


async def test_a_body_over_64_kib_is_refused_by_its_length() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"Content-Type": "text/xml"}, content=b" " * (MAX_DOCUMENT_BYTES + 1)
        )

    async with fetcher(handler) as fetch:
        with pytest.raises(FetchError) as caught:
            await fetch("https://dr.example.com/r", "POST", PARAMS)
    assert caught.value.code is ErrorCode.RESPONSE_TOO_LARGE


async def test_a_chunked_body_over_64_kib_is_refused_while_it_streams() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        while True:  # endless: the fetcher must stop reading on its own
            yield b" " * 4096

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Type": "text/xml"}, content=chunks())

    async with fetcher(handler) as fetch:
        with pytest.raises(FetchError) as caught:
            await fetch("https://dr.example.com/r", "POST", PARAMS)
    assert caught.value.code is ErrorCode.RESPONSE_TOO_LARGE


async def test_a_compressed_body_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = gzip.compress(b"<Response/>")
        headers = {"Content-Type": "text/xml", "Content-Encoding": "gzip"}
        return httpx.Response(200, headers=headers, content=body)

    async with fetcher(handler) as fetch:
        with pytest.raises(FetchError) as caught:
            await fetch("https://dr.example.com/r", "POST", PARAMS)
    assert caught.value.code is ErrorCode.HTTP_RETRIEVAL_FAILURE
    assert "compressed" in caught.value.message


def raising(error: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


def tls_failure() -> httpx.ConnectError:
    error = httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    error.__cause__ = ssl.SSLCertVerificationError("certificate verify failed")
    return error


def dns_failure() -> httpx.ConnectError:
    error = httpx.ConnectError("[Errno -2] Name or service not known")
    error.__context__ = socket.gaierror(-2, "Name or service not known")
    return error


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), ErrorCode.HTTP_CONNECTION_FAILURE),
        (httpx.ConnectTimeout("timed out"), ErrorCode.HTTP_CONNECTION_FAILURE),
        (httpx.ReadTimeout("timed out"), ErrorCode.HTTP_CONNECTION_FAILURE),
        (tls_failure(), ErrorCode.TLS_HANDSHAKE_ERROR),
        (dns_failure(), ErrorCode.HTTP_BAD_HOST_NAME),
        (httpx.RemoteProtocolError("illegal header"), ErrorCode.HTTP_PROTOCOL_VIOLATION),
        (httpx.ReadError("reset"), ErrorCode.HTTP_RETRIEVAL_FAILURE),
    ],
)
async def test_transport_errors_map_to_twilios_codes(error: Exception, code: ErrorCode) -> None:
    async with fetcher(raising(error)) as fetch:
        with pytest.raises(FetchError) as caught:
            await fetch("https://dr.example.com/r", "POST", PARAMS)
    assert caught.value.code is code


async def test_the_whole_request_is_bounded_by_the_timeout() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    async with HttpFetcher(
        transport=httpx.MockTransport(slow), resolve=public, timeout=0.05
    ) as fetch:
        with pytest.raises(FetchError) as caught:
            await fetch("https://dr.example.com/r", "POST", PARAMS)
    assert caught.value.code is ErrorCode.HTTP_CONNECTION_FAILURE
    assert "no answer within 0.05 s" in caught.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/r",
        "http://10.1.2.3/r",
        "http://192.168.0.10:8080/r",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/r",
        "http://[fd00::1]/r",
        "http://[::ffff:127.0.0.1]/r",
        "http://0.0.0.0/r",
    ],
)
async def test_private_addresses_are_refused(url: str) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200)

    async with HttpFetcher(transport=httpx.MockTransport(handler)) as fetch:
        with pytest.raises(FetchError) as caught:
            await fetch(url, "POST", PARAMS)
    assert caught.value.code is ErrorCode.HTTP_CONNECTION_FAILURE
    assert "not a public address" in caught.value.message
    assert calls == []


async def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    async def internal(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.7"]

    async with fetcher(lambda r: httpx.Response(200), resolve=internal) as fetch:
        with pytest.raises(FetchError) as caught:
            await fetch("https://dr.example.com/r", "POST", PARAMS)
    assert "dr.example.com is 10.0.0.7" in caught.value.message


async def test_a_redirect_to_a_private_address_is_refused() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return [host] if host[0].isdigit() else ["93.184.216.34"]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest"})

    async with fetcher(handler, resolve=resolve) as fetch:
        with pytest.raises(FetchError) as caught:
            await fetch("https://dr.example.com/r", "POST", PARAMS)
    assert "169.254.169.254 is 169.254.169.254, not a public address" in caught.value.message


async def test_an_unknown_host_is_11210() -> None:
    async def unknown(host: str, port: int) -> list[str]:
        raise socket.gaierror(-2, "Name or service not known")

    async with fetcher(lambda r: httpx.Response(200), resolve=unknown) as fetch:
        with pytest.raises(FetchError) as caught:
            await fetch("https://nowhere.invalid/r", "POST", PARAMS)
    assert caught.value.code is ErrorCode.HTTP_BAD_HOST_NAME


# --- the real fetcher over a loopback HTTP server -------------------------------------------------


@dataclass
class Served:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class LoopbackServer:
    """A tiny HTTP/1.1 server on 127.0.0.1 that answers every request with one response."""

    def __init__(self, response: bytes | None) -> None:
        self.response = response  # None: accept, read, and never answer
        self.requests: list[Served] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> LoopbackServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode().split("\r\n")
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        method, target, _ = request_line.split(" ")
        self.requests.append(Served(method, target, headers, body))
        if self.response is None:
            await asyncio.sleep(60)
            return
        writer.write(self.response)
        await writer.drain()
        writer.close()


def http_response(body: bytes, content_type: str = "text/xml") -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"Connection: close\r\n\r\n" + body


async def test_a_recovery_over_real_http() -> None:
    body = b'<?xml version="1.0"?><Response><Dial timeout="10">+14155550101</Dial></Response>'
    async with (
        LoopbackServer(http_response(body)) as server,
        HttpFetcher(allow_private=True) as fetch,
    ):
        control = FakeControl([DialResult(DialStatus.BUSY)])
        ending = await run_disaster_recovery(
            server.url + "/recover?trunk=TK1", "GET", CALL, fetch=fetch, control=control
        )
    assert ending.sip_status == 486
    assert control.dialed == [((Number("+14155550101"),), 10, None)]
    [served] = server.requests
    assert served.method == "GET"
    assert served.target.startswith("/recover?trunk=TK1&CallSid=CA")
    assert "From=%2B14155550100" in served.target
    assert served.headers["user-agent"].startswith("Trunkline")


async def test_a_post_over_real_http() -> None:
    async with (
        LoopbackServer(http_response(b"<Response/>")) as server,
        HttpFetcher(allow_private=True) as fetch,
    ):
        response = await fetch(server.url + "/r", "POST", PARAMS)
    assert response.status == 200
    [served] = server.requests
    assert served.method == "POST"
    assert served.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(served.body.decode())["CallStatus"] == ["ringing"]


async def test_loopback_is_refused_unless_allowed() -> None:
    async with LoopbackServer(http_response(b"<Response/>")) as server, HttpFetcher() as fetch:
        with pytest.raises(FetchError) as caught:
            await fetch(server.url + "/r", "POST", PARAMS)
        assert server.requests == []
    assert caught.value.code is ErrorCode.HTTP_CONNECTION_FAILURE


async def test_a_server_that_never_answers_times_out() -> None:
    async with (
        LoopbackServer(None) as server,
        HttpFetcher(allow_private=True, timeout=0.2) as fetch,
    ):
        with pytest.raises(FetchError) as caught:
            await fetch(server.url + "/r", "POST", PARAMS)
    assert caught.value.code is ErrorCode.HTTP_CONNECTION_FAILURE


async def test_a_closed_port_is_a_connection_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with HttpFetcher(allow_private=True) as fetch:
        ending = await run_disaster_recovery(
            f"http://127.0.0.1:{port}/r", "POST", CALL, fetch=fetch, control=FakeControl()
        )
    assert ending.code == URL_FAILED
    assert ending.failures[0].code is ErrorCode.HTTP_CONNECTION_FAILURE
