"""The repository interface every store backend implements.

Three access paths, each a lookup by key, so a Cassandra backend maps each to one table:
- a record by (kind, key);
- the records of one index partition (kind, index, value), ordered by (date_created, key),
  read a page at a time after or before a cursor;
- a uniqueness claim (namespace, value) -> owner, for trunk domain names, bought numbers,
  credential user names and caller IDs (lightweight transactions in Cassandra).

Writes are batches applied atomically: the claims are taken first, and if any is held by a
different owner nothing of the batch is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from trunkline.domain.model import Record

R = TypeVar("R", bound=Record)


@dataclass(frozen=True, order=True)
class Cursor:
    """A position in an index partition: after (or before) this record."""

    created_us: int
    key: str

    @classmethod
    def of(cls, record: Record) -> Cursor:
        return cls(created_us(record), record.key)


def created_us(record: Record) -> int:
    return int(record.date_created.timestamp() * 1_000_000)


@dataclass(frozen=True)
class Claim:
    namespace: str
    value: str
    owner: str


@dataclass
class Batch:
    puts: list[Record] = field(default_factory=list)
    deletes: list[Record] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    releases: list[Claim] = field(default_factory=list)

    def put(self, record: Record) -> Batch:
        self.puts.append(record)
        return self

    def delete(self, record: Record) -> Batch:
        self.deletes.append(record)
        return self

    def claim(self, namespace: str, value: str, owner: str) -> Batch:
        self.claims.append(Claim(namespace, value, owner))
        return self

    def release(self, namespace: str, value: str, owner: str) -> Batch:
        self.releases.append(Claim(namespace, value, owner))
        return self


class ClaimConflict(Exception):
    """A claim of the batch is held by another owner; nothing was written."""

    def __init__(self, claim: Claim, holder: str) -> None:
        super().__init__(f"{claim.namespace} {claim.value!r} is held by {holder}")
        self.claim = claim
        self.holder = holder


class Repository(Protocol):
    async def get(self, kind: type[R], key: str) -> R | None: ...

    async def list(
        self,
        kind: type[R],
        index: str,
        value: str,
        *,
        limit: int,
        after: Cursor | None = None,
        before: Cursor | None = None,
    ) -> Sequence[R]:
        """Up to `limit` records of the partition in (date_created, key) order.

        With `before`, the `limit` records just before it (still returned in ascending order).
        """
        ...

    async def count(self, kind: type[R], index: str, value: str, *, limit: int) -> int:
        """How many records the partition holds, counting no further than `limit`."""
        ...

    async def holder(self, namespace: str, value: str) -> str | None:
        """The owner of a claim, or None."""
        ...

    async def apply(self, batch: Batch) -> None: ...

    async def close(self) -> None: ...
