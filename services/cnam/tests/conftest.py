"""A real SQLite store per test and a real nats-server per session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from trunkline.events.testing import NatsServer
from trunkline.store import Repository, open_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Repository]:
    repository = open_store(f"sqlite:///{tmp_path / 'cnam.db'}")
    yield repository
    await repository.close()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with NatsServer(tmp_path_factory.mktemp("nats")) as server:
        yield server
