"""What the Cassandra backend adds to the contract: its URL, keyspace, migrations, lazy start."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from cassandra.cluster import NoHostAvailable

from trunkline.domain.model import Trunk
from trunkline.store import Batch, connect_store, open_store
from trunkline.store.cassandra import MIGRATIONS, CassandraRepository, CassandraSettings


def test_url_names_hosts_port_keyspace_dc_and_rf() -> None:
    settings = CassandraSettings.from_url(
        "cassandra://db1:9142,db2:9142/trunkline_prod?dc=dublin&rf=3"
    )
    assert settings == CassandraSettings(("db1", "db2"), 9142, "trunkline_prod", "dublin", 3)


def test_url_defaults_port_keyspace_and_replication() -> None:
    settings = CassandraSettings.from_url("cassandra://[::1]")
    assert settings == CassandraSettings(("::1",), 9042, "trunkline", None, 1)


@pytest.mark.parametrize(
    "url",
    [
        "cassandra:///ks",  # no host
        "cassandra://a:9042,b:9043/ks",  # the driver takes one port
        "cassandra://a/Bad-Name",  # keyspace names are formatted into CQL: checked strictly
        "cassandra://a/ks?rf=0",
        "cassandra://a/ks?replication=3",
    ],
)
def test_url_mistakes_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"cassandra URL|keyspace"):
        CassandraSettings.from_url(url)


def test_open_store_picks_the_backend_by_scheme() -> None:
    assert isinstance(open_store("cassandra://127.0.0.1:19042/ks"), CassandraRepository)
    with pytest.raises(ValueError, match="unsupported store URL"):
        open_store("postgres://db/x")


async def test_connect_store_fails_at_once_when_no_node_answers() -> None:
    # Port 1 on loopback: connection refused, no waiting on a timeout.
    with pytest.raises(NoHostAvailable):
        await connect_store("cassandra://127.0.0.1:1/nowhere")


@pytest.mark.e2e
async def test_keyspace_is_network_topology_in_the_nodes_data_centre(
    harness_cassandra: Mapping[str, Any], fresh_keyspace: str, cassandra_admin: Any
) -> None:
    store = await connect_store(f"{harness_cassandra['url']}/{fresh_keyspace}?rf=1")
    await store.close()
    row = cassandra_admin.execute(
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
        (fresh_keyspace,),
    ).one()
    assert dict(row["replication"]) == {
        "class": "org.apache.cassandra.locator.NetworkTopologyStrategy",
        harness_cassandra["dc"]: "1",
    }


@pytest.mark.e2e
async def test_migrations_are_recorded_and_reapplied_harmlessly(
    harness_cassandra: Mapping[str, Any], fresh_keyspace: str, cassandra_admin: Any
) -> None:
    url = f"{harness_cassandra['url']}/{fresh_keyspace}?dc={harness_cassandra['dc']}"
    for _ in range(2):  # a second start finds every migration applied
        store = await connect_store(url)
        await store.close()
    versions = [
        row["version"]
        for row in cassandra_admin.execute(
            f"SELECT version FROM {fresh_keyspace}.schema_migrations"  # noqa: S608 - our own name
        )
    ]
    assert sorted(versions) == [version for version, _, _ in MIGRATIONS]


@pytest.mark.e2e
def test_a_store_opened_in_sync_code_connects_on_first_use(
    harness_cassandra: Mapping[str, Any], fresh_keyspace: str
) -> None:
    url = f"{harness_cassandra['url']}/{fresh_keyspace}?dc={harness_cassandra['dc']}"
    store = open_store(url)  # no event loop here, and no I/O yet
    trunk = Trunk(sid="TK" + "7" * 32, account_sid="AC" + "7" * 32)
    # Each asyncio.run is a new event loop: the connection is not tied to the first one.
    asyncio.run(store.apply(Batch().put(trunk)))
    assert asyncio.run(store.get(Trunk, trunk.sid)) == trunk
    asyncio.run(store.close())
