"""Cassandra from the harness: CQL through cassandra-driver, the way the store uses it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import pytest
from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import DCAwareRoundRobinPolicy

pytestmark = pytest.mark.e2e


def test_cql_keyspace_table_insert_select(harness_cassandra: Mapping[str, Any]) -> None:
    dc = harness_cassandra["dc"]
    profile = ExecutionProfile(
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc=dc),
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        request_timeout=30,
    )
    cluster = Cluster(
        [harness_cassandra["host"]],
        port=harness_cassandra["port"],
        protocol_version=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    # A unique keyspace: the harness keeps its data across runs and tests share the node.
    keyspace = f"smoke_{uuid.uuid4().hex[:16]}"
    try:
        session = cluster.connect()
        version = session.execute("SELECT release_version FROM system.local").one()
        assert version.release_version.startswith("5.0.")
        session.execute(
            f"CREATE KEYSPACE {keyspace} WITH replication ="
            f" {{'class': 'NetworkTopologyStrategy', '{dc}': 1}}"
        )
        try:
            session.execute(
                f"CREATE TABLE {keyspace}.calls (trunk text, started timeuuid, callee text,"
                " PRIMARY KEY ((trunk), started)) WITH CLUSTERING ORDER BY (started DESC)"
            )
            insert = session.prepare(
                f"INSERT INTO {keyspace}.calls (trunk, started, callee)"  # noqa: S608 - ours
                " VALUES (?, now(), ?)"
            )
            for callee in ("+14155550100", "+14155550101"):
                session.execute(insert, ("TK1", callee))
            rows = session.execute(
                f"SELECT callee FROM {keyspace}.calls WHERE trunk = %s",  # noqa: S608 - ours
                ("TK1",),
            )
            assert [row.callee for row in rows] == ["+14155550101", "+14155550100"]
            replication = session.execute(
                "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
                (keyspace,),
            ).one()
            assert replication.replication[dc] == "1"
        finally:
            session.execute(f"DROP KEYSPACE {keyspace}")
    finally:
        cluster.shutdown()
