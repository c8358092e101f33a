"""2010-04-01 AvailablePhoneNumbers: search the operator's inventory for numbers to buy.

Countries: Trunkline sells what the platform operator imported (admin API), so the country
list is every ISO 3166-1 country that has numbers in the inventory, found by probing each
country's partition once (249 bounded look-ups). A country's `subresource_uris` name the
number types that have free numbers right now.

Searches read the free-number partition of one country and type (or one NANP area code) a
page at a time and keep the numbers every filter accepts. The scan stops after SCAN_LIMIT
numbers, so a rare pattern in a huge stock answers with fewer matches, as Twilio's own search
answers with a sample rather than every match.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pycountry
from starlette.responses import Response
from starlette.routing import Route

from trunkline.api.context import Ctx, Platform, endpoint
from trunkline.api.wire import JSON, page_size
from trunkline.domain.errors import DomainError, Error, invalid, not_found
from trunkline.domain.model import Account, InventoryNumber, NumberType
from trunkline.domain.numbers import is_e164
from trunkline.store.repository import Cursor

SCAN_BATCH = 200
SCAN_LIMIT = 5000
# (subresource key, path segment, inventory type), in the order Twilio lists them.
NUMBER_TYPES: tuple[tuple[str, str, NumberType], ...] = (
    ("local", "Local", NumberType.LOCAL),
    ("toll_free", "TollFree", NumberType.TOLL_FREE),
    ("mobile", "Mobile", NumberType.MOBILE),
)
NANP_COUNTRIES = ("US", "CA")  # where Twilio's AreaCode applies
_AREA_CODE = re.compile(r"^[2-9][0-9]{2}$")  # a NANP NPA: the first digit is never 0 or 1
KEYPAD = {
    letter: digit
    for digit, letters in {
        "2": "ABC", "3": "DEF", "4": "GHI", "5": "JKL",
        "6": "MNO", "7": "PQRS", "8": "TUV", "9": "WXYZ",
    }.items()
    for letter in letters
}  # fmt: skip

# ISO 3166-1 alpha-2 codes with their English names (common names where ISO's are formal,
# "Bolivia" rather than "Bolivia, Plurinational State of"), as Twilio names countries.
COUNTRIES: dict[str, str] = {
    c.alpha_2: getattr(c, "common_name", c.name) for c in pycountry.countries
}

Predicate = Callable[[InventoryNumber], bool]


def area_code(ctx: Ctx) -> str | None:
    """`AreaCode`: a North American area code, or 21451."""
    value = ctx.form.str("AreaCode", max_len=16)
    if value is None:
        return None
    if not _AREA_CODE.match(value):
        raise DomainError(
            Error.INVALID_AREA_CODE,
            f"Invalid AreaCode: {value!r} is not a North American area code "
            "(three digits, the first 2-9)",
            parameter="AreaCode",
        )
    return value


def contains_pattern(raw: str) -> re.Pattern[str]:
    """Twilio's `Contains`: digits and letters (as on a keypad), `*` for any one digit, `%`
    for any run of digits, a leading `+` to match from the start and a trailing `$` to match
    up to the end of the E.164 number."""
    if not 2 <= len(raw) <= 16:
        raise invalid("Contains", "must be 2 to 16 characters long")
    body = raw[1:] if raw.startswith("+") else raw
    body = body[:-1] if body.endswith("$") else body
    parts: list[str] = []
    for char in body:
        if char.isascii() and char.isdigit():
            parts.append(char)
        elif char.isascii() and char.upper() in KEYPAD:
            parts.append(KEYPAD[char.upper()])
        elif char == "*":
            parts.append("[0-9]")
        elif char == "%":
            parts.append("[0-9]*")
        else:
            raise invalid(
                "Contains",
                f"{char!r} is not allowed; use digits, letters, * and %, "
                "with an optional leading + and trailing $",
            )
    if sum(1 for char in body if char not in "*%") < 2:
        raise invalid("Contains", "must contain at least two digits or letters")
    start = r"^\+" if raw.startswith("+") else ""
    end = "$" if raw.endswith("$") else ""
    return re.compile(start + "".join(parts) + end)


async def place(ctx: Ctx, param: str, attr: str) -> str | None:
    """An `In*` filter value; given an E.164 number, that inventory number's value (Twilio:
    "given a phone number, search within the same region as that number")."""
    value = ctx.form.str(param, max_len=64)
    if not value:
        return None
    if not value.startswith("+"):
        return value
    if not is_e164(value):
        raise invalid(param, f"{value!r} is neither a name nor an E.164 phone number")
    number = await ctx.repo.get(InventoryNumber, value)
    found = getattr(number, attr) if number is not None else None
    if not isinstance(found, str):
        raise invalid(param, f"no {attr.replace('_', ' ')} is known for {value}")
    return found


def same(attr: str, wanted: str) -> Predicate:
    folded = wanted.casefold()
    return lambda n: (getattr(n, attr) or "").casefold() == folded


def capable(capability: str, flag: bool) -> Predicate:
    return lambda n: (capability in n.capabilities) == flag


def not_requiring(requirement: str) -> Predicate:
    return lambda n: n.address_requirements != requirement


async def filters(ctx: Ctx) -> list[Predicate]:
    """One predicate per filter in the query; every one must accept a number."""
    form = ctx.form
    for param in ("NearNumber", "NearLatLong", "Distance"):
        if form.has(param):
            raise invalid(
                param,
                "searching by distance is not supported; use InRegion, InPostalCode, "
                "InLocality, InRateCenter or InLata",
            )
    if form.has("InRateCenter") and not form.has("InLata"):
        raise invalid("InRateCenter", "requires InLata as well")
    checks: list[Predicate] = []
    contains = form.str("Contains", max_len=16)
    if contains is not None:
        pattern = contains_pattern(contains)
        checks.append(lambda n: pattern.search(n.phone_number) is not None)
    for param, attr in (
        ("InRegion", "region"),
        ("InPostalCode", "postal_code"),
        ("InLocality", "locality"),
        ("InRateCenter", "rate_center"),
        ("InLata", "lata"),
    ):
        wanted = await place(ctx, param, attr)
        if wanted is not None:
            checks.append(same(attr, wanted))
    for param, capability in (
        ("VoiceEnabled", "voice"),
        ("SmsEnabled", "sms"),
        ("MmsEnabled", "mms"),
        ("FaxEnabled", "fax"),
    ):
        flag = form.bool(param)
        if flag is not None:
            checks.append(capable(capability, flag))
    if form.bool("Beta") is False:
        checks.append(lambda n: not n.beta)
    if form.bool("ExcludeAllAddressRequired"):
        checks.append(lambda n: n.address_requirements == "none")
    for param, requirement in (
        ("ExcludeLocalAddressRequired", "local"),
        ("ExcludeForeignAddressRequired", "foreign"),
    ):
        if form.bool(param):
            checks.append(not_requiring(requirement))
    return checks


def render(number: InventoryNumber) -> dict[str, Any]:
    caps = number.capabilities
    return {
        "friendly_name": number.friendly_name,
        "phone_number": number.phone_number,
        "lata": number.lata,
        "locality": number.locality,
        "rate_center": number.rate_center,
        "latitude": number.latitude,
        "longitude": number.longitude,
        "region": number.region,
        "postal_code": number.postal_code,
        "iso_country": number.iso_country,
        "address_requirements": number.address_requirements,
        "beta": number.beta,
        # AvailablePhoneNumbers spell these two in capitals, unlike IncomingPhoneNumbers.
        "capabilities": {
            "voice": "voice" in caps,
            "SMS": "sms" in caps,
            "MMS": "mms" in caps,
            "fax": "fax" in caps,
        },
    }


def country_uri(account: Account, code: str) -> str:
    return f"/2010-04-01/Accounts/{account.sid}/AvailablePhoneNumbers/{code}"


async def in_inventory(ctx: Ctx, code: str) -> bool:
    return bool(await ctx.repo.list(InventoryNumber, "country", code, limit=1))


async def offered_country(ctx: Ctx) -> str:
    """The path's country, if the inventory holds any number of it; else 404."""
    code = ctx.param("CountryCode").upper()
    if len(code) != 2 or not code.isascii() or not code.isalpha():
        raise not_found("AvailablePhoneNumberCountry", code)
    if not await in_inventory(ctx, code):
        raise not_found("AvailablePhoneNumberCountry", code)
    return code


