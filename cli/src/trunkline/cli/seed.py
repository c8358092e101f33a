"""The phone-number inventory a fresh embedded platform starts with.

All numbers are NXX 555, lines 0100-0199: the range the North American Numbering Plan
Administrator sets aside for fictional use, so a seeded number can never ring a real person.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

CSV_COLUMNS: Final = (
    "phone_number",
    "iso_country",
    "number_type",
    "locality",
    "region",
    "postal_code",
    "rate_center",
    "lata",
)


@dataclass(frozen=True)
class AreaCode:
    npa: str
    locality: str
    region: str
    postal_code: str
    rate_center: str
    lata: str


SEED_AREA_CODES: Final[tuple[AreaCode, ...]] = (
    AreaCode("201", "Jersey City", "NJ", "07302", "JERSEYCITY", "224"),
    AreaCode("212", "New York", "NY", "10001", "NWYRCYZN01", "132"),
    AreaCode("312", "Chicago", "IL", "60601", "CHICAGO", "358"),
    AreaCode("415", "San Francisco", "CA", "94103", "SNFC CNTRL", "722"),
    AreaCode("510", "Oakland", "CA", "94612", "OKLD", "722"),
    AreaCode("617", "Boston", "MA", "02108", "BOSTON", "128"),
    AreaCode("718", "Brooklyn", "NY", "11201", "NWYRCYZN03", "132"),
)

FICTIONAL_LINES: Final = range(100, 200)


def seed_rows(area_codes: Sequence[AreaCode] = SEED_AREA_CODES) -> Iterator[dict[str, str]]:
    for area in area_codes:
        for line in FICTIONAL_LINES:
            yield {
                "phone_number": f"+1{area.npa}555{line:04d}",
                "iso_country": "US",
                "number_type": "local",
                "locality": area.locality,
                "region": area.region,
                "postal_code": area.postal_code,
                "rate_center": area.rate_center,
                "lata": area.lata,
            }


def seed_csv(area_codes: Sequence[AreaCode] = SEED_AREA_CODES) -> str:
    """The inventory as the CSV that POST /admin/v1/PhoneNumbers/Import takes."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(seed_rows(area_codes))
    return buffer.getvalue()
