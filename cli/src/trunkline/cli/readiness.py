"""Wait until every program of the platform answers its probes, or explain why not."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

from trunkline.cli.datadir import DataDir, tail
from trunkline.cli.programs import Probe, Program, TcpProbe
from trunkline.cli.supervisor_rpc import ProcessInfo, SupervisorUnavailable

PROBE_TIMEOUT_SECONDS = 1.0
POLL_INTERVAL_SECONDS = 0.2
# States from which supervisord will not bring a program back by itself.
GIVEN_UP_STATES = frozenset({"FATAL", "EXITED", "STOPPED", "UNKNOWN"})


class ProcessTable(Protocol):
    """What supervisord reports about its programs (trunkline.cli.supervisor_rpc.Supervisor)."""

    def processes(self) -> list[ProcessInfo]: ...


class Child(Protocol):
    """The supervisord process (a subprocess.Popen)."""

    returncode: int | None

    def poll(self) -> int | None: ...


class NotReady(RuntimeError):
    """A program did not come up; the message names it and quotes the end of its log."""


class Interrupted(RuntimeError):
    """The user asked to stop while the platform was still starting."""


def probe_ok(probe: Probe) -> bool:
    if isinstance(probe, TcpProbe):
        try:
            with socket.create_connection((probe.host, probe.port), PROBE_TIMEOUT_SECONDS):
                return True
        except OSError:
            return False
    try:
        response = httpx.get(probe.url, timeout=PROBE_TIMEOUT_SECONDS)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


@dataclass(frozen=True)
class Failure:
    program: str
    reason: str


def _failure_message(data: DataDir, failure: Failure) -> str:
    log = data.log_file(failure.program)
    return f"{failure.program} {failure.reason}. Last lines of {log}:\n{tail(log)}"


def wait_until_ready(
    data: DataDir,
    programs: Sequence[Program],
    supervisor: ProcessTable,
    supervisord: Child,
    timeout: float,
    stop: threading.Event,
) -> None:
    """Return once every probe of every program passes; raise NotReady or Interrupted."""
    deadline = time.monotonic() + timeout
    pending = {program.name: list(program.probes) for program in programs}
    while True:
        if stop.is_set():
            raise Interrupted("stopped while starting")
        if supervisord.poll() is not None:
            failure = Failure("supervisord", f"exited with status {supervisord.returncode}")
            raise NotReady(_failure_message(data, failure))
        states = _states(supervisor)
        for name in list(pending):
            info = states.get(name)
            if info is not None and info.state in GIVEN_UP_STATES:
                reason = f"is {info.state} ({info.description})"
                raise NotReady(_failure_message(data, Failure(name, reason)))
            # Probes pass in order (a port before its health check); keep the failing rest.
            while pending[name] and probe_ok(pending[name][0]):
                pending[name].pop(0)
            # Answering is not enough: supervisord must also count it as started (RUNNING
            # after startsecs), or `trunkline status` right after the banner would disagree.
            if not pending[name] and info is not None and info.running:
                del pending[name]
        if not pending:
            return
        if time.monotonic() >= deadline:
            name, probes = next(iter(pending.items()))
            state = states[name].state if name in states else "not known to supervisord"
            waiting = f"waiting for {probes[0]}" if probes else "waiting for RUNNING"
            reason = f"is not ready after {timeout:g}s (state {state}, {waiting})"
            raise NotReady(_failure_message(data, Failure(name, reason)))
        stop.wait(POLL_INTERVAL_SECONDS)


def _states(supervisor: ProcessTable) -> dict[str, ProcessInfo]:
    try:
        return {info.name: info for info in supervisor.processes()}
    except SupervisorUnavailable:
        # supervisord creates its socket a moment after it starts; the caller's deadline and
        # its check of the supervisord process cover the case where it never does.
        return {}
