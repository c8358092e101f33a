"""The platform operator's carrier gateways: where termination calls leave for the PSTN.

A TOML file (path in `TRUNKLINE_CARRIERS_FILE`) lists them:

    [[gateway]]
    name = "carrier-a-1"
    address = "127.0.0.1:5080"   # host:port; IPv6 in brackets; the host may be a name
    transport = "udp"            # udp (default) | tcp | tls
    priority = 10                # lower first (default 10)
    weight = 50                  # share within a priority (default 1; 0 = only as a last resort)
    username = "..."             # optional digest credentials, both or neither
    password = "..."

The port may be left out: 5060, or 5061 for tls. Without the variable there are no carriers
(the embedded platform then routes on-net only). Everything but `load_carriers` is pure:
`attempt_order` takes the random generator, `fails_over` a status.
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, TypeAlias

from trunkline.signaling import weighted

__all__ = [
    "CARRIERS_FILE_ENV",
    "TIMEOUT_NO_RESPONSE",
    "CarrierConfigError",
    "Gateway",
    "Transport",
    "attempt_order",
    "carriers_from_env",
    "fails_over",
    "load_carriers",
    "parse_carriers",
]

CARRIERS_FILE_ENV: Final = "TRUNKLINE_CARRIERS_FILE"
# Seconds without any response (a 100 Trying counts) before the next gateway is tried.
TIMEOUT_NO_RESPONSE: Final = 4.0

Transport: TypeAlias = Literal["udp", "tcp", "tls"]
_TRANSPORTS: Final[dict[str, Transport]] = {"udp": "udp", "tcp": "tcp", "tls": "tls"}
_DEFAULT_PORT: Final[dict[Transport, int]] = {"udp": 5060, "tcp": 5060, "tls": 5061}
_DEFAULT_PRIORITY: Final = 10
_DEFAULT_WEIGHT: Final = 1
_MAX_FIELD: Final = 65535  # priority and weight share the origination URLs' range
_FIELDS: Final = frozenset(
    ("name", "address", "transport", "priority", "weight", "username", "password")
)
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class CarrierConfigError(ValueError):
    """The carriers file is not usable; the message names the gateway and the field (never a
    password)."""


@dataclass(frozen=True, slots=True)
class Gateway:
    """One carrier gateway. `host` is an IP address (IPv6 without brackets) or a DNS name."""

    name: str
    host: str
    port: int
    transport: Transport = "udp"
    priority: int = _DEFAULT_PRIORITY
    weight: int = _DEFAULT_WEIGHT
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """`host:port`, with an IPv6 host in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def credentials(self) -> tuple[str, str] | None:
        """(username, password) to answer a digest challenge with, if the carrier has them."""
        if self.username is None or self.password is None:
            return None
        return self.username, self.password


# --- the file ----------------------------------------------------------------------------------


def carriers_from_env(environ: Mapping[str, str] | None = None) -> tuple[Gateway, ...]:
    """The gateways of the file `TRUNKLINE_CARRIERS_FILE` names; none if it is unset or empty."""
    env = os.environ if environ is None else environ
    path = env.get(CARRIERS_FILE_ENV, "").strip()
    return load_carriers(path) if path else ()


