"""Phone numbers in E.164 (ITU-T E.164: a '+', a country code, at most 15 digits)."""

from __future__ import annotations

import re

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_NANP = re.compile(r"^\+1[2-9][0-9]{2}[2-9][0-9]{6}$")


def is_e164(value: str) -> bool:
    return bool(_E164.match(value))


def is_nanp(value: str) -> bool:
    """A North American Numbering Plan number: +1 NPA NXX XXXX."""
    return bool(_NANP.match(value))


def normalize(value: str, default_country_code: str = "1") -> str | None:
    """E.164 from what people type ("+1 (415) 555-0100", "4155550100"); None if impossible."""
    stripped = value.strip()
    digits = re.sub(r"[\s().\-]", "", stripped)
    if digits.startswith("+"):
        return digits if is_e164(digits) else None
    if not digits.isdigit():
        return None
    if default_country_code == "1":
        if len(digits) == 10:
            digits = "1" + digits
        if len(digits) == 11 and digits.startswith("1") and is_nanp("+" + digits):
            return "+" + digits
        return None
    candidate = "+" + default_country_code + digits
    return candidate if is_e164(candidate) else None
