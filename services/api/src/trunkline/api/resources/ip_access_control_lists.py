"""SIP IP access control lists: 2010-04-01 IpAccessControlLists and IpAddresses, and v1 trunk
attachments. A trunk with an attached ACL accepts termination only from its networks."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from trunkline.api.context import Ctx, Platform, endpoint
from trunkline.api.resources import trunk_links
from trunkline.api.wire import JSON, rfc2822
from trunkline.domain.addresses import network_problem
from trunkline.domain.errors import invalid, not_found
from trunkline.domain.model import (
    Account,
    IpAccessControlList,
    IpAddress,
    TrunkIpAccessControlList,
    utcnow,
)
from trunkline.domain.sid import new_sid
from trunkline.store.repository import Batch

LISTS = "ip_access_control_lists"
ADDRESSES = "ip_addresses"
NAME_MAX = 255
IP_MAX = 45  # the longest textual IPv6 address (with an embedded IPv4 tail)


# 2010-04-01 /SIP/IpAccessControlLists


def list_uri(acl: IpAccessControlList) -> str:
    return f"/2010-04-01/Accounts/{acl.account_sid}/SIP/IpAccessControlLists/{acl.sid}"


def render_list(acl: IpAccessControlList) -> dict[str, Any]:
    uri = list_uri(acl)
    return {
        "sid": acl.sid,
        "account_sid": acl.account_sid,
        "friendly_name": acl.friendly_name,
        "date_created": rfc2822(acl.date_created),
        "date_updated": rfc2822(acl.date_updated),
        "subresource_uris": {"ip_addresses": f"{uri}/IpAddresses.json"},
        "uri": f"{uri}.json",
    }


async def load_list(ctx: Ctx, account: Account, sid: str) -> IpAccessControlList:
    return await ctx.owned(IpAccessControlList, sid, account.sid, "IpAccessControlList")


async def create_list(ctx: Ctx) -> Response:
    account = await ctx.target_account()
    name = ctx.form.required("FriendlyName", max_len=NAME_MAX)
    acl = IpAccessControlList(sid=new_sid("AL"), account_sid=account.sid, friendly_name=name)
    await ctx.write(Batch().put(acl), [(account.sid, LISTS, acl.sid, "created", "")])
    return JSON(render_list(acl), 201)


async def fetch_list(ctx: Ctx) -> Response:
    account = await ctx.target_account()
    return JSON(render_list(await load_list(ctx, account, ctx.param("Sid"))))


async def update_list(ctx: Ctx) -> Response:
    account = await ctx.target_account()
    acl = await load_list(ctx, account, ctx.param("Sid"))
    name = ctx.form.required("FriendlyName", max_len=NAME_MAX)
    changed = replace(acl, friendly_name=name, date_updated=utcnow())
    await ctx.write(Batch().put(changed), [(account.sid, LISTS, changed.sid, "updated", "")])
    return JSON(render_list(changed))


async def delete_list(ctx: Ctx) -> Response:
    """The ACL, its addresses and its trunk attachments go in one batch, or none do."""
    account = await ctx.target_account()
    acl = await load_list(ctx, account, ctx.param("Sid"))
    batch = Batch().delete(acl)
    announce = [(account.sid, LISTS, acl.sid, "deleted", "")]
    for address in await ctx.all_of(IpAddress, "list", acl.sid):
        batch.delete(address)
        announce.append(address_event(address, "deleted"))
    for link in await ctx.all_of(TrunkIpAccessControlList, "list", acl.sid):
        batch.delete(link)
        announce.append(trunk_links.trunk_changed(link))
    await ctx.write(batch, announce)
    return Response(status_code=204)


async def list_lists(ctx: Ctx) -> Response:
    account = await ctx.target_account()
    rows, links = await ctx.page(IpAccessControlList, "account", account.sid)
    return ctx.v2010_list(LISTS, [render_list(a) for a in rows], links)


# 2010-04-01 /SIP/IpAccessControlLists/{IpAccessControlListSid}/IpAddresses


def render_address(address: IpAddress) -> dict[str, Any]:
    return {
        "sid": address.sid,
        "account_sid": address.account_sid,
        "friendly_name": address.friendly_name,
        "ip_address": address.ip_address,
        "cidr_prefix_length": address.cidr_prefix_length,
        "ip_access_control_list_sid": address.ip_access_control_list_sid,
        "date_created": rfc2822(address.date_created),
        "date_updated": rfc2822(address.date_updated),
        "uri": f"/2010-04-01/Accounts/{address.account_sid}/SIP/IpAccessControlLists/"
        f"{address.ip_access_control_list_sid}/IpAddresses/{address.sid}.json",
    }


def address_event(address: IpAddress, action: str) -> tuple[str, str, str, str, str]:
    """Announced with the ACL as parent, so the edge reloads just that list."""
    return (
        address.account_sid,
        ADDRESSES,
        address.sid,
        action,
        address.ip_access_control_list_sid,
    )


def read_network(ctx: Ctx, current: IpAddress | None) -> tuple[str, int]:
    """(address, prefix length) from the form, on top of `current` when updating.

    The address is kept in its canonical text so the edge and the API agree on equality.
    Without CidrPrefixLength the prefix is the whole address (Twilio's default), or on an
    update the entry's prefix if the address family is unchanged: an IPv4 /32 carried over
    to an IPv6 address would silently open a /32 of IPv6.
    """
    if current is None or ctx.form.has("IpAddress"):
        raw = ctx.form.required("IpAddress", max_len=IP_MAX)
        # A prefix of 0 is valid in both families, so this judges the address alone.
        problem = network_problem(raw, 0)
        if problem is not None:
            raise invalid("IpAddress", problem)
        address = ipaddress.ip_address(raw)
    else:
        address = ipaddress.ip_address(current.ip_address)
    prefix = ctx.form.int("CidrPrefixLength", 0, 128)
    if prefix is None:
        kept = current is not None and (
            ipaddress.ip_address(current.ip_address).version == address.version
        )
        prefix = current.cidr_prefix_length if current and kept else address.max_prefixlen
    problem = network_problem(str(address), prefix)
    if problem is not None:
        raise invalid("CidrPrefixLength", problem)
    return str(address), prefix


async def parent_list(ctx: Ctx) -> IpAccessControlList:
    account = await ctx.target_account()
    return await load_list(ctx, account, ctx.param("IpAccessControlListSid"))


async def load_address(ctx: Ctx) -> IpAddress:
    acl = await parent_list(ctx)
    sid = ctx.param("Sid")
    address = await ctx.owned(IpAddress, sid, acl.account_sid, "IpAddress")
    if address.ip_access_control_list_sid != acl.sid:
        raise not_found("IpAddress", sid)
    return address


async def create_address(ctx: Ctx) -> Response:
    acl = await parent_list(ctx)
    name = ctx.form.required("FriendlyName", max_len=NAME_MAX)
    ip, prefix = read_network(ctx, None)
    address = IpAddress(
        sid=new_sid("IP"),
        account_sid=acl.account_sid,
        ip_access_control_list_sid=acl.sid,
        friendly_name=name,
        ip_address=ip,
        cidr_prefix_length=prefix,
    )
    await ctx.write(Batch().put(address), [address_event(address, "created")])
    return JSON(render_address(address), 201)


async def fetch_address(ctx: Ctx) -> Response:
    return JSON(render_address(await load_address(ctx)))


async def update_address(ctx: Ctx) -> Response:
    address = await load_address(ctx)
    name = (
        ctx.form.required("FriendlyName", max_len=NAME_MAX)
        if ctx.form.has("FriendlyName")
        else address.friendly_name
    )
    ip, prefix = read_network(ctx, address)
    changed = replace(
        address,
        friendly_name=name,
        ip_address=ip,
        cidr_prefix_length=prefix,
        date_updated=utcnow(),
    )
    await ctx.write(Batch().put(changed), [address_event(changed, "updated")])
    return JSON(render_address(changed))


async def delete_address(ctx: Ctx) -> Response:
    address = await load_address(ctx)
    await ctx.write(Batch().delete(address), [address_event(address, "deleted")])
    return Response(status_code=204)


async def list_addresses(ctx: Ctx) -> Response:
    acl = await parent_list(ctx)
    rows, links = await ctx.page(IpAddress, "list", acl.sid)
    return ctx.v2010_list(ADDRESSES, [render_address(a) for a in rows], links)


def routes(platform: Platform) -> list[Route]:
    def r(path: str, handler: Any, methods: list[str]) -> Route:
        return Route(path, endpoint(platform, handler, "account"), methods=methods)

    lists = "/2010-04-01/Accounts/{AccountSid}/SIP/IpAccessControlLists"
    addresses = lists + "/{IpAccessControlListSid}/IpAddresses"
    return [
        *trunk_links.routes(platform, trunk_links.IP_ACCESS_CONTROL_LISTS),
        r(f"{lists}.json", list_lists, ["GET"]),
        r(f"{lists}.json", create_list, ["POST"]),
        r(lists + "/{Sid}.json", fetch_list, ["GET"]),
        r(lists + "/{Sid}.json", update_list, ["POST"]),
        r(lists + "/{Sid}.json", delete_list, ["DELETE"]),
        r(f"{addresses}.json", list_addresses, ["GET"]),
        r(f"{addresses}.json", create_address, ["POST"]),
        r(addresses + "/{Sid}.json", fetch_address, ["GET"]),
        r(addresses + "/{Sid}.json", update_address, ["POST"]),
        r(addresses + "/{Sid}.json", delete_address, ["DELETE"]),
    ]
