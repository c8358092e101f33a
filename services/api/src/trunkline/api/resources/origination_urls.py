"""Trunking v1 /v1/Trunks/{TrunkSid}/OriginationUrls: where a trunk's inbound calls go.

Up to ten SIP URLs per trunk (the guide's limit), each with a priority (lowest first) and a
weight (share of load among equal priorities). `SipUrl` is read by the same parser the
signaling service routes with (trunkline.domain.origination).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from trunkline.api.context import Ctx, Platform, endpoint
from trunkline.api.resources import trunks
from trunkline.api.wire import JSON, iso8601
from trunkline.domain.errors import DomainError, Error, invalid, not_found
from trunkline.domain.model import OriginationUrl, utcnow
from trunkline.domain.origination import InvalidSipUrl, UnknownEdge, parse_sip_url
from trunkline.domain.sid import new_sid
from trunkline.store.repository import Batch

RESOURCE = "origination_urls"
MAX_PER_TRUNK = 10
MAX_SIP_URL = 1024


def render(ctx: Ctx, url: OriginationUrl) -> dict[str, Any]:
    return {
        "account_sid": url.account_sid,
        "sid": url.sid,
        "trunk_sid": url.trunk_sid,
        "weight": url.weight,
        "enabled": url.enabled,
        "sip_url": url.sip_url,
        "friendly_name": url.friendly_name,
        "priority": url.priority,
        "date_created": iso8601(url.date_created),
        "date_updated": iso8601(url.date_updated),
        "url": f"{trunks.trunk_url(ctx, url.trunk_sid)}/OriginationUrls/{url.sid}",
    }


def event(url: OriginationUrl, action: str) -> tuple[str, str, str, str, str]:
    """Announced with the trunk as parent, so signaling reloads that trunk's routes."""
    return (url.account_sid, RESOURCE, url.sid, action, url.trunk_sid)


def read_sip_url(ctx: Ctx) -> str:
    value = ctx.form.required("SipUrl", max_len=MAX_SIP_URL)
    try:
        parse_sip_url(value)
    except UnknownEdge as err:
        raise DomainError(
            Error.INVALID_REGION, f"Invalid SipUrl: {err}", parameter="SipUrl"
        ) from None
    except InvalidSipUrl as err:
        raise invalid("SipUrl", str(err)) from None
    return value


def settings_from_form(ctx: Ctx) -> dict[str, Any]:
    """The fields present in the request, each checked; all of them on create."""
    form = ctx.form
    changes: dict[str, Any] = {}
    weight = form.int("Weight", 1, 65535)
    if weight is not None:
        changes["weight"] = weight
    priority = form.int("Priority", 0, 65535)
    if priority is not None:
        changes["priority"] = priority
    enabled = form.bool("Enabled")
    if enabled is not None:
        changes["enabled"] = enabled
    if form.has("FriendlyName"):
        changes["friendly_name"] = form.required("FriendlyName", max_len=64)
    if form.has("SipUrl"):
        changes["sip_url"] = read_sip_url(ctx)
    return changes


async def create(ctx: Ctx) -> Response:
    trunk = await trunks.load(ctx, ctx.param("TrunkSid"))
    changes = settings_from_form(ctx)
    # The spec makes all five required on create; Twilio's documented defaults do not apply.
    for param, attr in (
        ("Weight", "weight"),
        ("Priority", "priority"),
        ("Enabled", "enabled"),
        ("FriendlyName", "friendly_name"),
        ("SipUrl", "sip_url"),
    ):
        if attr not in changes:
            raise invalid(param, "this parameter is required")
    if await ctx.repo.count(OriginationUrl, "trunk", trunk.sid, limit=MAX_PER_TRUNK) >= (
        MAX_PER_TRUNK
    ):
        raise DomainError(
            Error.MAX_ORIGINATION_URLS,
            f"Trunk {trunk.sid} already has {MAX_PER_TRUNK} origination URLs, the maximum",
        )
    url = OriginationUrl(
        sid=new_sid("OU"), account_sid=trunk.account_sid, trunk_sid=trunk.sid, **changes
    )
    await ctx.write(Batch().put(url), [event(url, "created")])
    return JSON(render(ctx, url), 201)


async def load(ctx: Ctx) -> OriginationUrl:
    trunk = await trunks.load(ctx, ctx.param("TrunkSid"))
    sid = ctx.param("Sid")
    url = await ctx.owned(OriginationUrl, sid, trunk.account_sid, "OriginationUrl")
    if url.trunk_sid != trunk.sid:
        raise not_found("OriginationUrl", sid)
    return url


async def fetch(ctx: Ctx) -> Response:
    return JSON(render(ctx, await load(ctx)))


async def update(ctx: Ctx) -> Response:
    url = await load(ctx)
    changed = replace(url, **settings_from_form(ctx), date_updated=utcnow())
    await ctx.write(Batch().put(changed), [event(changed, "updated")])
    return JSON(render(ctx, changed))


async def delete(ctx: Ctx) -> Response:
    url = await load(ctx)
    await ctx.write(Batch().delete(url), [event(url, "deleted")])
    return Response(status_code=204)


async def listing(ctx: Ctx) -> Response:
    trunk = await trunks.load(ctx, ctx.param("TrunkSid"))
    rows, links = await ctx.page(OriginationUrl, "trunk", trunk.sid)
    return ctx.v1_list(RESOURCE, [render(ctx, u) for u in rows], links)


def routes(platform: Platform) -> list[Route]:
    def r(path: str, handler: Any, methods: list[str]) -> Route:
        return Route(path, endpoint(platform, handler, "account"), methods=methods)

    base = "/v1/Trunks/{TrunkSid}/OriginationUrls"
    return [
        r(base, listing, ["GET"]),
        r(base, create, ["POST"]),
        r(base + "/{Sid}", fetch, ["GET"]),
        r(base + "/{Sid}", update, ["POST"]),
        r(base + "/{Sid}", delete, ["DELETE"]),
    ]
