"""The seeded inventory: fictional NANP numbers, with the columns the import expects."""

from __future__ import annotations

import csv
import io

from trunkline.cli.seed import CSV_COLUMNS, SEED_AREA_CODES, seed_csv
from trunkline.domain.numbers import is_nanp


def rows() -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(seed_csv())))


def test_header_is_the_import_format() -> None:
    assert seed_csv().splitlines()[0] == (
        "phone_number,iso_country,number_type,locality,region,postal_code,rate_center,lata"
    )
    assert tuple(seed_csv().splitlines()[0].split(",")) == CSV_COLUMNS


def test_a_hundred_fictional_numbers_per_area_code() -> None:
    numbers = [row["phone_number"] for row in rows()]
    assert len(numbers) == len(set(numbers)) == 100 * len(SEED_AREA_CODES)
    for area in SEED_AREA_CODES:
        mine = [n for n in numbers if n.startswith(f"+1{area.npa}")]
        assert mine[0] == f"+1{area.npa}5550100"
        assert mine[-1] == f"+1{area.npa}5550199"
    assert all(is_nanp(n) and n[5:9] == "5550" and n[9] == "1" for n in numbers)


def test_every_column_is_filled() -> None:
    for row in rows():
        assert all(row[column] for column in CSV_COLUMNS), row
        assert row["iso_country"] == "US"
        assert row["number_type"] == "local"
        assert len(row["postal_code"]) == 5 and row["postal_code"].isdigit()


def test_locality_matches_area_code() -> None:
    by_number = {row["phone_number"]: row for row in rows()}
    assert by_number["+14155550142"]["locality"] == "San Francisco"
    assert by_number["+14155550142"]["region"] == "CA"
    assert by_number["+16175550100"]["postal_code"] == "02108"
