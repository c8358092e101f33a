"""A real SQLite store per test, and a writer that fills it the way the API does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from trunkline.auth.testing import ConfigWriter
from trunkline.store import Repository, open_store

REALM = "trunkline.test"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Repository]:
    repository = open_store(f"sqlite:///{tmp_path / 'auth.db'}")
    yield repository
    await repository.close()


@pytest.fixture
def writer(store: Repository) -> ConfigWriter:
    return ConfigWriter(store, realm=REALM)
