"""API requests per second and latency for trunk fetch and trunk create.

Starts the real API service (`python -m trunkline.api`, uvloop + httptools, SQLite) as its own
process, then drives it from this process with HTTP/1.1 keep-alive connections:

- open loop at a fixed rate (default 200 requests/s): requests leave on a schedule whatever
  the server does, and latency is measured from the scheduled time, so a stall is not hidden
  (no coordinated omission);
- closed loop (N concurrent clients back to back) for the throughput ceiling.

`GET /healthz` (no auth, no store) is measured the same way in the same run as the baseline,
and each result is reported as a ratio to it. Several rounds are run and medians reported,
because these machines are shared and noisy.

    .venv/bin/python benchmarks/api_requests.py [--rate 200] [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


async def open_loop(
    send: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]],
    client: httpx.AsyncClient,
    rate: float,
    seconds: float,
) -> dict[str, float]:
    interval = 1 / rate
    total = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        nonlocal errors
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        resp = await send(client)
        latencies.append(time.perf_counter() - scheduled)
        if resp.status_code >= 400:
            errors += 1

    await asyncio.gather(*(one(i) for i in range(total)))
    elapsed = time.perf_counter() - start
    return {
        "requests": total,
        "errors": errors,
        "achieved_rps": total / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
    }


async def closed_loop(
    send: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]],
    client: httpx.AsyncClient,
    concurrency: int,
    seconds: float,
) -> dict[str, float]:
    deadline = time.perf_counter() + seconds
    done = 0
    errors = 0

    async def worker() -> None:
        nonlocal done, errors
        while time.perf_counter() < deadline:
            resp = await send(client)
            done += 1
            errors += resp.status_code >= 400

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"requests": done, "errors": errors, "rps": done / (time.perf_counter() - started)}


def cpu_seconds(pid: int) -> float:
    """utime + stime of the API process (FIELD-NOTES: machine-wide counters undercount)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def with_cpu(pid: int, measure: Awaitable[dict[str, float]]) -> dict[str, float]:
    """The measurement plus the API's CPU milliseconds per request during it."""
    before = cpu_seconds(pid)
    result = await measure
    result["api_cpu_ms_per_request"] = (cpu_seconds(pid) - before) * 1000 / result["requests"]
    return result


def start_api(data: Path, port: int, admin_token: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TRUNKLINE_API_HOST": "127.0.0.1",
        "TRUNKLINE_API_PORT": str(port),
        "TRUNKLINE_STORE": f"sqlite:///{data / 'trunkline.db'}",
        "TRUNKLINE_ADMIN_TOKEN": admin_token,
        "TRUNKLINE_ZONE": "bench.test",
        "TRUNKLINE_LOG_LEVEL": "WARNING",
    }
    env.pop("TRUNKLINE_NATS_URL", None)
    log = (data / "api.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "trunkline.api"], env=env, stdout=log, stderr=log
    )


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"API exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise SystemExit("API did not become ready in 30 s")


PER_ACCOUNT = 90  # creates per account, under the platform's 100-trunk limit


async def new_accounts(url: str, admin_token: str, count: int) -> list[tuple[str, str]]:
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers) as admin:
        made = []
        for i in range(count):
            resp = await admin.post("/admin/v1/Accounts", data={"FriendlyName": f"bench {i}"})
            resp.raise_for_status()
            made.append((resp.json()["sid"], resp.json()["auth_token"]))
        return made


async def run(args: argparse.Namespace, url: str, admin_token: str, pid: int) -> dict[str, Any]:
    ((sid, token),) = await new_accounts(url, admin_token, 1)
    # Enough fresh accounts that no create hits the per-account trunk limit (21244).
    ceiling = args.rate * (args.seconds + 1) + args.max_rps * args.seconds / 2
    pool = await new_accounts(url, admin_token, int(ceiling * args.rounds / PER_ACCOUNT) + 1)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, auth=(sid, token), limits=limits) as client:
        trunk = (await client.post("/v1/Trunks", data={"FriendlyName": "bench"})).json()
        created = 0

        async def health(c: httpx.AsyncClient) -> httpx.Response:
            return await c.get("/healthz")

        async def fetch(c: httpx.AsyncClient) -> httpx.Response:
            return await c.get(f"/v1/Trunks/{trunk['sid']}")

        async def create(c: httpx.AsyncClient) -> httpx.Response:
            nonlocal created
            owner = pool[min(created // PER_ACCOUNT, len(pool) - 1)]  # overflow shows as errors
            created += 1
            return await c.post("/v1/Trunks", data={"FriendlyName": "bench"}, auth=owner)

        rounds: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for name, send in (
                ("healthz", health),
                ("trunk_fetch", fetch),
                ("trunk_create", create),
            ):
                await open_loop(send, client, args.rate, 1)  # warm the connections
                rounds.setdefault(f"{name}_open", []).append(
                    await with_cpu(pid, open_loop(send, client, args.rate, args.seconds))
                )
                rounds.setdefault(f"{name}_closed", []).append(
                    await with_cpu(
                        pid, closed_loop(send, client, args.concurrency, args.seconds / 2)
                    )
                )
    return rounds


def medians(rounds: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for name, runs in rounds.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--max-rps", type=float, default=3000, help="upper bound of closed-loop creates per second"
    )
    args = parser.parse_args()
    admin_token = secrets.token_urlsafe(24)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="trunkline-bench-") as tmp:
        data = Path(tmp)
        proc = start_api(data, port, admin_token)
        try:
            wait_ready(url, proc)
            rounds = asyncio.run(run(args, url, admin_token, proc.pid))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    summary = medians(rounds)
    base = summary["healthz_open"]
    for name in ("trunk_fetch", "trunk_create"):
        summary[f"{name}_open"]["cpu_vs_healthz"] = (
            summary[f"{name}_open"]["api_cpu_ms_per_request"]
            / summary["healthz_open"]["api_cpu_ms_per_request"]
        )
        summary[f"{name}_open"]["p99_vs_healthz"] = (
            summary[f"{name}_open"]["p99_ms"] / base["p99_ms"]
        )
        summary[f"{name}_closed"]["rps_vs_healthz"] = (
            summary[f"{name}_closed"]["rps"] / summary["healthz_closed"]["rps"]
        )
    report = {
        "benchmark": "api_requests",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "args": vars(args),
        "medians": summary,
        "rounds": rounds,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"api_requests-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(
        f"{'measurement':22} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'ratio':>7}"
        f" {'api cpu ms/req':>15}"
    )
    for name, m in summary.items():
        rps = m.get("achieved_rps", m.get("rps", 0.0))
        ratio = m.get("p99_vs_healthz", m.get("rps_vs_healthz", 1.0))
        p50, p99 = m.get("p50_ms", float("nan")), m.get("p99_ms", float("nan"))
        cpu = m["api_cpu_ms_per_request"]
        print(
            f"{name:22} {rps:8.1f} {p50:8.2f} {p99:8.2f} {m['errors']:7.0f} {ratio:7.2f}"
            f" {cpu:15.3f}"
        )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
