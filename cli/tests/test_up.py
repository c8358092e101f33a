"""Checks `trunkline up` makes before it starts anything."""

from __future__ import annotations

import socket
from pathlib import Path

from click.testing import CliRunner

from trunkline.cli.main import cli
from trunkline.cli.programs import Program
from trunkline.cli.up import busy_addresses


def test_a_port_in_use_is_reported_with_its_program() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        busy = busy_addresses([Program("api", ("x",), listens=(("127.0.0.1", port),))])
    assert busy == [f"127.0.0.1:{port} (api: Address already in use)"]


def test_up_refuses_busy_ports_before_starting_supervisord(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = CliRunner().invoke(
            cli, ["up", "--data-dir", str(tmp_path / "d"), "--api-port", str(port)]
        )
    assert result.exit_code == 1
    assert "address already in use" in result.output
    assert f"127.0.0.1:{port} (api" in result.output
    assert not (tmp_path / "d" / "run" / "supervisor.sock").exists()


def test_up_refuses_a_data_dir_too_long_for_a_unix_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 120)
    result = CliRunner().invoke(cli, ["up", "--data-dir", str(deep)])
    assert result.exit_code == 1
    assert "too long" in result.output
    assert not deep.exists()
