"""Phone numbers: 2010-04-01 IncomingPhoneNumbers and Trunking v1 /Trunks/{sid}/PhoneNumbers.

An account buys a free number of the operator's inventory, configures it, ties it to at most
one of its trunks, and releases it back to the inventory. Both APIs show the same record: the
2010 resource is the number, the v1 resource is its tie to a trunk.

Tying a number to a trunk that it is not on moves it there, as Twilio's guide describes
assigning a number's voice configuration to another trunk; untying (v1 DELETE, or
`TrunkSid=""` on the 2010 resource) keeps the number in the account.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from trunkline.api.context import Ctx, Platform, endpoint
from trunkline.api.resources import trunks
from trunkline.api.resources.available_numbers import NANP_COUNTRIES, area_code
from trunkline.api.wire import JSON, Form, iso8601, rfc2822
from trunkline.domain import claims
from trunkline.domain.errors import DomainError, Error, invalid, not_found
from trunkline.domain.model import (
    HttpMethod,
    InventoryNumber,
    NumberType,
    PhoneNumber,
    Trunk,
    utcnow,
)
from trunkline.domain.numbers import normalize
from trunkline.domain.sid import is_sid, new_sid
from trunkline.store.repository import Batch, ClaimConflict

RESOURCE = "phone_numbers"
CLAIM = claims.PHONE_NUMBER  # one owner per E.164 number, so two buyers cannot both win
API_VERSION = "2010-04-01"
AREA_CANDIDATES = 5  # free numbers tried in turn when concurrent buyers take the first ones
TYPE_SEGMENTS: tuple[tuple[str, NumberType], ...] = (
    ("Local", NumberType.LOCAL),
    ("TollFree", NumberType.TOLL_FREE),
    ("Mobile", NumberType.MOBILE),
)
Event = tuple[str, str, str, str, str]


def number_uri(number: PhoneNumber) -> str:
    return f"/2010-04-01/Accounts/{number.account_sid}/IncomingPhoneNumbers/{number.sid}.json"


def capabilities(number: PhoneNumber) -> dict[str, bool]:
    return {c: c in number.capabilities for c in ("voice", "sms", "mms", "fax")}


def render(number: PhoneNumber) -> dict[str, Any]:
    """`api.v2010.account.incoming_phone_number`; what Trunkline does not offer (SMS,
    applications, addresses, bundles, emergency calling) is reported as absent."""
    return {
        "account_sid": number.account_sid,
        "address_sid": None,
        "address_requirements": number.address_requirements,
        "api_version": API_VERSION,
        "beta": number.beta,
        "capabilities": capabilities(number),
        "date_created": rfc2822(number.date_created),
        "date_updated": rfc2822(number.date_updated),
        "friendly_name": number.friendly_name,
        "identity_sid": None,
        "phone_number": number.phone_number,
        "origin": "twilio",
        "sid": number.sid,
        "sms_application_sid": None,
        "sms_fallback_method": HttpMethod.POST.value,
        "sms_fallback_url": None,
        "sms_method": HttpMethod.POST.value,
        "sms_url": None,
        "status_callback": number.status_callback,
        "status_callback_method": number.status_callback_method,
        "trunk_sid": number.trunk_sid,
        "uri": number_uri(number),
        "voice_receive_mode": "voice",
        "voice_application_sid": None,
        "voice_caller_id_lookup": number.voice_caller_id_lookup,
        "voice_fallback_method": number.voice_fallback_method,
        "voice_fallback_url": number.voice_fallback_url,
        "voice_method": number.voice_method,
        "voice_url": number.voice_url,
        "emergency_status": "Inactive",
        "emergency_address_sid": None,
        "emergency_address_status": "unregistered",
        "bundle_sid": None,
        "status": "in-use",
        "type": number.number_type,
    }


def render_v1(ctx: Ctx, number: PhoneNumber, trunk_sid: str) -> dict[str, Any]:
    """`trunking.v1.trunk.phone_number`: the number as seen from the trunk it is tied to."""
    return {
        "account_sid": number.account_sid,
        "address_requirements": number.address_requirements,
        "api_version": API_VERSION,
        "beta": number.beta,
        "capabilities": capabilities(number),
        "date_created": iso8601(number.date_created),
        "date_updated": iso8601(number.date_updated),
        "friendly_name": number.friendly_name,
        "links": {"phone_number": ctx.base_url + number_uri(number)},
        "phone_number": number.phone_number,
        "sid": number.sid,
        "sms_application_sid": None,
        "sms_fallback_method": HttpMethod.POST.value,
        "sms_fallback_url": None,
        "sms_method": HttpMethod.POST.value,
        "sms_url": None,
        "status_callback": number.status_callback,
        "status_callback_method": number.status_callback_method,
        "trunk_sid": number.trunk_sid,
        "url": f"{trunks.trunk_url(ctx, trunk_sid)}/PhoneNumbers/{number.sid}",
        "voice_application_sid": None,
        "voice_caller_id_lookup": number.voice_caller_id_lookup,
        "voice_fallback_method": number.voice_fallback_method,
        "voice_fallback_url": number.voice_fallback_url,
        "voice_method": number.voice_method,
        "voice_url": number.voice_url,
    }


def purchase(stock: InventoryNumber, number: PhoneNumber) -> Batch:
    """Buying, as one atomic batch: the number, its stock entry marked owned, and the claim
    that makes a second buyer who read the same free entry fail instead of also winning."""
    owned = replace(stock, owner_phone_number_sid=number.sid, date_updated=utcnow())
    return Batch().put(number).put(owned).claim(CLAIM, number.phone_number, number.sid)


def release(number: PhoneNumber, stock: InventoryNumber | None) -> Batch:
    """Releasing, as one atomic batch: the number goes, its stock entry is free again.

    The claim is re-asserted before it is released: if the number was already released and
    bought by someone else, the batch conflicts instead of freeing the new owner's number.
    """
    batch = (
        Batch()
        .delete(number)
        .claim(CLAIM, number.phone_number, number.sid)
        .release(CLAIM, number.phone_number, number.sid)
    )
    if stock is not None and stock.owner_phone_number_sid == number.sid:
        batch.put(replace(stock, owner_phone_number_sid=None, date_updated=utcnow()))
    return batch


def tie_events(number: PhoneNumber, action: str, *trunk_sids: str | None) -> list[Event]:
    """The number's own event, and an update of every trunk whose set of numbers changed."""
    events: list[Event] = [(number.account_sid, RESOURCE, number.sid, action, "")]
    for sid in dict.fromkeys(trunk_sids):  # each trunk once, in order
        if sid is not None:
            events.append((number.account_sid, trunks.RESOURCE, sid, "updated", ""))
    return events


