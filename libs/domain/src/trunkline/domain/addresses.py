"""IP access control entries: an address and a CIDR prefix length."""

from __future__ import annotations

import ipaddress


def network_problem(ip: str, prefix_length: int) -> str | None:
    """Why `ip`/`prefix_length` is not a valid ACL entry, or None."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return f"{ip!r} is not an IPv4 or IPv6 address"
    max_len = 32 if addr.version == 4 else 128
    if not 0 <= prefix_length <= max_len:
        return f"prefix length must be between 0 and {max_len} for IPv{addr.version}"
    return None
