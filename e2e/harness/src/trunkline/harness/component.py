"""The shape every harness component has, and the processes it runs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


def cache_dir() -> Path:
    """Downloads and builds, kept across runs and checkouts."""
    base = os.environ.get("TRUNKLINE_HARNESS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "trunkline-harness"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir() -> Path:
    """Data, logs and pid files of the running harness (one per machine by default)."""
    path = Path(os.environ.get("TRUNKLINE_HARNESS_RUN") or "/tmp/trunkline-harness")  # noqa: S108
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def logs_dir() -> Path:
    path = run_dir() / "logs"
    path.mkdir(exist_ok=True)
    return path


class NotReady(Exception):
    """A component did not become ready in time; the message says where its log is."""


class Component(Protocol):
    name: str

    def install(self) -> None:
        """Fetch or build into cache_dir(); a no-op when the cache already has it."""

    def start(self) -> dict[str, Any]:
        """Start the processes and wait until ready; return the endpoints clients need."""

    def ready(self, endpoints: Mapping[str, Any]) -> bool:
        """Whether the running component answers now."""

    def stop(self, endpoints: Mapping[str, Any]) -> None:
        """Stop what start() started (pids are in the endpoints)."""


@dataclass
class Process:
    """One started server process, its log, and how to stop it."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None

    @property
    def log(self) -> Path:
        return logs_dir() / f"{self.name}.log"

    def spawn(self) -> int:
        out = self.log.open("ab")
        proc = subprocess.Popen(
            list(self.argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
            cwd=self.cwd,
            start_new_session=True,  # its own process group: stop() ends its children too
        )
        return proc.pid


def wait_until(check: Callable[[], bool], timeout: float, what: str, log: Path | None) -> None:
    """Poll `check` until true; on timeout raise NotReady with the log's tail."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - not up yet is every kind of failure
            pass
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    tail = ""
    if log is not None and log.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    raise NotReady(f"{what} not ready after {timeout:.0f} s; log {log}:\n{tail}")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def stop_pid(pid: int, timeout: float = 20) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `timeout`."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it was our child
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def apt_install(packages: Sequence[str]) -> None:
    """`apt-get install` the packages, refreshing the package lists first only when needed.

    A fresh machine may have no lists (or old ones); `apt-get update` is slow and needs the
    network, so it runs only when apt does not know a package yet.
    """
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Others (another harness component, a developer) may hold apt's lock for a while.
    wait_for_lock = ["-o", "DPkg::Lock::Timeout=600"]
    policy = subprocess.run(
        ["apt-cache", "policy", *packages], capture_output=True, text=True, env=env, check=False
    )
    known = policy.stdout.count("Candidate:") - policy.stdout.count("Candidate: (none)")
    if known < len(packages):
        subprocess.run(
            ["apt-get", *wait_for_lock, "update"], env=env, check=True, stdout=subprocess.DEVNULL
        )
    subprocess.run(
        ["apt-get", *wait_for_lock, "install", "-y", "--no-install-recommends", *packages],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
