"""Run the real `trunkline up` as a subprocess in tests, and always clean up after it.

For end-to-end tests (e2e/): on Linux, since it finds leftover processes through /proc.

Each launch gets its own session (start_new_session), so every process it starts (supervisord
and the programs, each in its own process group) shares that session id: the teardown and
the "nothing left behind" check find them all through /proc, whoever their parent is now.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trunkline.cli.banner import READY_LINE
from trunkline.cli.datadir import DataDir, tail

START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 45.0


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def session_members(session_id: int) -> list[int]:
    """Live (or zombie) processes of a session, from /proc/<pid>/stat."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command (which may hold spaces): state ppid pgrp session ...
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == session_id and int(entry.name) != session_id:
            members.append(int(entry.name))
    return members


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def trunkline_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "trunkline.cli", *args]


@dataclass
class RunningPlatform:
    process: subprocess.Popen[bytes]
    data: DataDir
    output_file: Path
    api_url: str
    nats_url: str

    def output(self) -> str:
        return self.output_file.read_text(errors="replace")

    def diagnostics(self) -> str:
        logs = "\n".join(
            f"--- {log.name}\n{tail(log, 30)}" for log in sorted(self.data.logs.glob("*.log"))
        )
        return f"--- trunkline up output\n{self.output()}\n{logs}"

    def trunkline(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run another `trunkline` command on this platform's data dir."""
        command, *rest = args
        return subprocess.run(  # noqa: S603 (our own command line)
            trunkline_command(command, "--data-dir", str(self.data.root), *rest),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def status(self) -> subprocess.CompletedProcess[str]:
        return self.trunkline("status")

    def leftover_processes(self) -> list[int]:
        """Processes `trunkline up` started that still exist (it must leave none behind)."""
        return session_members(self.process.pid)

    def stop(self, signum: signal.Signals = signal.SIGINT) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"trunkline up did not stop on {signum.name}\n{self.diagnostics()}"
            ) from None


@dataclass
class Launcher:
    """Starts `trunkline up` on one data dir and fixed free ports, as often as a test asks."""

    data: DataDir
    api_port: int
    nats_port: int
    nats_monitor_port: int
    extra_args: tuple[str, ...] = ()  # more `trunkline up` options, e.g. ("--store", url)
    media_port: int = field(default_factory=lambda: free_ports(1)[0])
    auth_port: int = field(default_factory=lambda: free_ports(1)[0])
    cnam_port: int = field(default_factory=lambda: free_ports(1)[0])
    sip_port: int = field(default_factory=lambda: free_ports(1)[0])
    sip_tls_port: int = field(default_factory=lambda: free_ports(1)[0])
    launched: list[RunningPlatform] = field(default_factory=list)

    def start(self) -> RunningPlatform:
        output_file = self.data.root.parent / f"up-{len(self.launched)}.out"
        with output_file.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603 (our own command line)
                trunkline_command(
                    "up",
                    "--data-dir", str(self.data.root),
                    "--host", "127.0.0.1",
                    "--api-port", str(self.api_port),
                    "--nats-port", str(self.nats_port),
                    "--nats-monitor-port", str(self.nats_monitor_port),
                    "--media-port", str(self.media_port),
                    "--auth-port", str(self.auth_port),
                    "--cnam-port", str(self.cnam_port),
                    "--sip-port", str(self.sip_port),
                    "--sip-tls-port", str(self.sip_tls_port),
                    "--timeout", "60",
                    *self.extra_args,
                ),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        platform = RunningPlatform(
            process=process,
            data=self.data,
            output_file=output_file,
            api_url=f"http://127.0.0.1:{self.api_port}",
            nats_url=f"nats://127.0.0.1:{self.nats_port}",
        )
        self.launched.append(platform)

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(
                    f"trunkline up exited with {process.returncode} before it was ready\n"
                    f"{platform.diagnostics()}"
                )
            return READY_LINE in platform.output()

        try:
            wait_for(ready, START_TIMEOUT_SECONDS, "the banner of trunkline up", interval=0.2)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{platform.diagnostics()}") from None
        return platform

    def cleanup(self) -> None:
        for platform in self.launched:
            process = platform.process
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=STOP_TIMEOUT_SECONDS)
            for pid in [process.pid, *platform.leftover_processes()]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
