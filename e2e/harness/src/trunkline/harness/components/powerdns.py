"""PowerDNS authoritative server from Debian (`pdns-server`, SQLite backend), HTTP API on.

Our own instance: its own config dir, SQLite database and control socket under run_dir(),
DNS on a high loopback port. The Debian package's service (port 53, API off) is not used.
"""

from __future__ import annotations

import secrets
import shutil
import sqlite3
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trunkline.harness.component import (
    Process,
    apt_install,
    port_open,
    run_dir,
    stop_pid,
    wait_until,
)

HOST = "127.0.0.1"
DNS_PORT = 15353
API_PORT = 18081
PACKAGES = ("pdns-server", "pdns-backend-sqlite3")
# Where Debian's pdns-backend-sqlite3 ships the schema; the doc path is the older layout.
SCHEMA_CANDIDATES = (
    Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql"),
    Path("/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql"),
)


class PowerDns:
    name = "powerdns"

    def binary(self) -> str | None:
        # /usr/sbin is not on every user's PATH, but that is where Debian puts it.
        return shutil.which("pdns_server") or shutil.which("pdns_server", path="/usr/sbin")

    def schema(self) -> Path | None:
        return next((p for p in SCHEMA_CANDIDATES if p.exists()), None)

    def install(self) -> None:
        if self.binary() is not None and self.schema() is not None:
            return
        apt_install(PACKAGES)
        if Path("/run/systemd/system").exists():
            # Under systemd the package starts its own server on port 53; we never use it,
            # and a second server on every address is noise at best.
            subprocess.run(
                ["systemctl", "disable", "--now", "pdns.service"],
                check=False,
                capture_output=True,
            )
        if self.binary() is None or self.schema() is None:
            raise FileNotFoundError(f"pdns_server or the gsqlite3 schema missing after {PACKAGES}")

    def start(self) -> dict[str, Any]:
        binary, schema = self.binary(), self.schema()
        if binary is None or schema is None:
            raise FileNotFoundError("PowerDNS is not installed: run install() first")
        home = run_dir() / "powerdns"
        home.mkdir(exist_ok=True)
        # A fresh database per start: tests see only the zones they create.
        database = home / "pdns.sqlite3"
        database.unlink(missing_ok=True)
        with sqlite3.connect(database) as db:
            db.executescript(schema.read_text())
        api_key = secrets.token_urlsafe(24)
        settings = {
            "launch": "gsqlite3",
            "gsqlite3-database": str(database),
            # Test data: durability across a crash is worth nothing, speed is.
            "gsqlite3-pragma-synchronous": "0",
            "local-address": HOST,
            "local-port": str(DNS_PORT),
            "api": "yes",
            "api-key": api_key,
            "webserver": "yes",
            "webserver-address": HOST,
            "webserver-port": str(API_PORT),
            "webserver-allow-from": HOST,
            "socket-dir": str(home),
            "daemon": "no",
            "guardian": "no",
            "disable-syslog": "yes",
            "log-timestamp": "no",
            # No internet here: skip the security-status poll (a DNS query to powerdns.com).
            "security-poll-suffix": "",
            # A test server answers a handful of queries: fewer threads, less memory.
            "receiver-threads": "1",
            "distributor-threads": "1",
            "signing-threads": "1",
        }
        config = home / "pdns.conf"
        config.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        config.chmod(0o600)  # it holds the API key
        # --config-dir makes pdns read our pdns.conf and nothing under /etc/powerdns.
        proc = Process("powerdns", [binary, f"--config-dir={home}"])
        pid = proc.spawn()
        endpoints: dict[str, Any] = {
            "dns_host": HOST,
            "dns_port": DNS_PORT,
            "api": f"http://{HOST}:{API_PORT}/api/v1",
            "api_key": api_key,
            "server_id": "localhost",
            "pids": [pid],
            "log": str(proc.log),
        }
        wait_until(lambda: self.ready(endpoints), 30, "powerdns", proc.log)
        endpoints["version"] = self._server_info(endpoints)["version"]
        return endpoints

    def _server_info(self, endpoints: Mapping[str, Any]) -> dict[str, Any]:
        import httpx

        resp = httpx.get(
            f"{endpoints['api']}/servers/{endpoints['server_id']}",
            headers={"X-API-Key": endpoints["api_key"]},
            timeout=2,
        )
        resp.raise_for_status()
        info: dict[str, Any] = resp.json()
        return info

    def ready(self, endpoints: Mapping[str, Any]) -> bool:
        if not port_open(HOST, API_PORT):
            return False
        return bool(self._server_info(endpoints).get("version"))

    def stop(self, endpoints: Mapping[str, Any]) -> None:
        for pid in endpoints.get("pids", []):
            stop_pid(pid)


COMPONENT = PowerDns()
