"""NATS subject names. Services meet only here and in the protos, so spell subjects nowhere else.

Configuration changes: `trunkline.config.<account_sid>.<resource>`, so a subscriber can take
everything (`CONFIG_WILDCARD`), one account (`trunkline.config.AC....>`) or one resource of
all accounts (`trunkline.config.*.trunks`).

Call lifecycle events: `trunkline.calls.<account_sid>.<call_sid>.<kind>` on the JetStream
stream `CALLS_STREAM`, kind one of `CALL_EVENT_KINDS`, so a consumer can filter one account
(`trunkline.calls.AC....>`), one call (`trunkline.calls.*.CA....*`) or one kind of every call
(`trunkline.calls.*.*.ended`, what billing needs).
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

CALLS_PREFIX = "trunkline.calls"
CALLS_WILDCARD = f"{CALLS_PREFIX}.>"
CALLS_STREAM = "CALLS"
# CallEvent.Kind names in lower case, in the order a call goes through them.
CALL_EVENT_KINDS = ("started", "ringing", "answered", "ended")

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


def call_subject(account_sid: str, call_sid: str, kind: str) -> str:
    """`trunkline.calls.<account_sid>.<call_sid>.<kind>`; ValueError for an unusable part."""
    if kind not in CALL_EVENT_KINDS:
        raise ValueError(f"call event kind {kind!r} is not one of {list(CALL_EVENT_KINDS)}")
    account = subject_token(account_sid, "account_sid")
    return f"{CALLS_PREFIX}.{account}.{subject_token(call_sid, 'call_sid')}.{kind}"
