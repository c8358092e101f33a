"""An outside CNAM provider over HTTP, asked for the numbers the operator's table lacks.

    provider = HttpProvider("https://cnam.example/v1/{number}", timeout=1.0)
    name = await provider.lookup("+14155550100")   # "ACME CORP", or None: no name

`{number}` in the URL becomes the E.164 number, percent-encoded (`%2B14155550100`). The
provider answers 200 with JSON `{"caller_name": "..."}` or the name as plain text; 404, 204,
an empty name or `null` mean the provider knows no name. Names are cut to CNAM's 15
printable ASCII characters. Anything else raises ProviderError, which the caller counts as
"not found" for this call only.
"""

from __future__ import annotations

import json
from typing import Protocol
from urllib.parse import quote

import httpx

from trunkline.domain.model import CnamEntry

__all__ = ["HttpProvider", "Provider", "ProviderError", "parse_answer"]

# Far more than any name: a provider that sends more is misbehaving.
MAX_BODY_BYTES = 4096


class ProviderError(Exception):
    """The provider gave no usable answer (timeout, refused, 5xx, unreadable body)."""


class Provider(Protocol):
    async def lookup(self, number: str) -> str | None:
        """The caller name of `number`, None when the provider has none; ProviderError
        when it did not answer usably."""
        ...

    async def close(self) -> None: ...


class HttpProvider:
    def __init__(
        self,
        url_template: str,
        *,
        timeout: float,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url_template = url_template
        headers = {"Accept": "application/json, text/plain;q=0.5"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(
            # One deadline for the whole exchange: connect, send and read together.
            timeout=httpx.Timeout(timeout),
            headers=headers,
            transport=transport,
            follow_redirects=False,
        )
        self._timeout = timeout

    async def lookup(self, number: str) -> str | None:
        url = self.url_template.replace("{number}", quote(number, safe=""))
        try:
            async with self._http.stream("GET", url) as response:
                body = await _read_limited(response)
        except httpx.TimeoutException as error:
            raise ProviderError(f"no answer within {self._timeout} s") from error
        except httpx.HTTPError as error:
            raise ProviderError(f"request failed: {type(error).__name__}: {error}") from error
        return parse_answer(response.status_code, response.headers.get("content-type", ""), body)

    async def close(self) -> None:
        await self._http.aclose()


async def _read_limited(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ProviderError(f"answer longer than {MAX_BODY_BYTES} bytes")
    return bytes(body)


def parse_answer(status: int, content_type: str, body: bytes) -> str | None:
    """The name in a provider's answer (None: no name); ProviderError when unusable."""
    if status in (204, 404):
        return None
    if status != 200:
        raise ProviderError(f"answered HTTP {status}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProviderError("answer is not UTF-8") from None
    value = _json_name(text) if "json" in content_type.lower() else text
    if value is None:
        return None
    return CnamEntry.clean_name(value) or None


def _json_name(text: str) -> str | None:
    try:
        document = json.loads(text)
    except ValueError:
        raise ProviderError("answer is not JSON") from None
    if not isinstance(document, dict) or "caller_name" not in document:
        raise ProviderError("JSON answer has no caller_name")
    name = document["caller_name"]
    if name is None:
        return None
    if not isinstance(name, str):
        raise ProviderError("caller_name is not a string")
    return name
