"""NATS subject names. Services meet only here and in the protos, so spell subjects nowhere else.

Configuration changes: `trunkline.config.<account_sid>.<resource>`, so a subscriber can take
everything (`CONFIG_WILDCARD`), one account (`trunkline.config.AC....>`) or one resource of
all accounts (`trunkline.config.*.trunks`).
"""

from __future__ import annotations

import re

CONFIG_PREFIX = "trunkline.config"
CONFIG_WILDCARD = f"{CONFIG_PREFIX}.>"

# The collections whose changes are announced, named as in the REST API paths. Publishing is
# not limited to these (a new resource needs no change here), but subscribers can use them.
CONFIG_RESOURCES = frozenset(
    {
        "accounts",
        "trunks",
        "origination_urls",
        "credential_lists",
        "credentials",
        "ip_access_control_lists",
        "ip_addresses",
        "phone_numbers",
        "outgoing_caller_ids",
    }
)

# A token must not change the subject's shape: no separator, no wildcard, no whitespace
# (NATS splits the protocol line on it), and not empty.
_BAD_TOKEN = re.compile(r"[.*>\s]")


def subject_token(value: str, what: str) -> str:
    """`value` if it is usable as one subject token, else ValueError naming `what`."""
    if not value or _BAD_TOKEN.search(value):
        raise ValueError(f"{what} {value!r} cannot be a NATS subject token")
    return value


def config_subject(account_sid: str, resource: str) -> str:
    """`trunkline.config.<account_sid>.<resource>`; ValueError for an unusable token."""
    account = subject_token(account_sid, "account_sid")
    return f"{CONFIG_PREFIX}.{account}.{subject_token(resource, 'resource')}"
