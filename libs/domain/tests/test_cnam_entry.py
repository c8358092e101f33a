"""CnamEntry: keyed by its number, a caller name of at most 15 printable ASCII characters."""

from __future__ import annotations

import pytest

from trunkline.domain.model import ALL_KINDS, CnamEntry


def test_an_entry_is_a_stored_kind_keyed_by_its_number() -> None:
    entry = CnamEntry(phone_number="+14155550100", caller_name="ACME CORP")
    assert CnamEntry in ALL_KINDS
    assert (entry.KIND, entry.key, dict(entry.indexes())) == ("cnam_entry", "+14155550100", {})
    assert CnamEntry.from_doc(entry.to_doc()) == entry


@pytest.mark.parametrize("name", ["ACME CORP", "O'BRIEN, PAT", "A", "X" * 15, 'SAY "HI" \\ 1'])
def test_names_that_cnam_can_carry(name: str) -> None:
    assert CnamEntry.name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("X" * 16, "longer than 15 characters (16)"),
        ("CAF\u00c9 M\u00dcLLER", "not printable ASCII"),
        ("TAB\tNAME", "not printable ASCII"),
        (" PADDED", "starts or ends with a space"),
    ],
)
def test_names_that_cnam_cannot_carry(name: str, why: str) -> None:
    problem = CnamEntry.name_problem(name)
    assert problem is not None and why in problem


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("ACME CORP", "ACME CORP"),
        ("  SMITH   JOHN \n", "SMITH JOHN"),
        ("INTERNATIONAL BUSINESS MACHINES", "INTERNATIONAL B"),
        ("ABCDEFGHIJKLMN OPQ", "ABCDEFGHIJKLMN"),  # no space left at the cut
        ("CAF\u00c9\tM\u00dcLLER", "CAF M LLER"),
        ("\u00e9\u00e9\u00e9", ""),
    ],
)
def test_clean_name_fits_any_text_into_cnam(text: str, name: str) -> None:
    assert CnamEntry.clean_name(text) == name
    assert name == "" or CnamEntry.name_problem(name) is None
