"""The platform operator's API (`/admin/v1`), guarded by its own bearer token.

What Twilio's own staff would do: create accounts, load the phone-number inventory, mark
caller IDs verified, load the caller names (CNAM) of North American numbers. Carriers and
rate decks join it with their services.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from trunkline.api.context import Ctx, Platform, endpoint
from trunkline.api.resources import accounts
from trunkline.api.resources.caller_ids import verify_caller_id
from trunkline.api.wire import JSON, error_body, iso8601
from trunkline.domain.errors import DomainError, Error, invalid, not_found
from trunkline.domain.model import Account, AccountType, CnamEntry, InventoryNumber, NumberType
from trunkline.domain.numbers import is_e164, is_nanp
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


async def read_csv(
    ctx: Ctx, required: tuple[str, ...], columns: tuple[str, ...]
) -> csv.DictReader[str]:
    """The request's CSV body, whose header row names at least the `required` columns."""
    body = await ctx.request.body()
    if len(body) > MAX_IMPORT_BYTES:
        raise DomainError(Error.INVALID_PARAMETER, "CSV import is limited to 8 MiB per request")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DomainError(Error.INVALID_PARAMETER, "CSV body is not UTF-8") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise DomainError(
            Error.INVALID_PARAMETER,
            f"CSV header must name the columns {', '.join(columns)}; missing {', '.join(missing)}",
        )
    return reader


async def import_numbers(ctx: Ctx) -> Response:
    reader = await read_csv(ctx, ("phone_number", "iso_country"), CSV_COLUMNS)
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


CNAM_COLUMNS = ("number", "caller_name")
MAX_REPORTED_ERRORS = 100


def parse_cnam_row(row: dict[str, str | None]) -> CnamEntry | str:
    number = (row.get("number") or "").strip()
    if not is_e164(number):
        return f"number {number!r} is not E.164 (+ and digits)"
    if not is_nanp(number):
        return f"number {number} is not a North American number (+1 NPA NXX XXXX)"
    name = (row.get("caller_name") or "").strip()
    problem = CnamEntry.name_problem(name)
    if problem is not None:
        return problem
    return CnamEntry(phone_number=number, caller_name=name)


async def import_cnam(ctx: Ctx) -> Response:
    """Caller names from CSV (`number,caller_name`), all or nothing: a name replaces the
    number's earlier one; a file with a bad row loads nothing and names its lines."""
    reader = await read_csv(ctx, CNAM_COLUMNS, CNAM_COLUMNS)
    parsed: dict[str, tuple[int, CnamEntry]] = {}
    errors: list[dict[str, Any]] = []
    for line, row in enumerate(reader, start=2):
        entry = parse_cnam_row(row)
        if isinstance(entry, CnamEntry) and entry.phone_number in parsed:
            earlier = parsed[entry.phone_number][0]
            entry = f"number {entry.phone_number} is listed twice (first on line {earlier})"
        if isinstance(entry, str):
            errors.append({"line": line, "message": entry})
            continue
        parsed[entry.phone_number] = (line, entry)
    if errors:
        first = errors[0]
        message = (
            f"{len(errors)} CSV row{'s' if len(errors) != 1 else ''} rejected, nothing imported; "
            f"line {first['line']}: {first['message']}"
        )
        body = error_body(Error.INVALID_PARAMETER.value.code, message, 400)
        body.update(
            imported=0,
            updated=0,
            unchanged=0,
            rejected=len(errors),
            errors=errors[:MAX_REPORTED_ERRORS],
        )
        return JSON(body, 400)
    batch = Batch()
    imported = updated = unchanged = 0
    for _, entry in parsed.values():
        old = await ctx.repo.get(CnamEntry, entry.phone_number)
        if old is None:
            imported += 1
        elif old.caller_name == entry.caller_name:
            unchanged += 1
            continue
        else:
            updated += 1
            entry = dataclasses.replace(entry, date_created=old.date_created)
        batch.put(entry)
    await ctx.repo.apply(batch)
    return JSON(
        {
            "imported": imported,
            "updated": updated,
            "unchanged": unchanged,
            "rejected": 0,
            "errors": [],
        }
    )


def render_cnam(entry: CnamEntry) -> dict[str, Any]:
    return {
        "phone_number": entry.phone_number,
        "caller_name": entry.caller_name,
        "date_created": iso8601(entry.date_created),
        "date_updated": iso8601(entry.date_updated),
    }


async def cnam_entry(ctx: Ctx) -> CnamEntry:
    number = ctx.param("PhoneNumber")
    entry = await ctx.repo.get(CnamEntry, number) if is_nanp(number) else None
    if entry is None:
        raise not_found("CNAM entry", number)
    return entry


async def fetch_cnam(ctx: Ctx) -> Response:
    return JSON(render_cnam(await cnam_entry(ctx)))


async def delete_cnam(ctx: Ctx) -> Response:
    await ctx.repo.apply(Batch().delete(await cnam_entry(ctx)))
    return Response(status_code=204)


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
        r("/admin/v1/Cnam/Import", import_cnam, ["POST"], form_body=False),
        r("/admin/v1/Cnam/{PhoneNumber}", fetch_cnam, ["GET"]),
        r("/admin/v1/Cnam/{PhoneNumber}", delete_cnam, ["DELETE"]),
    ]
