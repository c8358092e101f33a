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
from pathlib import Path

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
        if self._writer is None:
            self._apply(batch)
        else:
            await asyncio.get_running_loop().run_in_executor(self._writer, self._apply, batch)

    def _apply(self, batch: Batch) -> None:
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
            for record in batch.deletes:
                self._unindex(record.KIND, record.key)
                db.execute(
                    "DELETE FROM records WHERE kind = ? AND key = ?", (record.KIND, record.key)
                )
            for record in batch.puts:
                self._put(record)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _unindex(self, kind: str, key: str) -> None:
        self._write_db.execute("DELETE FROM record_index WHERE kind = ? AND key = ?", (kind, key))

    def _put(self, record: Record) -> None:
        kind, key, created = record.KIND, record.key, created_us(record)
        self._unindex(kind, key)
        self._write_db.execute(
            "INSERT OR REPLACE INTO records (kind, key, created_us, doc) VALUES (?, ?, ?, ?)",
            (kind, key, created, json.dumps(record.to_doc(), separators=(",", ":"))),
        )
        self._write_db.executemany(
            "INSERT INTO record_index (kind, name, value, created_us, key) VALUES (?, ?, ?, ?, ?)",
            [(kind, name, value, created, key) for name, value in record.indexes().items()],
        )

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._write_db.close()
        self._db.close()