async def render_country(ctx: Ctx, account: Account, code: str) -> dict[str, Any]:
    uri = country_uri(account, code)
    subresources = {}
    for key, segment, kind in NUMBER_TYPES:
        if await ctx.repo.list(InventoryNumber, "available", f"{code}:{kind}", limit=1):
            subresources[key] = f"{uri}/{segment}.json"
    return {
        "country_code": code,
        "country": COUNTRIES.get(code, code),
        "uri": f"{uri}.json",
        "beta": False,
        "subresource_uris": subresources,
    }


async def list_countries(ctx: Ctx) -> Response:
    account = await ctx.target_account()
    countries = [
        await render_country(ctx, account, code)
        for code in COUNTRIES
        if await in_inventory(ctx, code)
    ]
    return JSON(
        {
            "countries": countries,
            "uri": f"/2010-04-01/Accounts/{account.sid}/AvailablePhoneNumbers.json",
        }
    )


async def fetch_country(ctx: Ctx) -> Response:
    account = await ctx.target_account()
    return JSON(await render_country(ctx, account, await offered_country(ctx)))


async def free_numbers(
    ctx: Ctx, index: str, value: str, checks: list[Predicate], wanted: int
) -> list[InventoryNumber]:
    """Up to `wanted` free numbers of a partition that pass every check, scanning boundedly."""
    found: list[InventoryNumber] = []
    after: Cursor | None = None
    scanned = 0
    while len(found) < wanted and scanned < SCAN_LIMIT:
        rows = await ctx.repo.list(InventoryNumber, index, value, limit=SCAN_BATCH, after=after)
        scanned += len(rows)
        found.extend(n for n in rows if all(check(n) for check in checks))
        if len(rows) < SCAN_BATCH:
            break
        after = Cursor.of(rows[-1])
    return found[:wanted]


def searcher(kind: NumberType) -> Callable[[Ctx], Awaitable[Response]]:
    async def search(ctx: Ctx) -> Response:
        await ctx.target_account()
        country = await offered_country(ctx)
        npa = area_code(ctx)
        checks = await filters(ctx)
        partition = f"{country}:{kind}"
        index, value = ("available_area", f"{partition}:{npa}") if npa else ("available", partition)
        numbers = await free_numbers(ctx, index, value, checks, page_size(ctx.form))
        return JSON(
            {
                "available_phone_numbers": [render(n) for n in numbers],
                "uri": ctx.request.url.path,
            }
        )

    return search


def routes(platform: Platform) -> list[Route]:
    base = "/2010-04-01/Accounts/{AccountSid}/AvailablePhoneNumbers"

    def r(path: str, handler: Any) -> Route:
        return Route(base + path, endpoint(platform, handler, "account"), methods=["GET"])

    return [
        r(".json", list_countries),
        r("/{CountryCode}.json", fetch_country),
        *(
            r(f"/{{CountryCode}}/{segment}.json", searcher(kind))
            for _, segment, kind in NUMBER_TYPES
        ),
    ]
