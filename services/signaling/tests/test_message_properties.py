"""Property tests: whatever the model can build serializes and parses back equal."""

from __future__ import annotations

import ipaddress
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from trunkline.signaling.sip.message import (
    CSeq,
    Headers,
    NameAddr,
    Request,
    Response,
    Via,
    parse_message,
)
from trunkline.signaling.sip.uri import SipUri, parse_uri

TOKEN_ALPHABET = string.ascii_letters + string.digits + "-.!%*_+`'~"
LOWER_TOKEN_ALPHABET = string.ascii_lowercase + string.digits + "-.!%*_+`'~"

tokens = st.text(TOKEN_ALPHABET, min_size=1, max_size=12)
lower_tokens = st.text(LOWER_TOKEN_ALPHABET, min_size=1, max_size=12)
# Any text a URI can carry once escaped: everything but surrogates (not encodable as UTF-8).
uri_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
# Text a header value can carry: no control characters (RFC 3261 25.1 TEXT-UTF8char).
header_text = st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=20)


def _lower_fixed_point(text: str) -> bool:
    return text.lower() == text


labels = st.text(string.ascii_letters + string.digits, min_size=1, max_size=10)
fqdns = st.lists(labels, min_size=1, max_size=4).map(".".join)
ipv4s = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6s = st.integers(0, 2**128 - 1).map(lambda n: ipaddress.IPv6Address(n).compressed)
hosts = st.one_of(fqdns, ipv4s, ipv6s)
ports = st.none() | st.integers(0, 65535)

uri_params = st.dictionaries(
    uri_text.filter(lambda t: t != "").map(str.lower).filter(_lower_fixed_point),
    st.none() | uri_text,
    max_size=4,
)
uri_headers = st.dictionaries(uri_text.filter(lambda t: t != ""), uri_text, max_size=3)

sip_uris = st.builds(
    SipUri,
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.none() | uri_text.filter(lambda t: t != ""),
    password=st.none(),
    host=hosts,
    port=ports,
    params=uri_params,
    headers=uri_headers,
)
sip_uris_with_password = st.builds(
    SipUri,
    scheme=st.just("sip"),
    user=uri_text.filter(lambda t: t != ""),
    password=uri_text,
    host=hosts,
    port=ports,
    params=uri_params,
    headers=uri_headers,
)
tel_numbers = st.one_of(
    st.from_regex(r"\+[0-9][0-9\-.()]{0,14}", fullmatch=True),
    st.from_regex(r"[0-9A-F*#][0-9A-F*#\-.]{0,8}", fullmatch=True).filter(
        lambda n: any(c.isdigit() for c in n)
    ),
)
tel_uris = st.builds(
    SipUri,
    scheme=st.just("tel"),
    user=tel_numbers,
    password=st.none(),
    host=st.just(""),
    port=st.none(),
    params=uri_params,
    headers=st.just({}),
)
uris = st.one_of(sip_uris, sip_uris_with_password, tel_uris)

