"""SIP, SIPS and tel URIs (RFC 3261 section 19.1, RFC 3966).

`parse_uri` unescapes the user, password, parameters and headers; `str()` escapes whatever the
grammar does not allow in each part, so `parse_uri(str(uri)) == uri` for any URI the model holds.
Origination URLs carry `transport=`, `edge=`, `region=` as parameters and `X-` headers as
`?X-Foo=bar` URI headers (RFC 3261 19.1.1), which is why both are first-class here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NoReturn
from urllib.parse import unquote

from trunkline.signaling.sip.grammar import GrammarError

__all__ = ["SipUri", "UriError", "parse_uri"]


class UriError(GrammarError):
    """A URI that does not follow RFC 3261 19.1 / RFC 3966; `reason` names the fault."""


# Characters allowed unescaped in each part (RFC 3261 25.1). unreserved = alphanum / mark.
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_USER = _UNRESERVED + r"&=+$,;?/"  # user-unreserved
_PASSWORD = _UNRESERVED + r"&=+$,"
_PARAM = _UNRESERVED + r"\[\]/:&+$"  # param-unreserved
_HEADER = _UNRESERVED + r"\[\]/?:+$"  # hnv-unreserved
# Received text may also hold escapes and (leniently) raw non-ASCII, which str() escapes.
_RAW_EXTRA = "%\x80-\ud7ff\ue000-\U0010ffff"

_SIP_REST = re.compile(
    f"(?:(?P<user>[{_USER}{_RAW_EXTRA}]++)(?::(?P<password>[{_PASSWORD}{_RAW_EXTRA}]*+))?@)?"
    r"(?:(?P<host>[A-Za-z0-9\-_.]++)|\[(?P<v6>[0-9A-Fa-f:.]++)\])"
    r"(?::(?P<port>[0-9]++))?"
    r"(?P<params>(?:;[^;?]*+)*+)"
    r"(?:\?(?P<headers>.*+))?",
    re.S,
)
_PARAM_RAW = re.compile(f"([{_PARAM}{_RAW_EXTRA}]++)(?:=([{_PARAM}{_RAW_EXTRA}]*+))?")
_HEADER_RAW = re.compile(f"([{_HEADER}{_RAW_EXTRA}]++)=([{_HEADER}{_RAW_EXTRA}]*+)")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HOSTNAME = re.compile(r"[A-Za-z0-9\-_.]++")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]++")
# RFC 3966 3: global numbers start with "+" and hold digits and visual separators; local numbers
# may also hold hex digits, "*" and "#".
_TEL_NUMBER = re.compile(r"\+[0-9\-.()]++|[0-9A-Fa-f*#\-.()]++")

_USER_OUT = re.compile(f"[{_USER}]*+")
_PASSWORD_OUT = re.compile(f"[{_PASSWORD}]*+")
_PARAM_OUT = re.compile(f"[{_PARAM}]*+")
_HEADER_OUT = re.compile(f"[{_HEADER}]*+")
_SCHEMES = {"sip": "sip", "sips": "sips", "tel": "tel", "SIP": "sip", "SIPS": "sips", "TEL": "tel"}


@dataclass
class SipUri:
    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        return parse_uri(text)

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def __str__(self) -> str:
        params = "".join(
            f";{_escape(k, _PARAM_OUT)}" + ("" if v is None else "=" + _escape(v, _PARAM_OUT))
            for k, v in self.params.items()
        )
        if self.scheme == "tel":
            return f"tel:{self.user or ''}{params}"
        out = self.scheme + ":"
        if self.user is not None:
            out += _escape(self.user, _USER_OUT)
            if self.password is not None:
                out += ":" + _escape(self.password, _PASSWORD_OUT)
            out += "@"
        out += self.hostport + params
        if self.headers:
            out += "?" + "&".join(
                f"{_escape(k, _HEADER_OUT)}={_escape(v, _HEADER_OUT)}"
                for k, v in self.headers.items()
            )
        return out


def _escape(text: str, allowed: re.Pattern[str]) -> str:
    if allowed.fullmatch(text) is not None:
        return text
    out = []
    for ch in text:
        if allowed.fullmatch(ch) is not None:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def _unescape(text: str, part: str) -> str:
    if "%" not in text:
        return text
    if _BAD_ESCAPE.search(text) is not None:
        raise UriError("Bad URI escape")
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise UriError(f"Bad URI {part}") from None


def parse_uri(text: str) -> SipUri:
    """Parse a sip:, sips: or tel: URI; raise UriError naming the fault."""
    scheme, colon, rest = text.partition(":")
    if not colon:
        raise UriError("Missing URI scheme")
    canonical = _SCHEMES.get(scheme) or _SCHEMES.get(scheme.lower())
    if canonical is None:
        raise UriError("Unsupported URI scheme")
    if canonical == "tel":
        return _parse_tel(rest)
    m = _SIP_REST.fullmatch(rest)
    if m is None:
        _diagnose(rest)
    user, password, host, v6, port_text, params_text, headers_text = m.group(
        "user", "password", "host", "v6", "port", "params", "headers"
    )
    port: int | None = None
    if port_text is not None:
        port = int(port_text) if len(port_text) <= 5 else 65536
        if port > 65535:
            raise UriError("Bad URI port")
    if host is None:
        host = v6
        if ":" not in host:
            raise UriError("Bad URI host")
    if user is not None and "%" in user:
        user = _unescape(user, "user")
    if password is not None and "%" in password:
        password = _unescape(password, "password")
    return SipUri(
        canonical,
        user,
        password,
        host,
        port,
        _parse_uri_params(params_text) if params_text else {},
        _parse_uri_headers(headers_text) if headers_text is not None else {},
    )


def _parse_uri_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        if not item:
            continue  # the empty piece before the first ";", or a tolerated ";;"
        m = _PARAM_RAW.fullmatch(item)
        if m is None:
            raise UriError("Bad URI parameter")
        name, value = m.group(1, 2)
        params[_unescape(name, "parameter").lower()] = (
            None if value is None else _unescape(value, "parameter")
        )
    return params


def _parse_uri_headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in text.split("&"):
        m = _HEADER_RAW.fullmatch(item)
        if m is None:
            raise UriError("Bad URI header")
        headers[_unescape(m.group(1), "header")] = _unescape(m.group(2), "header")
    return headers


def _parse_tel(rest: str) -> SipUri:
    number, _, params_text = rest.partition(";")
    if (
        _TEL_NUMBER.fullmatch(number) is None
        or not any(c.isdigit() for c in number)
        or "?" in params_text
    ):
        raise UriError("Bad tel number")
    params = _parse_uri_params(params_text) if params_text else {}
    return SipUri("tel", number, None, "", None, params, {})


def _diagnose(rest: str) -> NoReturn:
    """Name the part of a SIP URI that failed the one-pass match (the slow, error-only path)."""
    hostpart = rest
    at = rest.find("@")
    if at >= 0:
        userinfo, hostpart = rest[:at], rest[at + 1 :]
        user, colon, password = userinfo.partition(":")
        if re.fullmatch(f"[{_USER}{_RAW_EXTRA}]++", user) is None:
            raise UriError("Bad URI user")
        if colon and re.fullmatch(f"[{_PASSWORD}{_RAW_EXTRA}]*+", password) is None:
            raise UriError("Bad URI password")
    hostport, _, _ = hostpart.partition("?")
    hostport, _, _ = hostport.partition(";")
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0 or _IPV6.fullmatch(hostport[1:close]) is None:
            raise UriError("Bad URI host")
        port_text = hostport[close + 1 :]
        if port_text and not port_text.startswith(":"):
            raise UriError("Bad URI host")
        port_text = port_text[1:]
        has_port = bool(hostport[close + 1 :])
    else:
        host, colon, port_text = hostport.partition(":")
        if _HOSTNAME.fullmatch(host) is None:
            raise UriError("Bad URI host")
        has_port = bool(colon)
    if has_port and not (port_text.isascii() and port_text.isdigit()):
        raise UriError("Bad URI port")
    raise UriError("Bad URI")
