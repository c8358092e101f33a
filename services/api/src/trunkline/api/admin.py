"""The platform operator's API (`/admin/v1`), guarded by its own bearer token.

What Twilio's own staff would do: create accounts, load the phone-number inventory, mark
caller IDs verified. Carriers, rate decks and CNAM data join it with their services.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from trunkline.api.context import Ctx, Platform, endpoint
from trunkline.api.resources import accounts
from trunkline.api.resources.caller_ids import verify_caller_id
from trunkline.api.wire import JSON, iso8601
from trunkline.domain.errors import DomainError, Error, invalid, not_found
from trunkline.domain.model import Account, AccountType, InventoryNumber, NumberType
from trunkline.domain.numbers import is_e164
from trunkline.domain.sid import is_sid
from trunkline.store.repository import Batch

CSV_COLUMNS = (
    "phone_number",
    "iso_country",
    "number_type",
    "locality",
    "region",
    "postal_code",
    "rate_center",
    "lata",
)
MAX_IMPORT_BYTES = 8 * 1024 * 1024


async def create_account(ctx: Ctx) -> Response:
    name = ctx.form.required("FriendlyName", max_len=64)
    kind = ctx.form.enum("Type", AccountType) or AccountType.FULL
    account, token = accounts.new_account(name, None, kind.value)
    await ctx.write(Batch().put(account), [(account.sid, "accounts", account.sid, "created", "")])
    return JSON(accounts.render(account, token), 201)


async def list_accounts(ctx: Ctx) -> Response:
    # Main accounts own themselves; the operator's listing walks the "main" partition.
    rows, links = await ctx.page(Account, "main", "all")
    return ctx.v1_list("accounts", [accounts.render(a) for a in rows], links)


def parse_inventory_row(row: dict[str, str]) -> InventoryNumber | str:
    number = (row.get("phone_number") or "").strip()
    if not is_e164(number):
        return f"phone_number {number!r} is not E.164 (+ and digits)"
    country = (row.get("iso_country") or "").strip().upper()
    if len(country) != 2 or not country.isalpha():
        return f"iso_country {country!r} is not an ISO 3166 alpha-2 code"
    raw_type = (row.get("number_type") or "local").strip().lower()
    try:
        number_type = NumberType(raw_type)
    except ValueError:
        allowed = ", ".join(t.value for t in NumberType)
        return f"number_type {raw_type!r} is not one of {allowed}"

    def opt(name: str) -> str | None:
        return (row.get(name) or "").strip() or None

    return InventoryNumber(
        phone_number=number,
        iso_country=country,
        number_type=number_type.value,
        friendly_name=friendly_format(number),
        locality=opt("locality"),
        region=opt("region"),
        postal_code=opt("postal_code"),
        rate_center=opt("rate_center"),
        lata=opt("lata"),
    )


def friendly_format(number: str) -> str:
    """`(415) 555-0100` for NANP numbers, as Twilio shows them; E.164 otherwise."""
    if number.startswith("+1") and len(number) == 12:
        return f"({number[2:5]}) {number[5:8]}-{number[8:]}"
    return number


async def import_numbers(ctx: Ctx) -> Response:
    body = await ctx.request.body()
    if len(body) > MAX_IMPORT_BYTES:
        raise DomainError(Error.INVALID_PARAMETER, "CSV import is limited to 8 MiB per request")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DomainError(Error.INVALID_PARAMETER, "CSV body is not UTF-8") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("phone_number", "iso_country") if c not in (reader.fieldnames or [])]
    if missing:
        raise DomainError(
            Error.INVALID_PARAMETER,
            f"CSV header must name the columns {', '.join(CSV_COLUMNS)}; "
            f"missing {', '.join(missing)}",
        )
    batch = Batch()
    errors: list[dict[str, Any]] = []
    skipped = 0
    seen: set[str] = set()
    for line, row in enumerate(reader, start=2):
        parsed = parse_inventory_row(row)
        if isinstance(parsed, str):
            errors.append({"line": line, "message": parsed})
            continue
        if parsed.phone_number in seen or await ctx.repo.get(InventoryNumber, parsed.phone_number):
            skipped += 1
            continue
        seen.add(parsed.phone_number)
        batch.put(parsed)
    if errors:
        # All or nothing: a file with bad lines loads no line, so it can be fixed and re-sent.
        return JSON({"imported": 0, "skipped": skipped, "errors": errors}, 400)
    await ctx.repo.apply(batch)
    return JSON({"imported": len(batch.puts), "skipped": skipped, "errors": []})


def render_inventory(number: InventoryNumber) -> dict[str, Any]:
    return {
        "phone_number": number.phone_number,
        "friendly_name": number.friendly_name,
        "iso_country": number.iso_country,
        "number_type": number.number_type,
        "locality": number.locality,
        "region": number.region,
        "postal_code": number.postal_code,
        "rate_center": number.rate_center,
        "lata": number.lata,
        "owner_phone_number_sid": number.owner_phone_number_sid,
        "date_created": iso8601(number.date_created),
    }


async def list_numbers(ctx: Ctx) -> Response:
    country = (ctx.form.str("IsoCountry", max_len=2) or "US").upper()
    area = ctx.form.str("AreaCode", max_len=3)
    if area is not None and not (len(area) == 3 and area.isdigit()):
        raise invalid("AreaCode", "must be three digits")
    if area is None:
        rows, links = await ctx.page(InventoryNumber, "country", country)
    else:
        rows, links = await ctx.page(
            InventoryNumber, "country_area", f"{country}:{area}", extra={"AreaCode": area}
        )
    return ctx.v1_list("phone_numbers", [render_inventory(n) for n in rows], links)


async def verify(ctx: Ctx) -> Response:
    sid = ctx.param("AccountSid")
    account = await ctx.repo.get(Account, sid) if is_sid(sid, "AC") else None
    if account is None:
        raise not_found("Account", sid)
    return await verify_caller_id(ctx, account)


def routes(platform: Platform) -> list[Route]:
    def r(path: str, handler: Any, methods: list[str], form_body: bool = True) -> Route:
        return Route(
            path, endpoint(platform, handler, "admin", form_body=form_body), methods=methods
        )

    return [
        r("/admin/v1/Accounts", create_account, ["POST"]),
        r("/admin/v1/Accounts", list_accounts, ["GET"]),
        r("/admin/v1/PhoneNumbers/Import", import_numbers, ["POST"], form_body=False),
        r("/admin/v1/PhoneNumbers", list_numbers, ["GET"]),
        r("/admin/v1/Accounts/{AccountSid}/OutgoingCallerIds", verify, ["POST"]),
    ]
