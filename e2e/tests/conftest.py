"""Fixtures of the end-to-end tests: the real `trunkline up`, torn down whatever happens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from trunkline.cli.datadir import DataDir
from trunkline.cli.testing import Launcher, free_ports


@pytest.fixture
def trunkline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    # A short base path: supervisord's unix socket path must fit in 108 bytes.
    data = DataDir.at(tmp_path_factory.mktemp("tl") / "data")
    api_port, nats_port, monitor_port = free_ports(3)
    launcher = Launcher(data, api_port, nats_port, monitor_port)
    try:
        yield launcher
    finally:
        launcher.cleanup()
