"""SIP credential lists: 2010-04-01 CredentialLists and Credentials, and v1 trunk attachments.

A Credential is a digest user. Its password is hashed into HA1 under the platform realm as
soon as it arrives and is never stored, logged or returned (RFC 7616 3.4.2): the auth
service needs only HA1 to check a digest response.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from trunkline.api.context import Ctx, Platform, endpoint
from trunkline.api.resources import trunk_links
from trunkline.api.wire import JSON, rfc2822
from trunkline.domain import claims
from trunkline.domain.credentials import ha1, password_problem
from trunkline.domain.errors import invalid, not_found
from trunkline.domain.model import (
    Account,
    Credential,
    CredentialList,
    TrunkCredentialList,
    utcnow,
)
from trunkline.domain.sid import new_sid
from trunkline.store.repository import Batch, ClaimConflict

LISTS = "credential_lists"
CREDENTIALS = "credentials"
USERNAME_CLAIM = claims.CREDENTIAL_USERNAME
# Letters, digits and `. _ - @ +`: enough for e-mail-like and E.164-like user names, and
# free of `:` (which would make `user:realm:password` in HA1 ambiguous), quotes and
# backslashes (the digest username is a quoted-string) and anything a SIP URI must escape
# beyond `@`.
USERNAME = re.compile(r"[A-Za-z0-9._@+-]{1,32}")
USERNAME_RULE = "must be 1 to 32 characters, each a letter, a digit or one of . _ - @ +"
LIST_NAME_MAX = 64


# 2010-04-01 /SIP/CredentialLists


def list_uri(credential_list: CredentialList) -> str:
    return (
        f"/2010-04-01/Accounts/{credential_list.account_sid}/SIP/CredentialLists/"
        f"{credential_list.sid}"
    )


def render_list(credential_list: CredentialList) -> dict[str, Any]:
    uri = list_uri(credential_list)
    return {
        "account_sid": credential_list.account_sid,
        "date_created": rfc2822(credential_list.date_created),
        "date_updated": rfc2822(credential_list.date_updated),
        "friendly_name": credential_list.friendly_name,
        "sid": credential_list.sid,
        "subresource_uris": {"credentials": f"{uri}/Credentials.json"},
        "uri": f"{uri}.json",
    }


async def load_list(ctx: Ctx, account: Account, sid: str) -> CredentialList:
    return await ctx.owned(CredentialList, sid, account.sid, "CredentialList")


async def create_list(ctx: Ctx) -> Response:
    account = await ctx.target_account()
    name = ctx.form.required("FriendlyName", max_len=LIST_NAME_MAX)
    credential_list = CredentialList(sid=new_sid("CL"), account_sid=account.sid, friendly_name=name)
    await ctx.write(
        Batch().put(credential_list), [(account.sid, LISTS, credential_list.sid, "created", "")]
    )
    return JSON(render_list(credential_list), 201)


async def fetch_list(ctx: Ctx) -> Response:
    account = await ctx.target_account()
    return JSON(render_list(await load_list(ctx, account, ctx.param("Sid"))))


async def update_list(ctx: Ctx) -> Response:
    account = await ctx.target_account()
    credential_list = await load_list(ctx, account, ctx.param("Sid"))
    name = ctx.form.required("FriendlyName", max_len=LIST_NAME_MAX)
    changed = replace(credential_list, friendly_name=name, date_updated=utcnow())
    await ctx.write(Batch().put(changed), [(account.sid, LISTS, changed.sid, "updated", "")])
    return JSON(render_list(changed))


async def delete_list(ctx: Ctx) -> Response:
    """The list, its credentials and its trunk attachments go in one batch, or none do."""
    account = await ctx.target_account()
    credential_list = await load_list(ctx, account, ctx.param("Sid"))
    batch = Batch().delete(credential_list)
    announce = [(account.sid, LISTS, credential_list.sid, "deleted", "")]
    for credential in await ctx.all_of(Credential, "list", credential_list.sid):
        batch.delete(credential)
        batch.release(USERNAME_CLAIM, claimed_username(credential), credential.sid)
        announce.append(credential_event(credential, "deleted"))
    for link in await ctx.all_of(TrunkCredentialList, "list", credential_list.sid):
        batch.delete(link)
        announce.append(trunk_links.trunk_changed(link))
    await ctx.write(batch, announce)
    return Response(status_code=204)


async def list_lists(ctx: Ctx) -> Response:
    account = await ctx.target_account()
    rows, links = await ctx.page(CredentialList, "account", account.sid)
    return ctx.v2010_list(LISTS, [render_list(c) for c in rows], links)


# 2010-04-01 /SIP/CredentialLists/{CredentialListSid}/Credentials


def username_key(list_sid: str, username: str) -> str:
    return f"{list_sid}:{username}"


def claimed_username(credential: Credential) -> str:
    return username_key(credential.credential_list_sid, credential.username)


def credential_event(credential: Credential, action: str) -> tuple[str, str, str, str, str]:
    """Announced with the list as parent, so the auth service reloads just that list."""
    return (
        credential.account_sid,
        CREDENTIALS,
        credential.sid,
        action,
        credential.credential_list_sid,
    )


def render_credential(credential: Credential) -> dict[str, Any]:
    """Never the password nor its hashes: only what identifies the user."""
    return {
        "sid": credential.sid,
        "account_sid": credential.account_sid,
        "credential_list_sid": credential.credential_list_sid,
        "username": credential.username,
        "date_created": rfc2822(credential.date_created),
        "date_updated": rfc2822(credential.date_updated),
        "uri": f"/2010-04-01/Accounts/{credential.account_sid}/SIP/CredentialLists/"
        f"{credential.credential_list_sid}/Credentials/{credential.sid}.json",
    }


def read_username(ctx: Ctx) -> str:
    username = ctx.form.required("Username", max_len=32)
    if not USERNAME.fullmatch(username):
        raise invalid("Username", USERNAME_RULE)
    return username


def read_password(ctx: Ctx) -> str:
    """The password, checked against the policy; error texts never repeat it."""
    password = ctx.form.required("Password", max_len=128)
    problem = password_problem(password)
    if problem is not None:
        raise invalid("Password", problem)
    return password


def digest_ha1(username: str, realm: str, password: str) -> tuple[str, str]:
    """(MD5, SHA-256) HA1, so the auth service can answer either digest algorithm."""
    return ha1("MD5", username, realm, password), ha1("SHA-256", username, realm, password)


async def parent_list(ctx: Ctx) -> CredentialList:
    account = await ctx.target_account()
    return await load_list(ctx, account, ctx.param("CredentialListSid"))


async def load_credential(ctx: Ctx) -> Credential:
    credential_list = await parent_list(ctx)
    sid = ctx.param("Sid")
    credential = await ctx.owned(Credential, sid, credential_list.account_sid, "Credential")
    if credential.credential_list_sid != credential_list.sid:
        raise not_found("Credential", sid)
    return credential


async def create_credential(ctx: Ctx) -> Response:
    credential_list = await parent_list(ctx)
    username = read_username(ctx)
    password = read_password(ctx)
    realm = ctx.settings.realm
    md5, sha256 = digest_ha1(username, realm, password)
    credential = Credential(
        sid=new_sid("CR"),
        account_sid=credential_list.account_sid,
        credential_list_sid=credential_list.sid,
        username=username,
        realm=realm,
        ha1_md5=md5,
        ha1_sha256=sha256,
    )
    batch = (
        Batch().put(credential).claim(USERNAME_CLAIM, claimed_username(credential), credential.sid)
    )
    try:
        await ctx.write(batch, [credential_event(credential, "created")])
    except ClaimConflict:
        raise invalid(
            "Username", f"{username!r} is already in credential list {credential_list.sid}"
        ) from None
    return JSON(render_credential(credential), 201)


async def fetch_credential(ctx: Ctx) -> Response:
    return JSON(render_credential(await load_credential(ctx)))


async def update_credential(ctx: Ctx) -> Response:
    """Only the password changes; without one the credential is returned as it is."""
    credential = await load_credential(ctx)
    if not ctx.form.has("Password"):
        return JSON(render_credential(credential))
    realm = ctx.settings.realm
    md5, sha256 = digest_ha1(credential.username, realm, read_password(ctx))
    changed = replace(
        credential, realm=realm, ha1_md5=md5, ha1_sha256=sha256, date_updated=utcnow()
    )
    await ctx.write(Batch().put(changed), [credential_event(changed, "updated")])
    return JSON(render_credential(changed))


async def delete_credential(ctx: Ctx) -> Response:
    credential = await load_credential(ctx)
    batch = (
        Batch()
        .delete(credential)
        .release(USERNAME_CLAIM, claimed_username(credential), credential.sid)
    )
    await ctx.write(batch, [credential_event(credential, "deleted")])
    return Response(status_code=204)


async def list_credentials(ctx: Ctx) -> Response:
    credential_list = await parent_list(ctx)
    rows, links = await ctx.page(Credential, "list", credential_list.sid)
    return ctx.v2010_list(CREDENTIALS, [render_credential(c) for c in rows], links)


def routes(platform: Platform) -> list[Route]:
    def r(path: str, handler: Any, methods: list[str]) -> Route:
        return Route(path, endpoint(platform, handler, "account"), methods=methods)

    lists = "/2010-04-01/Accounts/{AccountSid}/SIP/CredentialLists"
    credentials = lists + "/{CredentialListSid}/Credentials"
    return [
        *trunk_links.routes(platform, trunk_links.CREDENTIAL_LISTS),
        r(f"{lists}.json", list_lists, ["GET"]),
        r(f"{lists}.json", create_list, ["POST"]),
        r(lists + "/{Sid}.json", fetch_list, ["GET"]),
        r(lists + "/{Sid}.json", update_list, ["POST"]),
        r(lists + "/{Sid}.json", delete_list, ["DELETE"]),
        r(f"{credentials}.json", list_credentials, ["GET"]),
        r(f"{credentials}.json", create_credential, ["POST"]),
        r(credentials + "/{Sid}.json", fetch_credential, ["GET"]),
        r(credentials + "/{Sid}.json", update_credential, ["POST"]),
        r(credentials + "/{Sid}.json", delete_credential, ["DELETE"]),
    ]
