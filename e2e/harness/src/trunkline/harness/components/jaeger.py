"""Jaeger v2 all-in-one with in-memory storage, built once from the Go module proxy.

`go install module/cmd/jaeger@version` refuses modules whose go.mod has replace directives,
and Jaeger's has one; so install() downloads the module and builds `./cmd/jaeger` inside
it, with exactly the dependency versions (and replace) its go.mod and go.sum pin.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trunkline.harness.component import (
    Process,
    cache_dir,
    logs_dir,
    port_open,
    run_dir,
    stop_pid,
    wait_until,
)

MODULE = "github.com/jaegertracing/jaeger"
MODULE_VERSION = "v1.76.0"  # the Go module's tag of the Jaeger 2.13.0 release
VERSION = "v2.13.0"
HOST = "127.0.0.1"
OTLP_GRPC_PORT = 14317
OTLP_HTTP_PORT = 14318
QUERY_HTTP_PORT = 16686
QUERY_GRPC_PORT = 16685
HEALTH_PORT = 14133
METRICS_PORT = 14888
# Jaeger keeps this many traces in memory, dropping the oldest: a bound on its footprint.
MAX_TRACES = 10_000
STORAGE = "memstore"  # the name that ties the storage backend to the query and exporter


def go() -> str:
    # root's non-login shells may not have the Go tree on PATH.
    found = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if found is None:
        raise FileNotFoundError("the Go toolchain (go) is needed to build Jaeger")
    return found


def config() -> dict[str, Any]:
    """The collector config: OTLP in, memory storage, query API, every port on loopback.

    Only the extensions and receivers we use are listed, so the defaults' other listeners
    (Jaeger and Zipkin receivers, remote sampling, expvar, zpages) never open.
    """
    at = f"{HOST}:"
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            "pipelines": {
                # No batch processor: a span is queryable as soon as it is received.
                "traces": {"receivers": ["otlp"], "exporters": ["jaeger_storage_exporter"]}
            },
            "telemetry": {
                "resource": {"service.name": "jaeger"},
                "metrics": {
                    "level": "basic",
                    "readers": [
                        {"pull": {"exporter": {"prometheus": {"host": HOST, "port": METRICS_PORT}}}}
                    ],
                },
                "logs": {"level": "info"},
            },
        },
        "extensions": {
            "jaeger_storage": {"backends": {STORAGE: {"memory": {"max_traces": MAX_TRACES}}}},
            "jaeger_query": {
                "storage": {"traces": STORAGE},
                "http": {"endpoint": f"{at}{QUERY_HTTP_PORT}"},
                "grpc": {"endpoint": f"{at}{QUERY_GRPC_PORT}"},
                # Otherwise the query service traces itself into the store tests read.
                "enable_tracing": False,
            },
            "healthcheckv2": {"use_v2": True, "http": {"endpoint": f"{at}{HEALTH_PORT}"}},
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"{at}{OTLP_GRPC_PORT}"},
                    "http": {"endpoint": f"{at}{OTLP_HTTP_PORT}"},
                }
            }
        },
        "exporters": {"jaeger_storage_exporter": {"trace_storage": STORAGE}},
    }


class Jaeger:
    name = "jaeger"

    @property
    def home(self) -> Path:
        return cache_dir() / f"jaeger-{MODULE_VERSION}"

    @property
    def binary(self) -> Path:
        return self.home / "bin" / "jaeger"

    def install(self) -> None:
        if self.binary.exists():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        # Two sessions installing at once would both spend the long build; one waits instead.
        with (self.home / "build.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self.binary.exists():
                self._build()

    def _build(self) -> None:
        log = logs_dir() / "jaeger-build.log"
        with log.open("ab") as out:
            downloaded = subprocess.run(
                [go(), "mod", "download", "-json", f"{MODULE}@{MODULE_VERSION}"],
                capture_output=True,
                check=True,
            )
            source = Path(json.loads(downloaded.stdout)["Dir"])
            partial = self.binary.with_suffix(".partial")
            ldflags = f"-s -w -X {MODULE}/internal/version.latestVersion={VERSION}"
            # Built where the module lies (read-only, in the module cache), written elsewhere.
            subprocess.run(
                [go(), "build", "-trimpath", f"-ldflags={ldflags}", "-o", str(partial),
                 "./cmd/jaeger"],
                cwd=source,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "GOFLAGS": "-mod=readonly -buildvcs=false"},
                check=True,
            )  # fmt: skip
            partial.replace(self.binary)  # only a complete binary ever has the final name

    def start(self) -> dict[str, Any]:
        if not self.binary.exists():
            raise FileNotFoundError(f"{self.binary} missing: run install() first")
        home = run_dir() / "jaeger"
        home.mkdir(exist_ok=True)
        config_file = home / "config.yaml"
        # JSON is valid YAML, and keeps the config a plain dict here without a YAML library.
        config_file.write_text(json.dumps(config(), indent=2))
        proc = Process("jaeger", [str(self.binary), "--config", str(config_file)], cwd=home)
        pid = proc.spawn()
        endpoints = {
            "otlp_grpc": f"{HOST}:{OTLP_GRPC_PORT}",
            "otlp_http": f"http://{HOST}:{OTLP_HTTP_PORT}",
            "query": f"http://{HOST}:{QUERY_HTTP_PORT}",
            "query_grpc": f"{HOST}:{QUERY_GRPC_PORT}",
            "health": f"http://{HOST}:{HEALTH_PORT}/status",
            "metrics": f"http://{HOST}:{METRICS_PORT}/metrics",
            "version": VERSION,
            "pids": [pid],
            "log": str(proc.log),
        }
        wait_until(lambda: self.ready(endpoints), 60, "jaeger", proc.log)
        return endpoints

    def ready(self, endpoints: Mapping[str, Any]) -> bool:
        import httpx

        # The query API answering means storage is up; the OTLP receiver is checked too,
        # since tests send before they query.
        if not port_open(HOST, OTLP_GRPC_PORT):
            return False
        return httpx.get(f"{endpoints['query']}/api/services", timeout=2).status_code == 200

    def stop(self, endpoints: Mapping[str, Any]) -> None:
        for pid in endpoints.get("pids", []):
            stop_pid(pid)


COMPONENT = Jaeger()
