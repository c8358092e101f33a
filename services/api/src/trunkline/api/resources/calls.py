"""2010-04-01 Calls: the record of every trunked call, read-only.

Signaling writes a Call when a call starts and again as it rings, is answered and ends; the
API only reads them (placing calls through the REST API is not part of trunking, so POST and
DELETE are 405 like every other method a route lacks).

Twilio lists calls newest first, so the list walks the account's partition backwards. The
filters are not indexes: a page is filled by scanning the partition until it has PageSize
matches, at most SCAN_LIMIT calls per request; when that runs out first, the page is short
and its next_page_uri carries on from where the scan stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import Route

from trunkline.api.context import Ctx, Platform, endpoint
from trunkline.api.wire import JSON, page_cursor, page_number, page_size, rfc2822, token
from trunkline.domain.errors import invalid
from trunkline.domain.model import Call, CallStatus
from trunkline.domain.numbers import is_nanp, normalize
from trunkline.domain.sid import is_sid
from trunkline.store.repository import Cursor, Repository

API_VERSION = "2010-04-01"
# Later than any record's (created_us, key): where a newest-first read starts.
NEWEST = Cursor(2**62, "")
SCAN_LIMIT = 10_000  # calls one list request may read to fill a filtered page
SCAN_CHUNK = 500
# The call subresources this platform serves (Twilio lists more: feedback, payments, ...).
SUBRESOURCES = {"recordings": "Recordings"}
TIME_FILTERS = ("StartTime", "StartTime<", "StartTime>", "EndTime", "EndTime<", "EndTime>")


def formatted(number: str) -> str:
    """`(415) 555-0100` for a North American number, as Twilio shows them; others as they are."""
    if is_nanp(number):
        return f"({number[2:5]}) {number[5:8]}-{number[8:]}"
    return number


def optional_date(value: datetime | None) -> str | None:
    return None if value is None else rfc2822(value)


def render(call: Call) -> dict[str, Any]:
    base = f"/2010-04-01/Accounts/{call.account_sid}/Calls/{call.sid}"
    return {
        "sid": call.sid,
        "date_created": rfc2822(call.date_created),
        "date_updated": rfc2822(call.date_updated),
        "parent_call_sid": call.parent_call_sid,
        "account_sid": call.account_sid,
        "to": call.to,
        "to_formatted": formatted(call.to),
        "from": call.from_,
        "from_formatted": formatted(call.from_),
        "phone_number_sid": call.phone_number_sid,
        "status": call.status,
        "start_time": optional_date(call.start_time),
        "end_time": optional_date(call.end_time),
        "duration": None if call.duration is None else str(call.duration),
        "price": None,  # rating is billing's; the record carries no price yet
        "price_unit": "USD",
        "direction": call.direction,
        "answered_by": None,
        "api_version": API_VERSION,
        "forwarded_from": call.forwarded_from,
        "group_sid": None,
        "caller_name": call.caller_name,
        "queue_time": "0",
        "trunk_sid": call.trunk_sid,
        "uri": f"{base}.json",
        "subresource_uris": {key: f"{base}/{path}.json" for key, path in SUBRESOURCES.items()},
    }


async def fetch(ctx: Ctx) -> Response:
    account = await ctx.target_account()
    return JSON(render(await ctx.owned(Call, ctx.param("Sid"), account.sid, "Call")))


Test = Callable[[Call], bool]


def start_time(call: Call) -> datetime | None:
    return call.start_time


def end_time(call: Call) -> datetime | None:
    return call.end_time


def parse_time(name: str, raw: str) -> datetime:
    """A time filter: `YYYY-MM-DD`, an ISO 8601 date and time, or RFC 2822; UTC if no zone."""
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        try:
            value = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            raise invalid(
                name, f"{raw!r} is not a date (YYYY-MM-DD) or an ISO 8601 date and time"
            ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def time_test(name: str, bound: datetime) -> Test:
    """Twilio's three forms: on that (UTC) day, before it, or on or after it."""
    of = start_time if name.startswith("Start") else end_time
    day: date = bound.date()

    def on_day(call: Call) -> bool:
        value = of(call)
        return value is not None and value.astimezone(UTC).date() == day

    def before(call: Call) -> bool:
        value = of(call)
        return value is not None and value < bound

    def since(call: Call) -> bool:
        value = of(call)
        return value is not None and value >= bound

    return before if name.endswith("<") else since if name.endswith(">") else on_day


def number_test(name: str, raw: str) -> Test:
    """To / From: the number as given or in E.164 (`(415) 555-0100` finds `+14155550100`)."""
    wanted = {raw, normalize(raw) or raw}
    if name == "To":
        return lambda call: call.to in wanted
    return lambda call: call.from_ in wanted


