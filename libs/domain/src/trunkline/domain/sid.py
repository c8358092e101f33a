"""Twilio-shaped SIDs: two upper-case letters and 32 lower-case hex digits."""

from __future__ import annotations

import re
import secrets

_SID = re.compile(r"^[A-Z]{2}[0-9a-f]{32}$")


def new_sid(prefix: str) -> str:
    if len(prefix) != 2 or not prefix.isupper():
        raise ValueError(f"SID prefix must be two upper-case letters, not {prefix!r}")
    return prefix + secrets.token_hex(16)


def is_sid(value: str, prefix: str | None = None) -> bool:
    """True when `value` is a well-formed SID (of `prefix`, when given)."""
    if not _SID.match(value):
        return False
    return prefix is None or value[:2] == prefix
