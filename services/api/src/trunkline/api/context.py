"""Per-request context: who is calling, what they may touch, and the shared handler wrapper."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from trunkline.api.settings import Settings
from trunkline.api.wire import JSON, Form, error_response, page_cursor, page_links, page_number
from trunkline.api.wire import page_size as read_page_size
from trunkline.domain.credentials import token_hash
from trunkline.domain.errors import DomainError, Error, not_found
from trunkline.domain.model import Account, AccountStatus, Record
from trunkline.domain.sid import is_sid
from trunkline.store.repository import Batch, Cursor, Repository

log = logging.getLogger("trunkline.api")
R = TypeVar("R", bound=Record)


class Announcer(Protocol):
    """Tells the other services a configuration record changed (NATS in production)."""

    async def publish(
        self, account_sid: str, resource: str, sid: str, action: str, parent_sid: str = ""
    ) -> None: ...

    async def close(self) -> None: ...


class SilentAnnouncer:
    """Used when no NATS URL is configured: nothing listens, so nothing is sent."""

    async def publish(
        self, account_sid: str, resource: str, sid: str, action: str, parent_sid: str = ""
    ) -> None:
        return None

    async def close(self) -> None:
        return None


@dataclass
class Platform:
    settings: Settings
    repo: Repository
    announcer: Announcer


@dataclass
class Ctx:
    request: Request
    form: Form
    platform: Platform
    account: Account | None  # the authenticated account; None on admin routes

    @property
    def repo(self) -> Repository:
        return self.platform.repo

    @property
    def settings(self) -> Settings:
        return self.platform.settings

    @property
    def caller(self) -> Account:
        assert self.account is not None, "account routes always authenticate"
        return self.account

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    async def target_account(self) -> Account:
        """The account named in a 2010-04-01 path: the caller or one of its subaccounts."""
        return await self.visible_account(self.param("AccountSid"))

    async def visible_account(self, sid: str) -> Account:
        """The caller itself or one of its subaccounts; any other SID is not found."""
        if sid == self.caller.sid:
            return self.caller
        account = await self.repo.get(Account, sid) if is_sid(sid, "AC") else None
        if account is None or account.owner_account_sid != self.caller.sid:
            raise not_found("Account", sid)
        return account

    async def owned(self, kind: type[R], sid: str, account_sid: str, what: str) -> R:
        """A record of `account_sid` by SID, or 404 (also for another account's record)."""
        record = await self.repo.get(kind, sid)
        if record is None or getattr(record, "account_sid", None) != account_sid:
            raise not_found(what, sid)
        return record

    async def all_of(self, kind: type[R], index: str, value: str) -> list[R]:
        """Every record of a partition that is bounded by a product rule (a trunk's links)."""
        found: list[R] = []
        after: Cursor | None = None
        while True:
            rows = await self.repo.list(kind, index, value, limit=500, after=after)
            found.extend(rows)
            if len(rows) < 500:
                return found
            after = Cursor.of(rows[-1])

    async def write(self, batch: Batch, announce: Sequence[tuple[str, str, str, str, str]]) -> None:
        """Apply `batch`, then announce (account, resource, sid, action, parent) changes."""
        await self.repo.apply(batch)
        for account_sid, resource, sid, action, parent in announce:
            await self.platform.announcer.publish(account_sid, resource, sid, action, parent)

    async def page(
        self,
        kind: type[R],
        index: str,
        value: str,
        *,
        extra: Mapping[str, str] | None = None,
    ) -> tuple[Sequence[R], dict[str, str | None]]:
        """One page of an index partition, with the paths of its neighbours."""
        size = read_page_size(self.form)
        after, before = page_cursor(self.form)
        rows = await self.repo.list(kind, index, value, limit=size + 1, after=after, before=before)
        if before is not None:
            more_before, more_after = len(rows) > size, True
            rows = rows[-size:]
        else:
            more_before, more_after = after is not None, len(rows) > size
            rows = rows[:size]
        links = page_links(self.request.url.path, self.form, rows, more_after, more_before, extra)
        return rows, links

    def v1_list(self, key: str, items: list[dict[str, Any]], links: dict[str, str | None]) -> JSON:
        def absolute(path: str | None) -> str | None:
            return None if path is None else self.base_url + path

        return JSON(
            {
                key: items,
                "meta": {
                    "page": page_number(self.form),
                    "page_size": read_page_size(self.form),
                    "first_page_url": absolute(links["first"]),
                    "previous_page_url": absolute(links["previous"]),
                    "next_page_url": absolute(links["next"]),
                    "url": absolute(links["this"]),
                    "key": key,
                },
            }
        )

    def v2010_list(
        self, key: str, items: list[dict[str, Any]], links: dict[str, str | None]
    ) -> JSON:
        page, size = page_number(self.form), read_page_size(self.form)
        start = page * size
        return JSON(
            {
                key: items,
                "first_page_uri": links["first"],
                "previous_page_uri": links["previous"],
                "next_page_uri": links["next"],
                "uri": links["this"],
                "page": page,
                "page_size": size,
                "start": start,
                "end": start + max(len(items) - 1, 0),
            }
        )


Handler = Callable[[Ctx], Awaitable[Response]]
AuthMode = Literal["account", "admin"]


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


async def authenticate(platform: Platform, request: Request) -> Account:
    """HTTP Basic with AccountSid:AuthToken; tokens are compared by their SHA-256."""
    creds = _basic_credentials(request)
    denied = DomainError(Error.UNAUTHORIZED, "Authenticate: AccountSid and AuthToken required")
    if creds is None:
        raise denied
    sid, secret = creds
    account = await platform.repo.get(Account, sid) if is_sid(sid, "AC") else None
    if account is None or account.status == AccountStatus.CLOSED:
        raise denied
    if not hmac.compare_digest(account.auth_token_sha256, token_hash(secret)):
        raise denied
    return account


def authorize_admin(platform: Platform, request: Request) -> None:
    expected = platform.settings.admin_token
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if (
        expected is None
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(value.encode(), expected.encode())
    ):
        raise DomainError(Error.UNAUTHORIZED, "Admin API: a valid bearer token is required")


def endpoint(
    platform: Platform, handler: Handler, auth: AuthMode, *, form_body: bool = True
) -> Callable[[Request], Any]:
    """Wrap `handler`: authenticate, read the form, and turn domain errors into Twilio bodies."""

    async def run(request: Request) -> Response:
        try:
            if auth == "admin":
                authorize_admin(platform, request)
                account = None
            else:
                account = await authenticate(platform, request)
                if account.status != AccountStatus.ACTIVE and request.method != "GET":
                    raise DomainError(
                        Error.ACCOUNT_NOT_ACTIVE, f"Account {account.sid} is {account.status}"
                    )
            form = await Form.read(request, body=form_body)
            return await handler(Ctx(request, form, platform, account))
        except DomainError as err:
            if err.http_status >= 500:
                log.error("request failed", extra={"code": err.code, "path": request.url.path})
            return error_response(err)

    return run
