"""What every Twilio-compatible endpoint shares: form parameters, error bodies, dates, paging."""

from __future__ import annotations

import builtins
import enum
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.utils import format_datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from trunkline.domain.errors import DomainError, Error, invalid
from trunkline.domain.model import Record
from trunkline.store.repository import Cursor

E = TypeVar("E", bound=enum.StrEnum)

MORE_INFO = "https://www.twilio.com/docs/errors/{code}"
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode()


def error_body(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": MORE_INFO.format(code=code),
        "status": status,
    }


def error_response(err: DomainError) -> JSON:
    headers = {}
    if err.error is Error.UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Basic realm="Trunkline API"'
    return JSON(error_body(err.code, err.message, err.http_status), err.http_status, headers)


def iso8601(value: datetime) -> str:
    """Trunking v1 dates: `2015-01-02T11:23:45Z`."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc2822(value: datetime) -> str:
    """2010-04-01 dates: `Thu, 30 Jul 2015 20:00:00 +0000`."""
    return format_datetime(value.replace(microsecond=0))


class Form:
    """Form-encoded PascalCase parameters, read with the rule each one must meet.

    Every rejection names the parameter, so a 400 tells the caller what to fix.
    """

    def __init__(self, pairs: Sequence[tuple[builtins.str, builtins.str]]) -> None:
        self._values: dict[builtins.str, list[builtins.str]] = {}
        for name, value in pairs:
            self._values.setdefault(name, []).append(value)

    @classmethod
    async def read(cls, request: Request, *, body: builtins.bool = True) -> Form:
        """Query and form-body parameters; `body=False` leaves the body to the handler."""
        pairs = parse_qsl(request.url.query, keep_blank_values=True)
        if body and request.method in ("POST", "PUT"):
            ctype = request.headers.get("content-type", "")
            raw = await request.body()
            if raw:
                if not ctype.startswith("application/x-www-form-urlencoded"):
                    raise DomainError(
                        Error.INVALID_PARAMETER,
                        "Parameters must be sent as application/x-www-form-urlencoded",
                    )
                try:
                    text = raw.decode()
                except UnicodeDecodeError as exc:
                    raise DomainError(
                        Error.INVALID_PARAMETER, "The request body is not valid UTF-8"
                    ) from exc
                pairs += parse_qsl(text, keep_blank_values=True)
        return cls(pairs)

    def has(self, name: builtins.str) -> builtins.bool:
        return name in self._values

    def str(
        self, name: builtins.str, *, required: builtins.bool = False, max_len: builtins.int = 255
    ) -> builtins.str | None:
        values = self._values.get(name)
        if not values:
            if required:
                raise invalid(name, "this parameter is required")
            return None
        value = values[-1]
        if required and not value.strip():
            raise invalid(name, "must not be empty")
        if len(value) > max_len:
            raise invalid(name, f"must be at most {max_len} characters long")
        if any(ord(c) < 32 for c in value):
            raise invalid(name, "must not contain control characters")
        return value

    def required(self, name: builtins.str, *, max_len: builtins.int = 255) -> builtins.str:
        value = self.str(name, required=True, max_len=max_len)
        assert value is not None  # required=True raises instead of returning None
        return value

    def bool(self, name: builtins.str) -> builtins.bool | None:
        value = self.str(name)
        if value is None:
            return None
        lowered = value.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise invalid(name, f"must be true or false, not {value!r}")

    def int(
        self,
        name: builtins.str,
        low: builtins.int,
        high: builtins.int,
        *,
        required: builtins.bool = False,
    ) -> builtins.int | None:
        value = self.str(name, required=required)
        if value is None:
            return None
        try:
            number = int(value)
        except ValueError:
            raise invalid(name, f"must be an integer, not {value!r}") from None
        if not low <= number <= high:
            raise invalid(name, f"must be between {low} and {high}, not {number}")
        return number

    def enum(self, name: builtins.str, kind: type[E]) -> E | None:
        value = self.str(name)
        if value is None:
            return None
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            raise invalid(name, f"must be one of {allowed}, not {value!r}") from None

    def url(self, name: builtins.str) -> builtins.str | None:
        value = self.str(name, max_len=2048)
        if value is None or value == "":
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise DomainError(
                Error.INVALID_URL,
                f"Invalid {name}: {value!r} is not an http or https URL",
                parameter=name,
            )
        return value


def page_size(form: Form) -> int:
    return form.int("PageSize", 1, MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE


def page_number(form: Form) -> int:
    return form.int("Page", 0, 1_000_000) or 0


def page_cursor(form: Form) -> tuple[Cursor | None, Cursor | None]:
    """(after, before) from Twilio's opaque PageToken: `PA<cursor>` or `PB<cursor>`."""
    token = form.str("PageToken")
    if not token:
        return None, None
    try:
        direction, rest = token[:2], token[2:]
        created, key = rest.split("_", 1)
        cursor = Cursor(int(created), key)
    except ValueError:
        raise invalid("PageToken", "is not a token this API issued") from None
    if direction == "PA":
        return cursor, None
    if direction == "PB":
        return None, cursor
    raise invalid("PageToken", "is not a token this API issued")


def token(direction: str, record: Record) -> str:
    c = Cursor.of(record)
    return f"{direction}{c.created_us}_{c.key}"


def page_links(
    path: str,
    form: Form,
    records: Sequence[Record],
    has_more_after: bool,
    has_more_before: bool,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str | None]:
    """first / previous / next / this page paths (no host) for a keyset-paged list."""
    size = page_size(form)
    page = page_number(form)
    base = dict(extra or {})

    def link(**params: Any) -> str:
        query = {**base, "PageSize": str(size), **{k: str(v) for k, v in params.items()}}
        return f"{path}?{urlencode(query)}"

    current: dict[str, Any] = {"Page": page}
    if form.str("PageToken"):
        current["PageToken"] = form.str("PageToken")
    return {
        "first": link(Page=0),
        "previous": link(Page=max(page - 1, 0), PageToken=token("PB", records[0]))
        if records and has_more_before
        else None,
        "next": link(Page=page + 1, PageToken=token("PA", records[-1]))
        if records and has_more_after
        else None,
        "this": link(**current),
    }
