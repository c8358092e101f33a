"""2010-04-01 OutgoingCallerIds: verified numbers an account may present as caller ID.

`POST OutgoingCallerIds.json` is Twilio's ValidationRequest: it returns a validation code
and leaves the number pending. Twilio then calls the number to collect the code; until the
signaling service can place that call, the platform operator completes a validation through
the admin API (`trunkline admin caller-ids verify`).
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from trunkline.api.context import Ctx, Platform, endpoint
from trunkline.api.wire import JSON, rfc2822
from trunkline.domain import claims
from trunkline.domain.errors import DomainError, Error
from trunkline.domain.model import Account, CallerIdValidation, OutgoingCallerId, utcnow
from trunkline.domain.numbers import normalize
from trunkline.domain.sid import new_sid
from trunkline.store.repository import Batch, ClaimConflict

RESOURCE = "outgoing_caller_ids"
CLAIM = claims.CALLER_ID


def render(caller_id: OutgoingCallerId) -> dict[str, Any]:
    return {
        "sid": caller_id.sid,
        "date_created": rfc2822(caller_id.date_created),
        "date_updated": rfc2822(caller_id.date_updated),
        "friendly_name": caller_id.friendly_name,
        "account_sid": caller_id.account_sid,
        "phone_number": caller_id.phone_number,
        "uri": f"/2010-04-01/Accounts/{caller_id.account_sid}/OutgoingCallerIds/"
        f"{caller_id.sid}.json",
    }


def read_number(ctx: Ctx) -> str:
    raw = ctx.form.required("PhoneNumber", max_len=32)
    number = normalize(raw)
    if number is None:
        raise DomainError(
            Error.INVALID_PHONE_NUMBER,
            f"Invalid PhoneNumber: {raw!r} is not a valid phone number in E.164 format",
            parameter="PhoneNumber",
        )
    return number


def already_validated(number: str) -> DomainError:
    return DomainError(
        Error.CALLER_ID_ALREADY_VALIDATED,
        f"Phone number {number} is already a verified caller ID of this account",
        parameter="PhoneNumber",
    )


async def request_validation(ctx: Ctx) -> Response:
    account = await ctx.target_account()
    number = read_number(ctx)
    if await ctx.repo.holder(CLAIM, f"{account.sid}:{number}"):
        raise already_validated(number)
    name = ctx.form.str("FriendlyName", max_len=64) or number
    pending = CallerIdValidation(
        account_sid=account.sid,
        phone_number=number,
        friendly_name=name,
        validation_code=f"{secrets.randbelow(1_000_000):06d}",
    )
    await ctx.repo.apply(Batch().put(pending))
    return JSON(
        {
            "account_sid": account.sid,
            "call_sid": None,
            "friendly_name": name,
            "phone_number": number,
            "validation_code": pending.validation_code,
        },
        201,
    )


async def verify_caller_id(ctx: Ctx, account: Account) -> Response:
    """Make `PhoneNumber` a verified caller ID of `account` (the validation succeeded)."""
    number = read_number(ctx)
    pending = await ctx.repo.get(CallerIdValidation, f"{account.sid}:{number}")
    name = ctx.form.str("FriendlyName", max_len=64) or (
        pending.friendly_name if pending else number
    )
    caller_id = OutgoingCallerId(
        sid=new_sid("PN"), account_sid=account.sid, phone_number=number, friendly_name=name
    )
    batch = Batch().put(caller_id).claim(CLAIM, f"{account.sid}:{number}", caller_id.sid)
    if pending is not None:
        batch.delete(pending)
    try:
        await ctx.write(batch, [(account.sid, RESOURCE, caller_id.sid, "created", "")])
    except ClaimConflict:
        raise already_validated(number) from None
    return JSON(render(caller_id), 201)


async def load(ctx: Ctx) -> OutgoingCallerId:
    account = await ctx.target_account()
    return await ctx.owned(OutgoingCallerId, ctx.param("Sid"), account.sid, "OutgoingCallerId")


async def fetch(ctx: Ctx) -> Response:
    return JSON(render(await load(ctx)))


async def update(ctx: Ctx) -> Response:
    caller_id = await load(ctx)
    name = ctx.form.str("FriendlyName", max_len=64)
    changed = replace(
        caller_id,
        friendly_name=name if name is not None else caller_id.friendly_name,
        date_updated=utcnow(),
    )
    await ctx.write(
        Batch().put(changed), [(caller_id.account_sid, RESOURCE, caller_id.sid, "updated", "")]
    )
    return JSON(render(changed))


async def delete(ctx: Ctx) -> Response:
    caller_id = await load(ctx)
    batch = (
        Batch()
        .delete(caller_id)
        .release(CLAIM, f"{caller_id.account_sid}:{caller_id.phone_number}", caller_id.sid)
    )
    await ctx.write(batch, [(caller_id.account_sid, RESOURCE, caller_id.sid, "deleted", "")])
    return Response(status_code=204)


async def listing(ctx: Ctx) -> Response:
    account = await ctx.target_account()
    number_filter = ctx.form.str("PhoneNumber", max_len=32)
    name_filter = ctx.form.str("FriendlyName", max_len=64)
    wanted = normalize(number_filter) if number_filter else None
    rows, links = await ctx.page(OutgoingCallerId, "account", account.sid)
    items = [
        render(c)
        for c in rows
        if (wanted is None or c.phone_number == wanted)
        and (name_filter is None or c.friendly_name == name_filter)
    ]
    return ctx.v2010_list("outgoing_caller_ids", items, links)


def routes(platform: Platform) -> list[Route]:
    base = "/2010-04-01/Accounts/{AccountSid}/OutgoingCallerIds"

    def r(path: str, handler: Any, methods: list[str]) -> Route:
        return Route(base + path, endpoint(platform, handler, "account"), methods=methods)

    return [
        r(".json", listing, ["GET"]),
        r(".json", request_validation, ["POST"]),
        r("/{Sid}.json", fetch, ["GET"]),
        r("/{Sid}.json", update, ["POST"]),
        r("/{Sid}.json", delete, ["DELETE"]),
    ]
