"""Who a termination call is from and to: the header rules of PBX -> trunk -> PSTN.

Pure functions over the SIP core's `Request`, `Headers` and `SipUri`:

* `destination_number`: the Request-URI user must be E.164 with its '+' (else 400, 21211).
* `caller_id`: From, else Remote-Party-ID, else P-Asserted-Identity.
* `trunk_domain`: which trunk (and which edge) a Request-URI host names.
* `filter_diversion`: Diversion headers naming the platform must name the account's numbers.
* `strip_session_timer`: the B2BUA does not carry session timers (RFC 4028) to the far leg.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Final, NamedTuple

from trunkline.domain.domains import EDGES, LEGACY_EDGES, labels
from trunkline.signaling.sip.grammar import GrammarError, split_commas
from trunkline.signaling.sip.message import Headers, NameAddr, ParseError, Request, Response
from trunkline.signaling.sip.message import make_response as _make_response
from trunkline.signaling.sip.uri import SipUri, parse_uri

__all__ = [
    "E164_MAX_DIGITS",
    "E164_MIN_DIGITS",
    "ERROR_CODE_HEADER",
    "INVALID_TO_NUMBER",
    "LOCAL_EDGE",
    "Rejection",
    "TrunkHost",
    "allowed_diversions",
    "caller_id",
    "destination_number",
    "filter_diversion",
    "requires_session_timer",
    "strip_session_timer",
    "trunk_domain",
    "trunk_domain_name",
]

ERROR_CODE_HEADER: Final = "X-Trunkline-Error-Code"
INVALID_TO_NUMBER: Final = 21211  # Twilio: "Invalid 'To' Phone Number"
E164_MIN_DIGITS: Final = 8
E164_MAX_DIGITS: Final = 15  # ITU-T E.164 6.1: at most 15 digits, country code included
# The edge of the embedded platform (`trunkline up`), next to the real ones.
LOCAL_EDGE: Final = "local"

# RFC 3966 5.1.1: visual separators carry no meaning (spaces cannot appear in a URI user).
_SEPARATORS: Final = str.maketrans("", "", "-.()")
_NUMBER = re.compile(r"\+?[0-9]+")


class Rejection(Exception):
    """A termination request refused with `sip_status`, a reason phrase that says what is
    wrong, and the Twilio error code the response carries in X-Trunkline-Error-Code."""

    def __init__(self, sip_status: int, reason: str, error_code: int) -> None:
        super().__init__(reason)
        self.sip_status = sip_status
        self.reason = reason
        self.error_code = error_code

    def __repr__(self) -> str:
        return f"Rejection({self.sip_status}, {self.reason!r}, {self.error_code})"

    def response(self, request: Request, *, to_tag: str | None = None) -> Response:
        """The final response to `request` that says so."""
        response = _make_response(request, self.sip_status, self.reason, to_tag=to_tag)
        response.headers.add(ERROR_CODE_HEADER, str(self.error_code))
        return response


# --- (a) the destination ------------------------------------------------------------------------


def destination_number(request_uri: SipUri | str) -> str:
    """The E.164 number a termination call dials: the Request-URI user (sip:, sips: or tel:).

    It must be '+', then 8 to 15 ASCII digits, the first not 0: the guide rejects anything
    else with 400, and a '+' may not be left out. Visual separators ('-', '.', '(', ')',
    RFC 3966) are refused too rather than removed, so the PBX learns to send what it will be
    billed for. Parameters of a telephone-subscriber user (`+15105550100;npdi`) are ignored.
    Percent-escapes were already resolved by the URI parser (`%2B1...` is `+1...`).
    Raises `Rejection(400, <what is wrong>, 21211)`, also for a text URI that does not parse
    (`Request.parsed_uri` answers that with its own 400/416 first, if the caller reads it).
    """
    if isinstance(request_uri, str):
        try:
            request_uri = parse_uri(request_uri)
        except GrammarError as exc:
            raise _not_e164(f"bad Request-URI ({exc.reason})") from None
    user = request_uri.user
    if request_uri.scheme != "tel" and user is not None:
        user = user.split(";", 1)[0]
    if not user:
        raise _not_e164("no number in the Request-URI")
    if not user.startswith("+"):
        raise _not_e164("number must start with +")
    digits = user[1:]
    if not digits:
        raise _not_e164(f"{E164_MIN_DIGITS} to {E164_MAX_DIGITS} digits expected")
    if digits.translate(_SEPARATORS) != digits and digits.translate(_SEPARATORS).isdigit():
        raise _not_e164("no separators allowed")
    if not (digits.isascii() and digits.isdigit()):
        raise _not_e164("only digits allowed after +")
    if digits[0] == "0":
        raise _not_e164("country code cannot start with 0")
    if not E164_MIN_DIGITS <= len(digits) <= E164_MAX_DIGITS:
        raise _not_e164(f"{E164_MIN_DIGITS} to {E164_MAX_DIGITS} digits expected")
    return user


def _not_e164(why: str) -> Rejection:
    return Rejection(400, f"Not E.164: {why}", INVALID_TO_NUMBER)


# --- (b) the caller ----------------------------------------------------------------------------


def caller_id(request: Request) -> str | None:
    """The caller ID of a termination call, as the guide takes it: from From; if From holds
    no number (`anonymous`, a name, no user), from Remote-Party-ID (the first with
    party=calling or no party); else from P-Asserted-Identity (the first identity that holds
    a number, sip:, sips: or tel:).

    A number is the URI user with any user parameters and visual separators removed: an
    optional '+' then digits. It is returned as found: without '+' it is not E.164, and the
    caller decides (the authorization check then refuses it, as it is no account number).
    Values that do not parse are passed over. None when no header holds a number.
    """
    try:
        found = _number_in(request.from_.uri)
    except ParseError:
        found = None
    if found is not None:
        return found
    for value in _elements(request.headers, "remote-party-id"):
        addr = _name_addr(value)
        if addr is None:
            continue
        party = addr.params.get("party")
        if party is not None and party.lower() != "calling":
            continue
        found = _number_in(addr.uri)
        if found is not None:
            return found
    for value in _elements(request.headers, "p-asserted-identity"):
        addr = _name_addr(value)
        found = None if addr is None else _number_in(addr.uri)
        if found is not None:
            return found
    return None


def _number_in(uri: SipUri) -> str | None:
    user = uri.user
    if not user:
        return None
    user = user.split(";", 1)[0].translate(_SEPARATORS)
    return user if _NUMBER.fullmatch(user) is not None else None


def _name_addr(value: str) -> NameAddr | None:
    try:
        return NameAddr.parse(value)
    except (ParseError, GrammarError):
        return None


def _elements(headers: Headers, name: str) -> list[str]:
    """Every comma-separated element of every line of `name`; a line that cannot be split
    counts as one element (which then fails to parse on its own)."""
    out: list[str] = []
    for line in _lines(headers, name):
        try:
            out.extend(split_commas(line))
        except GrammarError:
            out.append(line)
    return out


# The spellings of the headers these rules read: the full name and the compact form (RFC 3261
# 7.3.3), compared case-insensitively.
_SPELLINGS: Final = {"supported": ("supported", "k")}


def _lines(headers: Headers, name: str) -> list[str]:
    # Headers.get_all splits list headers but raises on a malformed line; these rules must
    # still see the other lines, so they read the lines themselves.
    spellings = _SPELLINGS.get(name, (name,))
    return [value for written, value in headers if written.strip(" \t").lower() in spellings]


# --- (c) the trunk ----------------------------------------------------------------------------


class TrunkHost(NamedTuple):
    """What a Request-URI host names: a trunk (`acme`, or `sub.acme` for a subdomain trunk)
    and the edge of a localized URI (None: the default edge)."""

    name: str
    edge: str | None

    def domain_name(self, zone: str) -> str:
        return trunk_domain_name(self.name, zone)


def trunk_domain_name(trunk_name: str, zone: str) -> str:
    """The trunk's domain name as the API stores it (`<name>.pstn.<zone>`, lower case): the
    key of the `trunkline.domain.claims.TRUNK_DOMAIN` claim that finds the trunk SID."""
    return f"{trunk_name.lower()}.pstn.{_normal(zone)}"


def trunk_domain(host: str, zone: str) -> TrunkHost | None:
    """The trunk a termination Request-URI host names: `<name>.pstn.<zone>` (default edge) or
    the localized `<name>.pstn.<edge>.<zone>`, where the edge is one of
    `trunkline.domain.domains.EDGES`, a legacy region (returned as the edge it stands for:
    `us1` -> `ashburn`) or `local`. Case-insensitive; one trailing dot allowed. `<name>` is
    one label or `<sub>.<name>`, by the API's own rules (`domains.labels`). Anything else,
    an IP address included, is None: the caller sends no answer at all.
    """
    host = _normal(host)
    zone = _normal(zone)
    suffix = "." + zone
    if not zone or not host.endswith(suffix):
        return None
    head = host[: -len(suffix)]
    edge: str | None = None
    if not head.endswith(".pstn"):
        head, dot, label = head.rpartition(".")
        edge = _edge(label)
        if not dot or edge is None or not head.endswith(".pstn"):
            return None
    name = head[: -len(".pstn")]
    parts = labels(f"{name}.pstn.{zone}", zone)
    if isinstance(parts, str):
        return None
    return TrunkHost(".".join(parts), edge)


def _normal(name: str) -> str:
    name = name.lower()
    return name[:-1] if name.endswith(".") else name


def _edge(label: str) -> str | None:
    if label in EDGES or label == LOCAL_EDGE:
        return label
    return LEGACY_EDGES.get(label)


# --- (d) Diversion -----------------------------------------------------------------------------


def filter_diversion(headers: Headers, zone: str, account_numbers: Collection[str]) -> Headers:
    """The headers with only the Diversion entries the far leg may see.

    Diversion entries are passed on, except one whose URI host is the platform zone or a name
    under it (`example.net`, `x.example.net`; not `badexample.net`) and whose number is not
    in `account_numbers` (the account's own numbers and its verified caller IDs, E.164): a
    PBX may not claim a platform number it does not hold. An entry that does not parse is
    removed too: it cannot be checked. When one is removed, the kept entries stay in order on
    one line where the first Diversion was. `headers` is not changed; a copy is returned.
    """
    out = headers.copy()
    values = _elements(headers, "diversion")
    kept = allowed_diversions(headers, zone, account_numbers)
    if len(kept) == len(values):
        return out  # untouched: the message keeps its original bytes
    if kept:
        out.set("Diversion", ", ".join(kept))
    else:
        out.remove("Diversion")
    return out


def allowed_diversions(headers: Headers, zone: str, account_numbers: Collection[str]) -> list[str]:
    """The Diversion entries (values, in order) `filter_diversion` keeps: for a B2BUA that
    builds the far leg's headers by copying chosen ones."""
    zone = _normal(zone)
    return [
        value
        for value in _elements(headers, "diversion")
        if _diversion_allowed(value, zone, account_numbers)
    ]


def _diversion_allowed(value: str, zone: str, account_numbers: Collection[str]) -> bool:
    addr = _name_addr(value)
    if addr is None:
        return False
    host = _normal(addr.uri.host)
    if not zone or not (host == zone or host.endswith("." + zone)):
        return True
    number = _number_in(addr.uri)
    return number is not None and number in account_numbers


# --- (e) session timers ------------------------------------------------------------------------

_TIMER: Final = "timer"
_OPTION_HEADERS: Final = ("supported", "require", "proxy-require")


def strip_session_timer(headers: Headers) -> Headers:
    """The headers without session timers (RFC 4028), for the far leg: the option tag `timer`
    goes from Supported, Require and Proxy-Require (a header left empty goes too), and
    Session-Expires and Min-SE go. The platform does not refresh sessions (media timeout and
    the maximum call duration end dead calls), so it neither offers nor demands them of the
    carrier. A caller that *requires* them is the caller leg's decision: see
    `requires_session_timer`. Other option tags (100rel, replaces, ...) stay. `headers` is not
    changed; a copy is returned.
    """
    out = headers.copy()
    for name in _OPTION_HEADERS:
        lines = _lines(headers, name)
        if not lines:
            continue
        tags = _option_tags(lines)
        kept = [tag for tag in tags if tag.lower() != _TIMER]
        if len(kept) == len(tags):
            continue
        if kept:
            out.set(name, ", ".join(kept))
        else:
            out.remove(name)
    out.remove("session-expires")
    out.remove("min-se")
    return out


def requires_session_timer(headers: Headers) -> bool:
    """Whether the caller demands session timers (`Require: timer`). The B2BUA, as the UAS of
    the caller's leg, does not run them and should answer 420 Bad Extension with
    `Unsupported: timer` (RFC 3261 8.2.2.3); the caller may then retry without."""
    return any(tag.lower() == _TIMER for tag in _option_tags(_lines(headers, "require")))


def _option_tags(lines: list[str]) -> list[str]:
    # Option tags are tokens (RFC 3261 25.1): no quotes or brackets, so plain commas split them.
    return [tag for line in lines for tag in (p.strip(" \t") for p in line.split(",")) if tag]
