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


def test_up_refuses_a_busy_sip_tls_port_before_making_a_certificate(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = CliRunner().invoke(
            cli, ["up", "--data-dir", str(tmp_path / "d"), "--sip-tls-port", str(port)]
        )
    assert result.exit_code == 1
    assert f"127.0.0.1:{port} (signaling" in result.output
    assert not (tmp_path / "d" / "sip-tls-cert.pem").exists()


def test_up_refuses_tls_on_the_sip_port(tmp_path: Path) -> None:
    args = ["up", "--data-dir", str(tmp_path / "d"), "--sip-port", "5070", "--sip-tls-port", "5070"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "--sip-tls-port must differ from --sip-port (5070)" in result.output
    assert not (tmp_path / "d").exists()


def test_up_refuses_a_data_dir_too_long_for_a_unix_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 120)
    result = CliRunner().invoke(cli, ["up", "--data-dir", str(deep)])
    assert result.exit_code == 1
    assert "too long" in result.output
    assert not deep.exists()
