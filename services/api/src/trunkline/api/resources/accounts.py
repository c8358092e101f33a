"""2010-04-01 Accounts: the caller's account and its subaccounts."""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from trunkline.api.context import Ctx, Platform, endpoint
from trunkline.api.wire import JSON, rfc2822
from trunkline.domain.credentials import token_hash
from trunkline.domain.errors import DomainError, Error, invalid
from trunkline.domain.model import Account, AccountStatus, AccountType, utcnow
from trunkline.domain.sid import new_sid
from trunkline.store.repository import Batch

RESOURCE = "accounts"
SUBRESOURCES = (
    "IncomingPhoneNumbers",
    "OutgoingCallerIds",
    "AvailablePhoneNumbers",
    "SIP/CredentialLists",
    "SIP/IpAccessControlLists",
)


def new_account(
    friendly_name: str, owner_sid: str | None, account_type: str = AccountType.FULL
) -> tuple[Account, str]:
    """A new account and its auth token; only the token's hash is kept."""
    sid = new_sid("AC")
    token = secrets.token_hex(16)
    account = Account(
        sid=sid,
        friendly_name=friendly_name,
        owner_account_sid=owner_sid or sid,
        auth_token_sha256=token_hash(token),
        type=account_type,
    )
    return account, token


def render(account: Account, auth_token: str | None = None) -> dict[str, Any]:
    """`auth_token` is shown once, when the account is created; it is not stored."""
    uri = f"/2010-04-01/Accounts/{account.sid}"
    return {
        "auth_token": auth_token,
        "date_created": rfc2822(account.date_created),
        "date_updated": rfc2822(account.date_updated),
        "friendly_name": account.friendly_name,
        "owner_account_sid": account.owner_account_sid,
        "sid": account.sid,
        "status": account.status,
        "subresource_uris": {
            name.split("/")[-1].lower(): f"{uri}/{name}.json" for name in SUBRESOURCES
        },
        "type": account.type,
        "uri": f"{uri}.json",
    }


async def create(ctx: Ctx) -> Response:
    if ctx.caller.is_subaccount:
        raise DomainError(Error.FORBIDDEN, "A subaccount cannot create subaccounts")
    name = (
        ctx.form.str("FriendlyName", max_len=64)
        or f"SubAccount Created at {utcnow():%Y-%m-%d %H:%M}"
    )
    account, token = new_account(name, ctx.caller.sid, ctx.caller.type)
    await ctx.write(Batch().put(account), [(ctx.caller.sid, RESOURCE, account.sid, "created", "")])
    return JSON(render(account, token), 201)


async def fetch(ctx: Ctx) -> Response:
    return JSON(render(await ctx.visible_account(ctx.param("Sid"))))


async def update(ctx: Ctx) -> Response:
    account = await ctx.visible_account(ctx.param("Sid"))
    name = ctx.form.str("FriendlyName", max_len=64)
    status = ctx.form.enum("Status", AccountStatus)
    if status is not None:
        if account.sid == ctx.caller.sid:
            raise DomainError(
                Error.FORBIDDEN, "An account cannot change its own status", parameter="Status"
            )
        if account.status == AccountStatus.CLOSED and status != AccountStatus.CLOSED:
            raise invalid("Status", "a closed account cannot be reopened")
    changed = replace(
        account,
        friendly_name=name if name is not None else account.friendly_name,
        status=status.value if status is not None else account.status,
        date_updated=utcnow(),
    )
    await ctx.write(Batch().put(changed), [(ctx.caller.sid, RESOURCE, account.sid, "updated", "")])
    return JSON(render(changed))


async def listing(ctx: Ctx) -> Response:
    name = ctx.form.str("FriendlyName", max_len=64)
    status = ctx.form.enum("Status", AccountStatus)
    rows, links = await ctx.page(Account, "owner", ctx.caller.sid)
    items = [
        render(a)
        for a in rows
        if (name is None or a.friendly_name == name) and (status is None or a.status == status)
    ]
    return ctx.v2010_list("accounts", items, links)


def routes(platform: Platform) -> list[Route]:
    def r(path: str, handler: Any, methods: list[str]) -> Route:
        return Route(path, endpoint(platform, handler, "account"), methods=methods)

    return [
        r("/2010-04-01/Accounts.json", listing, ["GET"]),
        r("/2010-04-01/Accounts.json", create, ["POST"]),
        r("/2010-04-01/Accounts/{Sid}.json", fetch, ["GET"]),
        r("/2010-04-01/Accounts/{Sid}.json", update, ["POST"]),
    ]
