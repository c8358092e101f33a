"""A live API server on loopback for the tests, driven by the official `twilio` package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from twilio.rest import Client

from trunkline.api.testing import LiveApi, serve_in_thread


@pytest.fixture(scope="session")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    db = Path(tmp_path_factory.mktemp("api")) / "trunkline.db"
    with serve_in_thread(db) as api:
        yield api


@pytest.fixture
def account(live_api: LiveApi) -> tuple[str, str]:
    """A fresh tenant per test, so tests never see each other's resources."""
    return live_api.new_account()


@pytest.fixture
def client(live_api: LiveApi, account: tuple[str, str]) -> Client:
    return live_api.client(*account)


@pytest.fixture
def other_client(live_api: LiveApi) -> Client:
    """A second, unrelated tenant, for isolation tests."""
    return live_api.client(*live_api.new_account("Other tenant"))
