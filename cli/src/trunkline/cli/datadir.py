"""The data directory of the embedded platform: where each file lives and who may read it.

Secrets (the admin token, the bootstrap credentials, the supervisord config that carries the
admin token in a program's environment) are written mode 0600; the run directory holding
supervisord's control socket is mode 0700, so only the owner can drive supervisord.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS), including the final NUL.
MAX_SOCKET_PATH = 103


@dataclass(frozen=True)
class DataDir:
    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> DataDir:
        # Absolute, because supervisord and its programs run with `directory=` set to it.
        return cls(Path(path).expanduser().resolve())

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def nats(self) -> Path:
        return self.root / "nats"

    @property
    def database(self) -> Path:
        return self.root / "trunkline.db"

    @property
    def admin_token_file(self) -> Path:
        return self.root / "admin-token"

    @property
    def bootstrap_file(self) -> Path:
        return self.root / "bootstrap.json"

    @property
    def supervisord_conf(self) -> Path:
        return self.run / "supervisord.conf"

    @property
    def supervisord_socket(self) -> Path:
        return self.run / "supervisor.sock"

    @property
    def supervisord_pidfile(self) -> Path:
        return self.run / "supervisord.pid"

    @property
    def endpoints_file(self) -> Path:
        """Where the running platform says which URLs it listens on (for status and admin)."""
        return self.run / "endpoints.json"

    def log_file(self, program: str) -> Path:
        return self.logs / f"{program}.log"

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for directory in (self.logs, self.nats):
            directory.mkdir(exist_ok=True)
        self.run.mkdir(mode=0o700, exist_ok=True)
        # mkdir's mode is filtered by the umask and ignored for an existing directory.
        self.run.chmod(0o700)

    def load_or_create_admin_token(self) -> tuple[str, bool]:
        """The admin token and whether it was created now; reused on every later start."""
        existing = read_text(self.admin_token_file)
        if existing is not None and existing.strip():
            return existing.strip(), False
        token = secrets.token_urlsafe(32)
        write_private(self.admin_token_file, token + "\n")
        return token, True

    def load_or_create_nonce_secret(self) -> str:
        """The auth service's digest nonce secret, kept across restarts so that challenges
        issued before a restart still verify after it."""
        path = self.root / "nonce-secret"
        existing = read_text(path)
        if existing is not None and existing.strip():
            return existing.strip()
        secret = secrets.token_urlsafe(32)
        write_private(path, secret + "\n")
        return secret

    def read_admin_token(self) -> str | None:
        text = read_text(self.admin_token_file)
        return text.strip() if text and text.strip() else None

    def read_bootstrap(self) -> dict[str, Any] | None:
        return read_json(self.bootstrap_file)

    def write_bootstrap(self, state: dict[str, Any]) -> None:
        write_private(self.bootstrap_file, json.dumps(state, indent=2) + "\n")

    def read_endpoints(self) -> dict[str, Any] | None:
        return read_json(self.endpoints_file)

    def write_endpoints(self, endpoints: dict[str, Any]) -> None:
        write_private(self.endpoints_file, json.dumps(endpoints, indent=2) + "\n")


def write_private(path: Path, text: str) -> None:
    """Write `text` so that only the owner can read it, atomically (no half-written secret).

    The temporary file is created 0600 by os.open, so the secret is never readable by others,
    not even for the instant between creating and chmod-ing it.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def read_json(path: Path) -> dict[str, Any] | None:
    text = read_text(path)
    if text is None:
        return None
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return value


def tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file, or a note that it does not exist."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            # Logs rotate at a few MB; the last 64 KiB hold far more than 20 lines.
            handle.seek(max(0, size - 65536))
            data = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    selected = data.splitlines()[-lines:]
    return "\n".join(selected) if selected else f"({path} is empty)"