def voice_settings(form: Form) -> dict[str, Any]:
    """The Voice* and StatusCallback* parameters present in the request, as record fields."""
    changes: dict[str, Any] = {}
    for param, attr in (
        ("VoiceUrl", "voice_url"),
        ("VoiceFallbackUrl", "voice_fallback_url"),
        ("StatusCallback", "status_callback"),
    ):
        if form.has(param):
            changes[attr] = form.url(param) or None  # an empty value clears the URL
    for param, attr in (
        ("VoiceMethod", "voice_method"),
        ("VoiceFallbackMethod", "voice_fallback_method"),
        ("StatusCallbackMethod", "status_callback_method"),
    ):
        method = form.enum(param, HttpMethod)
        if method is not None:
            changes[attr] = method.value
    lookup = form.bool("VoiceCallerIdLookup")
    if lookup is not None:
        changes["voice_caller_id_lookup"] = lookup
    return changes


async def requested_trunk(ctx: Ctx, account_sid: str) -> str | None:
    """`TrunkSid`: one of the account's trunks, or None for "" (no trunk)."""
    sid = ctx.form.str("TrunkSid", max_len=34)
    if not sid:
        return None
    if not is_sid(sid, "TK"):
        raise invalid("TrunkSid", "must be TK followed by 32 hexadecimal digits")
    trunk = await ctx.owned(Trunk, sid, account_sid, "Trunk")
    return trunk.sid


def not_available(number: str, why: str = "is not available") -> DomainError:
    return DomainError(
        Error.INVALID_PHONE_NUMBER, f"Phone number {number} {why}", parameter="PhoneNumber"
    )


async def stock_by_number(ctx: Ctx, raw: str, kind: NumberType | None) -> InventoryNumber:
    number = normalize(raw)
    if number is None:
        raise DomainError(
            Error.INVALID_PHONE_NUMBER,
            f"Invalid PhoneNumber: {raw!r} is not a phone number in E.164 format",
            parameter="PhoneNumber",
        )
    stock = await ctx.repo.get(InventoryNumber, number)
    if stock is None or stock.owner_phone_number_sid is not None:
        raise not_available(number)
    if kind is not None and stock.number_type != kind:
        raise not_available(number, f"is a {stock.number_type} number, not {kind}")
    return stock


async def stock_by_area(ctx: Ctx, npa: str) -> list[InventoryNumber]:
    """The first free local numbers of a NANP area code (Twilio's AreaCode purchase)."""
    kind = NumberType.LOCAL
    found: list[InventoryNumber] = []
    for country in NANP_COUNTRIES:
        found.extend(
            await ctx.repo.list(
                InventoryNumber,
                "available_area",
                f"{country}:{kind}:{npa}",
                limit=AREA_CANDIDATES - len(found),
            )
        )
        if len(found) >= AREA_CANDIDATES:
            break
    if not found:
        raise DomainError(
            Error.NO_NUMBERS_IN_AREA_CODE,
            f"No {kind} phone numbers are available in area code {npa}",
            parameter="AreaCode",
        )
    return found


