"""INVITE transactions per second through the test UAS under sipp load.

Starts `python -m trunkline.signaling.testua uas` on UDP, then for each rate step runs
sipp's built-in `uac` scenario against it (`-r RATE -m RATE*SECONDS -buff_size 4194304`,
see FIELD-NOTES) and reports, per step:

- achieved calls/s (successful calls over sipp's wall time) and INVITE transactions/s
  (every call is one INVITE and one BYE server transaction, plus the 2xx ACK);
- failed calls (sipp's FailedCall counter);
- the UAS's CPU per call from /proc/<pid>/stat (utime + stime), the only counter that
  does not undercount short bursts on these VMs (FIELD-NOTES);
- the baseline: sipp `uac` against sipp `uas` at the same rate, in the same run.

Target (issue 4): at least 2,000 INVITE transactions/s with no failed call.

    .venv/bin/python benchmarks/sip_uas.py [--rates 500,1000,2000,3000] [--seconds 5]
        [--loop uvloop|asyncio] [--profile PATH] [--json PATH]

`--profile PATH` runs the UAS under cProfile and prints its top functions by own time.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import errno
import json
import os
import platform
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
RESULTS = Path(__file__).parent / "results"
TICK = os.sysconf("SC_CLK_TCK")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def udp_bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((HOST, port))
        except OSError as err:
            return err.errno == errno.EADDRINUSE
        return False


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} not ready within {timeout} s")


def cpu_seconds(pid: int) -> float:
    # Fields 14 and 15 of /proc/<pid>/stat, counted after the parenthesised command name.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_sipp_uac(sipp: str, port: int, rate: int, calls: int, workdir: Path) -> dict[str, Any]:
    stats = workdir / f"uac-{port}-{rate}.csv"
    started = time.monotonic()
    done = subprocess.run(
        [sipp, "-sn", "uac", f"{HOST}:{port}", "-i", HOST, "-p", str(free_udp_port()),
         "-nostdin", "-r", str(rate), "-m", str(calls), "-buff_size", "4194304",
         "-timeout", "120s", "-timeout_error", "-trace_stat", "-stf", str(stats)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    rows = list(csv.DictReader(stats.read_text().splitlines(), delimiter=";"))
    final = rows[-1] if rows else {}
    successful = int(final.get("SuccessfulCall(C)", 0))
    return {
        "rate": rate,
        "calls": calls,
        "exit": done.returncode,
        "seconds": round(elapsed, 3),
        "successful": successful,
        "failed": int(final.get("FailedCall(C)", calls - successful)),
        "retransmissions": int(final.get("Retransmissions(C)", 0)),
        "calls_per_s": round(successful / elapsed, 1),
        "invite_transactions_per_s": round(successful / elapsed, 1),
    }


def start_uas(args: argparse.Namespace, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable]
    if args.profile:
        command += ["-m", "cProfile", "-o", str(args.profile)]
    command += ["-m", "trunkline.signaling.testua", "uas", "--host", HOST, "--port", str(port),
                "--loop", args.loop]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=workdir, stdout=(workdir / "uas.out").open("wb"), stderr=subprocess.STDOUT
    )
    wait_for(lambda: udp_bound(port) or process.poll() is not None, 20, "test UAS")
    if process.poll() is not None:
        raise RuntimeError((workdir / "uas.out").read_text())
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="500,1000,2000,2500,3000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--sipp", default="sipp")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    steps: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sip-uas-bench-") as tmp:
        workdir = Path(tmp)
        port = free_udp_port()
        uas = start_uas(args, port, workdir)
        try:
            for rate in rates:
                calls = int(rate * args.seconds)
                before = cpu_seconds(uas.pid)
                step = run_sipp_uac(args.sipp, port, rate, calls, workdir)
                cpu = cpu_seconds(uas.pid) - before
                step["uas_cpu_s"] = round(cpu, 3)
                step["uas_cpu_us_per_call"] = (
                    round(cpu / step["successful"] * 1e6, 1) if step["successful"] else None
                )
                if not args.no_baseline:
                    step["baseline"] = baseline(args.sipp, rate, calls, workdir)
                steps.append(step)
                print(json.dumps(step), flush=True)
        finally:
            stop(uas)
        uas_counts = (workdir / "uas.out").read_text().strip().splitlines()[-1]
    report = {
        "benchmark": "sip_uas",
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "loop": args.loop,
        "cpus": os.cpu_count(),
        "seconds_per_step": args.seconds,
        "steps": steps,
        "uas_final": json.loads(uas_counts) if uas_counts.startswith("{") else uas_counts,
    }
    print(f"{'rate':>6} {'calls/s':>8} {'INVITE tx/s':>11} {'failed':>6} "
          f"{'UAS us/call':>11} {'sipp-sipp calls/s':>17}")  # fmt: skip
    for step in steps:
        base = step.get("baseline", {})
        print(f"{step['rate']:>6} {step['calls_per_s']:>8} {step['invite_transactions_per_s']:>11} "
              f"{step['failed']:>6} {step['uas_cpu_us_per_call']!s:>11} "
              f"{base.get('calls_per_s', '-')!s:>17}")  # fmt: skip
    if args.profile:
        print(f"\ncProfile of the UAS ({args.profile}), top 25 by own time:")
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(25)
    path = args.json or RESULTS / f"sip_uas-{datetime.datetime.now():%Y%m%dT%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


def baseline(sipp: str, rate: int, calls: int, workdir: Path) -> dict[str, Any]:
    """sipp uac -> sipp uas at the same rate: what the machine does without our code."""
    port = free_udp_port()
    uas = subprocess.Popen(
        [sipp, "-sn", "uas", "-i", HOST, "-p", str(port), "-nostdin", "-buff_size", "4194304"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: udp_bound(port) or uas.poll() is not None, 10, "sipp uas")
        return run_sipp_uac(sipp, port, rate, calls, workdir)
    finally:
        stop(uas)


if __name__ == "__main__":
    main()
