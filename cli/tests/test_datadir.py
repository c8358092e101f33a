"""The data dir: owner-only secrets, a private run dir, and a token that survives restarts."""

from __future__ import annotations

import stat
from pathlib import Path

from trunkline.cli.datadir import DataDir, tail, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_run_dir_is_owner_only(tmp_path: Path) -> None:
    data = DataDir.at(tmp_path / "data")
    data.create()
    data.run.chmod(0o755)
    data.create()
    assert mode(data.run) == 0o700
    assert data.logs.is_dir() and data.nats.is_dir()


def test_admin_token_is_created_once_and_reused(tmp_path: Path) -> None:
    data = DataDir.at(tmp_path)
    data.create()
    token, created = data.load_or_create_admin_token()
    again, created_again = data.load_or_create_admin_token()
    assert created and not created_again
    assert token == again == data.read_admin_token()
    assert len(token) >= 40
    assert mode(data.admin_token_file) == 0o600


def test_bootstrap_file_is_owner_only(tmp_path: Path) -> None:
    data = DataDir.at(tmp_path)
    data.write_bootstrap({"account_sid": "AC1", "auth_token": "t"})
    assert mode(data.bootstrap_file) == 0o600
    assert data.read_bootstrap() == {"account_sid": "AC1", "auth_token": "t"}


def test_write_private_replaces_a_world_readable_file(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_text("old")
    target.chmod(0o644)
    write_private(target, "new")
    assert target.read_text() == "new" and mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {n}\n" for n in range(100)))
    assert tail(log, 3) == "line 97\nline 98\nline 99"
    assert "does not exist" in tail(tmp_path / "missing.log")
