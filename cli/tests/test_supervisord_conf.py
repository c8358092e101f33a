"""supervisord.conf as supervisord itself reads it: commands, environments, order, sockets."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from supervisor.options import ServerOptions

from trunkline.cli.datadir import DataDir
from trunkline.cli.programs import Platform, Program, build_programs
from trunkline.cli.supervisord_conf import render


def platform(root: Path) -> Platform:
    return Platform(
        data=DataDir.at(root),
        host="127.0.0.1",
        api_port=18080,
        nats_port=14222,
        nats_monitor_port=18222,
        zone="trunkline.local",
        admin_token="tok-en_123",
        store_url=f"sqlite:///{root}/trunkline.db",
    )


def parsed(data: DataDir, programs: list[Program]) -> dict[str, Any]:
    """Write the config and load it with supervisord's own parser."""
    data.create()
    data.supervisord_conf.write_text(render(data, programs))
    options = ServerOptions()
    options.realize(args=["-c", str(data.supervisord_conf)])
    return {
        config.name: config
        for group in options.process_group_configs
        for config in group.process_configs
    } | {"__server__": options}


def test_supervisord_reads_every_program_in_table_order(tmp_path: Path) -> None:
    p = platform(tmp_path / "data")
    configs = parsed(p.data, build_programs(p))
    assert configs["nats"].priority < configs["api"].priority
    assert configs["api"].environment["TRUNKLINE_ADMIN_TOKEN"] == "tok-en_123"
    assert configs["api"].environment["TRUNKLINE_STORE"] == (
        f"sqlite:///{tmp_path / 'data' / 'trunkline.db'}"
    )
    assert configs["api"].stdout_logfile == str(tmp_path / "data" / "logs" / "api.log")
    assert configs["nats"].stopasgroup and configs["nats"].killasgroup


def test_control_socket_lives_in_run_dir_and_is_owner_only(tmp_path: Path) -> None:
    p = platform(tmp_path / "data")
    options = parsed(p.data, build_programs(p))["__server__"]
    [server] = options.server_configs
    assert server["file"] == str(p.data.supervisord_socket)
    assert server["chmod"] == 0o700
    assert options.nodaemon


def test_paths_with_spaces_and_percent_survive_supervisord_expansion(tmp_path: Path) -> None:
    p = platform(tmp_path / "my data 100%")
    program = Program(
        name="odd",
        command=("/bin/echo", "two words", "50%", "$HOME"),
        environment={"ODD_PATH": str(p.data.root), "ODD_URL": "http://x/?a=1,b=2"},
    )
    configs = parsed(p.data, [program])
    assert shlex.split(configs["odd"].command) == ["/bin/echo", "two words", "50%", "$HOME"]
    assert configs["odd"].environment == {
        "ODD_PATH": str(p.data.root),
        "ODD_URL": "http://x/?a=1,b=2",
    }


@pytest.mark.parametrize("value", ['say "hi"', "'quoted'", "line\nbreak"])
def test_values_supervisord_would_mangle_are_refused(tmp_path: Path, value: str) -> None:
    program = Program(name="bad", command=("/bin/true",), environment={"BAD": value})
    with pytest.raises(ValueError):
        render(DataDir.at(tmp_path), [program])
