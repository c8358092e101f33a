"""Uniqueness claims the store holds, by namespace: how a value finds its owner's SID.

The API writes them with the records; signaling and auth read them (`Repository.holder`) to
find a trunk by its domain, a phone number by its E.164 number, a caller ID by account.
"""

from __future__ import annotations

from typing import Final

TRUNK_DOMAIN: Final = "trunk_domain"  # domain name -> trunk SID
PHONE_NUMBER: Final = "phone_number"  # E.164 -> phone number SID (one owner per number)
CREDENTIAL_USERNAME: Final = "credential_username"  # "<list SID>:<username>" -> credential SID
CALLER_ID: Final = "caller_id"  # "<account SID>:<E.164>" -> outgoing caller ID SID


def caller_id_claim(account_sid: str, number: str) -> str:
    return f"{account_sid}:{number}"
