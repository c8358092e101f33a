"""Origination SIP URIs: where calls to a trunk's numbers are sent (RFC 3261 19.1).

The API checks a trunk's `SipUrl` with `parse_sip_url`, and the signaling service parses the
same strings to route an origination INVITE, so both read a URL the same way. The accepted
subset is what Twilio's guide describes: a `sip:` (or `sips:`) URI whose host is an IP address
or a fully qualified domain name, an optional user part and port, the parameters `transport`,
`edge` (or its legacy name `region`), and `X-` headers to add to every INVITE.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import unquote

from trunkline.domain.domains import EDGES, LEGACY_EDGES

TRANSPORTS: tuple[str, ...] = ("udp", "tcp", "tls")
DEFAULT_PORT = 5060
DEFAULT_TLS_PORT = 5061

_ESCAPED = r"%[0-9A-Fa-f]{2}"
# RFC 3261 25.1 `user`, without ';' and '?': allowed there by the grammar, but in a URL
# typed into a form they are nearly always a mistyped parameter or header (`a@b` in a header
# value, unescaped), and refusing them keeps the split into parts unambiguous.
_USER = re.compile(rf"^(?:[A-Za-z0-9\-_.!~*'()&=+$,/]|{_ESCAPED})+$")
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_TOPLABEL = re.compile(r"^[a-z](?:[a-z0-9-]*[a-z0-9])?$")  # RFC 3261 25.1 `toplabel`
_HEADER_NAME = re.compile(r"^[Xx]-[A-Za-z0-9\-.!*_+`'~]+$")  # `X-` and an RFC 3261 token
_HEADER_VALUE = re.compile(rf"^(?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$]|{_ESCAPED})*$")


class InvalidSipUrl(ValueError):
    """The URL breaks a rule; the message says which, in words a user reads."""


class UnknownEdge(InvalidSipUrl):
    """`edge=` or `region=` names no edge location (Twilio answers 21252 Invalid Region)."""


@dataclass(frozen=True)
class OriginationUri:
    scheme: str  # "sip" or "sips", lower-cased
    user: str | None  # as written, escapes kept, so a Request-URI built from it is faithful
    host: str  # lower-cased; an IPv6 address without its brackets
    port: int | None
    transport: str | None  # as written (lower-cased); see `effective_transport`
    edge: str | None  # the edge location; a legacy `region` id is mapped to its edge
    headers: tuple[tuple[str, str], ...]  # (name, percent-decoded value) to add to the INVITE

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if self.is_ipv6 else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def effective_transport(self) -> str:
        """The guide: a `sips:` URI is sent as `sip:` over TLS; without `transport`, UDP."""
        if self.scheme == "sips":
            return "tls"
        return self.transport or "udp"

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return DEFAULT_TLS_PORT if self.effective_transport == "tls" else DEFAULT_PORT


def parse_sip_url(value: str) -> OriginationUri:
    """The parts of an origination URL, or `InvalidSipUrl` saying what is wrong with it."""
    if not value:
        raise InvalidSipUrl("must not be empty")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidSipUrl("must not contain spaces or control characters")
    scheme, colon, rest = value.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in ("sip", "sips"):
        raise InvalidSipUrl(f"{value!r} must start with sip: (or sips:)")
    if rest.startswith("//"):
        raise InvalidSipUrl(
            "a SIP URI has no '//' after the scheme: write sip:host, not sip://host"
        )
    if not rest:
        raise InvalidSipUrl("has no host after the scheme")

    user: str | None = None
    if "@" in rest:
        user, _, rest = rest.rpartition("@")
        user = _check_user(user)
    rest, question, header_text = rest.partition("?")
    hostport, *params = rest.split(";")
    host, port = _split_hostport(hostport)
    transport, edge = _check_params(params)
    if scheme == "sips" and transport == "udp":
        # RFC 3261 26.2.2: a sips URI is reached over TLS end to end, never over UDP.
        raise InvalidSipUrl("sips: means TLS, so transport=udp contradicts it")
    headers = _check_headers(header_text) if question else ()
    return OriginationUri(scheme, user, host, port, transport, edge, headers)


def _check_user(user: str) -> str:
    if not user:
        raise InvalidSipUrl("has an '@' but no user part before it")
    if ":" in user:
        raise InvalidSipUrl("must not contain a password (user:password@) in the user part")
    if not _USER.match(user):
        raise InvalidSipUrl(
            f"user part {user!r} may contain only letters, digits, %-escapes and -_.!~*'()&=+$,/"
        )
    return user


def _split_hostport(hostport: str) -> tuple[str, int | None]:
    port_text: str | None = None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise InvalidSipUrl(f"IPv6 reference {hostport!r} has no closing ']'")
        host, after = hostport[1:end], hostport[end + 1 :]
        if after:
            if not after.startswith(":"):
                raise InvalidSipUrl(f"unexpected {after!r} after the IPv6 address")
            port_text = after[1:]
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise InvalidSipUrl(f"[{host}] is not a valid IPv6 address") from None
    else:
        if hostport.count(":") > 1:
            raise InvalidSipUrl("an IPv6 address must be written in brackets: sip:[2001:db8::1]")
        host, colon, text = hostport.partition(":")
        port_text = text if colon else None
        host = _check_host(host.lower())
    return host, None if port_text is None else _check_port(port_text)


def _check_host(host: str) -> str:
    if not host:
        raise InvalidSipUrl("has no host")
    if re.fullmatch(r"[0-9.]+", host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise InvalidSipUrl(f"host {host!r} is not a valid IPv4 address") from None
    labels = host.split(".")
    if len(host) > 253 or len(labels) < 2:
        raise InvalidSipUrl(
            f"host {host!r} must be an IP address or a fully qualified domain name "
            "(like sbc.example.com)"
        )
    for label in labels:
        if not _LABEL.match(label):
            raise InvalidSipUrl(
                f"host label {label!r} may contain only letters, digits and inner '-'"
            )
    if not _TOPLABEL.match(labels[-1]):
        raise InvalidSipUrl(
            f"host {host!r} must end with a top-level domain that starts with a letter"
        )
    return host


def _check_port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise InvalidSipUrl(f"port {text!r} must be a number from 1 to 65535")
    return int(text)


def _check_params(params: list[str]) -> tuple[str | None, str | None]:
    """(transport, edge) from the `;name=value` parameters."""
    seen: dict[str, str] = {}
    for param in params:
        name, equals, value = param.partition("=")
        name = name.lower()  # RFC 3261 19.1.4: parameter names compare case-insensitively
        if not name:
            raise InvalidSipUrl("has an empty parameter (';;' or a trailing ';')")
        if name not in ("transport", "edge", "region"):
            raise InvalidSipUrl(
                f"parameter {name!r} is not supported; use transport, edge or region"
            )
        if not equals or not value:
            raise InvalidSipUrl(f"parameter {name} needs a value ({name}=...)")
        if name in seen:
            raise InvalidSipUrl(f"parameter {name} is given twice")
        seen[name] = value.lower()
    transport = seen.get("transport")
    if transport is not None and transport not in TRANSPORTS:
        raise InvalidSipUrl(f"transport must be udp, tcp or tls, not {transport!r}")
    if "edge" in seen and "region" in seen:
        raise InvalidSipUrl("give edge or its legacy name region, not both")
    edge = seen.get("edge")
    if edge is not None and edge not in EDGES:
        raise UnknownEdge(f"edge {edge!r} is not an edge location; use one of {', '.join(EDGES)}")
    region = seen.get("region")
    if region is not None:
        if region not in LEGACY_EDGES:
            raise UnknownEdge(
                f"region {region!r} is not a legacy region id; use one of "
                f"{', '.join(LEGACY_EDGES)} (or edge=<location>)"
            )
        edge = LEGACY_EDGES[region]
    return transport, edge


def _check_headers(text: str) -> tuple[tuple[str, str], ...]:
    if not text:
        raise InvalidSipUrl("has an empty header part after '?'")
    headers: list[tuple[str, str]] = []
    for field in text.split("&"):
        name, equals, value = field.partition("=")
        if not equals:
            raise InvalidSipUrl(f"header {name!r} needs a value (X-Name=value)")
        if not name.lower().startswith("x-"):
            raise InvalidSipUrl(f"header {name!r} is not allowed; only X- headers may be added")
        if not _HEADER_NAME.match(name):
            raise InvalidSipUrl(
                f"header name {name!r} may contain only letters, digits and -.!*_+`'~"
            )
        if not _HEADER_VALUE.match(value):
            raise InvalidSipUrl(
                f"header {name} value {value!r} has characters that must be %-escaped"
            )
        decoded = unquote(value)
        # An escaped CR LF would let the URL inject whole header lines into the INVITE.
        if any(ord(c) < 32 or ord(c) == 127 for c in decoded):
            raise InvalidSipUrl(f"header {name} value must not contain control characters")
        headers.append((name, decoded))
    return tuple(headers)
