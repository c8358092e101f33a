"""Termination and origination calls through the whole platform: sipp <-> `trunkline up` <-> sipp.

Starts the real platform (`trunkline up` through trunkline.cli.testing.Launcher, on free
ports, with a carriers file naming one sipp carrier), configures it with the official
`twilio` SDK like a customer would (a trunk `bench.pstn.trunkline.local`, an IP ACL with
127.0.0.1 attached to it, a purchased number as the caller ID, and the Trunkline extension
parameters CpsLimit / ConcurrentCallsLimit raised so they never refuse a call), and then
drives it with sipp over UDP:

    sipp -sf benchmarks/sipp/pbx_uac_timed.xml (PBX)  ->  signaling (media anchored)
         ->  sipp -sf e2e/sipp/carrier_uas.xml (carrier)

and, with `--direction origination` (or `both`, the default: termination first, then
origination, one after the other since both use the carrier gateway's port), the other way:

    sipp -sf benchmarks/sipp/pbx_uac_timed.xml (carrier, -p <the carriers file's gateway
         port>: the platform trusts carriers by source address and UDP port), calling
         sip:<a number on the trunk>@127.0.0.1 from +14155550100
         ->  signaling  ->  sipp -sf e2e/sipp/carrier_uas.xml (PBX, on the trunk's
         origination URL sip:127.0.0.1:<port>)

Origination calls have no CPS limit on the platform. Each direction gets its own warm-up,
memory step, rate steps and search, and its own section (`termination`, `origination`) in
the JSON and in the printed tables; the targets below are termination's (issue 6), printed
for origination for comparison.

For each rate of `--rates` (and each of `--rounds`) a step runs `--seconds` of calls held
`--hold-ms`, then the baseline: the same UAC straight to a carrier UAS at the same rate, in
the same run. Per step:

- successful / failed calls (sipp's counters), UDP retransmissions, and the offered rate
  (calls over the span of their INVITEs: sipp holds back when it cannot keep up);
- the setup delay INVITE->180 and INVITE->200, p50 and p99, from microsecond timestamps the
  scenario takes itself (sipp's rtd counts whole milliseconds: multiples of 4 ms here);
  the platform-added delay is the platform's percentile minus the baseline's;
- CPU seconds per call of each platform process (signaling, media, auth, nats, api and
  supervisord, which writes their logs), utime + stime from /proc/<pid>/stat, children
  included; % of one CPU over the step (a process near 100 % is the bottleneck); the
  sipps' CPU, and other% (every other process on this shared machine, a lower bound).

A step is sustained when no call failed, nothing was retransmitted (every request answered
within T1 = 500 ms), the INVITE->200 p99 is within `--max-setup-ms` and every CALLS event
of the step is stored within `--max-events-lag-s` of its end: with "no failed call" alone,
an overloaded platform passes a short step by answering every queued INVITE seconds late
after the load stops, and without the events bound by leaving its call records behind.
`--search` then bisects the highest sustained rate over `--search-seconds` per probe. The
memory step (first, after a warm-up) holds `--memory-calls` calls up at once
(`--memory-rate` calls/s, each held until all are up plus 5 s) and reports the RSS of
signaling + media over idle, per call.

    .venv/bin/python benchmarks/termination.py [--direction termination|origination|both]
        [--rates 50,100,200,300,400] [--seconds 10]
        [--rounds 3] [--search] [--memory-calls 1000] [--json PATH]

Targets (issue 6): at least 360 calls/s with no failed call; platform-added setup delay p99
at most 20 ms at 100 calls/s; at most 50 kB per active call (signaling + media).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import errno
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from twilio.rest import Client

from trunkline.cli.datadir import DataDir
from trunkline.cli.supervisor_rpc import Supervisor
from trunkline.cli.testing import Launcher, RunningPlatform, free_ports

HOST = "127.0.0.1"
HERE = Path(__file__).parent
RESULTS = HERE / "results"
REPO = HERE.parent
UAC_SCENARIO = HERE / "sipp" / "pbx_uac_timed.xml"
UAS_SCENARIO = REPO / "e2e" / "sipp" / "carrier_uas.xml"
DOMAIN = "bench.pstn.trunkline.local"
DESTINATION = "+15108675309"
ORIGINATION_CALLER = "+14155550100"  # North American: what a US carrier would send
DIRECTIONS = ("termination", "origination")
PATHS = {
    "termination": "sipp PBX -> platform -> sipp carrier",
    "origination": "sipp carrier (from the gateway's address) -> platform -> sipp PBX",
}
TICK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
PROGRAMS = ("signaling", "media", "auth", "cnam", "nats", "api", "supervisord")
MEMORY_PROGRAMS = ("signaling", "media")
OTHER_WORK_WARN = 15.0  # % of one CPU used by other work during a step
SAMPLE_S = 0.25
EVENTS_LAG_LIMIT_S = 60.0  # longest wait for a step's CALLS events after the load
DRAIN_LIMIT_S = 60.0  # longest wait for the platform to go idle after a step
TARGET_CPS = 360
TARGET_P99_MS = 20.0
TARGET_P99_RATE = 100
TARGET_KB_PER_CALL = 50.0


# --- processes --------------------------------------------------------------------------------


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


def descendants(pid: int) -> list[int]:
    """pid and every process below it, from /proc/<pid>/task/*/children."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo.extend(int(child) for child in task.read_text().split())
    return found


def cpu_ticks(pids: Iterable[int]) -> int:
    """utime + stime of the processes (each process's stat sums its threads)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def all_cpu_ticks() -> dict[int, int]:
    ticks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    return ticks


def rss_kib(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/statm").read_text().split()
        except OSError:
            continue
        total += int(text[1]) * PAGE_KIB
    return total


def run_delay_s(pids: Iterable[int]) -> float:
    """Time the processes' threads spent runnable but waiting for a CPU (schedstat)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError, IndexError):
                total += int(task.read_text().split()[1])
    return total / 1e9


class Meter:
    """CPU ticks of named process groups over a window; every other process on the machine
    is sampled as `other` (a process that lives shorter than a sample is missed, so it is a
    lower bound; parents' cutime is not used: it would count a reaped child's whole life)."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.ours = {pid for pids in groups.values() for pid in pids} | {os.getpid()}
        self.start = {name: cpu_ticks(pids) for name, pids in groups.items()}
        self.waits = {name: run_delay_s(pids) for name, pids in groups.items()}
        self.seen = all_cpu_ticks()
        self.other = 0
        self.began = time.monotonic()

    def exclude(self, pids: Iterable[int]) -> None:
        """Processes measured otherwise (the sipps, through wait4): not `other` work."""
        self.ours |= set(pids)

    def sample(self) -> None:
        now = all_cpu_ticks()
        for pid, ticks in now.items():
            if pid not in self.ours:
                self.other += ticks - self.seen.get(pid, 0)
        self.seen = now

    def platform_idle(self, names: Iterable[str], limit: float) -> float:
        """Sample until the named groups use < 5 % of one CPU over 0.5 s; seconds waited."""
        pids = [pid for name in names for pid in self.groups.get(name, [])]
        began = time.monotonic()
        while time.monotonic() - began < limit:
            before = cpu_ticks(pids)
            for _ in range(2):
                time.sleep(SAMPLE_S)
                self.sample()
            if (cpu_ticks(pids) - before) / TICK / (2 * SAMPLE_S) < 0.05:
                break
        return round(time.monotonic() - began, 2)

    def read(self) -> dict[str, Any]:
        """Totals since the window opened (it stays open)."""
        self.sample()
        wall = time.monotonic() - self.began
        seconds = {n: (cpu_ticks(p) - self.start[n]) / TICK for n, p in self.groups.items()}
        waits = {n: run_delay_s(p) - self.waits[n] for n, p in self.groups.items()}
        return {
            "wall_s": round(wall, 3),
            "cpu_s": {n: round(s, 3) for n, s in seconds.items()},
            "cpu_percent": {n: round(100 * s / wall, 1) for n, s in seconds.items()},
            "wait_percent": {n: round(100 * w / wall, 1) for n, w in waits.items()},
            "other_percent": round(100 * self.other / TICK / wall, 1),
        }


def reap(process: subprocess.Popen[bytes], timeout: float) -> float | None:
    """Wait up to `timeout` s for a child to exit; its CPU seconds from wait4's rusage (exact,
    where /proc is gone once it is reaped), or None if it still runs. Never mixed with
    Popen.poll/wait on the same child: wait4 reaps it and sets returncode here."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        except ChildProcessError:  # already reaped elsewhere
            return 0.0
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        if time.monotonic() >= deadline:
            return None
        time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> float:
    """Stop a child (sig, then SIGKILL after 10 s); its CPU seconds."""
    if process.returncode is not None:
        return 0.0
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    cpu = reap(process, 10)
    if cpu is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        cpu = reap(process, 10)
    return cpu or 0.0


# --- sipp -------------------------------------------------------------------------------------


@dataclass
class Sipp:
    path: str
    workdir: Path
    counter: int = 0

    def files(self, tag: str) -> dict[str, Path]:
        self.counter += 1
        stem = self.workdir / f"{self.counter:03d}-{tag}"
        return {k: Path(f"{stem}-{k}") for k in ("stat.csv", "setup.log", "errors.log", "out")}

    def carrier(
        self, tag: str, port: int | None = None
    ) -> tuple[subprocess.Popen[bytes], int, dict[str, Path]]:
        """A carrier UAS on `port` (a free one if None)."""
        port = port or free_udp_port()
        files = self.files(f"{tag}-uas")
        out = files["out"].open("wb")
        process = subprocess.Popen(
            [self.path, "-sf", str(UAS_SCENARIO), "-i", HOST, "-p", str(port), "-nostdin",
             "-buff_size", "4194304", "-trace_err", "-error_file", str(files["errors.log"]),
             "-trace_stat", "-stf", str(files["stat.csv"]), "-fd", "1"],
            cwd=self.workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        out.close()
        wait_for(lambda: udp_bound(port) or process.poll() is not None, 10, "sipp carrier")
        if process.poll() is not None:
            raise RuntimeError(f"sipp carrier exited: {files['out'].read_text()[-2000:]}")
        return process, port, files

    def pbx(
        self, tag: str, target: str, caller: str, rate: float, calls: int, hold_ms: int,
        limit: int, timeout_s: float, domain: str = DOMAIN, service: str = DESTINATION,
        local_port: int | None = None,
    ) -> tuple[subprocess.Popen[bytes], dict[str, Path]]:  # fmt: skip
        """The calling sipp (the PBX when terminating, the carrier when originating): calls
        `sip:<service>@<domain>` sent to `target`, from `local_port` (a free one if None)."""
        files = self.files(f"{tag}-uac")
        out = files["out"].open("wb")
        process = subprocess.Popen(
            [self.path, "-sf", str(UAC_SCENARIO), "-set", "domain", domain, "-set", "caller",
             caller, "-s", service, target, "-i", HOST, "-p", str(local_port or free_udp_port()),
             "-nostdin", "-r", f"{rate:g}", "-m", str(calls), "-l", str(limit),
             "-d", str(hold_ms), "-buff_size", "4194304",
             "-recv_timeout", "10000", "-timeout", f"{int(timeout_s)}s", "-timeout_error",
             "-trace_logs", "-log_file", str(files["setup.log"]),
             "-trace_err", "-error_file", str(files["errors.log"]),
             "-trace_stat", "-stf", str(files["stat.csv"]), "-fd", "1"],
            cwd=self.workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        out.close()
        return process, files


def last_stats(path: Path) -> dict[str, str]:
    try:
        rows = list(csv.DictReader(path.read_text().splitlines(), delimiter=";"))
    except OSError:
        return {}
    return rows[-1] if rows else {}


def counter(stats: dict[str, str], name: str) -> int:
    try:
        return int(stats.get(name) or 0)
    except ValueError:
        return 0


def timestamps(path: Path) -> list[tuple[float, float | None, float | None, float]]:
    """(INVITE sent, 100, 18x, 200) per answered call, in seconds since the epoch."""
    calls = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.strip().split(";")
        if len(fields) != 9:
            continue
        try:
            values = [float(v) if v else 0.0 for v in fields[1:]]
        except ValueError:
            continue
        stamps = [
            s + u / 1e6 if s else None for s, u in zip(values[::2], values[1::2], strict=True)
        ]
        if stamps[0] is None or stamps[3] is None:
            continue
        calls.append((stamps[0], stamps[1], stamps[2], stamps[3]))
    return calls


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def delays(calls: list[tuple[float, float | None, float | None, float]]) -> dict[str, Any]:
    """p50 / p99 / max in ms of INVITE->100, INVITE->18x and INVITE->200."""
    out: dict[str, Any] = {}
    for name, index in (("100", 1), ("180", 2), ("200", 3)):
        values = [(t - c[0]) * 1000 for c in calls if (t := c[index]) is not None]
        out[name] = {
            "n": len(values),
            "p50_ms": _round(percentile(values, 50), 3),
            "p99_ms": _round(percentile(values, 99), 3),
            "max_ms": _round(max(values) if values else None, 3),
        }
    return out


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def excerpt(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[:lines])


def tail_text(path: Path, characters: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-characters:]
    except OSError:
        return ""


# --- the platform -----------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    sipp: Sipp
    launcher: Launcher | None = None
    running: RunningPlatform | None = None
    caller: str = ""
    nats_monitor_port: int = 0
    # CALLS events a call stores (STARTED, RINGING, ANSWERED, ENDED), counted in the
    # warm-up; 0 until then (no events lag is measured).
    events_per_call: int = 0
    carrier_port: int = 0
    direction: str = "termination"
    pbx_port: int = 0  # the origination URL's port: the PBX sipp when originating
    number: str = ""  # the trunk's number the carrier calls when originating
    setup: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        # The carriers file fixes the carrier's port; every platform step starts a fresh
        # carrier sipp on it, so each step's carrier counters are its own. Originating, the
        # carrier sipp sends from it (the platform trusts carriers by address and UDP port),
        # so the two directions run one after the other. The origination URL's port is fixed
        # too: a fresh PBX sipp listens on it per step.
        self.carrier_port = free_udp_port()
        self.pbx_port = free_udp_port()
        carriers = self.workdir / "carriers.toml"
        carriers.write_text(
            f'[[gateway]]\nname = "bench-carrier"\naddress = "{HOST}:{self.carrier_port}"\n'
        )
        api_port, nats_port, monitor_port = free_ports(3)
        self.nats_monitor_port = monitor_port
        self.launcher = Launcher(
            DataDir.at(self.workdir / "data"), api_port, nats_port, monitor_port,
            extra_args=("--carriers", str(carriers)),
        )  # fmt: skip
        started = time.monotonic()
        self.running = self.launcher.start()
        self.setup["platform_start_s"] = round(time.monotonic() - started, 1)
        self.configure()

    def configure(self) -> None:
        assert self.running is not None
        bootstrap = json.loads(self.running.data.bootstrap_file.read_text())
        sid, token = bootstrap["account_sid"], bootstrap["auth_token"]
        api = self.running.api_url
        client = Client(sid, token)
        client.trunking.base_url = client.api.base_url = api
        trunk = client.trunking.v1.trunks.create(friendly_name="bench", domain_name=DOMAIN)
        acls = client.api.v2010.account.sip.ip_access_control_lists
        acl = acls.create(friendly_name="bench loopback")
        acls(acl.sid).ip_addresses.create(friendly_name="loopback", ip_address=HOST)
        client.trunking.v1.trunks(trunk.sid).ip_access_control_lists.create(
            ip_access_control_list_sid=acl.sid
        )
        available = client.available_phone_numbers("US").local.list(limit=1)
        if not available:
            raise RuntimeError("no available US local number to buy as the caller ID")
        number = client.incoming_phone_numbers.create(phone_number=available[0].phone_number)
        limits = httpx.post(
            f"{api}/v1/Trunks/{trunk.sid}",
            data={"CpsLimit": "10000", "ConcurrentCallsLimit": "100000"},
            auth=(sid, token),
            timeout=10,
        )
        limits.raise_for_status()
        body = limits.json()
        self.caller = str(number.phone_number)
        # Origination: a number on the trunk, whose origination URL is the PBX sipp.
        client.trunking.v1.trunks(trunk.sid).origination_urls.create(
            friendly_name="bench pbx", sip_url=f"sip:{HOST}:{self.pbx_port}", priority=10,
            weight=10, enabled=True,
        )  # fmt: skip
        available = client.available_phone_numbers("US").local.list(area_code="201", limit=1)
        if not available:
            raise RuntimeError("no available US local number to buy for origination")
        on_trunk = client.incoming_phone_numbers.create(
            phone_number=available[0].phone_number, trunk_sid=trunk.sid
        )
        self.number = str(on_trunk.phone_number)
        self.setup.update(
            trunk_sid=trunk.sid,
            domain=DOMAIN,
            auth_type=body.get("auth_type"),
            caller=self.caller,
            cps_limit=body.get("cps_limit"),
            concurrent_calls_limit=body.get("concurrent_calls_limit"),
            sip=f"{HOST}:{self.launcher.sip_port}" if self.launcher else None,
            carrier_gateway=f"{HOST}:{self.carrier_port}",
            origination_number=self.number,
            origination_url=f"sip:{HOST}:{self.pbx_port}",
            origination_caller=ORIGINATION_CALLER,
        )

    def wait_until_routing(self) -> None:
        """The signaling service learns the trunk and its number through NATS; wait until a
        call in the current direction completes."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            step = self.calls("probe", rate=5, calls=1, hold_ms=0, meter=False)
            if step["successful"] == 1:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the platform does not complete a call: {json.dumps(step)[:3000]}")

    def stop(self) -> None:
        if self.launcher is not None:
            self.launcher.cleanup()

    def programs(self) -> dict[str, list[int]]:
        """Each platform program's pid and its children's, by supervisord's names."""
        assert self.running is not None
        supervisor = Supervisor(self.running.data.supervisord_socket)
        groups = {p.name: descendants(p.pid) for p in supervisor.processes() if p.pid}
        groups["supervisord"] = [supervisor.pid(), self.running.process.pid]
        return groups

    def diagnostics(self, lines: int = 30) -> dict[str, str]:
        assert self.running is not None
        logs = {}
        for log in sorted(self.running.data.logs.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()
            interesting = [
                line for line in text
                if any(w in line for w in ('"WARNING"', '"ERROR"', '"CRITICAL"', "Traceback",
                                           "refused", "failed", "rror"))
            ]  # fmt: skip
            logs[log.name] = "\n".join((interesting or text)[-lines:])
        return logs

    # --- one step ------------------------------------------------------------------------

    def calls(
        self,
        tag: str,
        rate: float,
        calls: int,
        hold_ms: int,
        direct: bool = False,
        meter: bool = True,
        during: Callable[[subprocess.Popen[bytes], dict[str, Path], float], None] | None = None,
    ) -> dict[str, Any]:
        """One sipp UAC run at `rate` through the platform (or straight to a sipp UAS), in
        the current direction: terminating, the PBX UAC calls a carrier UAS on the carriers
        file's port; originating, the carrier UAC sends from that port to the platform's
        IP, for the trunk's number, and the PBX UAS answers on the origination URL."""
        assert self.launcher is not None
        originating = self.direction == "origination"
        tag = f"{self.direction[:4]}-{tag}"
        local_port = None
        if originating:
            dialed = {"domain": HOST, "service": self.number}
            caller = ORIGINATION_CALLER
        else:
            dialed = {"domain": DOMAIN, "service": DESTINATION}
            caller = self.caller
        if direct:
            carrier, port, uas_files = self.sipp.carrier(tag)
            target = f"{HOST}:{port}"
        else:
            uas_port = self.pbx_port if originating else self.carrier_port
            carrier, port, uas_files = self.sipp.carrier(tag, uas_port)
            target = f"{HOST}:{self.launcher.sip_port}"
            local_port = self.carrier_port if originating else None
        groups = {} if direct else self.programs()
        # sipp holds back new calls past -l; make it large enough never to, so an overload
        # shows as failures and retransmissions rather than as a lower offered rate.
        limit = max(1000, int(rate * (hold_ms / 1000 + 12)))
        timeout_s = calls / rate + hold_ms / 1000 + 45
        metering = Meter(groups) if meter else None
        events_before = None if direct else self.stored_events()
        started = time.monotonic()
        uac, files = self.sipp.pbx(
            tag, target, caller, rate, calls, hold_ms, limit, timeout_s, local_port=local_port,
            **dialed,
        )  # fmt: skip
        usage: dict[str, Any] = {}
        uac_cpu = None
        events_lag: float | None = None
        events_measured = False
        try:
            if metering:
                metering.exclude([carrier.pid, uac.pid])
            while uac_cpu is None:
                if during is not None:
                    during(uac, files, time.monotonic() - started)
                if metering:
                    metering.sample()
                uac_cpu = reap(uac, SAMPLE_S)
            if events_before is not None and self.events_per_call:
                events_lag = self.events_lag(events_before + self.events_per_call * calls)
                events_measured = True
            if metering:
                # % of one CPU over the load (sipp's run); CPU per call over the load and the
                # drain after it: work the platform queued (call records, events) and did
                # after the last BYE belongs to those calls too.
                usage = metering.read()
                drain = metering.platform_idle(PROGRAMS, DRAIN_LIMIT_S) if not direct else 0.0
                total = metering.read()
                usage["load_cpu_s"] = usage["cpu_s"]
                usage["cpu_s"] = total["cpu_s"]
                usage["drain_s"] = drain
        finally:
            if uac_cpu is None:
                stop_process(uac, signal.SIGKILL)
            # Let the carrier answer the last BYEs' retransmissions, then stop it.
            time.sleep(0.2)
            uas_cpu = stop_process(carrier)
        if usage:
            for name, seconds in (("sipp_uac", uac_cpu or 0.0), ("sipp_uas", uas_cpu)):
                usage["cpu_s"][name] = round(seconds, 3)
                usage["cpu_percent"][name] = round(100 * seconds / usage["wall_s"], 1)
        stats = last_stats(files["stat.csv"])
        carrier_stats = last_stats(uas_files["stat.csv"])
        stamps = timestamps(files["setup.log"])
        successful = counter(stats, "SuccessfulCall(C)")
        failed = counter(stats, "FailedCall(C)")
        invites = sorted(s[0] for s in stamps)
        span = invites[-1] - invites[0] if len(invites) > 1 else 0.0
        step: dict[str, Any] = {
            "tag": tag,
            "direction": self.direction,
            "path": "direct" if direct else "platform",
            "rate": rate,
            "calls": calls,
            "hold_ms": hold_ms,
            "sipp_exit": uac.returncode,
            "successful": successful,
            "failed": failed,
            "unfinished": max(0, calls - successful - failed),
            "retransmissions": counter(stats, "Retransmissions(C)"),
            # The UAS: the carrier sipp when terminating, the PBX sipp when originating.
            "uas_failed": counter(carrier_stats, "FailedCall(C)"),
            "uas_retransmissions": counter(carrier_stats, "Retransmissions(C)"),
            "answered_logged": len(stamps),
            "offered_cps": round((len(invites) - 1) / span, 1) if span > 0 else None,
            "delay": delays(stamps),
        }
        if events_measured:  # not on the direct path, nor in the warm-up that counts them
            step["events_lag_s"] = events_lag
        if usage:
            step.update(usage)
            per_call = {
                name: round(seconds / successful * 1e6, 1) if successful else None
                for name, seconds in usage["cpu_s"].items()
            }
            step["cpu_us_per_call"] = per_call
            if not direct:
                step["platform_cpu_us_per_call"] = (
                    round(sum(usage["cpu_s"][p] for p in PROGRAMS if p in usage["cpu_s"])
                          / successful * 1e6, 1) if successful else None
                )  # fmt: skip
        if failed or step["unfinished"] or step["uas_failed"]:
            step["sipp_errors"] = excerpt(files["errors.log"])
            step["sipp_output_tail"] = tail_text(files["out"])
            step["uas_errors"] = excerpt(uas_files["errors.log"])
            if not direct:
                step["platform_logs"] = self.diagnostics()
        step["shortfalls"] = shortfalls(step, self.args.max_setup_ms, self.args.max_events_lag_s)
        step["passed"] = not step["shortfalls"]
        return step

    # --- the CALLS stream ------------------------------------------------------------------

    def stored_events(self) -> int | None:
        """Messages in the CALLS stream, from NATS' monitoring endpoint (None: no stream)."""
        url = f"http://{HOST}:{self.nats_monitor_port}/jsz?streams=true"
        report = httpx.get(url, timeout=5.0).json()
        for account in report.get("account_details") or ():
            for stream in account.get("stream_detail") or ():
                if stream.get("name") == "CALLS":
                    return int(stream["state"]["messages"])
        return None

    def events_lag(self, expected: int, limit: float = EVENTS_LAG_LIMIT_S) -> float | None:
        """Seconds from now (the load's end) until the CALLS stream holds `expected`
        messages; None if it does not within `limit`."""
        began = time.monotonic()
        while time.monotonic() - began < limit:
            stored = self.stored_events()
            if stored is not None and stored >= expected:
                return round(time.monotonic() - began, 2)
            time.sleep(0.05)
        return None

    def count_events_per_call(self, before: int, calls: int) -> None:
        """After the warm-up: how many CALLS events one call stores, once they stop coming."""
        last, steady_since = -1, time.monotonic()
        while time.monotonic() - steady_since < 1.0:
            stored = self.stored_events() or 0
            if stored != last:
                last, steady_since = stored, time.monotonic()
            time.sleep(0.1)
        self.events_per_call = round((last - before) / calls) if calls else 0

    def settle(self, limit: float = 30.0) -> float:
        """Wait until the platform is idle (< 5 % of one CPU over 0.5 s); seconds waited."""
        began = time.monotonic()
        pids = [pid for pids in self.programs().values() for pid in pids]
        while time.monotonic() - began < limit:
            before = cpu_ticks(pids)
            time.sleep(0.5)
            if (cpu_ticks(pids) - before) / TICK / 0.5 < 0.05:
                break
        return round(time.monotonic() - began, 1)

    def idle_cpu(self, seconds: float) -> dict[str, float]:
        """% of one CPU each platform program uses with no calls (timers, polling)."""
        self.settle()
        metering = Meter(self.programs())
        time.sleep(seconds)
        return dict(metering.read()["cpu_percent"])

    # --- memory --------------------------------------------------------------------------

    def memory(self, count: int, rate: float) -> dict[str, Any]:
        """RSS of signaling + media with `count` calls up at once, less idle, per call.

        Sampled 1.5 s after the last call is answered (calls are held until all are up plus
        5 s). Each call then still carries its INVITE transactions, which the signaling
        service keeps for 32 s after the final response over UDP (RFC 3261 timer D, RFC 6026
        timer L): an RSS sample after they expire would not show it (the allocator keeps
        freed memory), so this is the cost of a call in its first 32 s, an upper bound."""
        self.settle()
        groups = self.programs()
        watched = {name: groups.get(name, []) for name in MEMORY_PROGRAMS}
        idle = {name: rss_kib(pids) for name, pids in watched.items()}
        ramp = count / rate
        hold_ms = int((ramp + 5) * 1000)
        loaded: dict[str, Any] = {}

        def sample(uac: subprocess.Popen[bytes], files: dict[str, Path], elapsed: float) -> None:
            if loaded or elapsed < ramp + 1.5:
                return
            stats = last_stats(files["stat.csv"])
            loaded.update(
                at_s=round(elapsed, 1),
                active_calls=counter(stats, "CurrentCall"),
                created=counter(stats, "OutgoingCall(C)"),
                rss_kib={name: rss_kib(pids) for name, pids in watched.items()},
            )

        step = self.calls("memory", rate, count, hold_ms, during=sample)
        print_progress(step, "memory")
        settled_s = self.settle()
        after = {name: rss_kib(pids) for name, pids in watched.items()}
        result: dict[str, Any] = {
            "calls": count,
            "rate": rate,
            "hold_ms": hold_ms,
            "idle_rss_kib": idle,
            "loaded": loaded,
            "after_rss_kib": after,
            "after_settle_s": settled_s,
            "step": step,
        }
        active = loaded.get("active_calls") or 0
        if active:
            grown = {p: loaded["rss_kib"][p] - idle[p] for p in idle}
            result["active_calls"] = active
            result["kib_per_call"] = round(sum(grown.values()) / active, 2)
            result["kb_per_call"] = round(sum(grown.values()) * 1.024 / active, 2)
            result["kib_per_call_by_program"] = {p: round(g / active, 2) for p, g in grown.items()}
        return result


def shortfalls(
    step: dict[str, Any], max_setup_ms: float, max_events_lag_s: float | None = None
) -> list[str]:
    """Why a step does not count as sustained at its rate (empty: it does).

    No failed call is not enough on its own: an overloaded platform queues INVITEs, the PBX
    retransmits, and with a short step every call still completes, seconds late, after the
    load stops. So a sustained rate also means no retransmission (every request answered
    within T1 = 500 ms), an INVITE->200 p99 within `max_setup_ms`, and sipp offering the
    rate asked for. And the calls' records must keep up too: every CALLS event of the step
    stored within `max_events_lag_s` of the load's end, or a longer run at that rate would
    fall further and further behind (None: not measured, as on the direct path)."""
    why = []
    if max_events_lag_s is not None and step.get("path") == "platform" and "events_lag_s" in step:
        lag = step["events_lag_s"]
        if lag is None:
            why.append(f"CALLS events not all stored within {EVENTS_LAG_LIMIT_S:g} s")
        elif lag > max_events_lag_s:
            why.append(f"CALLS events stored {lag:g} s after the load > {max_events_lag_s:g} s")
    if step["failed"] or step["unfinished"] or step["successful"] != step["calls"]:
        why.append(f"{step['failed'] + step['unfinished']} failed or unfinished calls")
    if step["retransmissions"]:
        why.append(f"{step['retransmissions']} retransmissions")
    p99 = step["delay"]["200"]["p99_ms"]
    if p99 is not None and p99 > max_setup_ms:
        why.append(f"INVITE->200 p99 {p99:.0f} ms > {max_setup_ms:g} ms")
    offered = step.get("offered_cps")
    if offered is not None and offered < 0.95 * step["rate"]:
        why.append(f"sipp offered only {offered} calls/s")
    return why


# --- the run ----------------------------------------------------------------------------------


def run_rates(
    bench: Bench, args: argparse.Namespace, rates: list[int], steps: list[dict[str, Any]]
) -> None:
    """The rate steps, appended to `steps` as they finish (kept if a later one fails)."""
    for rate in rates:
        for round_ in range(args.rounds):
            calls = int(rate * args.seconds)
            bench.settle()
            step = bench.calls(f"r{rate}", rate, calls, args.hold_ms)
            step["round"] = round_
            if not args.no_baseline:
                bench.settle()
                step["baseline"] = bench.calls(f"r{rate}-direct", rate, calls, args.hold_ms,
                                               direct=True)  # fmt: skip
            steps.append(step)
            print_progress(step)


def search(bench: Bench, args: argparse.Namespace, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Bisect the highest sustained rate, starting from what the rate steps showed (a rate
    passes when every round of it passed)."""
    failing = sorted({s["rate"] for s in steps if not s["passed"]})
    passing = [s["rate"] for s in steps if s["rate"] not in failing]
    low = max(passing, default=0)
    high = min((r for r in failing if r > low), default=None)
    probes: list[dict[str, Any]] = []

    def probe(rate: int) -> bool:
        bench.settle()
        step = bench.calls(f"search{rate}", rate, int(rate * args.search_seconds), args.hold_ms)
        probes.append(step)
        print_progress(step, "search")
        return bool(step["passed"])

    if high is None:
        # Nothing failed yet: double until something does (or the ceiling).
        rate = max(low * 2, args.search_resolution)
        while rate <= args.search_max:
            if not probe(rate):
                high = rate
                break
            low, rate = rate, rate * 2
        else:
            return {"highest_passing_cps": low, "lowest_failing_cps": None, "probes": probes,
                    "seconds_per_probe": args.search_seconds,
                    "note": f"sustained up to --search-max {args.search_max}"}  # fmt: skip
    while high - low > args.search_resolution:
        middle = (low + high) // 2
        if probe(middle):
            low = middle
        else:
            high = middle
    return {"highest_passing_cps": low, "lowest_failing_cps": high, "probes": probes,
            "seconds_per_probe": args.search_seconds}  # fmt: skip


def median_of(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def summarize(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per rate: medians over rounds, and the platform-added delays (platform - baseline)."""
    rows = []
    for rate in sorted({s["rate"] for s in steps}):
        mine = [s for s in steps if s["rate"] == rate]
        row: dict[str, Any] = {
            "rate": rate,
            "rounds": len(mine),
            "successful": sum(s["successful"] for s in mine),
            "failed": sum(s["failed"] + s["unfinished"] for s in mine),
            "retransmissions": sum(s["retransmissions"] for s in mine),
            "all_passed": all(s["passed"] for s in mine),
            "offered_cps": median_of(s["offered_cps"] for s in mine),
        }
        for leg in ("180", "200"):
            for q in ("p50_ms", "p99_ms"):
                ours = median_of(s["delay"][leg][q] for s in mine)
                base = median_of(s["baseline"]["delay"][leg][q] for s in mine if "baseline" in s)
                row[f"{leg}_{q}"] = ours
                row[f"baseline_{leg}_{q}"] = base
                row[f"added_{leg}_{q}"] = (
                    round(ours - base, 3) if ours is not None and base is not None else None
                )
        names = [n for n in (*PROGRAMS, "sipp_uac", "sipp_uas") if n in mine[0].get("cpu_s", {})]
        row["cpu_us_per_call"] = {
            n: median_of(s["cpu_us_per_call"][n] for s in mine) for n in names
        }
        row["platform_cpu_us_per_call"] = median_of(s["platform_cpu_us_per_call"] for s in mine)
        row["cpu_percent"] = {n: median_of(s["cpu_percent"][n] for s in mine) for n in names}
        row["wait_percent"] = {
            n: median_of(s["wait_percent"][n] for s in mine) for n in PROGRAMS if n in names
        }
        row["other_percent"] = median_of(s["other_percent"] for s in mine)
        row["drain_s"] = median_of(s.get("drain_s") for s in mine)
        row["events_lag_s"] = median_of(s.get("events_lag_s") for s in mine)
        row["busiest"] = max(
            (n for n in PROGRAMS if n in row["cpu_percent"]),
            key=lambda n: row["cpu_percent"][n] or 0,
        )
        rows.append(row)
    return rows


def targets(
    rows: list[dict[str, Any]], found: dict[str, Any] | None, memory: dict[str, Any] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    passing = [r["rate"] for r in rows if r["all_passed"]]
    best = max([*passing, (found or {}).get("highest_passing_cps") or 0], default=0)
    out[f"at_least_{TARGET_CPS}_cps_sustained"] = {
        "highest_passing_cps": best, "from": "search" if found else "rate steps",
        "criterion": "no failed call, no retransmission, INVITE->200 p99 within --max-setup-ms,"
        " every CALLS event stored within --max-events-lag-s of the load's end",
        "met": best >= TARGET_CPS,
    }  # fmt: skip
    at = next((r for r in rows if r["rate"] == TARGET_P99_RATE), None)
    key = f"added_p99_at_most_{TARGET_P99_MS:g}ms_at_{TARGET_P99_RATE}_cps"
    if at is None:
        out[key] = {"note": f"not measured: put {TARGET_P99_RATE} in --rates"}
    else:
        worst = max(
            v for v in (at["added_180_p99_ms"], at["added_200_p99_ms"], -1e9) if v is not None
        )
        out[key] = {
            "added_180_p99_ms": at["added_180_p99_ms"],
            "added_200_p99_ms": at["added_200_p99_ms"],
            "met": worst <= TARGET_P99_MS and at["all_passed"],
        }
    if memory and memory.get("kb_per_call") is not None:
        out[f"at_most_{TARGET_KB_PER_CALL:g}kB_per_active_call"] = {
            "kb_per_call": memory["kb_per_call"],
            "active_calls": memory["active_calls"],
            "met": memory["kb_per_call"] <= TARGET_KB_PER_CALL,
        }
    return out


def print_progress(step: dict[str, Any], what: str = "step") -> None:
    base = step.get("baseline", {})
    d, b = step["delay"], base.get("delay", {})

    def show(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    print(
        f"{step.get('direction', '')[:4]} {what} {step['rate']:>5} cps x{step['calls']}: "
        f"ok {step['successful']} "
        f"failed {step['failed']} unfinished {step['unfinished']} "
        f"retrans {step['retransmissions']} offered {step['offered_cps']} | "
        f"200 p50/p99 {show(d['200']['p50_ms'])}/{show(d['200']['p99_ms'])} ms"
        + (f" (direct {show(b['200']['p50_ms'])}/{show(b['200']['p99_ms'])})" if b else "")
        + f" | platform {step.get('platform_cpu_us_per_call')} us/call, "
        f"signaling {step.get('cpu_percent', {}).get('signaling')}% "
        f"other {step.get('other_percent')}% drain {step.get('drain_s')} s"
        f" events lag {step.get('events_lag_s')} s"
        + (f" | not sustained: {'; '.join(step['shortfalls'])}" if step["shortfalls"] else ""),
        flush=True,
    )


def cell(value: float | None, width: int, digits: int = 1) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def print_rows(rows: list[dict[str, Any]]) -> None:
    print("\nSetup delay, ms (+: through the platform minus direct; medians of rounds)")
    delay_columns = [
        ("180p50", "180_p50_ms"), ("180p99", "180_p99_ms"),
        ("200p50", "200_p50_ms"), ("200p99", "200_p99_ms"),
        ("+180p50", "added_180_p50_ms"), ("+180p99", "added_180_p99_ms"),
        ("+200p50", "added_200_p50_ms"), ("+200p99", "added_200_p99_ms"),
        ("dir200p50", "baseline_200_p50_ms"), ("dir200p99", "baseline_200_p99_ms"),
    ]  # fmt: skip
    print(
        f"{'rate':>5} {'ok':>6} {'fail':>5} {'retx':>5} {'offer':>6} "
        + " ".join(f"{title:>9}" for title, _ in delay_columns)
    )
    for r in rows:
        print(
            f"{r['rate']:>5} {r['successful']:>6} {r['failed']:>5} {r['retransmissions']:>5} "
            f"{cell(r['offered_cps'], 6)} "
            + " ".join(cell(r[key], 9, 2) for _, key in delay_columns)
        )
    print("\nCPU µs per call (% of one CPU over the step) by process; other% = everything else")
    names = [n for n in (*PROGRAMS, "sipp_uac", "sipp_uas") if n in rows[0]["cpu_us_per_call"]]
    print(f"{'rate':>5} " + " ".join(f"{n[:11]:>14}" for n in names) + f" {'platform':>8} other%")
    for r in rows:
        cells = [
            f"{cell(r['cpu_us_per_call'][n], 6, 0)} ({cell(r['cpu_percent'][n], 3, 0)}%)"
            for n in names
        ]
        print(
            f"{r['rate']:>5} "
            + " ".join(f"{c:>14}" for c in cells)
            + f" {cell(r['platform_cpu_us_per_call'], 8, 0)} {cell(r['other_percent'], 6)}"
        )


def print_tables(
    direction: str,
    rows: list[dict[str, Any]],
    found: dict[str, Any] | None,
    memory: dict[str, Any] | None,
    goals: dict[str, Any],
) -> None:
    print(f"\n=== {direction}: {PATHS[direction]} ===")
    if rows:
        print_rows(rows)
    if found:
        print(
            f"\nsearch: highest sustained rate {found['highest_passing_cps']} calls/s "
            f"(lowest failing {found['lowest_failing_cps']}; {len(found['probes'])} probes of "
            f"{found.get('seconds_per_probe', '?')} s)"
        )
    if memory and memory.get("active_calls"):
        loaded = memory["loaded"]
        print(
            f"\nmemory: {memory['active_calls']} active calls (at {loaded['at_s']} s): "
            f"{memory['kib_per_call']} KiB = {memory['kb_per_call']} kB per call over idle, "
            f"signaling + media (by program {memory['kib_per_call_by_program']}; RSS "
            f"{sum(loaded['rss_kib'].values())} KiB, idle {sum(memory['idle_rss_kib'].values())})"
        )
    print(
        "\ntargets (issue 6):"
        if direction == "termination"
        else "\ntargets (issue 6's termination thresholds, for comparison):"
    )
    for name, value in goals.items():
        print(f"  {name}: {json.dumps(value)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--direction",
        choices=(*DIRECTIONS, "both"),
        default="both",
        help="which calls: termination, origination, or both, one after the other",
    )
    parser.add_argument(
        "--rates", default="50,100,200,300,400", help="calls/s steps, comma-separated (empty: none)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of calls per step")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per rate (medians)")
    parser.add_argument("--hold-ms", type=int, default=100, help="call length after the ACK")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--search", action="store_true", help="bisect the highest sustained rate")
    parser.add_argument("--search-seconds", type=float, default=10.0)
    parser.add_argument(
        "--max-setup-ms",
        type=float,
        default=500.0,
        help="a step passes with no failed call, no retransmission and INVITE->200 p99 within this",
    )
    parser.add_argument(
        "--max-events-lag-s",
        type=float,
        default=2.0,
        help="and every CALLS event of the step stored within this many seconds of its end",
    )
    parser.add_argument("--search-resolution", type=int, default=10)
    parser.add_argument("--search-max", type=int, default=2000)
    parser.add_argument(
        "--memory-calls",
        type=int,
        default=1000,
        help="calls up at once for the memory step (0: skip it)",
    )
    parser.add_argument("--memory-rate", type=float, default=50.0)
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    parser.add_argument("--sipp", default="sipp")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, sipp files)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()  # fmt: skip
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    sipp = shutil.which(args.sipp)
    if sipp is None:
        raise SystemExit(f"{args.sipp} not found (Debian: apt-get install sip-tester)")
    # Short: supervisord's unix socket path lives under it.
    workdir = Path(tempfile.mkdtemp(prefix="tl-term-"))
    bench = Bench(args, workdir, Sipp(sipp, workdir))
    report: dict[str, Any] = {
        "benchmark": "termination",
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "sipp": subprocess.run([sipp, "-v"], capture_output=True, text=True).stdout.strip(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    directions = DIRECTIONS if args.direction == "both" else (args.direction,)
    # Per direction, filled as the run goes (kept if a later step fails).
    runs: dict[str, dict[str, Any]] = {}
    try:
        bench.start()
        report["setup"] = bench.setup
        print(f"platform up in {bench.setup['platform_start_s']} s; work dir {workdir}", flush=True)
        for direction in directions:
            run = runs[direction] = {"path": PATHS[direction], "steps": []}
            run_direction(bench, args, direction, rates, run, report)
    except BaseException as error:
        report["error"] = repr(error)
        if bench.running is not None:
            report["platform_logs"] = bench.diagnostics()
        raise
    finally:
        bench.stop()
        report["directions"] = list(runs)
        for direction, run in runs.items():
            rows = summarize(run["steps"])
            run.update(summary=rows, targets=targets(rows, run.get("search"), run.get("memory")))
            report[direction] = run
        path = args.json or RESULTS / f"termination-{datetime.datetime.now():%Y%m%dT%H%M%S}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        for direction, run in runs.items():
            print_tables(direction, run["summary"], run.get("search"), run.get("memory"),
                         run["targets"])  # fmt: skip
        if any(
            r["other_percent"] and r["other_percent"] > OTHER_WORK_WARN
            for run in runs.values()
            for r in run["summary"]
        ):
            print(f"\nnote: other work used more than {OTHER_WORK_WARN:g}% of a CPU in some "
                  "steps: the machine was shared, read those steps with care")  # fmt: skip
        print(f"wrote {path}")
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run_direction(
    bench: Bench,
    args: argparse.Namespace,
    direction: str,
    rates: list[int],
    run: dict[str, Any],
    report: dict[str, Any],
) -> None:
    """One direction's warm-up, memory step, rate steps and search, into `run`."""
    bench.direction = direction
    print(f"\n--- {direction}: {PATHS[direction]}", flush=True)
    bench.wait_until_routing()
    if args.warmup_seconds > 0:
        before = bench.stored_events() or 0
        warm = bench.calls("warmup", 20, int(20 * args.warmup_seconds), args.hold_ms)
        bench.count_events_per_call(before, warm["successful"])
        warm["events_per_call"] = bench.events_per_call
        run["warmup"] = warm
        print_progress(warm, "warmup")
    if "idle_cpu_percent" not in report:
        report["idle_cpu_percent"] = bench.idle_cpu(3.0)
        print(f"idle platform, % of one CPU: {report['idle_cpu_percent']}", flush=True)
    if args.memory_calls:
        run["memory"] = bench.memory(args.memory_calls, args.memory_rate)
    run_rates(bench, args, rates, run["steps"])
    if args.search:
        run["search"] = search(bench, args, run["steps"])


if __name__ == "__main__":
    main()
