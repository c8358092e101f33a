"""Origination routing: where a call to a trunk's number goes, and what its INVITE says.

The guide's rules ("Ursprungseinstellungen", "Verwenden Sie mehrere Ursprungs-SIP-URIs",
"Anrufumleitung", "SIP-Diversion-Header"), without I/O:

* `attempt_order`: enabled origination URLs, lowest priority first, a weighted draw without
  replacement within a priority (60/20/20 is a 60 % first choice; when that one fails, the
  other two share the load by their weights), then the next priority.
* `origination_target`: one URL and the dialled number become an `OriginationTarget`: the
  Request-URI, the host to resolve, port, transport, sending edge and the X- headers.
  `OriginationTarget.peers` expands it into one attempt per resolved address (the DNS lookup
  itself is `trunkline.signaling.resolver`).
* `fails_over`: which final answers send the call on to the next address or URL.
* `diversion_header`: the Diversion value that names the dialled number.
* `redirect_target`: the one 302 a PBX may answer with, or why it is refused (32219).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from trunkline.domain.model import OriginationUrl
from trunkline.domain.origination import (
    DEFAULT_PORT,
    DEFAULT_TLS_PORT,
    InvalidSipUrl,
    parse_sip_url,
)
from trunkline.signaling import weighted
from trunkline.signaling.identity import E164_MAX_DIGITS, E164_MIN_DIGITS
from trunkline.signaling.sip.message import NameAddr
from trunkline.signaling.sip.transaction import Peer
from trunkline.signaling.sip.uri import SipUri

__all__ = [
    "DIVERSION",
    "NO_FAILOVER_STATUSES",
    "NO_RESPONSE_TIMEOUT",
    "REDIRECT_FAILED",
    "REDIRECT_FAILED_STATUS",
    "REDIRECT_STATUS",
    "InvalidSipUrl",
    "OriginationTarget",
    "Plan",
    "RedirectRefused",
    "Transport",
    "attempt_order",
    "diversion_header",
    "fails_over",
    "origination_target",
    "plan",
    "redirect_target",
]

Transport: TypeAlias = Literal["UDP", "TCP", "TLS"]

# Seconds without any response (a 100 Trying counts) before the next address or URL.
NO_RESPONSE_TIMEOUT: Final = 4.0
# The guide's list: these answers go back to the caller, every other final answer fails over.
NO_FAILOVER_STATUSES: Final = frozenset({400, 404, 405, 410, 416, 482, 484, 486})
REDIRECT_STATUS: Final = 302
# Twilio 32219 "SIP: Redirect failed". The PBX gave a redirect the platform will not follow;
# to the caller that is a bad answer from downstream (RFC 3261 21.5.3).
REDIRECT_FAILED: Final = 32219
REDIRECT_FAILED_STATUS: Final = 502
DIVERSION: Final = "Diversion"

_TRANSPORTS: Final[dict[str, Transport]] = {"udp": "UDP", "tcp": "TCP", "tls": "TLS"}
# URI parameters that choose the edge or interconnect; the redirected call keeps the original
# call's, so a Contact that names one is refused (`region` is the legacy name of `edge`).
_ROUTING_PARAMS: Final = ("edge", "region", "tnx")


# --- the order of the URLs ---------------------------------------------------------------------


def attempt_order(urls: Iterable[OriginationUrl], rng: random.Random) -> list[OriginationUrl]:
    """The enabled URLs in the order to try them for one call (weighted.attempt_order). The
    API accepts weights 1-65535; a weight below 1 (a record from elsewhere) makes a URL a
    last resort within its priority. URLs are sorted by SID before the draw, so the same
    `rng` state gives the same order whatever order the store lists them in."""
    enabled = [url for url in sorted(urls, key=lambda u: (u.priority, u.sid)) if url.enabled]
    return weighted.attempt_order(enabled, rng)


# --- failover ----------------------------------------------------------------------------------


def fails_over(status: int | None) -> bool:
    """Whether an origination attempt moves on to the next address, then the next URL.

    None means no response at all within `NO_RESPONSE_TIMEOUT`. 2xx, 6xx and the guide's
    400, 404, 405, 410, 416, 482, 484 and 486 are the answer the caller gets; every other
    final status fails over (3xx included: a 302 is first offered to `redirect_target`, and
    only a 302 is followed). A provisional status is no outcome and raises ValueError. A
    caller that cancelled the call (487 follows) is no reason to try the next URL: the
    caller of this function checks that first.
    """
    if status is None:
        return True
    if not 200 <= status <= 699:
        raise ValueError(f"not a final SIP status: {status}")
    if status < 300 or status >= 600:
        return False
    return status not in NO_FAILOVER_STATUSES


# --- one URL -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OriginationTarget:
    """Where one origination attempt goes and what its INVITE carries.

    `host` is an IP address (IPv6 without brackets) or a name to resolve to all its A
    records; `request_uri` names the host as the URL wrote it, whatever address the INVITE
    is sent to. `edge` is the edge that sends the call (None: the edge where the PSTN call
    arrived; see `sending_edge`). `headers` are the URL's X- headers, to add to the INVITE.
    `secure`: the trunk is secure, so signaling is TLS and media SRTP; a redirect keeps it.
    """

    request_uri: str
    host: str
    port: int
    transport: Transport
    edge: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    secure: bool = False
    url_sid: str = ""  # the OriginationUrl it came from (a redirect keeps the one that sent it)
    redirected: bool = False

    @property
    def is_ip(self) -> bool:
        """The host is an address already: no DNS lookup, one attempt."""
        return _is_ip(self.host)

    def sending_edge(self, arrival_edge: str) -> str:
        """The edge that sends the call and is recorded on it: the URL's, else the edge where
        the PSTN call arrived."""
        return self.edge or arrival_edge

    def peers(self, addresses: Iterable[str] = ()) -> list[Peer]:
        """One attempt per address, in the order given (duplicates dropped). An IP host is
        its own single attempt and `addresses` is ignored; a name with no addresses yields
        none (that URL has failed: go on to the next)."""
        if self.is_ip:
            return [Peer(self.transport, self.host, self.port)]
        peers: list[Peer] = []
        for address in addresses:
            peer = Peer(self.transport, str(ipaddress.ip_address(address)), self.port)
            if peer not in peers:
                peers.append(peer)
        return peers


def origination_target(
    url: OriginationUrl | str, dialled: str, *, secure: bool = False
) -> OriginationTarget:
    """The target of one origination URL for a call to `dialled` (E.164, '+' included).

    * The user part is the dialled number, unless the URL fixes one (kept as written).
    * `transport` (udp by default, tcp, tls) picks the transport; the Request-URI carries
      `;transport=` only for tcp and tls. TLS defaults to port 5061, the others to 5060.
    * A `sips:` URL is sent as `sip:` with `transport=tls` (the guide: point-to-point TLS).
    * A secure trunk sends over TLS whatever `transport` says (the guide ignores
      `transport=udp` there), to the URL's port or 5061.
    * `edge=` or the legacy `region=` (mapped to its edge) picks the sending edge; neither
      is passed on in the Request-URI.
    * `?X-Name=value` adds that header. The parser refuses any other header (the API refuses
      such a URL with 21402 for the same reason), so a stored URL cannot add one either.

    Raises `InvalidSipUrl` (the API's own parser) for a URL that breaks the rules: a URL that
    got into the store by another door is skipped, never sent half-understood.
    """
    _check_dialled(dialled)
    text = url if isinstance(url, str) else url.sip_url
    sid = "" if isinstance(url, str) else url.sid
    uri = parse_sip_url(text)
    transport = "tls" if secure else uri.effective_transport
    port = uri.port if uri.port is not None else _default_port(transport)
    user = uri.user if uri.user is not None else dialled
    request_uri = f"sip:{user}@{uri.hostport}" + _transport_param(transport)
    return OriginationTarget(
        request_uri=request_uri,
        host=uri.host,
        port=port,
        transport=_TRANSPORTS[transport],
        edge=uri.edge,
        headers=uri.headers,
        secure=secure,
        url_sid=sid,
    )


@dataclass(frozen=True, slots=True)
class Plan:
    """The targets of a call in attempt order, and the URLs that could not be used."""

    targets: tuple[OriginationTarget, ...]
    invalid: tuple[tuple[OriginationUrl, InvalidSipUrl], ...] = ()


def plan(
    urls: Iterable[OriginationUrl], dialled: str, rng: random.Random, *, secure: bool = False
) -> Plan:
    """`attempt_order` then `origination_target` for each URL; an unusable URL is set aside
    in `invalid` (for the log) and the call goes on with the others."""
    targets: list[OriginationTarget] = []
    invalid: list[tuple[OriginationUrl, InvalidSipUrl]] = []
    for url in attempt_order(urls, rng):
        try:
            targets.append(origination_target(url, dialled, secure=secure))
        except InvalidSipUrl as exc:
            invalid.append((url, exc))
    return Plan(tuple(targets), tuple(invalid))


# --- Diversion ---------------------------------------------------------------------------------


def diversion_header(dialled: str, zone: str) -> str:
    """The value of the `Diversion` header every origination INVITE carries: the dialled
    number at the platform zone, `<sip:+14158675309@<zone>>` (RFC 5806, the guide's form,
    which has no reason parameter)."""
    _check_dialled(dialled)
    return str(NameAddr(None, SipUri("sip", dialled, None, zone.lower(), None)))


# --- redirect ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedirectRefused:
    """A 302 the platform does not follow: the call ends with `status`, `reason` and the
    Twilio `code` (for X-Trunkline-Error-Code); no further URL is tried."""

    reason: str
    status: int = REDIRECT_FAILED_STATUS
    code: int = REDIRECT_FAILED


def redirect_target(
    response_contacts: Sequence[NameAddr], zone: str, current: OriginationTarget
) -> OriginationTarget | RedirectRefused:
    """Where a 302 from the PBX sends the call, or why it is refused (32219).

    `response_contacts` are the 302's Contact values in order (`Response.contacts`; a Contact
    that does not parse is the caller's to refuse the same way). `current` is the target that
    answered 302: its `redirected` says whether this is the second redirect.

    Followed once, to the first URI of the first Contact (the others are ignored). Refused:
    a second 302, no Contact, a tel: or other non-SIP URI, a host in the platform zone
    (`zone` or any name under it), a Contact URI with `edge`, `region` or `tnx` (the
    redirected call keeps the original call's edge and interconnect), and an unknown
    `transport`. The new target keeps the original's edge and security (TLS and SRTP);
    recording is a property of the call, which a redirect does not change. The URI's user
    part is used as it is (no dialled number is filled in); its other parameters stay in the
    Request-URI (a password does not); of its headers only X- ones are added, the rest
    ignored.
    """
    if current.redirected:
        return RedirectRefused("Bad Gateway: the PBX redirected the call a second time")
    if not response_contacts:
        return RedirectRefused("Bad Gateway: the PBX redirected the call without a Contact")
    uri = response_contacts[0].uri
    if uri.scheme not in ("sip", "sips"):
        return RedirectRefused(f"Bad Gateway: cannot redirect to a {uri.scheme}: URI")
    host = uri.host.lower().rstrip(".")
    zone = zone.lower().rstrip(".")
    if host == zone or host.endswith("." + zone):
        return RedirectRefused(f"Bad Gateway: cannot redirect to the platform domain {host}")
    for name in _ROUTING_PARAMS:
        if name in uri.params:
            return RedirectRefused(f"Bad Gateway: the {name} parameter is not allowed in a 302")
    written = (uri.params.get("transport") or "udp").lower()
    if written not in _TRANSPORTS:
        return RedirectRefused(f"Bad Gateway: cannot redirect over transport {written}")
    transport = "tls" if current.secure or uri.scheme == "sips" else written
    params: dict[str, str | None] = {k: v for k, v in uri.params.items() if k != "transport"}
    if transport != "udp":
        params["transport"] = transport
    # The Contact's headers are not part of the Request-URI (RFC 3261 19.1.5), and a password
    # in a URI is never passed on (RFC 3261 19.1.1 advises against them).
    request_uri = SipUri("sip", uri.user, None, host, uri.port, params)
    if _is_ip(host):
        host = str(ipaddress.ip_address(host))
    return OriginationTarget(
        request_uri=str(request_uri),
        host=host,
        port=uri.port if uri.port is not None else _default_port(transport),
        transport=_TRANSPORTS[transport],
        edge=current.edge,
        headers=tuple((k, v) for k, v in uri.headers.items() if k.lower().startswith("x-")),
        secure=current.secure,
        url_sid=current.url_sid,
        redirected=True,
    )


# --- helpers -----------------------------------------------------------------------------------


def _check_dialled(dialled: str) -> None:
    digits = dialled[1:]
    if not (
        dialled.startswith("+")
        and digits.isascii()
        and digits.isdigit()
        and digits[:1] != "0"
        and E164_MIN_DIGITS <= len(digits) <= E164_MAX_DIGITS
    ):
        raise ValueError(f"dialled number {dialled!r} is not E.164 (+ and 8-15 digits, no 0 first)")


def _default_port(transport: str) -> int:
    return DEFAULT_TLS_PORT if transport == "tls" else DEFAULT_PORT


def _transport_param(transport: str) -> str:
    return "" if transport == "udp" else f";transport={transport}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
