"""Trunkline's store: one repository interface, a backend per URL scheme."""

from __future__ import annotations

from pathlib import Path

from trunkline.store.repository import Batch, Claim, ClaimConflict, Cursor, Repository

__all__ = [
    "Batch",
    "Claim",
    "ClaimConflict",
    "Cursor",
    "Repository",
    "connect_store",
    "open_store",
]


def open_store(url: str) -> Repository:
    """A repository for `url`, without I/O for network backends (they connect on first use).

    - `sqlite:///abs/path.db`, `sqlite://:memory:` or a plain file path: the embedded store;
    - `cassandra://host[:port][,host...]/keyspace[?dc=NAME&rf=N]`: a Cassandra keyspace,
      created with NetworkTopologyStrategy if missing (rf 1 and the contacted node's data
      centre unless given).
    """
    if url.startswith("cassandra://"):
        from trunkline.store.cassandra import CassandraRepository

        return CassandraRepository.from_url(url)

    from trunkline.store.sqlite import SqliteRepository

    if url.startswith("sqlite://"):
        target = url.removeprefix("sqlite://")
        return SqliteRepository(target if target == ":memory:" else Path(target))
    if "://" in url:
        raise ValueError(
            f"unsupported store URL {url!r}: use sqlite:///path or cassandra://host:port/keyspace"
        )
    return SqliteRepository(Path(url))


async def connect_store(url: str) -> Repository:
    """Like open_store, but a network backend connects and migrates now: fail at start."""
    if url.startswith("cassandra://"):
        from trunkline.store.cassandra import CassandraRepository

        return await CassandraRepository.connect(url)
    return open_store(url)
