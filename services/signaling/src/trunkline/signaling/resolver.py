"""DNS for origination: an FQDN origination URL is tried at each of its A records in turn.

dnspython's asyncio resolver does the lookups (it follows CNAMEs, retries a truncated answer
over TCP and caches by TTL). The name server comes from `TRUNKLINE_DNS_SERVER`:

    TRUNKLINE_DNS_SERVER=127.0.0.1:15353   # host:port, IPv6 as [addr]:port; port 53 if left out

Unset or empty: the system's (/etc/resolv.conf). The host must be an IP address: a name
server named by a name would need a name server to be found.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Final

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

__all__ = [
    "DEFAULT_DNS_PORT",
    "DEFAULT_TIMEOUT",
    "DNS_SERVER_ENV",
    "ResolutionError",
    "Resolver",
    "parse_dns_server",
]

DNS_SERVER_ENV: Final = "TRUNKLINE_DNS_SERVER"
DEFAULT_DNS_PORT: Final = 53
# Seconds for a whole lookup. A name that takes longer is as good as failed: the call has a
# caller waiting, and the next origination URL may be an address.
DEFAULT_TIMEOUT: Final = 2.0


class ResolutionError(Exception):
    """No address for `host`; `reason` says why (no such name, no A records, no answer in
    time, the name servers failed). For origination the URL has failed: try the next."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host}: {reason}")
        self.host = host
        self.reason = reason


def parse_dns_server(text: str) -> tuple[str, int]:
    """(address, port) of `host[:port]` / `[v6][:port]` / a bare IPv6 address; ValueError
    saying what is wrong otherwise."""
    text = text.strip()
    port_text: str | None = None
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or (text[close + 1 :] and not text[close + 1 :].startswith(":")):
            raise ValueError(f"{DNS_SERVER_ENV}={text!r}: write an IPv6 server as [addr]:port")
        host, port_text = text[1:close], text[close + 2 :] if close + 1 < len(text) else None
    elif text.count(":") > 1:
        host = text  # a bare IPv6 address, no port
    else:
        host, colon, port = text.partition(":")
        port_text = port if colon else None
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"{DNS_SERVER_ENV}={text!r}: the server must be an IP address") from None
    if port_text is None:
        return address, DEFAULT_DNS_PORT
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{DNS_SERVER_ENV}={text!r}: the port must be a number 1-65535")
    return address, int(port_text)


class Resolver:
    """The addresses of a host name, A records first (in the order the server gave them),
    then AAAA records if `ipv6` is set. `nameserver` None: the system's name servers."""

    def __init__(
        self,
        nameserver: tuple[str, int] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ipv6: bool = False,
        cache: bool = True,
    ) -> None:
        self.ipv6 = ipv6
        self._unconfigured: str | None = None
        if nameserver is None:
            try:
                resolver = dns.asyncresolver.Resolver(configure=True)
            except dns.resolver.NoResolverConfiguration:
                # IP-address URLs still work; names fail one by one, saying why.
                resolver = dns.asyncresolver.Resolver(configure=False)
                self._unconfigured = f"no system name server: set {DNS_SERVER_ENV}"
        else:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [nameserver[0]]
            resolver.port = nameserver[1]
        resolver.lifetime = timeout
        resolver.timeout = timeout
        if cache:
            resolver.cache = dns.resolver.LRUCache()
        self._resolver = resolver

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> Resolver:
        """The resolver `TRUNKLINE_DNS_SERVER` names; the system's if it is unset or empty.
        ValueError if it is set to something that is not an address."""
        env = os.environ if environ is None else environ
        text = env.get(DNS_SERVER_ENV, "").strip()
        return cls(parse_dns_server(text) if text else None, timeout=timeout)

    @property
    def nameservers(self) -> list[tuple[str, int]]:
        return [(str(ns), self._resolver.port) for ns in self._resolver.nameservers]

    async def addresses(self, host: str) -> list[str]:
        """All addresses of `host`, never empty: an IP address is its own answer; a name is
        looked up (as a fully qualified name, no search domains). Raises ResolutionError."""
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        if self._unconfigured is not None:
            raise ResolutionError(host, self._unconfigured)
        try:
            name = dns.name.from_text(host)  # absolute: relative to the root
        except dns.exception.DNSException as exc:
            raise ResolutionError(host, f"not a valid domain name ({exc})") from None
        found = await self._lookup(host, name, dns.rdatatype.A)
        if self.ipv6:
            found += [
                a for a in await self._lookup(host, name, dns.rdatatype.AAAA) if a not in found
            ]
        if not found:
            wanted = "A or AAAA records" if self.ipv6 else "A records"
            raise ResolutionError(host, f"the name has no {wanted}")
        return found

    async def _lookup(
        self, host: str, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> list[str]:
        try:
            answer = await self._resolver.resolve(
                name, rdtype, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN:
            raise ResolutionError(host, "no such domain name (NXDOMAIN)") from None
        except dns.resolver.LifetimeTimeout:
            raise ResolutionError(host, "no answer from the name server in time") from None
        except dns.resolver.NoNameservers as exc:
            raise ResolutionError(host, f"the name servers failed: {exc}") from None
        except dns.exception.DNSException as exc:
            raise ResolutionError(host, f"lookup failed: {exc}") from None
        if answer.rrset is None:
            return []
        addresses: list[str] = []
        for rdata in answer.rrset:
            address = str(ipaddress.ip_address(rdata.address))
            if address not in addresses:
                addresses.append(address)
        return addresses
