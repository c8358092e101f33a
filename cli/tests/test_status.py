"""`trunkline status` when nothing runs."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from trunkline.cli.main import cli


def test_status_of_a_stopped_platform_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output == f"Trunkline is not running (data dir {tmp_path.resolve()}).\n"


def test_a_stale_socket_counts_as_not_running(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "supervisor.sock").touch()
    result = CliRunner().invoke(cli, ["status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