@dataclass(frozen=True)
class Filters:
    """The list filters of the request, and the query parameters that carry them to every page."""

    tests: tuple[Test, ...]
    params: dict[str, str]

    @classmethod
    def read(cls, ctx: Ctx) -> Filters:
        form = ctx.form
        tests: list[Test] = []
        params: dict[str, str] = {}
        for name in ("To", "From"):
            raw = form.str(name, max_len=256)
            if raw:
                tests.append(number_test(name, raw))
                params[name] = raw
        parent = form.str("ParentCallSid", max_len=34)
        if parent:
            if not is_sid(parent, "CA"):
                raise invalid("ParentCallSid", f"{parent!r} is not a Call SID")
            tests.append(lambda call: call.parent_call_sid == parent)
            params["ParentCallSid"] = parent
        status = form.enum("Status", CallStatus)
        if status is not None:
            tests.append(lambda call: call.status == status)
            params["Status"] = status.value
        for name in TIME_FILTERS:
            raw = form.str(name, max_len=64)
            if raw:
                tests.append(time_test(name, parse_time(name, raw)))
                params[name] = raw
        return cls(tuple(tests), params)

    def keep(self, call: Call) -> bool:
        return all(test(call) for test in self.tests)


@dataclass(frozen=True)
class Scan:
    found: list[Call]  # the matches, in the order scanned
    more: bool  # more matches may follow `resume`
    resume: Call | None  # where the next scan in the same direction starts (exclusive)


async def scan(
    repo: Repository,
    account_sid: str,
    filters: Filters,
    size: int,
    cursor: Cursor,
    *,
    older: bool,
) -> Scan:
    """Up to `size` matching calls from `cursor` on, towards older or newer ones."""
    chunk = min(max(size + 1, SCAN_CHUNK), SCAN_LIMIT) if filters.tests else size + 1
    found: list[Call] = []
    scanned = 0
    while True:
        limit = min(chunk, SCAN_LIMIT - scanned)
        if older:
            rows = list(
                reversed(await repo.list(Call, "account", account_sid, limit=limit, before=cursor))
            )
        else:
            rows = list(await repo.list(Call, "account", account_sid, limit=limit, after=cursor))
        for row in rows:
            if filters.keep(row):
                found.append(row)
                if len(found) > size:  # one beyond the page: there is a next one
                    return Scan(found[:size], True, found[size - 1])
        scanned += len(rows)
        if len(rows) < limit:
            return Scan(found, False, None)
        if scanned >= SCAN_LIMIT:
            return Scan(found, True, rows[-1])
        cursor = Cursor.of(rows[-1])


async def listing(ctx: Ctx) -> Response:
    account = await ctx.target_account()
    filters = Filters.read(ctx)
    size, page = page_size(ctx.form), page_number(ctx.form)
    after, before = page_cursor(ctx.form)
    # Page tokens keep the store's meaning: PB reads older calls (next), PA newer (previous).
    next_token: str | None = None
    previous_token: str | None = None
    if after is None:
        found = await scan(ctx.repo, account.sid, filters, size, before or NEWEST, older=True)
        calls = found.found
        if found.more and found.resume is not None:
            next_token = token("PB", found.resume)
        if before is not None and calls:
            previous_token = token("PA", calls[0])
    else:
        found = await scan(ctx.repo, account.sid, filters, size, after, older=False)
        calls = list(reversed(found.found))
        if found.more and found.resume is not None:
            previous_token = token("PA", found.resume)
        if calls:
            next_token = token("PB", calls[-1])

    def link(**params: str | int) -> str:
        query = {**filters.params, "PageSize": size, **params}
        return f"{ctx.request.url.path}?{urlencode(query)}"

    current: dict[str, str | int] = {"Page": page}
    if ctx.form.str("PageToken"):
        current["PageToken"] = ctx.form.required("PageToken")
    links = {
        "first": link(Page=0),
        "previous": None
        if previous_token is None
        else link(Page=max(page - 1, 0), PageToken=previous_token),
        "next": None if next_token is None else link(Page=page + 1, PageToken=next_token),
        "this": link(**current),
    }
    return ctx.v2010_list("calls", [render(call) for call in calls], links)


def routes(platform: Platform) -> list[Route]:
    base = "/2010-04-01/Accounts/{AccountSid}/Calls"
    return [
        Route(base + ".json", endpoint(platform, listing, "account"), methods=["GET"]),
        Route(base + "/{Sid}.json", endpoint(platform, fetch, "account"), methods=["GET"]),
    ]
