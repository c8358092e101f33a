"""Talk to the platform's supervisord over its unix socket, as supervisorctl does."""

from __future__ import annotations

import socket
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from supervisor.xmlrpc import SupervisorTransport, UnixStreamHTTPConnection

# A supervisord that does not answer within this many seconds is treated as not running.
RPC_TIMEOUT_SECONDS = 5.0


class SupervisorUnavailable(RuntimeError):
    """supervisord is not running for this data dir (no socket, or nothing answers on it)."""


@dataclass(frozen=True)
class ProcessInfo:
    name: str
    state: str
    pid: int
    description: str
    exit_status: int

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"


class _TimeoutUnixConnection(UnixStreamHTTPConnection):  # type: ignore[misc]
    # supervisor's own connection has no timeout; a wedged supervisord would hang us forever.
    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(RPC_TIMEOUT_SECONDS)
        self.sock.connect(self.socketfile)


class _Transport(SupervisorTransport):  # type: ignore[misc]
    def __init__(self, socket_path: Path) -> None:
        super().__init__(None, None, f"unix://{socket_path}")

        def connect() -> _TimeoutUnixConnection:
            connection = _TimeoutUnixConnection("localhost")
            connection.socketfile = str(socket_path)
            return connection

        self._get_connection = connect


class Supervisor:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def _call(self, method: str, *args: Any) -> Any:
        if not self.socket_path.exists():
            raise SupervisorUnavailable(f"no supervisord socket at {self.socket_path}")
        transport = _Transport(self.socket_path)
        # The host in this URL is not used: the transport connects to the unix socket.
        proxy = xmlrpc.client.ServerProxy("http://localhost", transport=transport)
        try:
            return getattr(proxy.supervisor, method)(*args)
        except (OSError, xmlrpc.client.ProtocolError) as error:
            raise SupervisorUnavailable(
                f"supervisord does not answer on {self.socket_path}: {error}"
            ) from error
        finally:
            transport.close()

    def pid(self) -> int:
        return int(self._call("getPID"))

    def state(self) -> str:
        return str(self._call("getState")["statename"])

    def processes(self) -> list[ProcessInfo]:
        infos = cast(list[dict[str, Any]], self._call("getAllProcessInfo"))
        return [
            ProcessInfo(
                name=str(info["name"]),
                state=str(info["statename"]),
                pid=int(info["pid"]),
                description=str(info["description"]),
                exit_status=int(info["exitstatus"]),
            )
            for info in infos
        ]

    def is_running(self) -> bool:
        try:
            self.pid()
        except SupervisorUnavailable:
            return False
        return True
