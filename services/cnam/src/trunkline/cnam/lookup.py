"""Caller-name lookups: the operator's table first, then the provider through a cache.

    names = CallerNames(repository, provider=provider, cache_ttl=3600, record=usage.record)
    answer = await names.lookup(request)   # LookupReply(found, caller_name, source)

The table is read on every lookup, not cached: it is the operator's own data, one key read,
and an import is then visible at the next call. Only the provider's answers are cached
(found and not found alike, `cache_ttl` seconds, at most `cache_size` numbers): the provider
is slow and may charge per query. A provider failure is "not found" for this call, logged
and not cached, so the next call asks again.

Every answered lookup is recorded once as a CnamLookup usage event (billing charges found and
not found alike, as the guide says). Numbers outside North America are refused before any
lookup and not recorded: the platform looks up and bills only North American numbers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from cachetools import TTLCache
from prometheus_client import Counter, Histogram

from trunkline.cnam.provider import Provider, ProviderError
from trunkline.domain.model import CnamEntry
from trunkline.domain.numbers import is_e164, is_nanp
from trunkline.domain.sid import is_sid
from trunkline.store import Repository
from trunkline.v1.cnam_pb2 import CnamLookup, LookupReply, LookupRequest

__all__ = ["CallerNames", "InvalidRequest", "NotNorthAmerican"]

log = logging.getLogger("trunkline.cnam.lookup")

TABLE: Final = "table"
PROVIDER: Final = "provider"
CACHE: Final = "cache"

LOOKUPS = Counter(
    "trunkline_cnam_lookups",
    "Answered (and billed) CNAM lookups by source and result",
    ["source", "found"],
)
PROVIDER_FAILURES = Counter(
    "trunkline_cnam_provider_failures",
    "Provider queries without a usable answer (answered as not found, not cached)",
)
PROVIDER_SECONDS = Histogram(
    "trunkline_cnam_provider_seconds",
    "Time the CNAM provider took to answer (failures included)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


class InvalidRequest(Exception):
    """The request cannot be served as it is (a missing SID, a number that is not E.164)."""


class NotNorthAmerican(Exception):
    """The number is E.164 but not North American: no lookup, nothing billed."""


Record = Callable[[CnamLookup], None]


class CallerNames:
    def __init__(
        self,
        store: Repository,
        *,
        provider: Provider | None = None,
        cache_ttl: float = 3600.0,
        cache_size: int = 100_000,
        record: Record | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.provider = provider
        self.record = record
        # The provider's answers: the clean name, or "" for "no name".
        self._cache: TTLCache[str, str] | None = (
            TTLCache(maxsize=cache_size, ttl=cache_ttl, timer=clock) if cache_ttl > 0 else None
        )

    async def lookup(self, request: LookupRequest) -> LookupReply:
        """The caller name of request.number; InvalidRequest or NotNorthAmerican when it is
        not looked up. Store errors propagate (nothing answered, nothing recorded)."""
        _check(request)
        name, source = await self._answer(request)
        reply = LookupReply(found=bool(name), caller_name=name or "", source=source)
        event = CnamLookup(
            account_sid=request.account_sid,
            trunk_sid=request.trunk_sid,
            call_sid=request.call_sid,
            number=request.number,
            found=reply.found,
            source=source,
        )
        event.time.GetCurrentTime()
        if self.record is not None:
            self.record(event)
        LOOKUPS.labels(source=source, found=str(reply.found).lower()).inc()
        return reply

    async def _answer(self, request: LookupRequest) -> tuple[str | None, str]:
        number = request.number
        entry = await self.store.get(CnamEntry, number)
        if entry is not None:
            return entry.caller_name, TABLE
        if self.provider is None:
            return None, TABLE
        if self._cache is not None:
            cached = self._cache.get(number)
            if cached is not None:
                return cached or None, CACHE
        started = time.monotonic()
        try:
            name = await self.provider.lookup(number)
        except ProviderError as error:
            PROVIDER_FAILURES.inc()
            log.warning(
                "CNAM provider failed; answering not found",
                extra={"call_sid": request.call_sid, "error": str(error)},
            )
            return None, PROVIDER
        finally:
            PROVIDER_SECONDS.observe(time.monotonic() - started)
        if self._cache is not None:
            self._cache[number] = name or ""
        return name, PROVIDER


def _check(request: LookupRequest) -> None:
    for value, prefix, field in (
        (request.account_sid, "AC", "account_sid"),
        (request.trunk_sid, "TK", "trunk_sid"),
        (request.call_sid, "CA", "call_sid"),
    ):
        if not is_sid(value, prefix):
            raise InvalidRequest(f"{field} {value!r} is not a {prefix} SID")
    if not is_e164(request.number):
        raise InvalidRequest(f"number {request.number!r} is not E.164 (+ and digits)")
    if not is_nanp(request.number):
        raise NotNorthAmerican(f"{request.number} is not a North American number")
