"""The HTTP provider through httpx's MockTransport: what it asks, which answers are names,
which are "no name", and which are failures."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from trunkline.cnam.provider import MAX_BODY_BYTES, HttpProvider, ProviderError, parse_answer

TEMPLATE = "https://cnam.example/v1/{number}?key=abc"
NUMBER = "+14155550100"

Handler = Callable[[httpx.Request], httpx.Response]


def provider(handler: Handler, *, token: str | None = None, timeout: float = 1.0) -> HttpProvider:
    return HttpProvider(
        TEMPLATE, timeout=timeout, token=token, transport=httpx.MockTransport(handler)
    )


async def test_it_asks_for_the_percent_encoded_number_with_its_token() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"caller_name": "ACME CORP"})

    names = provider(handle, token="t0ken")
    assert await names.lookup(NUMBER) == "ACME CORP"
    await names.close()
    [request] = seen
    assert str(request.url) == "https://cnam.example/v1/%2B14155550100?key=abc"
    assert request.headers["Authorization"] == "Bearer t0ken"
    assert request.headers["Accept"].startswith("application/json")


@pytest.mark.parametrize(
    ("status", "content_type", "body", "name"),
    [
        (200, "application/json", b'{"caller_name": "ACME CORP"}', "ACME CORP"),
        (200, "application/json; charset=utf-8", b'{"caller_name": null}', None),
        (200, "application/json", b'{"caller_name": "  "}', None),
        (200, "text/plain", b"SMITH JOHN\n", "SMITH JOHN"),
        (200, "text/plain", b"", None),
        # CNAM's 15 printable ASCII characters: longer names are cut, control bytes go.
        (200, "text/plain", b"INTERNATIONAL BUSINESS MACHINES", "INTERNATIONAL B"),
        (
            200,
            "application/json",
            '{"caller_name": "Caf\u00e9\\tM\u00fcller"}'.encode(),
            "Caf M ller",
        ),
        (404, "application/json", b'{"message": "unknown"}', None),
        (204, "", b"", None),
    ],
)
def test_answers_that_are_names_or_no_name(
    status: int, content_type: str, body: bytes, name: str | None
) -> None:
    assert parse_answer(status, content_type, body) == name


@pytest.mark.parametrize(
    ("status", "content_type", "body", "why"),
    [
        (500, "text/plain", b"oops", "HTTP 500"),
        (429, "text/plain", b"", "HTTP 429"),
        (302, "text/plain", b"", "HTTP 302"),
        (200, "application/json", b"{not json", "not JSON"),
        (200, "application/json", b'{"name": "X"}', "no caller_name"),
        (200, "application/json", b'{"caller_name": 7}', "not a string"),
        (200, "text/plain", b"\xff\xfe", "not UTF-8"),
    ],
)
def test_answers_that_are_failures(status: int, content_type: str, body: bytes, why: str) -> None:
    with pytest.raises(ProviderError, match=why):
        parse_answer(status, content_type, body)


async def test_a_refused_connection_is_a_failure() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ProviderError, match="ConnectError"):
        await provider(handle).lookup(NUMBER)


async def test_a_slow_provider_times_out() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        # MockTransport applies no timeouts: raise what httpx would (the component test has
        # a real provider that is too slow).
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(ProviderError, match=r"no answer within 0.2 s"):
        await provider(handle, timeout=0.2).lookup(NUMBER)


async def test_an_oversized_answer_is_a_failure() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="X" * (MAX_BODY_BYTES + 1))

    with pytest.raises(ProviderError, match="longer than"):
        await provider(handle).lookup(NUMBER)
