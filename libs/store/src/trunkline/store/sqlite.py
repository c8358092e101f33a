"""The SQLite backend: the embedded default.

Three tables mirror the repository's three access paths (records by key, index partitions,
claims). WAL mode lets every service process of the embedded platform read the same file
while the API writes. Calls are short and local, so they run on the event loop's thread
rather than paying a thread hop per lookup.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from trunkline.domain.model import Record
from trunkline.store.repository import Batch, ClaimConflict, Cursor, R, created_us

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS record_index (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (kind, name, value, created_us, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS record_index_by_key ON record_index (kind, key);
CREATE TABLE IF NOT EXISTS claims (
    namespace TEXT NOT NULL,
    value TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (namespace, value)
) WITHOUT ROWID;
"""


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    return db


class SqliteRepository:
    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._db = _connect(self._path)
        self._db.executescript(SCHEMA)
        # Writes go through a connection of their own on one thread, so a commit (a WAL
        # checkpoint's fsync, a wait for another process's write lock) never stalls the
        # event loop; reads stay on the loop, on their own connection, and see every
        # committed write (WAL). An in-memory database is one connection, written inline.
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._write_db = self._db
        if self._path != ":memory:":
            self._write_db = _connect(self._path)
            self._writer = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="sqlite-writer"
            )

    async def get(self, kind: type[R], key: str) -> R | None:
        row = self._db.execute(
            "SELECT doc FROM records WHERE kind = ? AND key = ?", (kind.KIND, key)
        ).fetchone()
        return None if row is None else kind.from_doc(json.loads(row[0]))

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
        sql = (
            "SELECT r.doc FROM record_index i JOIN records r ON r.kind = i.kind AND r.key = i.key"
            " WHERE i.kind = ? AND i.name = ? AND i.value = ?"
        )
        args: list[object] = [kind.KIND, index, value]
        if after is not None:
            sql += " AND (i.created_us, i.key) > (?, ?)"
            args += [after.created_us, after.key]
        if before is not None:
            sql += " AND (i.created_us, i.key) < (?, ?)"
            args += [before.created_us, before.key]
        order = "DESC" if before is not None and after is None else "ASC"
        sql += f" ORDER BY i.created_us {order}, i.key {order} LIMIT ?"
        args.append(limit)
        docs = [row[0] for row in self._db.execute(sql, args)]
        if order == "DESC":
            docs.reverse()
        return [kind.from_doc(json.loads(doc)) for doc in docs]

    async def count(self, kind: type[R], index: str, value: str, *, limit: int) -> int:
        row = self._db.execute(
            "SELECT count(*) FROM (SELECT 1 FROM record_index"
            " WHERE kind = ? AND name = ? AND value = ? LIMIT ?)",
            (kind.KIND, index, value, limit),
        ).fetchone()
        return int(row[0])

    async def holder(self, namespace: str, value: str) -> str | None:
        row = self._db.execute(
            "SELECT owner FROM claims WHERE namespace = ? AND value = ?", (namespace, value)
        ).fetchone()
        return None if row is None else str(row[0])

    async def apply(self, batch: Batch) -> None:
        # The rows are built here, on the caller's thread; the writer thread only runs a few
        # multi-row statements. Each statement hands the GIL back and forth, and with the
        # event loop busy every handoff waits up to the switch interval (5 ms): writing 100
        # call records one statement at a time took 100-600 ms under load instead of 7 ms
        # (benchmarks/termination.py at 375 calls/s), and the call records fell behind.
        rows = _Rows.of(batch)
        if self._writer is None:
            self._apply(batch, rows)
        else:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._writer, self._apply, batch, rows)

    def _apply(self, batch: Batch, rows: _Rows) -> None:
        db = self._write_db
        db.execute("BEGIN IMMEDIATE")
        try:
            for claim in batch.claims:
                row = db.execute(
                    "SELECT owner FROM claims WHERE namespace = ? AND value = ?",
                    (claim.namespace, claim.value),
                ).fetchone()
                if row is not None and row[0] != claim.owner:
                    raise ClaimConflict(claim, row[0])
                db.execute(
                    "INSERT OR REPLACE INTO claims (namespace, value, owner) VALUES (?, ?, ?)",
                    (claim.namespace, claim.value, claim.owner),
                )
            for claim in batch.releases:
                db.execute(
                    "DELETE FROM claims WHERE namespace = ? AND value = ? AND owner = ?",
                    (claim.namespace, claim.value, claim.owner),
                )
            # Deletes before puts, as the batch is documented: a record both deleted and put
            # in one batch ends up put.
            for kind, keys in rows.deleted.items():
                self._delete_keys(kind, keys, records=True)
            for kind, keys in rows.put.items():
                self._delete_keys(kind, keys, records=False)
            self._insert("records (kind, key, created_us, doc)", rows.records)
            self._insert("record_index (kind, name, value, created_us, key)", rows.index)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _insert(self, into: str, rows: Sequence[tuple[object, ...]]) -> None:
        """INSERT OR REPLACE `rows` (all one width) into `into`, a table and its columns."""
        for chunk in _chunks(rows, _ROWS_PER_STATEMENT):
            # Only "?" placeholders are formatted in; every value is a bound parameter.
            marks = ", ".join(["(" + ", ".join("?" * len(chunk[0])) + ")"] * len(chunk))
            self._write_db.execute(
                f"INSERT OR REPLACE INTO {into} VALUES {marks}",  # noqa: S608
                [value for row in chunk for value in row],
            )

    def _delete_keys(self, kind: str, keys: Sequence[str], *, records: bool) -> None:
        """Drop the index rows of these records (and, with `records`, the records)."""
        tables = ("record_index", "records") if records else ("record_index",)
        for chunk in _chunks(keys, _ROWS_PER_STATEMENT):
            marks = ", ".join("?" * len(chunk))
            for table in tables:
                self._write_db.execute(
                    f"DELETE FROM {table} WHERE kind = ? AND key IN ({marks})",  # noqa: S608
                    [kind, *chunk],
                )

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._write_db.close()
        self._db.close()


# Rows per multi-row statement: 200 x 5 values stays far below SQLite's 32,766 parameters.
_ROWS_PER_STATEMENT = 200

T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


@dataclass
class _Rows:
    """A batch's records and index entries as table rows, ready to write."""

    deleted: dict[str, list[str]]  # kind -> keys
    put: dict[str, list[str]]  # kind -> keys whose old index rows go
    records: list[tuple[str, str, int, str]]
    index: list[tuple[str, str, str, int, str]]

    @classmethod
    def of(cls, batch: Batch) -> _Rows:
        deleted: dict[str, list[str]] = {}
        for record in batch.deletes:
            deleted.setdefault(record.KIND, []).append(record.key)
        latest: dict[tuple[str, str], Record] = {}
        for record in batch.puts:  # the last put of a record wins
            latest[(record.KIND, record.key)] = record
        put: dict[str, list[str]] = {}
        records: list[tuple[str, str, int, str]] = []
        index: list[tuple[str, str, str, int, str]] = []
        for (kind, key), record in latest.items():
            created = created_us(record)
            put.setdefault(kind, []).append(key)
            doc = json.dumps(record.to_doc(), separators=(",", ":"))
            records.append((kind, key, created, doc))
            index.extend(
                (kind, name, value, created, key) for name, value in record.indexes().items()
            )
        return cls(deleted, put, records, index)