def load_carriers(path: str | os.PathLike[str]) -> tuple[Gateway, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CarrierConfigError(f"{os.fspath(path)}: cannot read: {exc}") from None
    return parse_carriers(text, source=os.fspath(path))


def parse_carriers(text: str, *, source: str = "carriers") -> tuple[Gateway, ...]:
    """Parse the TOML text of a carriers file; `source` prefixes every error message."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib names the line and column, never the value, so no password leaks here.
        raise CarrierConfigError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {"gateway"})
    if unknown:
        raise CarrierConfigError(
            f"{source}: unknown top-level key {unknown[0]!r} (gateways are [[gateway]] tables)"
        )
    tables = document.get("gateway", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise CarrierConfigError(f"{source}: 'gateway' must be an array of tables ([[gateway]])")
    gateways: list[Gateway] = []
    seen: set[str] = set()
    for index, table in enumerate(tables, start=1):
        gateway = _gateway(table, source, index)
        if gateway.name in seen:
            raise CarrierConfigError(f"{source}: gateway {gateway.name!r}: name: used twice")
        seen.add(gateway.name)
        gateways.append(gateway)
    return tuple(gateways)


def _gateway(table: dict[str, object], source: str, index: int) -> Gateway:
    name = table.get("name")
    if name is None:
        raise CarrierConfigError(f"{source}: gateway #{index}: name: is required")
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise CarrierConfigError(
            f"{source}: gateway #{index}: name: {name!r} must be 1-64 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    where = f"{source}: gateway {name!r}"

    def fail(key: str, why: str) -> CarrierConfigError:
        return CarrierConfigError(f"{where}: {key}: {why}")

    unknown = sorted(set(table) - _FIELDS)
    if unknown:
        raise fail(unknown[0], f"unknown field (known: {', '.join(sorted(_FIELDS))})")

    transport = table.get("transport", "udp")
    transport_ = _TRANSPORTS.get(transport.lower()) if isinstance(transport, str) else None
    if transport_ is None:
        raise fail("transport", f"must be one of udp, tcp, tls, not {transport!r}")

    address = table.get("address")
    if not isinstance(address, str):
        raise fail("address", "is required (host:port)" if address is None else "must be a string")
    parsed = _host_port(address)
    if isinstance(parsed, str):
        raise fail("address", f"{address!r}: {parsed}")
    host, port = parsed

    priority = _bounded(table, "priority", _DEFAULT_PRIORITY, fail)
    weight = _bounded(table, "weight", _DEFAULT_WEIGHT, fail)

    username = table.get("username")
    password = table.get("password")
    if username is not None and (not isinstance(username, str) or not username):
        raise fail("username", "must be a non-empty string")
    if password is not None and not isinstance(password, str):
        raise fail("password", "must be a string")
    if (username is None) != (password is None):
        missing = "password" if password is None else "username"
        raise fail(missing, "is required when the other digest credential is set")
    return Gateway(
        name=name,
        host=host,
        port=_DEFAULT_PORT[transport_] if port is None else port,
        transport=transport_,
        priority=priority,
        weight=weight,
        username=username,
        password=password,
    )


def _bounded(
    table: dict[str, object], key: str, default: int, fail: Callable[[str, str], Exception]
) -> int:
    value = table.get(key, default)
    # bool is an int in Python; `priority = true` is a mistake, not 1.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_FIELD:
        raise fail(key, f"must be an integer 0-{_MAX_FIELD}, not {value!r}")
    return value


def _host_port(address: str) -> tuple[str, int | None] | str:
    """(host, port or None) of `host[:port]` / `[v6][:port]`, or what is wrong with it."""
    address = address.strip()
    port_text: str | None = None
    if address.startswith("["):
        close = address.find("]")
        if close < 0:
            return "unterminated '[' (IPv6 addresses are written [addr]:port)"
        host, rest = address[1:close], address[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                return "expected ':port' after ']'"
            port_text = rest[1:]
        try:
            host = ipaddress.IPv6Address(host).compressed
        except ValueError:
            return "not an IPv6 address inside [...]"
    else:
        if address.count(":") > 1:
            return "an IPv6 address must be in brackets: [addr]:port"
        host, colon, port = address.partition(":")
        port_text = port if colon else None
        if not host:
            return "the host is missing"
        if not _is_host(host):
            return "not an IP address or host name"
        host = host.lower().rstrip(".")
    if port_text is None:
        return host, None
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        return "the port must be a number 1-65535"
    return host, int(port_text)


def _is_host(host: str) -> bool:
    name = host[:-1] if host.endswith(".") else host
    if re.fullmatch(r"[0-9.]+", name):
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            return False  # all digits and dots but no IPv4 address: 999.1.1.1, 10.1
        return True
    return len(name) <= 253 and all(_HOST_LABEL.fullmatch(p) for p in name.split("."))


# --- routing -----------------------------------------------------------------------------------


def attempt_order(gateways: Iterable[Gateway], rng: random.Random) -> list[Gateway]:
    """The order to try gateways in for one call (see weighted.attempt_order)."""
    return weighted.attempt_order(gateways, rng)


def fails_over(status: int | None) -> bool:
    """Whether a termination attempt moves on to the next gateway.

    None means no response at all within `TIMEOUT_NO_RESPONSE` (any response, a 100 Trying
    included, stops that timer). 408 and every 5xx fail over; every other final status (2xx,
    3xx, the other 4xx, 6xx) is the answer the caller gets. A provisional status is no
    outcome and raises ValueError.
    """
    if status is None:
        return True
    if not 200 <= status <= 699:
        raise ValueError(f"not a final SIP status: {status}")
    return status == 408 or 500 <= status <= 599
