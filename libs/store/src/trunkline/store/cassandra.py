"""The Cassandra backend: production's store, one keyspace per environment.

URL: `cassandra://host[:port][,host[:port]...]/keyspace[?dc=NAME&rf=N]`. The keyspace uses
NetworkTopologyStrategy with `rf` replicas (default 1) in data centre `dc` (default: the data
centre of the node the driver first reaches), and is created if missing; an existing one keeps
its replication. Schema migrations are numbered, recorded in `schema_migrations`, and written
with `IF NOT EXISTS`, so every start may apply them and a start that died half-way finishes
the job next time. Start one service first when several share a new keyspace: concurrent
CREATE TABLE on several nodes is what Cassandra's schema handling copes with worst.

One table per access path, each read a single-partition query (no joins, no ALLOW FILTERING):
- `records ((kind, key))`: the record's JSON document, its creation time, and the index
  entries it was last written with.
- `record_index ((kind, name, value), created_us, key)`: one partition per index value,
  clustered ascending, holding a copy of the document. `list` is one clustering slice:
  `(created_us, key) > (?, ?)` is a multi-column slice in CQL, and `before` reads the slice
  in reverse and flips it back. Copying the document trades write amplification (records
  have at most three indexes) for list pages that need no second lookup per row.
- `claims ((namespace, value)) -> owner`: uniqueness, and the only place that uses
  lightweight transactions (`INSERT ... IF NOT EXISTS`, `DELETE ... IF owner = ?`).

Index maintenance: a put must remove the index entries the previous version of the record was
listed under. Rather than re-deriving them from the old document (which would tie old rows
to today's `indexes()` code), `records.indexes` keeps the (name -> value) map each row was
written with; with `created_us` beside it that names the old `record_index` rows exactly.
`apply` reads those rows for every record of the batch (one partition read each, in
parallel) and deletes only the entries the new version no longer has: a delete and an insert
of the same row in one batch would carry the same timestamp, and Cassandra lets the delete
win such a tie. Two writers putting the same record at the same moment can both read the
same old row and leave a stale index entry behind; ruling that out would take an LWT per
record, and this design keeps LWTs for uniqueness.

`apply(batch)` takes the claims first, each with its own LWT (a claim already held by the same
owner counts as taken). When one is held by another owner, the claims this batch took are
released and ClaimConflict is raised with nothing else written. The puts and deletes then go
in LOGGED batches, a record with its index entries always in the same one; a batch larger
than Cassandra's batch size limit (50 KiB by default) is split into parts of about 32 KiB,
so only each part is atomic (raise batch_size_warn_threshold to 40KiB to keep the server
from warning about every multi-record batch).
A conditional statement cannot share a multi-partition batch, so releases run as LWTs after
the records are written. If the write fails, the claims stay held by their owner, and a
retry of the same batch takes them again as their owner: a name is never left unclaimed
with a record already using it.

The connection is lazy: `open_store(url)` does no I/O and the first call connects, creates
the keyspace and migrates, so the repository opens the same way from sync and async code.
`await CassandraRepository.connect(url)` does that work up front, to fail at start.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from cassandra import ConsistencyLevel, ProtocolVersion
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import BatchStatement, BatchType, PreparedStatement, dict_factory

from trunkline.domain.model import Record
from trunkline.store.repository import Batch, Claim, ClaimConflict, Cursor, R, created_us

DEFAULT_PORT: Final = 9042
DEFAULT_KEYSPACE: Final = "trunkline"
# Cassandra refuses logged batches over batch_size_fail_threshold (50 KiB by default);
# stay well under it by this estimate of the bytes each statement carries.
BATCH_BYTES: Final = 32 * 1024
REQUEST_TIMEOUT: Final = 10.0
READ_AHEAD: Final = 128  # reads of old rows in flight at once while applying a batch

_KEYSPACE_NAME = re.compile(r"[a-z][a-z0-9_]{0,47}")

# (version, what it does, statements); `{ks}` is the keyspace. Append, never edit.
MIGRATIONS: Final[tuple[tuple[int, str, tuple[str, ...]], ...]] = (
    (
        1,
        "records, index partitions, claims",
        (
            """CREATE TABLE IF NOT EXISTS {ks}.records (
                kind text, key text, created_us bigint, doc text,
                indexes frozen<map<text, text>>,
                PRIMARY KEY ((kind, key)))""",
            """CREATE TABLE IF NOT EXISTS {ks}.record_index (
                kind text, name text, value text, created_us bigint, key text, doc text,
                PRIMARY KEY ((kind, name, value), created_us, key))
                WITH CLUSTERING ORDER BY (created_us ASC, key ASC)""",
            """CREATE TABLE IF NOT EXISTS {ks}.claims (
                namespace text, value text, owner text,
                PRIMARY KEY ((namespace, value)))""",
        ),
    ),
)


@dataclass(frozen=True)
class CassandraSettings:
    contact_points: tuple[str, ...]
    port: int
    keyspace: str
    dc: str | None = None
    rf: int = 1

    @classmethod
    def from_url(cls, url: str) -> CassandraSettings:
        parts = urlsplit(url)
        if parts.scheme != "cassandra":
            raise ValueError(f"not a cassandra:// URL: {url!r}")
        pairs = [_host_port(item) for item in parts.netloc.split(",") if item]
        hosts = [host for host, _ in pairs]
        ports = {port for _, port in pairs}
        if not hosts:
            raise ValueError(f"cassandra URL {url!r} names no host")
        if len(ports) > 1:
            raise ValueError(f"cassandra URL {url!r}: the driver takes one port for all hosts")
        keyspace = parts.path.strip("/") or DEFAULT_KEYSPACE
        if not _KEYSPACE_NAME.fullmatch(keyspace):
            raise ValueError(f"keyspace {keyspace!r}: lower-case letters, digits, _; max 48")
        query = parse_qs(parts.query)
        unknown = set(query) - {"dc", "rf"}
        if unknown:
            raise ValueError(f"cassandra URL {url!r}: unknown option(s) {sorted(unknown)}")
        rf = int(query.get("rf", ["1"])[-1])
        if rf < 1:
            raise ValueError(f"cassandra URL {url!r}: rf must be at least 1")
        dc = query.get("dc", [None])[-1] or None
        return cls(tuple(hosts), ports.pop(), keyspace, dc, rf)


@dataclass(frozen=True)
class _Connection:
    cluster: Cluster
    session: Session
    get: PreparedStatement
    old: PreparedStatement
    page: PreparedStatement
    page_after: PreparedStatement
    page_before: PreparedStatement
    page_between: PreparedStatement
    count: PreparedStatement
    holder: PreparedStatement
    claim: PreparedStatement
    release: PreparedStatement
    put_record: PreparedStatement
    delete_record: PreparedStatement
    put_entry: PreparedStatement
    delete_entry: PreparedStatement


Entry = tuple[str, str, int]  # (index name, value, created_us)
Write = tuple[PreparedStatement, tuple[object, ...], int]  # statement, arguments, bytes


class CassandraRepository:
    def __init__(self, settings: CassandraSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()  # not asyncio's: the first call may come from any loop
        self._conn: _Connection | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> CassandraRepository:
        return cls(CassandraSettings.from_url(url))

    @classmethod
    async def connect(cls, url: str) -> CassandraRepository:
        """A repository already connected, its keyspace created and migrated."""
        repo = cls.from_url(url)
        await repo._connection()
        return repo

    async def get(self, kind: type[R], key: str) -> R | None:
        conn = await self._connection()
        rows = await _execute(conn.session, conn.get, (kind.KIND, key))
        return kind.from_doc(json.loads(rows[0]["doc"])) if rows else None

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
        if limit <= 0:
            return []  # CQL refuses LIMIT 0; SQLite answers it with nothing
        conn = await self._connection()
        partition: tuple[object, ...] = (kind.KIND, index, value)
        if after is not None and before is not None:
            statement = conn.page_between
            args = (*partition, after.created_us, after.key, before.created_us, before.key)
        elif after is not None:
            statement, args = conn.page_after, (*partition, after.created_us, after.key)
        elif before is not None:
            statement, args = conn.page_before, (*partition, before.created_us, before.key)
        else:
            statement, args = conn.page, partition
        rows = await _execute(conn.session, statement, (*args, limit))
        if statement is conn.page_before:
            rows.reverse()  # read descending to get the `limit` nearest; the contract is ascending
        return [kind.from_doc(json.loads(row["doc"])) for row in rows]

    async def count(self, kind: type[R], index: str, value: str, *, limit: int) -> int:
        if limit <= 0:
            return 0
        conn = await self._connection()
        # count(*) would count the whole partition before LIMIT applies to its one result row.
        rows = await _execute(conn.session, conn.count, (kind.KIND, index, value, limit))
        return len(rows)

    async def holder(self, namespace: str, value: str) -> str | None:
        conn = await self._connection()
        rows = await _execute(conn.session, conn.holder, (namespace, value))
        return str(rows[0]["owner"]) if rows else None

    async def apply(self, batch: Batch) -> None:
        conn = await self._connection()
        await self._take(conn, batch.claims)
        await self._write(conn, batch)
        await asyncio.gather(*(self._release(conn, claim) for claim in batch.releases))

    async def close(self) -> None:
        # In a thread: the lock may be held by a connection being made, which takes seconds.
        await asyncio.to_thread(self._close_blocking)

    async def _take(self, conn: _Connection, claims: Sequence[Claim]) -> None:
        taken: list[Claim] = []
        for claim in claims:  # one at a time, so a conflict stops before taking more
            rows = await _execute(
                conn.session, conn.claim, (claim.namespace, claim.value, claim.owner)
            )
            row = rows[0]
            if row["[applied]"]:
                taken.append(claim)
            elif row["owner"] != claim.owner:
                await asyncio.gather(*(self._release(conn, mine) for mine in taken))
                raise ClaimConflict(claim, str(row["owner"]))

    async def _release(self, conn: _Connection, claim: Claim) -> None:
        await _execute(conn.session, conn.release, (claim.namespace, claim.value, claim.owner))

    async def _write(self, conn: _Connection, batch: Batch) -> None:
        # What each touched record ends as: deletes first, then puts, the last put winning,
        # as SQLite applies them within its transaction.
        final: dict[tuple[str, str], Record | None] = {}
        for gone in batch.deletes:
            final[(gone.KIND, gone.key)] = None
        for put in batch.puts:
            final[(put.KIND, put.key)] = put
        if not final:
            return
        idents = list(final)
        olds: list[list[dict[str, Any]]] = []
        for start in range(0, len(idents), READ_AHEAD):  # an import can touch 100 000 rows
            olds += await asyncio.gather(
                *(_execute(conn.session, conn.old, i) for i in idents[start : start + READ_AHEAD])
            )
        groups = [
            _changes(conn, kind, key, record, old[0] if old else None)
            for ((kind, key), record), old in zip(final.items(), olds, strict=True)
        ]
        for part in _parts(groups):
            logged = BatchStatement(batch_type=BatchType.LOGGED)
            for statement, args in part:
                logged.add(statement, args)
            await _execute(conn.session, logged)

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None:
            return conn
        # Connecting, creating the keyspace and migrating block: run them off the event loop.
        return await asyncio.to_thread(self._connect_blocking)

    def _connect_blocking(self) -> _Connection:
        with self._lock:
            if self._closed:
                raise RuntimeError("the Cassandra repository is closed")
            if self._conn is not None:
                return self._conn
            self._conn = _open(self.settings)
            return self._conn

    def _close_blocking(self) -> None:
        with self._lock:
            conn, self._conn, self._closed = self._conn, None, True
        if conn is not None:
            conn.cluster.shutdown()


def _open(settings: CassandraSettings) -> _Connection:
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=settings.dc)),
        # Quorum in the local data centre: each region reads its own writes without waiting
        # on the others; LWTs agree within the region the same way.
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
        request_timeout=REQUEST_TIMEOUT,
        row_factory=dict_factory,
    )
    cluster = Cluster(
        list(settings.contact_points),
        port=settings.port,
        # Cassandra 4.0 and later speak v5; named, the driver does not open with DSE's
        # protocol and then log the downgrade on every start.
        protocol_version=ProtocolVersion.V5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    try:
        session = cluster.connect()
        _migrate(session, settings)
        return _prepare(cluster, session, settings.keyspace)
    except BaseException:
        cluster.shutdown()
        raise


def _migrate(session: Session, settings: CassandraSettings) -> None:
    # Identifiers cannot be bind markers, so the keyspace is formatted in: from_url let
    # through only names matching _KEYSPACE_NAME.
    ks = settings.keyspace
    dc = settings.dc
    if dc is None:
        dc = str(session.execute("SELECT data_center FROM system.local").one()["data_center"])
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication ="
        f" {{'class': 'NetworkTopologyStrategy', {_literal(dc)}: {settings.rf}}}"
    )
    session.execute(
        f"CREATE TABLE IF NOT EXISTS {ks}.schema_migrations"
        " (version int PRIMARY KEY, description text, applied_at timestamp)"
    )
    applied = {
        row["version"]
        for row in session.execute(f"SELECT version FROM {ks}.schema_migrations")  # noqa: S608
    }
    for version, description, statements in MIGRATIONS:
        if version in applied:
            continue
        for statement in statements:
            session.execute(statement.format(ks=ks))
        session.execute(
            f"INSERT INTO {ks}.schema_migrations (version, description, applied_at)"  # noqa: S608
            " VALUES (%s, %s, toTimestamp(now()))",
            (version, description),
        )


def _prepare(cluster: Cluster, session: Session, ks: str) -> _Connection:
    def p(cql: str) -> PreparedStatement:
        return session.prepare(cql.format(ks=ks))

    partition = "FROM {ks}.record_index WHERE kind = ? AND name = ? AND value = ?"
    holder = p("SELECT owner FROM {ks}.claims WHERE namespace = ? AND value = ?")
    # A serial read sees a claim whose LWT is still in flight: the answer uniqueness needs.
    holder.consistency_level = ConsistencyLevel.LOCAL_SERIAL
    return _Connection(
        cluster=cluster,
        session=session,
        get=p("SELECT doc FROM {ks}.records WHERE kind = ? AND key = ?"),
        old=p("SELECT created_us, indexes FROM {ks}.records WHERE kind = ? AND key = ?"),
        page=p(f"SELECT doc {partition} LIMIT ?"),
        page_after=p(f"SELECT doc {partition} AND (created_us, key) > (?, ?) LIMIT ?"),
        page_before=p(
            f"SELECT doc {partition} AND (created_us, key) < (?, ?)"
            " ORDER BY created_us DESC, key DESC LIMIT ?"
        ),
        page_between=p(
            f"SELECT doc {partition} AND (created_us, key) > (?, ?)"
            " AND (created_us, key) < (?, ?) LIMIT ?"
        ),
        count=p(f"SELECT created_us {partition} LIMIT ?"),
        holder=holder,
        claim=p("INSERT INTO {ks}.claims (namespace, value, owner) VALUES (?, ?, ?) IF NOT EXISTS"),
        release=p("DELETE FROM {ks}.claims WHERE namespace = ? AND value = ? IF owner = ?"),
        put_record=p(
            "INSERT INTO {ks}.records (kind, key, created_us, doc, indexes) VALUES (?, ?, ?, ?, ?)"
        ),
        delete_record=p("DELETE FROM {ks}.records WHERE kind = ? AND key = ?"),
        put_entry=p(
            "INSERT INTO {ks}.record_index (kind, name, value, created_us, key, doc)"
            " VALUES (?, ?, ?, ?, ?, ?)"
        ),
        delete_entry=p(
            "DELETE FROM {ks}.record_index"
            " WHERE kind = ? AND name = ? AND value = ? AND created_us = ? AND key = ?"
        ),
    )


def _changes(
    conn: _Connection,
    kind: str,
    key: str,
    record: Record | None,
    old: Mapping[str, Any] | None,
) -> list[Write]:
    """The statements that turn the stored row `old` into `record` (None: deleted),
    each with an estimate of its size in bytes."""
    before: set[Entry] = set()
    if old is not None:
        before = {(n, v, old["created_us"]) for n, v in (old["indexes"] or {}).items()}
    out: list[Write] = []
    if record is None:
        if old is not None:
            out.append((conn.delete_record, (kind, key), len(kind) + len(key)))
        after: set[Entry] = set()
    else:
        created = created_us(record)
        doc = json.dumps(record.to_doc(), separators=(",", ":"))
        indexes = dict(record.indexes())
        after = {(n, v, created) for n, v in indexes.items()}
        size = len(kind) + len(key) + len(doc)
        out.append((conn.put_record, (kind, key, created, doc, indexes), size + 64))
        out += [
            (conn.put_entry, (kind, n, v, c, key, doc), size + len(n) + len(v))
            for n, v, c in sorted(after)
        ]
    out += [
        (conn.delete_entry, (kind, n, v, c, key), len(kind) + len(key) + len(n) + len(v))
        for n, v, c in sorted(before - after)
    ]
    return out


def _host_port(item: str) -> tuple[str, int]:
    """`host`, `host:port` or `[v6 address]:port`."""
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    elif item.count(":") == 1:
        host, _, port = item.partition(":")
    else:
        host, port = item, ""
    return host, int(port) if port else DEFAULT_PORT


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _parts(
    groups: Iterable[list[Write]],
) -> list[list[tuple[PreparedStatement, tuple[object, ...]]]]:
    """Whole groups packed into parts of about BATCH_BYTES; a group is never split."""
    parts: list[list[tuple[PreparedStatement, tuple[object, ...]]]] = []
    current: list[tuple[PreparedStatement, tuple[object, ...]]] = []
    size = 0
    for group in groups:
        group_size = sum(s for _, _, s in group)
        if current and size + group_size > BATCH_BYTES:
            parts.append(current)
            current, size = [], 0
        current += [(statement, args) for statement, args, _ in group]
        size += group_size
    if current:
        parts.append(current)
    return parts


async def _execute(
    session: Session, statement: Any, args: Sequence[object] | None = None
) -> list[dict[str, Any]]:
    """Run `statement` with the driver's own async API; every page's rows, on this loop."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[dict[str, Any]]] = loop.create_future()
    rows: list[dict[str, Any]] = []
    response = session.execute_async(statement, args)

    # Both run on the driver's I/O thread: hand the outcome to the loop, never touch it here.
    def on_page(page: Iterable[dict[str, Any]] | None) -> None:
        try:
            rows.extend(page or ())  # writes answer with no rows at all
            if response.has_more_pages:
                response.start_fetching_next_page()
                return
        except Exception as error:  # the driver would log and drop it, leaving us waiting
            loop.call_soon_threadsafe(_settle, done, None, error)
            return
        loop.call_soon_threadsafe(_settle, done, rows, None)

    def on_error(error: BaseException) -> None:
        loop.call_soon_threadsafe(_settle, done, None, error)

    response.add_callbacks(on_page, on_error)
    return await done


def _settle(
    future: asyncio.Future[list[dict[str, Any]]],
    rows: list[dict[str, Any]] | None,
    error: BaseException | None,
) -> None:
    if future.done():  # the awaiting task was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(rows or [])
