"""Trunk domain names: `<name>.pstn.<zone>`, or a subdomain `<a>.<b>.pstn.<zone>`."""

from __future__ import annotations

import re

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")

EDGES: tuple[str, ...] = (
    "ashburn",
    "umatilla",
    "dublin",
    "frankfurt",
    "singapore",
    "tokyo",
    "sao-paulo",
    "sydney",
)
LEGACY_EDGES: dict[str, str] = {
    "us1": "ashburn",
    "us2": "umatilla",
    "ie1": "dublin",
    "de1": "frankfurt",
    "sg1": "singapore",
    "jp1": "tokyo",
    "br1": "sao-paulo",
    "au1": "sydney",
}


def labels(domain_name: str, zone: str) -> list[str] | str:
    """The labels before `.pstn.<zone>`, or a sentence saying what is wrong."""
    suffix = f".pstn.{zone}"
    name = domain_name.lower()
    if not name.endswith(suffix):
        return f"must end with {suffix}"
    head = name[: -len(suffix)]
    if not head:
        return f"needs a name before {suffix}"
    parts = head.split(".")
    if len(parts) > 2:
        return "may have at most one subdomain level (a.b.pstn.<zone>)"
    for part in parts:
        if not _LABEL.match(part):
            return f"label {part!r} may contain only letters, digits and '-'"
        if part in EDGES or part in LEGACY_EDGES:
            return f"label {part!r} is reserved for an edge name"
    return parts


def parent_domain(domain_name: str, zone: str) -> str | None:
    """`b.pstn.<zone>` for `a.b.pstn.<zone>`; None for a top-level trunk domain."""
    parts = labels(domain_name, zone)
    if isinstance(parts, str) or len(parts) == 1:
        return None
    return f"{parts[1]}.pstn.{zone}"


def parent_of(domain_name: str) -> str | None:
    """The parent trunk domain of a subdomain (`a.b.pstn.z` -> `b.pstn.z`), whatever the zone."""
    head, sep, tail = domain_name.partition(".pstn.")
    if not sep or "." not in head:
        return None
    return f"{head.split('.', 1)[1]}.pstn.{tail}"