# Header parameters (RFC 3261 25.1 generic-param): token names, token/host/quoted values.
quoted_values = header_text.map(lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"')
header_params = st.dictionaries(
    lower_tokens, st.none() | tokens | ipv6s | quoted_values, max_size=4
)
display_names = st.none() | header_text
name_addrs = st.builds(NameAddr, display_name=display_names, uri=uris, params=header_params)
vias = st.builds(
    Via,
    transport=st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS", "WSS"]),
    host=hosts,
    port=ports,
    params=header_params,
)
methods = st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REFER", "X-CUSTOM"])
call_ids = st.text(string.ascii_letters + string.digits + "-.!%*_+`'~()<>:\\\"/[]?{}@", min_size=1)
extension_headers = st.lists(
    st.tuples(
        tokens.map(lambda t: "X-" + t),
        header_text.map(lambda t: t.strip(" \t")),
    ),
    max_size=5,
)


def _keep_order_per_name(lines: list[tuple[str, str]], order: list[int]) -> list[tuple[str, str]]:
    """Lines shuffled by `order`, except that lines of one header keep their relative order
    (the order of Via or Route values is meaning, RFC 3261 7.3.1)."""
    shuffled = [lines[i] for i in order]
    queues: dict[str, list[tuple[str, str]]] = {}
    for line in lines:
        queues.setdefault(line[0], []).append(line)
    return [queues[name].pop(0) for name, _ in shuffled]


@st.composite
def messages(draw: st.DrawFn) -> tuple[Request | Response, dict[str, object]]:
    """A message and the structures it was built from."""
    method = draw(methods)
    via_list = draw(st.lists(vias, min_size=1, max_size=4))
    via_lines: list[str] = []
    rest = list(via_list)
    while rest:
        # Vias go one per line or several comma-separated on one line (RFC 3261 7.3.1).
        take = draw(st.integers(1, len(rest)))
        via_lines.append(", ".join(str(v) for v in rest[:take]))
        rest = rest[take:]
    structures: dict[str, object] = {
        "vias": via_list,
        "from": draw(name_addrs),
        "to": draw(name_addrs),
        "cseq": CSeq(draw(st.integers(0, 2**31 - 1)), method),
        "call_id": draw(call_ids),
        "contacts": draw(st.lists(name_addrs, max_size=3)),
        "routes": draw(st.lists(name_addrs, max_size=3)),
    }
    lines: list[tuple[str, str]] = [("Via", v) for v in via_lines]
    lines += [
        (draw(st.sampled_from(["From", "f", "FROM"])), str(structures["from"])),
        (draw(st.sampled_from(["To", "t"])), str(structures["to"])),
        (draw(st.sampled_from(["Call-ID", "i", "call-id"])), str(structures["call_id"])),
        ("CSeq", str(structures["cseq"])),
    ]
    contacts = structures["contacts"]
    routes = structures["routes"]
    assert isinstance(contacts, list) and isinstance(routes, list)
    if contacts:
        lines.append(("Contact", ", ".join(str(c) for c in contacts)))
    for route in routes:
        lines.append(("Route", str(route)))
    if draw(st.booleans()):
        lines.append(("Max-Forwards", str(draw(st.integers(0, 255)))))
    lines += draw(extension_headers)
    lines = _keep_order_per_name(lines, draw(st.permutations(range(len(lines)))))
    headers = Headers(lines)
    body = draw(st.binary(max_size=64))
    msg: Request | Response
    if draw(st.booleans()):
        uri = draw(uris)
        structures["uri"] = uri
        msg = Request(method, str(uri), headers, body)
    else:
        reason = draw(header_text.map(lambda t: t.strip(" \t")))
        msg = Response(draw(st.integers(100, 699)), reason, headers, body)
    return msg, structures


@settings(max_examples=300, deadline=None)
@given(uris)
def test_uri_round_trips(uri: SipUri) -> None:
    assert parse_uri(str(uri)) == uri


@settings(max_examples=300, deadline=None)
@given(name_addrs)
def test_name_addr_round_trips(name_addr: NameAddr) -> None:
    assert NameAddr.parse(str(name_addr)) == name_addr


@settings(max_examples=200, deadline=None)
@given(vias)
def test_via_round_trips(via: Via) -> None:
    assert Via.parse(str(via)) == via


@settings(max_examples=300, deadline=None)
@given(messages())
def test_message_round_trips(built: tuple[Request | Response, dict[str, object]]) -> None:
    msg, structures = built
    data = bytes(msg)
    parsed = parse_message(data)

    expected = msg.headers.copy()
    expected.set("Content-Length", str(len(msg.body)))  # bytes() writes it from the body
    assert parsed.headers == expected
    assert parsed.body == msg.body
    assert type(parsed) is type(msg)
    if isinstance(msg, Request):
        assert isinstance(parsed, Request)
        assert (parsed.method, parsed.uri) == (msg.method, msg.uri)
        assert parsed.parsed_uri == structures["uri"]
    else:
        assert isinstance(parsed, Response)
        assert (parsed.status, parsed.reason) == (msg.status, msg.reason)

    assert parsed.vias == structures["vias"]
    assert parsed.from_ == structures["from"]
    assert parsed.to == structures["to"]
    assert parsed.cseq == structures["cseq"]
    assert parsed.call_id == structures["call_id"]
    assert parsed.contacts == structures["contacts"]
    assert parsed.routes == structures["routes"]
    # Serializing what was parsed gives the same bytes again (the head is reused verbatim).
    assert bytes(parsed) == data
