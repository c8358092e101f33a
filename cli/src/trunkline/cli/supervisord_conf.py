"""Render supervisord.conf for the embedded platform (pure: settings in, text out)."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence

from trunkline.cli.datadir import DataDir
from trunkline.cli.programs import Program

# Seconds a program must stay up before supervisord calls it RUNNING, how often it retries
# a program that dies while starting, and how long it waits for a clean stop before SIGKILL.
START_SECONDS = 1
START_RETRIES = 3
STOP_WAIT_SECONDS = 10


def _value(text: str) -> str:
    """Escape a value for supervisord, which expands %(name)s in most values."""
    if "\n" in text or "\r" in text:
        raise ValueError(f"supervisord config values cannot span lines: {text!r}")
    return text.replace("%", "%%")


def _command(argv: Sequence[str]) -> str:
    # supervisord splits `command` with shlex.split, the inverse of shlex.join.
    return _value(shlex.join(argv))


def _environment(environment: Mapping[str, str]) -> str:
    # supervisord reads KEY="value",... with a non-POSIX shlex that cannot escape a quote and
    # then strips quotes from both ends, so such values would arrive cut; refuse them instead.
    pairs = []
    for key, value in environment.items():
        if not key.isidentifier() or '"' in value or value[-1:] == "'" or value[:1] == "'":
            raise ValueError(f"cannot pass {key}={value!r} through supervisord's environment")
        pairs.append(f'{key}="{_value(value)}"')
    return ",".join(pairs)


def _section(name: str, options: Iterable[tuple[str, str | int]]) -> str:
    lines = [f"[{name}]"] + [f"{key}={value}" for key, value in options]
    return "\n".join(lines) + "\n"


def render(data: DataDir, programs: Sequence[Program]) -> str:
    sections = [
        "; Written by `trunkline up` on every start; edits are overwritten.\n",
        _section(
            "unix_http_server",
            [("file", _value(str(data.supervisord_socket))), ("chmod", "0700")],
        ),
        _section(
            "supervisord",
            [
                ("logfile", _value(str(data.log_file("supervisord")))),
                ("logfile_maxbytes", "10MB"),
                ("logfile_backups", 3),
                ("pidfile", _value(str(data.supervisord_pidfile))),
                ("childlogdir", _value(str(data.logs))),
                ("directory", _value(str(data.root))),
                ("identifier", "trunkline"),
                ("nodaemon", "true"),
                # `trunkline up` prints its own banner; supervisord's log stays in its file.
                ("silent", "true"),
            ],
        ),
        _section(
            "rpcinterface:supervisor",
            [("supervisor.rpcinterface_factory", "supervisor.rpcinterface:make_main_rpcinterface")],
        ),
        _section("supervisorctl", [("serverurl", _value(f"unix://{data.supervisord_socket}"))]),
    ]
    for index, program in enumerate(programs):
        options: list[tuple[str, str | int]] = [
            ("command", _command(program.command)),
            ("directory", _value(str(data.root))),
            # Table order is start order; supervisord stops in reverse priority order.
            ("priority", (index + 1) * 10),
            ("autostart", "true"),
            ("autorestart", "true"),
            ("startsecs", START_SECONDS),
            ("startretries", START_RETRIES),
            ("stopsignal", program.stop_signal),
            ("stopwaitsecs", STOP_WAIT_SECONDS),
            # Signal the whole process group, so workers a service forks stop with it.
            ("stopasgroup", "true"),
            ("killasgroup", "true"),
            # The store holds account credentials: nothing a service writes is for others.
            ("umask", "077"),
            ("redirect_stderr", "true"),
            # supervisord expands a program's log file name twice (options.py, 4.2 and 4.3).
            ("stdout_logfile", _value(_value(str(data.log_file(program.name))))),
            ("stdout_logfile_maxbytes", "10MB"),
            ("stdout_logfile_backups", 3),
        ]
        if program.environment:
            options.append(("environment", _environment(program.environment)))
        sections.append(_section(f"program:{program.name}", options))
    return "\n".join(sections)
