"""Trunking v1: /v1/Trunks and the trunk's Recording settings."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from trunkline.api.context import Ctx, Platform, endpoint
from trunkline.api.wire import JSON, Form, iso8601
from trunkline.domain import claims
from trunkline.domain.domains import labels, parent_of
from trunkline.domain.errors import DomainError, Error, invalid
from trunkline.domain.model import (
    HttpMethod,
    OriginationUrl,
    PhoneNumber,
    RecordingMode,
    RecordingTrim,
    TransferCallerId,
    TransferMode,
    Trunk,
    TrunkCredentialList,
    TrunkIpAccessControlList,
    utcnow,
)
from trunkline.domain.sid import new_sid
from trunkline.store.repository import Batch, ClaimConflict

RESOURCE = "trunks"
DOMAIN_CLAIM = claims.TRUNK_DOMAIN
LINKS = {
    "origination_urls": "OriginationUrls",
    "credential_lists": "CredentialLists",
    "ip_access_control_lists": "IpAccessControlLists",
    "phone_numbers": "PhoneNumbers",
    "recording": "Recording",
}


def trunk_url(ctx: Ctx, sid: str) -> str:
    return f"{ctx.base_url}/v1/Trunks/{sid}"


async def auth_types(ctx: Ctx, trunk_sid: str) -> list[str]:
    """Derived from the attached lists, as Twilio reports `auth_type_set`."""
    kinds: list[str] = []
    if await ctx.repo.list(TrunkCredentialList, "trunk", trunk_sid, limit=1):
        kinds.append("CREDENTIAL_LIST")
    if await ctx.repo.list(TrunkIpAccessControlList, "trunk", trunk_sid, limit=1):
        kinds.append("IP_ACL")
    return kinds


async def render(ctx: Ctx, trunk: Trunk) -> dict[str, Any]:
    url = trunk_url(ctx, trunk.sid)
    kinds = await auth_types(ctx, trunk.sid)
    return {
        "account_sid": trunk.account_sid,
        "domain_name": trunk.domain_name,
        "disaster_recovery_method": trunk.disaster_recovery_method,
        "disaster_recovery_url": trunk.disaster_recovery_url,
        "friendly_name": trunk.friendly_name,
        "secure": trunk.secure,
        "recording": {"mode": trunk.recording_mode, "trim": trunk.recording_trim},
        "transfer_mode": trunk.transfer_mode,
        "transfer_caller_id": trunk.transfer_caller_id,
        "cnam_lookup_enabled": trunk.cnam_lookup_enabled,
        "auth_type": ",".join(kinds),
        "symmetric_rtp_enabled": trunk.symmetric_rtp_enabled,
        "auth_type_set": kinds,
        # Trunkline extensions (null: the platform default); see settings_from_form.
        "cps_limit": trunk.cps_limit,
        "concurrent_calls_limit": trunk.concurrent_calls_limit,
        "date_created": iso8601(trunk.date_created),
        "date_updated": iso8601(trunk.date_updated),
        "sid": trunk.sid,
        "url": url,
        "links": {name: f"{url}/{path}" for name, path in LINKS.items()},
    }


async def check_domain(ctx: Ctx, domain: str, trunk_sid: str) -> None:
    """The domain's shape, and for a subdomain that its parent is the caller's (or parent's)."""
    parts = labels(domain, ctx.settings.zone)
    if isinstance(parts, str):
        raise invalid("DomainName", f"{domain!r} {parts}")
    parent = parent_of(domain)
    if parent is None:
        return
    parent_sid = await ctx.repo.holder(DOMAIN_CLAIM, parent)
    parent_trunk = await ctx.repo.get(Trunk, parent_sid) if parent_sid else None
    allowed = {ctx.caller.sid, ctx.caller.owner_account_sid}
    if parent_trunk is None or parent_trunk.account_sid not in allowed:
        raise DomainError(
            Error.TRUNK_DEPENDENCIES,
            f"Cannot use subdomain {domain}: parent domain {parent} does not exist "
            "or this account does not own it",
            parameter="DomainName",
        )


async def has_subdomains(ctx: Ctx, trunk: Trunk) -> bool:
    if trunk.domain_name is None:
        return False
    return bool(await ctx.repo.list(Trunk, "parent_domain", trunk.domain_name, limit=1))


# Trunkline extensions, not in Twilio's API: termination limits per trunk. A whole number in
# range sets the limit; an empty value goes back to the platform default (null in answers).
LIMITS = (
    ("CpsLimit", "cps_limit", Trunk.MAX_CPS_LIMIT),
    ("ConcurrentCallsLimit", "concurrent_calls_limit", Trunk.MAX_CONCURRENT_CALLS_LIMIT),
)


def limit_from_form(form: Form, name: str, high: int) -> int | None:
    """A positive whole number up to `high`, or None for an empty value (the default).

    Stricter than `int()`: ASCII digits only, so `+5`, ` 5`, `5_000`, `1e3` and `0.5` fail.
    """
    value = form.str(name) or ""
    if value == "":
        return None
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= high:
        raise invalid(
            name,
            f"must be a whole number from 1 to {high}, or empty for the platform default, "
            f"not {value!r}",
        )
    return int(value)


def settings_from_form(ctx: Ctx, trunk: Trunk) -> Trunk:
    f = ctx.form
    changes: dict[str, Any] = {}
    if f.has("FriendlyName"):
        changes["friendly_name"] = f.str("FriendlyName", max_len=64)
    if f.has("DisasterRecoveryUrl"):
        changes["disaster_recovery_url"] = f.url("DisasterRecoveryUrl") or None
    for param, attr, kind in (
        ("DisasterRecoveryMethod", "disaster_recovery_method", HttpMethod),
        ("TransferMode", "transfer_mode", TransferMode),
        ("TransferCallerId", "transfer_caller_id", TransferCallerId),
    ):
        value = f.enum(param, kind)
        if value is not None:
            changes[attr] = value.value
    for param, attr in (
        ("Secure", "secure"),
        ("CnamLookupEnabled", "cnam_lookup_enabled"),
        # Not in Twilio's API (its console sets it); accepted so kubectl users can set it too.
        ("SymmetricRtpEnabled", "symmetric_rtp_enabled"),
    ):
        flag = f.bool(param)
        if flag is not None:
            changes[attr] = flag
    if f.has("DomainName"):
        changes["domain_name"] = (f.str("DomainName", max_len=253) or "").lower() or None
    for param, attr, high in LIMITS:
        if f.has(param):
            changes[attr] = limit_from_form(f, param, high)
    return replace(trunk, **changes) if changes else trunk


async def create(ctx: Ctx) -> Response:
    account = ctx.caller
    limit = ctx.settings.max_trunks_per_account
    if await ctx.repo.count(Trunk, "account", account.sid, limit=limit) >= limit:
        raise DomainError(
            Error.MAX_TRUNKS, f"Account {account.sid} already has {limit} trunks, the maximum"
        )
    trunk = settings_from_form(ctx, Trunk(sid=new_sid("TK"), account_sid=account.sid))
    batch = Batch().put(trunk)
    if trunk.domain_name:
        await check_domain(ctx, trunk.domain_name, trunk.sid)
        batch.claim(DOMAIN_CLAIM, trunk.domain_name, trunk.sid)
    await write_claiming(ctx, batch, trunk, "created")
    return JSON(await render(ctx, trunk), 201)


async def write_claiming(ctx: Ctx, batch: Batch, trunk: Trunk, action: str) -> None:
    try:
        await ctx.write(batch, [(trunk.account_sid, RESOURCE, trunk.sid, action, "")])
    except ClaimConflict as conflict:
        raise DomainError(
            Error.DOMAIN_TAKEN,
            f"Trunk domain {conflict.claim.value} is already taken",
            parameter="DomainName",
        ) from None


async def load(ctx: Ctx, sid: str) -> Trunk:
    return await ctx.owned(Trunk, sid, ctx.caller.sid, "Trunk")


async def fetch(ctx: Ctx) -> Response:
    return JSON(await render(ctx, await load(ctx, ctx.param("Sid"))))


async def update(ctx: Ctx) -> Response:
    trunk = await load(ctx, ctx.param("Sid"))
    changed = settings_from_form(ctx, trunk)
    batch = Batch()
    if changed.domain_name != trunk.domain_name:
        if await has_subdomains(ctx, trunk):
            raise DomainError(
                Error.TRUNK_DEPENDENCIES,
                f"Cannot rename domain {trunk.domain_name} while it has subdomains",
                parameter="DomainName",
            )
        if changed.domain_name:
            await check_domain(ctx, changed.domain_name, trunk.sid)
            batch.claim(DOMAIN_CLAIM, changed.domain_name, trunk.sid)
        if trunk.domain_name:
            batch.release(DOMAIN_CLAIM, trunk.domain_name, trunk.sid)
    changed = replace(changed, date_updated=utcnow())
    batch.put(changed)
    await write_claiming(ctx, batch, changed, "updated")
    return JSON(await render(ctx, changed))


async def delete(ctx: Ctx) -> Response:
    """Deleting a trunk unties its numbers (they stay in the account) and drops its links."""
    trunk = await load(ctx, ctx.param("Sid"))
    if await has_subdomains(ctx, trunk):
        raise DomainError(
            Error.TRUNK_DEPENDENCIES,
            f"Cannot delete trunk {trunk.sid} while its domain {trunk.domain_name} has subdomains",
        )
    batch = Batch().delete(trunk)
    if trunk.domain_name:
        batch.release(DOMAIN_CLAIM, trunk.domain_name, trunk.sid)
    announce = [(trunk.account_sid, RESOURCE, trunk.sid, "deleted", "")]
    for number in await ctx.all_of(PhoneNumber, "trunk", trunk.sid):
        batch.put(replace(number, trunk_sid=None, date_updated=utcnow()))
        announce.append((number.account_sid, "phone_numbers", number.sid, "updated", ""))
    for kind in (TrunkCredentialList, TrunkIpAccessControlList, OriginationUrl):
        for record in await ctx.all_of(kind, "trunk", trunk.sid):
            batch.delete(record)
    await ctx.write(batch, announce)
    return Response(status_code=204)


async def listing(ctx: Ctx) -> Response:
    rows, links = await ctx.page(Trunk, "account", ctx.caller.sid)
    return ctx.v1_list("trunks", [await render(ctx, t) for t in rows], links)


def render_recording(trunk: Trunk) -> dict[str, Any]:
    return {"mode": trunk.recording_mode, "trim": trunk.recording_trim}


async def fetch_recording(ctx: Ctx) -> Response:
    return JSON(render_recording(await load(ctx, ctx.param("TrunkSid"))))


async def update_recording(ctx: Ctx) -> Response:
    trunk = await load(ctx, ctx.param("TrunkSid"))
    mode = ctx.form.enum("Mode", RecordingMode)
    trim = ctx.form.enum("Trim", RecordingTrim)
    changed = replace(
        trunk,
        recording_mode=mode.value if mode else trunk.recording_mode,
        recording_trim=trim.value if trim else trunk.recording_trim,
        date_updated=utcnow(),
    )
    await ctx.write(Batch().put(changed), [(trunk.account_sid, RESOURCE, trunk.sid, "updated", "")])
    return JSON(render_recording(changed))


def routes(platform: Platform) -> list[Route]:
    def r(path: str, handler: Any, methods: list[str]) -> Route:
        return Route(path, endpoint(platform, handler, "account"), methods=methods)

    return [
        r("/v1/Trunks", listing, ["GET"]),
        r("/v1/Trunks", create, ["POST"]),
        r("/v1/Trunks/{Sid}", fetch, ["GET"]),
        r("/v1/Trunks/{Sid}", update, ["POST"]),
        r("/v1/Trunks/{Sid}", delete, ["DELETE"]),
        r("/v1/Trunks/{TrunkSid}/Recording", fetch_recording, ["GET"]),
        r("/v1/Trunks/{TrunkSid}/Recording", update_recording, ["POST"]),
    ]
