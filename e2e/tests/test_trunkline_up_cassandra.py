"""`trunkline up --store cassandra://...` keeps the platform's configuration in Cassandra."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from trunkline.cli.datadir import DataDir
from trunkline.cli.testing import Launcher, free_ports
from trunkline.domain.model import Account, Trunk
from trunkline.store import open_store

pytestmark = pytest.mark.e2e


def test_up_with_a_cassandra_store_writes_there(
    harness_cassandra: Mapping[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    keyspace = f"tl_up_{secrets.token_hex(4)}"
    url = (
        f"cassandra://{harness_cassandra['host']}:{harness_cassandra['port']}/{keyspace}"
        f"?dc={harness_cassandra['dc']}"
    )
    data = DataDir.at(Path(tmp_path_factory.mktemp("tlc")) / "data")
    launcher = Launcher(data, *free_ports(3), extra_args=("--store", url))
    try:
        platform = launcher.start()
        boot = json.loads(data.bootstrap_file.read_text())
        auth = (boot["account_sid"], boot["auth_token"])
        resp = httpx.post(
            f"{platform.api_url}/v1/Trunks", data={"FriendlyName": "in cassandra"}, auth=auth
        )
        assert resp.status_code == 201, resp.text
        trunk_sid = resp.json()["sid"]
        # No SQLite file: the data is in the keyspace, where a second client finds it.
        assert not data.database.exists()

        async def read() -> tuple[Account | None, Trunk | None]:
            store = open_store(url)
            try:
                return (
                    await store.get(Account, boot["account_sid"]),
                    await store.get(Trunk, trunk_sid),
                )
            finally:
                await store.close()

        account, trunk = asyncio.run(read())
        assert account is not None and trunk is not None
        assert trunk.friendly_name == "in cassandra"
        assert platform.stop() == 0
    finally:
        launcher.cleanup()
