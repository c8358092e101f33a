"""Lexical pieces of the SIP grammar (RFC 3261 section 25.1) shared by `uri` and `message`.

Every regular expression here is written so that it cannot backtrack catastrophically on
hostile input: character classes are disjoint from what follows them, and the quoted-string
scanner uses possessive quantifiers (Python 3.11), so each one runs in time linear in its input.
"""

from __future__ import annotations

import re

__all__ = [
    "TCHAR",
    "GrammarError",
    "format_params",
    "is_token",
    "parse_params",
    "quote_string",
    "quoted_string_end",
    "split_commas",
    "unquote_string",
]


class GrammarError(ValueError):
    """A lexical or structural fault in a header value; `reason` names it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# RFC 3261 25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TCHAR = r"A-Za-z0-9\-.!%*_+`'~"
_TOKEN = re.compile(f"[{TCHAR}]++")

# The rest of a quoted-string after its opening DQUOTE: qdtext or quoted-pair, then DQUOTE.
_QUOTED_TAIL = re.compile(r'[^"\\]*+(?:\\.[^"\\]*+)*+"', re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)

# One generic-param (RFC 3261 25.1): SEMI token [ EQUAL gen-value ], gen-value = token / host /
# quoted-string. The name is optional so that an empty segment (";;" or a trailing ";", which
# some user agents send) is tolerated and skipped rather than rejected.
_PARAM = re.compile(
    r"[ \t]*+;[ \t]*+"
    f"(?:([{TCHAR}]++)"
    r"(?:[ \t]*+=[ \t]*+"
    f"([{TCHAR}:\\[\\]]++"
    r'|"[^"\\]*+(?:\\.[^"\\]*+)*+"))?)?'
    r"[ \t]*+",
    re.S,
)
_COMMA_SPECIAL = re.compile(r'[",<]')


def is_token(text: str) -> bool:
    return _TOKEN.fullmatch(text) is not None


def quoted_string_end(text: str, start: int) -> int:
    """Index just past the quoted-string whose opening quote is at `start`."""
    m = _QUOTED_TAIL.match(text, start + 1)
    if m is None:
        raise GrammarError("Unterminated quoted string")
    return m.end()


def unquote_string(inner: str) -> str:
    """The text of a quoted-string's inside, with quoted-pairs resolved (RFC 3261 25.1)."""
    if "\\" not in inner:
        return inner
    return _QUOTED_PAIR.sub(r"\1", inner)


def quote_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_commas(value: str) -> list[str]:
    """Split a list header on top-level commas (RFC 3261 7.3.1), not inside quotes or <...>.

    Empty elements are dropped. A comma inside a quoted display name or inside an angle-bracketed
    URI (whose headers may hold escaped or even raw commas) does not separate elements.
    """
    if '"' not in value and "<" not in value:
        if "," not in value:
            stripped = value.strip(" \t")
            return [stripped] if stripped else []
        return [p for p in (part.strip(" \t") for part in value.split(",")) if p]
    out: list[str] = []
    start = pos = 0
    search = _COMMA_SPECIAL.search
    while True:
        m = search(value, pos)
        if m is None:
            break
        i = m.start()
        c = value[i]
        if c == ",":
            part = value[start:i].strip(" \t")
            if part:
                out.append(part)
            start = pos = i + 1
        elif c == '"':
            pos = quoted_string_end(value, i)
        else:
            close = value.find(">", i + 1)
            if close < 0:
                raise GrammarError("Unterminated angle bracket")
            pos = close + 1
    part = value[start:].strip(" \t")
    if part:
        out.append(part)
    return out


def parse_params(text: str) -> dict[str, str | None]:
    """Parse `*( SEMI generic-param )` into an ordered dict with lower-cased names.

    Names compare case-insensitively (RFC 3261 7.3.1), so they are lower-cased; values keep
    their case and a quoted value keeps its quotes, so it re-serializes unchanged.
    """
    params: dict[str, str | None] = {}
    pos = 0
    end = len(text)
    match = _PARAM.match
    while pos < end:
        m = match(text, pos)
        if m is None:
            if not text[pos:].strip(" \t"):
                break
            if '"' in text[pos:]:
                # Name the lexical fault when it is an unterminated quote.
                q = text.index('"', pos)
                quoted_string_end(text, q)
            raise GrammarError("Bad parameter")
        name = m.group(1)
        if name is not None:
            params[name.lower()] = m.group(2)
        pos = m.end()
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())
