"""Trunking v1 attachments of account lists to a trunk: /v1/Trunks/{TrunkSid}/<Lists>.

Credential lists and IP access control lists attach to trunks the same way (Twilio's
CredentialLists and IpAccessControlLists sub-resources), so one set of handlers serves both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from trunkline.api.context import Ctx, Platform, endpoint
from trunkline.api.resources import trunks
from trunkline.api.wire import JSON, iso8601
from trunkline.domain.errors import DomainError, Error, invalid, not_found
from trunkline.domain.model import (
    CredentialList,
    IpAccessControlList,
    TrunkCredentialList,
    TrunkIpAccessControlList,
)
from trunkline.domain.sid import is_sid
from trunkline.store.repository import Batch

AccountList = CredentialList | IpAccessControlList
Link = TrunkCredentialList | TrunkIpAccessControlList


@dataclass(frozen=True)
class Attachment:
    segment: str  # the path segment under the trunk, e.g. "CredentialLists"
    param: str  # the form parameter naming the list, e.g. "CredentialListSid"
    prefix: str  # the list's SID prefix
    key: str  # the v1 list key
    what: str  # how messages name the list
    list_kind: type[AccountList]
    link_kind: type[Link]
    link: Callable[[str, str, str], Link]  # (trunk_sid, list_sid, account_sid) -> link


CREDENTIAL_LISTS = Attachment(
    segment="CredentialLists",
    param="CredentialListSid",
    prefix="CL",
    key="credential_lists",
    what="Credential list",
    list_kind=CredentialList,
    link_kind=TrunkCredentialList,
    link=lambda trunk, sid, account: TrunkCredentialList(trunk, sid, account),
)
IP_ACCESS_CONTROL_LISTS = Attachment(
    segment="IpAccessControlLists",
    param="IpAccessControlListSid",
    prefix="AL",
    key="ip_access_control_lists",
    what="IP access control list",
    list_kind=IpAccessControlList,
    link_kind=TrunkIpAccessControlList,
    link=lambda trunk, sid, account: TrunkIpAccessControlList(trunk, sid, account),
)


def trunk_changed(link: Link) -> tuple[str, str, str, str, str]:
    """Attaching or detaching changes how the trunk authenticates: announce the trunk."""
    return (link.account_sid, trunks.RESOURCE, link.trunk_sid, "updated", "")


def routes(platform: Platform, a: Attachment) -> list[Route]:
    def render(ctx: Ctx, link: Link, account_list: AccountList | None) -> dict[str, Any]:
        return {
            "account_sid": link.account_sid,
            "sid": link.list_sid,
            "trunk_sid": link.trunk_sid,
            "friendly_name": account_list.friendly_name if account_list else None,
            "date_created": iso8601(link.date_created),
            "date_updated": iso8601(link.date_updated),
            "url": f"{trunks.trunk_url(ctx, link.trunk_sid)}/{a.segment}/{link.list_sid}",
        }

    async def load(ctx: Ctx) -> tuple[Link, AccountList | None]:
        trunk = await trunks.load(ctx, ctx.param("TrunkSid"))
        sid = ctx.param("Sid")
        link = await ctx.repo.get(a.link_kind, f"{trunk.sid}:{sid}")
        if link is None:
            raise not_found(a.list_kind.__name__, sid)
        return link, await ctx.repo.get(a.list_kind, sid)

    async def attach(ctx: Ctx) -> Response:
        trunk = await trunks.load(ctx, ctx.param("TrunkSid"))
        sid = ctx.form.required(a.param, max_len=34)
        if not is_sid(sid, a.prefix):
            raise invalid(a.param, f"must be {a.prefix} followed by 32 hexadecimal digits")
        account_list = await ctx.owned(a.list_kind, sid, ctx.caller.sid, a.list_kind.__name__)
        # A concurrent second attach writes the same key again, so the store stays consistent.
        if await ctx.repo.get(a.link_kind, f"{trunk.sid}:{sid}") is not None:
            raise DomainError(
                Error.TRUNK_VALIDATION,
                f"{a.what} {sid} is already associated with trunk {trunk.sid}",
                parameter=a.param,
            )
        link = a.link(trunk.sid, sid, trunk.account_sid)
        await ctx.write(Batch().put(link), [trunk_changed(link)])
        return JSON(render(ctx, link, account_list), 201)

    async def fetch(ctx: Ctx) -> Response:
        link, account_list = await load(ctx)
        return JSON(render(ctx, link, account_list))

    async def detach(ctx: Ctx) -> Response:
        link, _ = await load(ctx)
        await ctx.write(Batch().delete(link), [trunk_changed(link)])
        return Response(status_code=204)

    async def listing(ctx: Ctx) -> Response:
        trunk = await trunks.load(ctx, ctx.param("TrunkSid"))
        rows, links = await ctx.page(a.link_kind, "trunk", trunk.sid)
        items = [render(ctx, r, await ctx.repo.get(a.list_kind, r.list_sid)) for r in rows]
        return ctx.v1_list(a.key, items, links)

    def r(path: str, handler: Any, methods: list[str]) -> Route:
        return Route(path, endpoint(platform, handler, "account"), methods=methods)

    base = f"/v1/Trunks/{{TrunkSid}}/{a.segment}"
    return [
        r(base, listing, ["GET"]),
        r(base, attach, ["POST"]),
        r(base + "/{Sid}", fetch, ["GET"]),
        r(base + "/{Sid}", detach, ["DELETE"]),
    ]