def buyer(kind: NumberType | None) -> Callable[[Ctx], Awaitable[Response]]:
    """POST IncomingPhoneNumbers[/Local|/TollFree|/Mobile].json: buy a number."""

    async def buy(ctx: Ctx) -> Response:
        account = await ctx.target_account()
        # Every parameter is checked before anything is written.
        # As in Twilio's spec, only the untyped endpoint can pick a number by AreaCode.
        raw = ctx.form.str("PhoneNumber", max_len=32, required=kind is not None)
        npa = area_code(ctx) if kind is None else None
        if raw and npa:
            raise invalid("AreaCode", "give PhoneNumber or AreaCode, not both")
        if not raw and not npa:
            raise invalid("PhoneNumber", "PhoneNumber or AreaCode is required")
        name = ctx.form.str("FriendlyName", max_len=64)
        settings = voice_settings(ctx.form)
        trunk_sid = await requested_trunk(ctx, account.sid)
        if raw:
            candidates: Sequence[InventoryNumber] = [await stock_by_number(ctx, raw, kind)]
        else:
            assert npa is not None
            candidates = await stock_by_area(ctx, npa)
        for stock in candidates:
            number = PhoneNumber(
                sid=new_sid("PN"),
                account_sid=account.sid,
                phone_number=stock.phone_number,
                friendly_name=name or stock.friendly_name or stock.phone_number,
                iso_country=stock.iso_country,
                number_type=stock.number_type,
                capabilities=stock.capabilities,
                address_requirements=stock.address_requirements,
                beta=stock.beta,
                trunk_sid=trunk_sid,
                **settings,
            )
            try:
                await ctx.write(purchase(stock, number), tie_events(number, "created", trunk_sid))
            except ClaimConflict:
                continue  # another buyer won this one; try the next candidate
            return JSON(render(number), 201)
        if raw:
            raise not_available(candidates[0].phone_number)
        raise DomainError(
            Error.NO_NUMBERS_IN_AREA_CODE,
            f"No phone numbers are available in area code {npa}",
            parameter="AreaCode",
        )

    return buy


async def load(ctx: Ctx) -> PhoneNumber:
    account = await ctx.target_account()
    return await ctx.owned(PhoneNumber, ctx.param("Sid"), account.sid, "IncomingPhoneNumber")


async def fetch(ctx: Ctx) -> Response:
    return JSON(render(await load(ctx)))


async def update(ctx: Ctx) -> Response:
    number = await load(ctx)
    if ctx.form.has("AccountSid"):
        raise invalid("AccountSid", "moving a number to another account is not supported")
    changes = voice_settings(ctx.form)
    if ctx.form.has("FriendlyName"):
        name = ctx.form.str("FriendlyName", max_len=64)
        if not name:
            # Empty restores the default, the formatted number, as at purchase.
            stock = await ctx.repo.get(InventoryNumber, number.phone_number)
            name = stock.friendly_name if stock and stock.friendly_name else number.phone_number
        changes["friendly_name"] = name
    if ctx.form.has("TrunkSid"):
        changes["trunk_sid"] = await requested_trunk(ctx, number.account_sid)
    changed = replace(number, **changes, date_updated=utcnow())
    moved = changed.trunk_sid != number.trunk_sid
    touched = (number.trunk_sid, changed.trunk_sid) if moved else ()
    await ctx.write(Batch().put(changed), tie_events(changed, "updated", *touched))
    return JSON(render(changed))


async def delete(ctx: Ctx) -> Response:
    """Release: the number leaves the account (and its trunk) and is free to buy again."""
    number = await load(ctx)
    stock = await ctx.repo.get(InventoryNumber, number.phone_number)
    try:
        await ctx.write(release(number, stock), tie_events(number, "deleted", number.trunk_sid))
    except ClaimConflict:
        # Released concurrently and already bought by someone else: it is gone from here.
        raise not_found("IncomingPhoneNumber", number.sid) from None
    return Response(status_code=204)


def digits_pattern(raw: str) -> re.Pattern[str]:
    """The `PhoneNumber` list filter: a full or partial number, `*` matching any digit."""
    compact = re.sub(r"[\s().\-]", "", raw)
    if not re.fullmatch(r"\+?[0-9*]+", compact):
        raise invalid("PhoneNumber", f"{raw!r} may contain only digits, '*' and a leading '+'")
    return re.compile(re.escape(compact).replace(r"\*", "[0-9]"))


