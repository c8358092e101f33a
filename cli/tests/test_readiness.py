"""Waiting for the platform: failures name the program and quote its log."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from trunkline.cli.datadir import DataDir
from trunkline.cli.programs import Program, TcpProbe
from trunkline.cli.readiness import Interrupted, NotReady, wait_until_ready
from trunkline.cli.supervisor_rpc import ProcessInfo


class FakeSupervisor:
    def __init__(self, state: str) -> None:
        self.state = state

    def processes(self) -> list[ProcessInfo]:
        return [ProcessInfo("api", self.state, 0, "Exited too quickly", 1)]


class Alive:
    returncode: int | None = None

    def poll(self) -> int | None:
        return None


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def wait(data: DataDir, supervisor: Any, program: Program, timeout: float = 5.0) -> None:
    event = threading.Event()
    wait_until_ready(data, [program], supervisor, Alive(), timeout, event)


def test_a_fatal_program_fails_at_once_with_its_log(tmp_path: Path) -> None:
    data = DataDir.at(tmp_path)
    data.create()
    data.log_file("api").write_text("Traceback\nModuleNotFoundError: no trunkline.api\n")
    program = Program("api", ("x",), probes=(TcpProbe("127.0.0.1", closed_port()),))
    with pytest.raises(NotReady) as failure:
        wait(data, FakeSupervisor("FATAL"), program)
    assert "api is FATAL" in str(failure.value)
    assert "ModuleNotFoundError: no trunkline.api" in str(failure.value)


def test_a_program_that_never_answers_times_out(tmp_path: Path) -> None:
    data = DataDir.at(tmp_path)
    data.create()
    program = Program("api", ("x",), probes=(TcpProbe("127.0.0.1", closed_port()),))
    with pytest.raises(NotReady) as failure:
        wait(data, FakeSupervisor("RUNNING"), program, timeout=0.3)
    assert "api is not ready after 0.3s (state RUNNING, waiting for tcp" in str(failure.value)


def test_a_listening_program_is_ready(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        program = Program("api", ("x",), probes=(TcpProbe("127.0.0.1", port),))
        wait(DataDir.at(tmp_path), FakeSupervisor("RUNNING"), program)


def test_a_stop_request_interrupts_the_wait(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    program = Program("api", ("x",), probes=(TcpProbe("127.0.0.1", closed_port()),))
    with pytest.raises(Interrupted):
        wait_until_ready(
            DataDir.at(tmp_path),
            [program],
            FakeSupervisor("STARTING"),
            Alive(),
            5,
            stop,
        )


def test_answering_is_not_ready_until_supervisord_counts_it_started(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        program = Program("api", ("x",), probes=(TcpProbe("127.0.0.1", port),))
        with pytest.raises(NotReady) as failure:
            wait(DataDir.at(tmp_path), FakeSupervisor("STARTING"), program, timeout=0.3)
    assert "(state STARTING, waiting for RUNNING)" in str(failure.value)
