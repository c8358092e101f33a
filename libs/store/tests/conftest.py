"""Store URLs for the contract tests: every backend, each test in a store of its own.

Cassandra comes from the harness (`harness_cassandra`, started once per session, skipped with
a message only when TRUNKLINE_HARNESS_DISABLE names it); each test gets a fresh keyspace,
dropped afterwards, so tests share a node but no data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

# Cassandra is a real process: `pytest -m "not e2e"` (make unit) runs SQLite alone.
BACKENDS = ["sqlite", pytest.param("cassandra", marks=pytest.mark.e2e)]


@pytest.fixture(scope="session")
def cassandra_admin(harness_cassandra: Mapping[str, Any]) -> Iterator[Any]:
    """A plain driver session on the harness node, for what tests do beside the store."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy
    from cassandra.query import dict_factory

    profile = ExecutionProfile(
        load_balancing_policy=DCAwareRoundRobinPolicy(local_dc=harness_cassandra["dc"]),
        row_factory=dict_factory,
        request_timeout=60,
    )
    cluster = Cluster(
        [harness_cassandra["host"]],
        port=harness_cassandra["port"],
        protocol_version=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()


def cassandra_url(endpoints: Mapping[str, Any], keyspace: str) -> str:
    return f"{endpoints['url']}/{keyspace}?dc={endpoints['dc']}&rf=1"


@pytest.fixture
def fresh_keyspace(cassandra_admin: Any) -> Iterator[str]:
    """A keyspace name no test used before; dropped after the test."""
    keyspace = f"test_{uuid.uuid4().hex[:20]}"
    try:
        yield keyspace
    finally:
        cassandra_admin.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty store on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'contract.db'}"
    endpoints = request.getfixturevalue("harness_cassandra")
    return cassandra_url(endpoints, request.getfixturevalue("fresh_keyspace"))