def lister(kind: NumberType | None) -> Callable[[Ctx], Awaitable[Response]]:
    """GET IncomingPhoneNumbers[/Local|/TollFree|/Mobile].json, with Twilio's filters."""

    async def listing(ctx: Ctx) -> Response:
        account = await ctx.target_account()
        form = ctx.form
        raw = form.str("PhoneNumber", max_len=32)
        pattern = digits_pattern(raw) if raw else None
        name = form.str("FriendlyName", max_len=64)
        beta = form.bool("Beta")
        origin = form.str("Origin", max_len=16)
        # Filters ride along in the page links, so every page is filtered alike.
        extra = {
            param: value
            for param, value in (
                ("PhoneNumber", raw),
                ("FriendlyName", name),
                ("Beta", form.str("Beta")),
                ("Origin", origin),
            )
            if value is not None
        }
        rows, links = await ctx.page(PhoneNumber, "account", account.sid, extra=extra)
        items = [
            render(n)
            for n in rows
            if (kind is None or n.number_type == kind)
            and (pattern is None or pattern.search(n.phone_number))
            and (name is None or n.friendly_name == name)
            and (beta is not False or not n.beta)
            and (origin is None or origin == "twilio")
        ]
        return ctx.v2010_list("incoming_phone_numbers", items, links)

    return listing


async def trunk_number(ctx: Ctx) -> tuple[Trunk, PhoneNumber]:
    """The path's trunk and a number tied to it; anything else is not found."""
    trunk = await trunks.load(ctx, ctx.param("TrunkSid"))
    sid = ctx.param("Sid")
    number = await ctx.owned(PhoneNumber, sid, trunk.account_sid, "PhoneNumber")
    if number.trunk_sid != trunk.sid:
        raise not_found("PhoneNumber", sid)
    return trunk, number


async def tie(ctx: Ctx) -> Response:
    """POST /v1/Trunks/{TrunkSid}/PhoneNumbers: tie a number of the account to the trunk."""
    trunk = await trunks.load(ctx, ctx.param("TrunkSid"))
    sid = ctx.form.required("PhoneNumberSid", max_len=34)
    if not is_sid(sid, "PN"):
        raise invalid("PhoneNumberSid", "must be PN followed by 32 hexadecimal digits")
    number = await ctx.owned(PhoneNumber, sid, trunk.account_sid, "PhoneNumber")
    if number.trunk_sid == trunk.sid:
        return JSON(render_v1(ctx, number, trunk.sid), 201)  # already there: nothing changes
    moved = replace(number, trunk_sid=trunk.sid, date_updated=utcnow())
    await ctx.write(Batch().put(moved), tie_events(moved, "updated", number.trunk_sid, trunk.sid))
    return JSON(render_v1(ctx, moved, trunk.sid), 201)


async def fetch_tied(ctx: Ctx) -> Response:
    trunk, number = await trunk_number(ctx)
    return JSON(render_v1(ctx, number, trunk.sid))


async def untie(ctx: Ctx) -> Response:
    """DELETE /v1/Trunks/{TrunkSid}/PhoneNumbers/{Sid}: off the trunk, still in the account."""
    trunk, number = await trunk_number(ctx)
    untied = replace(number, trunk_sid=None, date_updated=utcnow())
    await ctx.write(Batch().put(untied), tie_events(untied, "updated", trunk.sid))
    return Response(status_code=204)


async def list_tied(ctx: Ctx) -> Response:
    trunk = await trunks.load(ctx, ctx.param("TrunkSid"))
    rows, links = await ctx.page(PhoneNumber, "trunk", trunk.sid)
    return ctx.v1_list("phone_numbers", [render_v1(ctx, n, trunk.sid) for n in rows], links)


def routes(platform: Platform) -> list[Route]:
    def r(path: str, handler: Any, methods: list[str]) -> Route:
        return Route(path, endpoint(platform, handler, "account"), methods=methods)

    incoming = "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers"
    tied = "/v1/Trunks/{TrunkSid}/PhoneNumbers"
    return [
        r(f"{incoming}.json", lister(None), ["GET"]),
        r(f"{incoming}.json", buyer(None), ["POST"]),
        # Before `{Sid}.json`, which would otherwise take "Local" for a SID.
        *(
            r(f"{incoming}/{segment}.json", lister(kind), ["GET"])
            for segment, kind in TYPE_SEGMENTS
        ),
        *(
            r(f"{incoming}/{segment}.json", buyer(kind), ["POST"])
            for segment, kind in TYPE_SEGMENTS
        ),
        r(incoming + "/{Sid}.json", fetch, ["GET"]),
        r(incoming + "/{Sid}.json", update, ["POST"]),
        r(incoming + "/{Sid}.json", delete, ["DELETE"]),
        r(tied, list_tied, ["GET"]),
        r(tied, tie, ["POST"]),
        r(tied + "/{Sid}", fetch_tied, ["GET"]),
        r(tied + "/{Sid}", untie, ["DELETE"]),
    ]
