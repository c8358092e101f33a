"""Concurrent relayed G.711 calls through a media relay: loss, latency, CPU and memory per call.

For each relay, each mode and each number N of calls, the benchmark sets up N calls through
the relay's control API (offer with leg A's SDP, answer with leg B's), streams RTP both ways
for `--seconds` after a 1 s warm-up, deletes the calls, and reports:

- loss: packets not received within 50 ms of their send time (never received, or late), as
  a fraction of those sent in the measured window; a step passes under 0.1 %;
- one-way latency p50 / p99 through the relay (kernel receive timestamp, SO_TIMESTAMPNS,
  minus the time the generator stamped just before sendmmsg);
- the relay's CPU from /proc/<pid>/stat (utime + stime) of its processes (FIELD-NOTES: the
  machine-wide /proc/stat undercounts), per relayed packet and per call-second;
- the relay's memory: VmRSS summed over its processes, idle and with N calls streaming,
  the difference over N (the relay is started afresh for every step unless
  `--reuse-relay`);
- the generator's own CPU per packet and how far it fell behind its schedule, socket drops
  (relay's and generator's) from /proc/net/udp, and `other%`: the CPU of every other
  process on the machine (kernel threads and reaped children included), so a loss can be
  told apart from a generator that cannot keep up or a relay starved by other work.

Relays: `rtpengine` (Debian's rtpengine-daemon, userspace `--table=-1`, over NG: see
rtpengine_ng.py) is the baseline measured in the same run; `trunkline` is the media service
(`python -m trunkline.media`, gRPC control API in proto/trunkline/v1/media.proto), skipped
with a note while that module does not exist; `direct` has no relay at all (the SDPs pass
through unchanged, so the legs send to each other): the generator's own ceiling;
`uvloop-floor` (uvloop_floor.py, `--floor-workers`) opens its sockets as the media service
does but only forwards each packet (and, in the srtp mode, unprotects or protects it with
pylibsrtp): the most a relay on uvloop transports can carry.

Modes: `rtp` (plain RTP both legs) and `srtp` (SRTP with SDES AES_CM_128_HMAC_SHA1_80 on leg B,
the answerer; the relay translates SRTP <-> RTP).

A call is G.711 PCMU at 10 ms packets: 100 packets per second each way, 12-byte RTP header
and 80-byte payload (92 bytes; 102 with the SRTP tag); `--payload-bytes 160` keeps 100/s.
Each step runs its calls in lock-step 10 ms ticks, each tick in `--slices` slices (1 ms
apart by default), so a slice sends N/slices packets per leg in one sendmmsg.

The load generator is one or more processes (`--generators`), each with two UDP sockets
(every A leg shares one, every B leg the other: the relay sends to the SDP address and the
call is told by its SSRC), sendmmsg / recvmmsg through ctypes, headers stamped and parsed
with numpy, SRTP by libsrtp through pylibsrtp's binding, in place (about 0.75 µs a packet),
draining its sockets once a tick. It runs SCHED_FIFO (`--generator-priority`), as packets
from a network would pre-empt the relay; on CFS it fell seconds behind its schedule on a
saturated 2-core machine, and a generator more than 10 ms behind fails the step.

    .venv/bin/python benchmarks/media_relay.py [--relays rtpengine,trunkline,direct,uvloop-floor]
        [--modes rtp,srtp] [--calls 100,300,600,900,1200] [--seconds 10] [--search]
        [--repeat 1] [--generators 1] [--slices 10] [--reuse-relay] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import datetime
import functools
import importlib.util
import json
import multiprocessing
import multiprocessing.connection
import os
import platform
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rtpengine_ng import HOST, SRTP_SUITE, Rtpengine, die_with_parent, log_problems, terminate

RESULTS = Path(__file__).parent / "results"
TICK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
PACKETS_PER_SECOND = 100  # each way, per call
TICK_NS = 1_000_000_000 // PACKETS_PER_SECOND
LATE_NS = 50_000_000  # a packet later than this counts as lost
LOSS_LIMIT = 0.001
WARMUP_S = 1.0
DRAIN_S = 0.3
OTHER_WORK_WARN = 15.0  # % of one CPU used by other work during a step
OTHER_WORK_SAMPLE_S = 0.25
MAX_LAG_MS = 10.0  # a generator further behind its schedule did not offer the nominal load
SRTP_TAG_BYTES = 10  # AES_CM_128_HMAC_SHA1_80
RTP_ONLY = ("direct",)  # relays without SRTP: skipped in the srtp mode
PCMU = 0


# --- SDP -----------------------------------------------------------------------------------


def make_sdp(port: int, session: int, payload_bytes: int, crypto: tuple[int, bytes] | None) -> str:
    """Leg A's offer or leg B's answer; `crypto` (tag, 30-byte key+salt) makes it RTP/SAVP."""
    profile = "RTP/SAVP" if crypto else "RTP/AVP"
    lines = [
        "v=0",
        f"o=- {session} 1 IN IP4 {HOST}",
        "s=trunkline-bench",
        f"c=IN IP4 {HOST}",
        "t=0 0",
        f"m=audio {port} {profile} {PCMU}",
        f"a=rtpmap:{PCMU} PCMU/8000",
        f"a=ptime:{payload_bytes // 8}",
        "a=sendrecv",
    ]
    if crypto:
        tag, key = crypto
        lines.append(f"a=crypto:{tag} {SRTP_SUITE} inline:{base64.b64encode(key).decode()}")
    return "\r\n".join(lines) + "\r\n"


@dataclass
class Media:
    host: str
    port: int
    profile: str
    crypto: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # suite -> (tag, key)


def parse_sdp(sdp: str) -> Media:
    """The first audio stream's address, profile and SDES keys."""
    host, port, profile = "", 0, ""
    crypto: dict[str, tuple[int, bytes]] = {}
    in_audio = False
    for line in sdp.splitlines():
        if line.startswith("c=IN IP4 ") and (in_audio or not port):
            host = line.split()[2]
        elif line.startswith("m="):
            if port:
                break
            parts = line[2:].split()
            in_audio = parts[0] == "audio"
            if in_audio:
                port, profile = int(parts[1]), parts[2]
        elif in_audio and line.startswith("a=crypto:"):
            match = re.match(r"a=crypto:(\d+) (\S+) inline:([^|\s]+)(\S*)", line)
            if match and "|" not in match.group(4).replace("|2^", "", 1).lstrip():
                crypto.setdefault(match.group(2), (int(match.group(1)), _b64(match.group(3))))
    if not port:
        raise ValueError(f"no audio stream in SDP:\n{sdp}")
    return Media(host, port, profile, crypto)


def _b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


# --- the relays ----------------------------------------------------------------------------


class Relay(Protocol):
    """What the benchmark drives: rtpengine over NG, Trunkline over gRPC, or nothing."""

    name: str

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def pids(self) -> list[int]: ...
    async def offer(
        self, call_id: str, from_tag: str, sdp: str, *, srtp_b: bool = False
    ) -> str: ...
    async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str) -> str: ...
    async def delete(self, call_id: str) -> None: ...
    def info(self) -> dict[str, Any]: ...


def child_environment() -> dict[str, str]:
    """os.environ without what main() set for this process only."""
    return {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}


def descendants(pid: int) -> list[int]:
    """pid and every process below it, from the parent pids in /proc/*/stat (this kernel
    has no /proc/<pid>/task/<tid>/children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


class TrunklineMedia:
    """`python -m trunkline.media` with its environment, driven over the gRPC control API."""

    name = "trunkline"

    def __init__(
        self,
        workdir: Path,
        port_min: int,
        port_max: int,
        *,
        workers: int | None = None,
        symmetric: bool = False,
    ) -> None:
        self.workdir = workdir
        self.port_min, self.port_max = port_min, port_max
        self.workers = workers
        self.symmetric = symmetric
        self.log = workdir / "trunkline-media.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: Any = None
        self.stub: Any = None

    @staticmethod
    def available() -> bool:
        try:
            return importlib.util.find_spec("trunkline.media.__main__") is not None
        except ModuleNotFoundError:
            return False

    async def start(self) -> None:
        import grpc

        from trunkline.v1 import media_pb2_grpc

        with socket.socket() as s:
            s.bind((HOST, 0))
            grpc_port = s.getsockname()[1]
        self.env = {
            "TRUNKLINE_MEDIA_GRPC_ADDRESS": f"{HOST}:{grpc_port}",
            "TRUNKLINE_MEDIA_RTP_ADDRESS": HOST,
            "TRUNKLINE_MEDIA_PORT_MIN": str(self.port_min),
            "TRUNKLINE_MEDIA_PORT_MAX": str(self.port_max),
        }
        if self.workers:
            self.env["TRUNKLINE_MEDIA_WORKERS"] = str(self.workers)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "trunkline.media"],
                env={**child_environment(), **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                preexec_fn=die_with_parent,
            )
        self.channel = grpc.aio.insecure_channel(f"{HOST}:{grpc_port}")
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"trunkline.media exited {self.process.returncode}")
            try:
                await asyncio.wait_for(self.channel.channel_ready(), 0.5)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise RuntimeError("trunkline.media: gRPC not ready in 30 s") from None
        self.stub = media_pb2_grpc.MediaStub(self.channel)

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None
        process, self.process = self.process, None
        await terminate(process, 30)

    def pids(self) -> list[int]:
        if self.process is None or self.process.poll() is not None:
            return []
        return descendants(self.process.pid)

    async def offer(self, call_id: str, from_tag: str, sdp: str, *, srtp_b: bool = False) -> str:
        from trunkline.v1 import media_pb2 as pb

        answerer = pb.LegPolicy(symmetric_rtp=self.symmetric, transport=pb.TRANSPORT_RTP)
        if srtp_b:
            answerer = pb.LegPolicy(
                symmetric_rtp=self.symmetric,
                transport=pb.TRANSPORT_SRTP,
                crypto_suites=[SRTP_SUITE],
            )
        reply = await self.stub.Offer(
            pb.OfferRequest(
                call_id=call_id,
                from_tag=from_tag,
                sdp=sdp.encode(),
                offerer=pb.LegPolicy(symmetric_rtp=self.symmetric, transport=pb.TRANSPORT_RTP),
                answerer=answerer,
            )
        )
        return str(reply.sdp.decode())

    async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str) -> str:
        from trunkline.v1 import media_pb2 as pb

        reply = await self.stub.Answer(
            pb.AnswerRequest(call_id=call_id, from_tag=from_tag, to_tag=to_tag, sdp=sdp.encode())
        )
        return str(reply.sdp.decode())

    async def delete(self, call_id: str) -> None:
        from trunkline.v1 import media_pb2 as pb

        await self.stub.Delete(pb.DeleteRequest(call_id=call_id))

    def info(self) -> dict[str, Any]:
        return {
            "command": [sys.executable, "-m", "trunkline.media"],
            "env": getattr(self, "env", None),
        }

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class UvloopFloor:
    """`uvloop_floor.py`: uvloop datagram transports that only forward, in `workers`
    processes (calls spread by Call-ID, the port range split between them): the most any
    relay on uvloop transports can carry here, measured beside the others."""

    name = "uvloop-floor"

    def __init__(self, workdir: Path, port_min: int, port_max: int, workers: int = 1) -> None:
        self.log = workdir / "uvloop-floor.log"
        self.port_min, self.port_max = port_min, port_max
        self.workers = max(1, workers)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Lock]] = []

    def _command(self, index: int, control: str) -> list[str]:
        span = (self.port_max - self.port_min + 1) // self.workers
        low = self.port_min + index * span
        return [
            sys.executable,
            str(Path(__file__).with_name("uvloop_floor.py")),
            f"--control={control}",
            f"--address={HOST}",
            f"--port-min={low}",
            f"--port-max={low + span - 1}",
        ]

    async def start(self) -> None:
        for index in range(self.workers):
            with socket.socket() as s:
                s.bind((HOST, 0))
                control = f"{HOST}:{s.getsockname()[1]}"
            with self.log.open("ab") as log:
                self.processes.append(
                    subprocess.Popen(
                        self._command(index, control),
                        env=child_environment(),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        preexec_fn=die_with_parent,
                    )
                )
            deadline = time.monotonic() + 30
            while True:
                try:
                    reader, writer = await asyncio.open_connection(*control.rsplit(":", 1))
                    break
                except OSError:
                    if self.processes[-1].poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("uvloop_floor.py did not start") from None
                    await asyncio.sleep(0.05)
            self.streams.append((reader, writer, asyncio.Lock()))

    async def stop(self) -> None:
        for _, writer, _ in self.streams:
            writer.close()
        self.streams = []
        await asyncio.gather(*(terminate(process, 30) for process in self.processes))
        self.processes = []

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.poll() is None]

    async def _request(self, call_id: str, **request: str | bool) -> dict[str, str]:
        reader, writer, lock = self.streams[zlib.crc32(call_id.encode()) % len(self.streams)]
        async with lock:
            writer.write(json.dumps({"call_id": call_id, **request}).encode() + b"\n")
            reply: dict[str, str] = json.loads(await reader.readline())
        if "error" in reply:
            raise RuntimeError(f"uvloop-floor: {reply['error']}")
        return reply

    async def offer(self, call_id: str, from_tag: str, sdp: str, *, srtp_b: bool = False) -> str:
        return (await self._request(call_id, op="offer", sdp=sdp, srtp=srtp_b))["sdp"]

    async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str) -> str:
        return (await self._request(call_id, op="answer", sdp=sdp))["sdp"]

    async def delete(self, call_id: str) -> None:
        await self._request(call_id, op="delete")

    def info(self) -> dict[str, Any]:
        return {"commands": [self._command(i, "<control>") for i in range(self.workers)]}


class Direct:
    """No relay: both SDPs pass through, so leg A and leg B send to each other."""

    name = "direct"

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def pids(self) -> list[int]:
        return []

    async def offer(self, call_id: str, from_tag: str, sdp: str, *, srtp_b: bool = False) -> str:
        if srtp_b:
            raise ValueError("direct: plain RTP only")
        return sdp

    async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str) -> str:
        return sdp

    async def delete(self, call_id: str) -> None:
        pass

    def info(self) -> dict[str, Any]:
        return {}


# --- /proc ---------------------------------------------------------------------------------


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of the processes (each process's stat sums its threads)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def all_cpu_ticks() -> dict[int, int]:
    """utime + stime of every process on the machine, in clock ticks, by pid."""
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


class OtherWork:
    """CPU of every process but ours (kernel threads such as ksoftirqd included), sampled
    every OTHER_WORK_SAMPLE_S: a process that exits loses at most one interval, one that
    lives less than an interval is missed, so this is a lower bound. (Parents' cutime
    would count a reaped child's whole life, window or not: a long pytest run ending in
    the window added 700 % of one CPU that way.)"""

    def __init__(self, ours: set[int]) -> None:
        self.ours = ours
        self.seen = all_cpu_ticks()
        self.ticks = 0

    def sample(self) -> None:
        now = all_cpu_ticks()
        for pid, ticks in now.items():
            if pid not in self.ours:
                self.ticks += ticks - self.seen.get(pid, 0)
        self.seen = now

    @property
    def seconds(self) -> float:
        return self.ticks / TICK


def run_delay_seconds(pids: Iterable[int]) -> float:
    """Time the processes' threads spent runnable but waiting for a CPU (schedstat)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError, IndexError):
                total += int(task.read_text().split()[1])
    return total / 1e9


STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def machine_ticks() -> list[int]:
    """The first eight counters of /proc/stat's "cpu" line (all CPUs, clock ticks)."""
    with open("/proc/stat") as stat:
        return [int(x) for x in stat.readline().split()[1:9]]


def machine_percent(before: list[int], after: list[int], wall: float) -> dict[str, float]:
    """Machine-wide time per /proc/stat field, in % of one CPU (200 = both cores of two)."""
    return {
        name: round(100 * (b - a) / TICK / wall, 1)
        for name, a, b in zip(STAT_FIELDS, before, after, strict=True)
    }


def rss_kib(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/statm").read_text().split()
        except OSError:
            continue
        total += int(text[1]) * PAGE_KIB
    return total


def udp_sockets() -> list[tuple[int, int, int]]:
    """(local port, inode, drops) of every IPv4 UDP socket."""
    rows = []
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        parts = line.split()
        rows.append((int(parts[1].split(":")[1], 16), int(parts[9]), int(parts[-1])))
    return rows


def udp_drops(*, ports: range | None = None, inodes: Iterable[int] = ()) -> int:
    wanted = set(inodes)
    return sum(
        drops
        for port, inode, drops in udp_sockets()
        if (ports is not None and port in ports) or inode in wanted
    )


# --- the load generator (runs in its own processes) ----------------------------------------


class _IoVec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


class _MsgHdr(ctypes.Structure):
    _fields_ = (
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    )


class _MMsgHdr(ctypes.Structure):
    _fields_ = (("hdr", _MsgHdr), ("len", ctypes.c_uint))


IOVEC = np.dtype(_IoVec)
MMSGHDR = np.dtype(_MMsgHdr)
SO_TIMESTAMPNS = 35  # == SCM_TIMESTAMPNS; not exported by the socket module
CONTROL_BYTES = 64  # one cmsghdr (16) + struct timespec (16), with room to spare
RECV_BATCH = 512
RECV_ROW = 256
MAX_SENDMMSG = 1024  # UIO_MAXIOV


class Mmsg:
    """sendmmsg / recvmmsg through ctypes on numpy-built struct mmsghdr arrays."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.sendmmsg = libc.sendmmsg
        self.sendmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
        self.sendmmsg.restype = ctypes.c_int
        self.recvmmsg = libc.recvmmsg
        self.recvmmsg.argtypes = (
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_void_p,
        )
        self.recvmmsg.restype = ctypes.c_int


def sockaddrs(hosts: list[str], ports: np.ndarray) -> np.ndarray:
    """struct sockaddr_in for each (host, port), as rows of 16 bytes."""
    rows = np.zeros((len(ports), 16), np.uint8)
    rows[:, 0:2].view("<u2")[:, 0] = socket.AF_INET
    rows[:, 2:4].view(">u2")[:, 0] = ports
    packed = {host: np.frombuffer(socket.inet_aton(host), np.uint8) for host in set(hosts)}
    for i, host in enumerate(hosts):
        rows[i, 4:8] = packed[host]
    return rows


class SendLeg:
    """One leg of every call on a shared socket: a row per call, sent slice by slice."""

    def __init__(
        self,
        sock: socket.socket,
        hosts: list[str],
        ports: np.ndarray,
        ssrcs: np.ndarray,
        call_ids: np.ndarray,
        leg: int,
        payload_bytes: int,
        srtp_keys: list[bytes] | None,
    ) -> None:
        n = len(ports)
        self.fd = sock.fileno()
        self.plain_len = 12 + payload_bytes
        row = (self.plain_len + SRTP_TAG_BYTES + 15) // 16 * 16
        self.rows = np.zeros((n, row), np.uint8)
        self.rows[:, 0] = 0x80
        self.rows[:, 1] = PCMU
        self.rows[:, 8:12].view(">u4")[:, 0] = ssrcs
        self.rows[:, 12 : self.plain_len] = 0xFF  # PCMU silence
        self.rows[:, 12:16].view(">u4")[:, 0] = call_ids  # checked on receipt: no mix-ups
        self.rows[:, 16] = leg
        self.seq = self.rows[:, 2:4].view(">u2")[:, 0]
        self.ts = self.rows[:, 4:8].view(">u4")[:, 0]
        self.names = sockaddrs(hosts, ports)
        self.iov = np.zeros(n, IOVEC)
        self.iov["base"] = self.rows.ctypes.data + np.arange(n, dtype=np.uint64) * row
        self.iov["len"] = self.plain_len + (SRTP_TAG_BYTES if srtp_keys else 0)
        self.msgs = np.zeros(n, MMSGHDR)
        self.msgs["hdr"]["name"] = self.names.ctypes.data + np.arange(n, dtype=np.uint64) * 16
        self.msgs["hdr"]["namelen"] = 16
        self.msgs["hdr"]["iov"] = self.iov.ctypes.data + np.arange(n, dtype=np.uint64) * 16
        self.msgs["hdr"]["iovlen"] = 1
        self.srtp: list[Any] | None = None
        if srtp_keys:
            from pylibsrtp import Policy, Session
            from pylibsrtp._binding import ffi, lib

            self.plain = self.rows[:, : self.plain_len].copy()
            self.sessions = [
                Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND)) for key in srtp_keys
            ]
            self.srtp = [s._srtp[0] for s in self.sessions]
            self.pointers = [ffi.cast("void *", int(a)) for a in self.iov["base"]]
            self.length = ffi.new("int *")
            self.protect = lib.srtp_protect

    def send(self, mmsg: Mmsg, start: int, stop: int, seq: int, ts: int) -> tuple[int, int]:
        """Stamp rows start..stop with seq and ts (protecting them) and send; (sent, errors)."""
        errors = 0
        if self.srtp is None:
            self.seq[start:stop] = seq
            self.ts[start:stop] = ts
        else:
            self.rows[start:stop, : self.plain_len] = self.plain[start:stop]
            self.seq[start:stop] = seq
            self.ts[start:stop] = ts
            length, protect, plain_len = self.length, self.protect, self.plain_len
            for context, pointer in zip(
                self.srtp[start:stop], self.pointers[start:stop], strict=True
            ):
                length[0] = plain_len
                if protect(context, pointer, length):
                    errors += 1
        sent = 0
        base = self.msgs.ctypes.data
        while start < stop:
            count = min(stop - start, MAX_SENDMMSG)
            done = mmsg.sendmmsg(self.fd, base + start * MMSGHDR.itemsize, count, 0)
            if done <= 0:
                errors += count  # EAGAIN with a full send buffer, or an ICMP error
                done = count
            sent += done
            start += done
        return sent, errors


class RecvLeg:
    """Drains a shared socket with recvmmsg and books each packet against its call and tick."""

    def __init__(
        self,
        sock: socket.socket,
        leg: int,
        n: int,
        ticks: int,
        ssrc_base: int,
        seq_base: int,
        payload_bytes: int,
        call_ids: np.ndarray,
        srtp_keys: list[bytes] | None,
    ) -> None:
        self.fd = sock.fileno()
        self.leg = leg  # the sending leg whose packets arrive here
        self.n, self.ticks = n, ticks
        self.ssrc_base, self.seq_base = ssrc_base, seq_base
        self.min_len = 12 + payload_bytes + (SRTP_TAG_BYTES if srtp_keys else 0)
        self.call_ids = call_ids
        self.buf = np.zeros((RECV_BATCH, RECV_ROW), np.uint8)
        self.control = np.zeros((RECV_BATCH, CONTROL_BYTES), np.uint8)
        self.iov = np.zeros(RECV_BATCH, IOVEC)
        rows = np.arange(RECV_BATCH, dtype=np.uint64)
        self.iov["base"] = self.buf.ctypes.data + rows * RECV_ROW
        self.iov["len"] = RECV_ROW
        self.msgs = np.zeros(RECV_BATCH, MMSGHDR)
        self.msgs["hdr"]["iov"] = self.iov.ctypes.data + rows * IOVEC.itemsize
        self.msgs["hdr"]["iovlen"] = 1
        self.msgs["hdr"]["control"] = self.control.ctypes.data + rows * CONTROL_BYTES
        self.controllen = self.msgs["hdr"]["controllen"]
        self.msg_len = self.msgs["len"]
        self.seq = self.buf[:, 2:4].view(">u2")[:, 0]
        self.ssrc = self.buf[:, 8:12].view(">u4")[:, 0]
        self.payload_call = self.buf[:, 12:16].view(">u4")[:, 0]
        self.cmsg_type = self.control[:, 12:16].view("<i4")[:, 0]
        self.sec = self.control[:, 16:24].view("<i8")[:, 0]
        self.nsec = self.control[:, 24:32].view("<i8")[:, 0]
        self.got = np.zeros((n, ticks), np.uint8)
        self.on_time = np.zeros((n, ticks), np.uint8)
        self.valid = 0
        self.foreign = 0
        self.auth_failures = 0
        self.no_timestamp = 0
        self.latencies: list[np.ndarray] = []
        self.window = (0, ticks)
        self.srtp: list[Any] | None = None
        if srtp_keys:
            from pylibsrtp import Policy, Session
            from pylibsrtp._binding import ffi, lib

            self.sessions = [
                Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND)) for key in srtp_keys
            ]
            self.srtp = [s._srtp[0] for s in self.sessions]
            self.pointers = [ffi.cast("void *", int(a)) for a in self.iov["base"]]
            self.length = ffi.new("int *")
            self.unprotect = lib.srtp_unprotect

    def drain(self, mmsg: Mmsg, sent_at: np.ndarray, slice_of: np.ndarray) -> int:
        total = 0
        base = self.msgs.ctypes.data
        while True:
            self.controllen[:] = CONTROL_BYTES
            k = int(mmsg.recvmmsg(self.fd, base, RECV_BATCH, socket.MSG_DONTWAIT, None))
            if k <= 0:
                return total
            self.book(k, time.time_ns(), sent_at, slice_of)
            total += k
            if k < RECV_BATCH:
                return total

    def book(self, k: int, now: int, sent_at: np.ndarray, slice_of: np.ndarray) -> None:
        stream = self.ssrc[:k].astype(np.int64) - self.ssrc_base
        ok = (
            (stream >= 0)
            & (stream < 2 * self.n)
            & ((stream & 1) == self.leg)
            & (self.msg_len[:k] >= self.min_len)
        )
        call = np.where(ok, stream >> 1, 0)
        tick = (self.seq[:k].astype(np.int64) - self.seq_base) & 0xFFFF
        ok &= tick < self.ticks
        tick = np.where(ok, tick, 0)
        sent = sent_at[tick, slice_of[call]]
        ok &= sent > 0
        failures = 0
        if self.srtp is not None:
            length, unprotect = self.length, self.unprotect
            contexts, pointers = self.srtp, self.pointers
            lengths = self.msg_len[:k].tolist()
            calls = call.tolist()
            for i in np.flatnonzero(ok).tolist():
                length[0] = lengths[i]
                if unprotect(contexts[calls[i]], pointers[i], length):
                    ok[i] = False
                    failures += 1
            self.auth_failures += failures
        ok &= self.payload_call[:k] == self.call_ids[call]
        stamped = (self.cmsg_type[:k] == SO_TIMESTAMPNS) & (self.controllen[:k] >= 32)
        received = np.where(stamped, self.sec[:k] * 1_000_000_000 + self.nsec[:k], now)
        self.no_timestamp += int(k - np.count_nonzero(stamped))
        good = int(np.count_nonzero(ok))
        self.foreign += k - good - failures
        if not good:
            return
        self.valid += good
        call, tick, late = call[ok], tick[ok], (received - sent)[ok]
        self.got[call, tick] = 1
        in_time = late <= LATE_NS
        self.on_time[call[in_time], tick[in_time]] = 1
        first, last = self.window
        measured = (tick >= first) & (tick < last)
        self.latencies.append((late[measured] // 1000).astype(np.int32))


@dataclass
class GeneratorCalls:
    """One generator process's share of a step's calls (index arrays, one entry per call)."""

    call_ids: np.ndarray  # global call numbers, stamped in the payload
    a_hosts: list[str]  # where leg A sends: the relay's address for leg A
    a_ports: np.ndarray
    b_hosts: list[str]
    b_ports: np.ndarray
    b_send_keys: list[bytes] | None  # SRTP keys leg B protects with (its answer's a=crypto)
    b_recv_keys: list[bytes] | None  # SRTP keys the relay protects with towards leg B


def generator_main(conn: multiprocessing.connection.Connection, priority: int) -> None:
    """A generator process: two sockets; commands over `conn` until "quit"."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    scheduling = "other"
    if priority:
        # Packets from a network arrive through interrupts that pre-empt the relay; a
        # generator competing with it on CFS instead falls behind its schedule under load,
        # and then offers less than the nominal load (see generator_max_lag_ms).
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            scheduling = f"fifo {priority}"
        except PermissionError:
            scheduling = "other (SCHED_FIFO refused)"
    mmsg = Mmsg()
    socks = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((HOST, 0))
        sock.setblocking(False)
        socks.append(sock)
    sock_a, sock_b = socks
    conn.send(
        {
            "a_port": sock_a.getsockname()[1],
            "b_port": sock_b.getsockname()[1],
            "inodes": [os.fstat(s.fileno()).st_ino for s in socks],
            "rcvbuf": sock_a.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            "scheduling": scheduling,
        }
    )
    while True:
        command, params = conn.recv()
        if command == "quit":
            break
        if command == "run":
            try:
                conn.send(stream(mmsg, sock_a, sock_b, **params))
            except Exception as err:
                conn.send({"error": repr(err)})
                raise


def stream(
    mmsg: Mmsg,
    sock_a: socket.socket,
    sock_b: socket.socket,
    calls: GeneratorCalls,
    start_ns: int,
    warmup_ticks: int,
    measure_ticks: int,
    slices: int,
    payload_bytes: int,
    ssrc_base: int,
    seq_base: int,
) -> dict[str, Any]:
    """Send every call's packets both ways on the tick schedule from `start_ns` (monotonic),
    receive and book them, and return the counts of the measured window."""
    n = len(calls.call_ids)
    ticks = warmup_ticks + measure_ticks
    bounds = np.linspace(0, n, slices + 1).astype(np.int64).tolist()
    slice_of = np.searchsorted(np.asarray(bounds[1:]), np.arange(n), side="right")
    ssrcs = ssrc_base + 2 * np.arange(n, dtype=np.int64)
    send = [
        SendLeg(sock_a, calls.a_hosts, calls.a_ports, ssrcs, calls.call_ids, 0, payload_bytes,
                None),
        SendLeg(sock_b, calls.b_hosts, calls.b_ports, ssrcs + 1, calls.call_ids, 1, payload_bytes,
                calls.b_send_keys),
    ]  # fmt: skip
    # Leg A's packets arrive on B's socket, and the other way round.
    recv = [
        RecvLeg(sock_b, 0, n, ticks, ssrc_base, seq_base, payload_bytes, calls.call_ids,
                calls.b_recv_keys),
        RecvLeg(sock_a, 1, n, ticks, ssrc_base, seq_base, payload_bytes, calls.call_ids, None),
    ]  # fmt: skip
    for leg in recv:
        leg.window = (warmup_ticks, ticks)
        while True:  # anything left over from an earlier step
            try:
                (sock_a if leg.leg else sock_b).recv(4096)
            except BlockingIOError:
                break
    sent_at = [np.zeros((ticks, slices), np.int64) for _ in range(2)]
    sent = [0, 0]
    errors = 0
    max_lag = 0
    lag_over_1ms = 0
    window_cpu = (0.0, 0.0)
    window_start = 0.0
    received_before_window = 0
    slice_ns = TICK_NS // slices
    for tick in range(ticks):
        if tick == warmup_ticks:
            window_cpu = _process_cpu()
            window_start = time.monotonic()
            received_before_window = (
                recv[0].valid + recv[1].valid + recv[0].foreign + recv[1].foreign
            )
        seq = (seq_base + tick) & 0xFFFF
        ts = (tick * payload_bytes) & 0xFFFFFFFF
        for s in range(slices):
            due = start_ns + tick * TICK_NS + s * slice_ns
            if s == 0:
                # Once a tick: the kernel stamps arrivals, so draining later changes no
                # latency, and fewer, larger batches cost the generator less per packet.
                for leg in recv:
                    leg.drain(mmsg, sent_at[leg.leg], slice_of)
            wait = due - time.monotonic_ns()
            if wait > 0:
                time.sleep(wait / 1e9)
                wait = due - time.monotonic_ns()
            lag = -wait
            max_lag = max(max_lag, lag)
            lag_over_1ms += lag > 1_000_000
            for leg_no, sender in enumerate(send):
                sent_at[leg_no][tick, s] = time.time_ns()
                done, failed = sender.send(mmsg, bounds[s], bounds[s + 1], seq, ts)
                if tick >= warmup_ticks:
                    sent[leg_no] += done
                errors += failed
    window_end = time.monotonic()
    user, system = (b - a for a, b in zip(window_cpu, _process_cpu(), strict=True))
    received_in_window = (
        recv[0].valid + recv[1].valid + recv[0].foreign + recv[1].foreign - received_before_window
    )
    drain_until = time.monotonic() + DRAIN_S
    while time.monotonic() < drain_until:
        for leg in recv:
            leg.drain(mmsg, sent_at[leg.leg], slice_of)
        time.sleep(0.001)
    result: dict[str, Any] = {
        "calls": n,
        "window_s": window_end - window_start,
        "sent": sent,
        "send_errors": errors,
        "max_lag_ms": max_lag / 1e6,
        "slices_late_over_1ms": lag_over_1ms,
        "cpu_s": user + system,
        "user_s": user,
        "packets_in_window": sent[0] + sent[1] + received_in_window,
        "legs": [],
        "latency_us": np.concatenate([x for leg in recv for x in leg.latencies] or [np.zeros(0)]),
    }
    for leg in recv:
        got = leg.got[:, warmup_ticks:]
        on_time = leg.on_time[:, warmup_ticks:]
        result["legs"].append(
            {
                "from": "AB"[leg.leg],
                "expected": int(got.size),
                "received": int(got.sum()),
                "on_time": int(on_time.sum()),
                "late": int(got.sum() - on_time.sum()),
                "foreign": leg.foreign,
                "auth_failures": leg.auth_failures,
                "no_timestamp": leg.no_timestamp,
            }
        )
    return result


def _process_cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


class Generators:
    """The generator processes, started once (spawned: no fork after gRPC is loaded)."""

    def __init__(self, count: int, priority: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns: list[multiprocessing.connection.Connection] = []
        self.processes = []
        self.ports: list[dict[str, Any]] = []
        for _ in range(count):
            parent, child = context.Pipe()
            process = context.Process(target=generator_main, args=(child, priority), daemon=True)
            process.start()
            self.conns.append(parent)
            self.processes.append(process)
        for conn in self.conns:
            self.ports.append(conn.recv())

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def inodes(self) -> list[int]:
        return [inode for ports in self.ports for inode in ports["inodes"]]

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("quit", {}))
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.terminate()


# --- a step --------------------------------------------------------------------------------


@dataclass
class Call:
    index: int
    call_id: str
    generator: int
    a_host: str = ""
    a_port: int = 0
    b_host: str = ""
    b_port: int = 0
    b_send_key: bytes = b""
    b_recv_key: bytes = b""


async def bounded(tasks: Iterable[Callable[[], Awaitable[None]]], limit: int) -> None:
    semaphore = asyncio.Semaphore(limit)

    async def run(task: Callable[[], Awaitable[None]]) -> None:
        async with semaphore:
            await task()

    await asyncio.gather(*(run(task) for task in tasks))


async def set_up(relay: Relay, call: Call, ports: dict[str, Any], srtp: bool, payload: int) -> None:
    session = int.from_bytes(os.urandom(4), "big")
    offer = await relay.offer(
        call.call_id, "a", make_sdp(ports["a_port"], session, payload, None), srtp_b=srtp
    )
    to_b = parse_sdp(offer)
    call.b_host, call.b_port = to_b.host, to_b.port
    crypto = None
    if srtp:
        if SRTP_SUITE not in to_b.crypto:
            raise RuntimeError(f"{relay.name}: no {SRTP_SUITE} in the offer to leg B:\n{offer}")
        tag, call.b_recv_key = to_b.crypto[SRTP_SUITE]
        call.b_send_key = os.urandom(30)
        crypto = (tag, call.b_send_key)
    answer = await relay.answer(
        call.call_id, "a", "b", make_sdp(ports["b_port"], session, payload, crypto)
    )
    to_a = parse_sdp(answer)
    call.a_host, call.a_port = to_a.host, to_a.port


def percentile(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)) / 1000, 3) if values.size else None


async def run_step(
    relay: Relay,
    mode: str,
    n: int,
    args: argparse.Namespace,
    generators: Generators,
    fresh: bool,
) -> dict[str, Any]:
    srtp = mode == "srtp"
    log: Path | None = getattr(relay, "log", None)
    log_offset = log.stat().st_size if log and log.exists() else 0
    if fresh:
        await relay.start()
    step: dict[str, Any] = {"relay": relay.name, "mode": mode, "calls": n}
    tag = os.urandom(3).hex()
    count = len(generators.conns)
    calls = [Call(i, f"bench-{tag}-{i}", i * count // n) for i in range(n)]
    launched = 0
    deleted = False
    results: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(0.2)
        pids = relay.pids()
        step["relay_pids"] = len(pids)
        rss_idle = rss_kib(pids)
        started = time.monotonic()
        await bounded(
            (
                functools.partial(
                    set_up, relay, call, generators.ports[call.generator], srtp, args.payload_bytes
                )
                for call in calls
            ),
            args.control_concurrency,
        )
        step["setup_s"] = round(time.monotonic() - started, 3)
        ssrc_base = int.from_bytes(os.urandom(4), "big") & 0x7FFF0000
        seq_base = int.from_bytes(os.urandom(2), "big")
        warmup_ticks = round(WARMUP_S * PACKETS_PER_SECOND)
        measure_ticks = round(args.seconds * PACKETS_PER_SECOND)
        start_ns = time.monotonic_ns() + 300_000_000
        for g, conn in enumerate(generators.conns):
            mine = [c for c in calls if c.generator == g]
            share = GeneratorCalls(
                call_ids=np.array([c.index for c in mine], np.int64),
                a_hosts=[c.a_host for c in mine],
                a_ports=np.array([c.a_port for c in mine], np.int64),
                b_hosts=[c.b_host for c in mine],
                b_ports=np.array([c.b_port for c in mine], np.int64),
                b_send_keys=[c.b_send_key for c in mine] if srtp else None,
                b_recv_keys=[c.b_recv_key for c in mine] if srtp else None,
            )
            conn.send(
                (
                    "run",
                    {
                        "calls": share,
                        "start_ns": start_ns,
                        "warmup_ticks": warmup_ticks,
                        "measure_ticks": measure_ticks,
                        "slices": args.slices,
                        "payload_bytes": args.payload_bytes,
                        "ssrc_base": (ssrc_base + g * 0x10000) & 0xFFFFFFFF,
                        "seq_base": seq_base,
                    },
                )
            )
            launched += 1
        port_range = range(args.port_min, args.port_max + 1)
        relay_drops = udp_drops(ports=port_range)
        generator_drops = udp_drops(inodes=generators.inodes())
        window_start = start_ns / 1e9 + WARMUP_S
        await asyncio.sleep(max(0.0, window_start - time.monotonic()))
        pids = relay.pids()
        others = OtherWork({*pids, os.getpid(), *generators.pids()})
        machine_before = machine_ticks()
        waited = run_delay_seconds(pids)
        cpu = cpu_seconds(pids)
        cpu_started = time.monotonic()
        window_end = window_start + args.seconds
        while (left := window_end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, OTHER_WORK_SAMPLE_S))
            others.sample()
        cpu = cpu_seconds(pids) - cpu
        waited = run_delay_seconds(pids) - waited
        cpu_wall = time.monotonic() - cpu_started
        # For reference only: on these VMs /proc/stat misses a quarter of the time or more
        # (FIELD-NOTES), so its fields do not add up to 100 % per CPU.
        step["machine_percent"] = machine_percent(machine_before, machine_ticks(), cpu_wall)
        rss_loaded = rss_kib(pids)
        step["relay_exited_during_step"] = not relay.pids() and bool(pids)
        results = [await asyncio.to_thread(conn.recv) for conn in generators.conns]
        step["relay_socket_drops"] = udp_drops(ports=port_range) - relay_drops
        step["generator_socket_drops"] = udp_drops(inodes=generators.inodes()) - generator_drops
        started = time.monotonic()
        await bounded(
            (functools.partial(relay.delete, call.call_id) for call in calls),
            args.control_concurrency,
        )
        step["delete_s"] = round(time.monotonic() - started, 3)
        deleted = True
    finally:
        if launched and not results:  # keep the generators in step with their commands
            for conn in generators.conns[:launched]:
                await asyncio.to_thread(conn.recv)
        if not fresh and not deleted:  # a failed step on a reused relay: clean up after it

            async def forget(call_id: str) -> None:
                with contextlib.suppress(Exception):
                    await relay.delete(call_id)

            await bounded(
                (functools.partial(forget, call.call_id) for call in calls),
                args.control_concurrency,
            )
        if fresh:
            await relay.stop()
        if log:
            step["relay_log_problems"], step["relay_log_sample"] = log_problems(log, log_offset)
    for result in results:
        if "error" in result:
            raise RuntimeError(f"generator failed: {result['error']}")
    expected = sum(leg["expected"] for r in results for leg in r["legs"])
    on_time = sum(leg["on_time"] for r in results for leg in r["legs"])
    received = sum(leg["received"] for r in results for leg in r["legs"])
    late = received - on_time
    sent = sum(sum(r["sent"]) for r in results)
    latency = np.concatenate([r["latency_us"] for r in results])
    gen_cpu = sum(r["cpu_s"] for r in results)
    gen_packets = sum(r["packets_in_window"] for r in results)
    window = statistics.median(r["window_s"] for r in results)
    lost = expected - on_time
    step.update(
        {
            "packets_expected": expected,
            "packets_sent": sent,
            "received": received,
            "late": late,
            "lost": lost,
            "loss": round(lost / expected, 6) if expected else None,
            # A generator that fell behind offered less than N calls: no pass then.
            "passed": bool(expected)
            and lost / expected < LOSS_LIMIT
            and max(r["max_lag_ms"] for r in results) <= MAX_LAG_MS,
            "latency_p50_ms": percentile(latency, 50),
            "latency_p99_ms": percentile(latency, 99),
            "latency_max_ms": round(float(latency.max()) / 1000, 3) if latency.size else None,
            "relay_cpu_s": round(cpu, 3),
            "relay_cpu_percent": round(100 * cpu / cpu_wall, 1),
            "relay_cpu_us_per_packet": round(cpu / sent * 1e6, 2) if sent and pids else None,
            "relay_cpu_us_per_call_second": round(cpu / (n * cpu_wall) * 1e6, 1) if pids else None,
            "relay_rss_idle_kib": rss_idle,
            "relay_rss_loaded_kib": rss_loaded,
            "relay_kib_per_call": round((rss_loaded - rss_idle) / n, 2) if pids else None,
            "generator_cpu_percent": round(100 * gen_cpu / window, 1),
            "generator_user_percent": round(100 * sum(r["user_s"] for r in results) / window, 1),
            "generator_cpu_us_per_packet": round(gen_cpu / gen_packets * 1e6, 2)
            if gen_packets
            else None,
            "generator_max_lag_ms": round(max(r["max_lag_ms"] for r in results), 3),
            # Behind schedule, the generator offers less than N calls' load for a while.
            "generator_kept_up": max(r["max_lag_ms"] for r in results) <= MAX_LAG_MS,
            "generator_slices_late_over_1ms": sum(r["slices_late_over_1ms"] for r in results),
            "send_errors": sum(r["send_errors"] for r in results),
            "foreign_packets": sum(leg["foreign"] for r in results for leg in r["legs"]),
            "srtp_auth_failures": sum(leg["auth_failures"] for r in results for leg in r["legs"]),
            "no_kernel_timestamp": sum(leg["no_timestamp"] for r in results for leg in r["legs"]),
            # Everything else on the machine, from /proc/<pid>/stat (OtherWork).
            "other_work_percent": round(100 * others.seconds / cpu_wall, 1),
            # Summed over the relay's threads, runnable but not running: starved of CPU by
            # other work, the generator, or its own threads (rtpengine runs 4 pollers on 2
            # cores, and waited 130 % of one CPU at 600 calls on an otherwise idle machine).
            "relay_wait_percent": round(100 * waited / cpu_wall, 1),
            "loadavg": os.getloadavg()[0],
        }
    )
    return step


# --- the run -------------------------------------------------------------------------------


def make_relay(name: str, args: argparse.Namespace, workdir: Path) -> Relay:
    if name == "rtpengine":
        rtpengine: Relay = Rtpengine(
            workdir,
            args.port_min,
            args.port_max,
            threads=args.rtpengine_threads,
            symmetric=args.symmetric,
            extra_args=tuple(args.rtpengine_arg),
        )
        return rtpengine
    if name == "trunkline":
        return TrunklineMedia(
            workdir,
            args.port_min,
            args.port_max,
            workers=args.trunkline_workers,
            symmetric=args.symmetric,
        )
    if name == "direct":
        return Direct()
    if name == "uvloop-floor":
        return UvloopFloor(workdir, args.port_min, args.port_max, args.floor_workers or 1)
    raise SystemExit(f"unknown relay {name!r}")


def print_step(step: dict[str, Any]) -> None:
    def show(value: Any) -> str:
        return "-" if value is None else str(value)

    print(
        f"{step['mode']:>4} {step['relay']:>12} {step['calls']:>5} "
        f"{100 * step['loss']:>7.3f} {step['late']:>6} {show(step['latency_p50_ms']):>7} "
        f"{show(step['latency_p99_ms']):>7} {step['relay_cpu_percent']:>6} "
        f"{show(step['relay_cpu_us_per_packet']):>7} {show(step['relay_kib_per_call']):>7} "
        f"{show(step['generator_cpu_us_per_packet']):>7} {step['generator_cpu_percent']:>6} "
        f"{step['other_work_percent']:>6} {step['generator_max_lag_ms']:>6.1f} "
        f"{'yes' if step['passed'] else 'NO':>4}"
        f"{'' if step['generator_kept_up'] else '  (generator fell behind)'}",
        flush=True,
    )


HEADER = (
    f"{'mode':>4} {'relay':>12} {'calls':>5} {'loss%':>7} {'late':>6} {'p50 ms':>7} "
    f"{'p99 ms':>7} {'relay%':>6} {'us/pkt':>7} {'KiB/cl':>7} {'gen us':>7} {'gen%':>6} "
    f"{'other%':>6} {'lag ms':>6} {'<0.1%':>4}"
)


def summarize(steps: list[dict[str, Any]], relays: list[str], modes: list[str]) -> dict[str, Any]:
    """Per relay and mode: the largest N under the loss limit and the costs measured there;
    then Trunkline / rtpengine ratios and the issue's targets."""
    summary: dict[str, Any] = {}
    for mode in modes:
        for relay in relays:
            mine = [s for s in steps if s["relay"] == relay and s["mode"] == mode]
            if not mine:
                continue
            passing = [s for s in mine if s["passed"]]
            best = max(passing, key=lambda s: s["calls"]) if passing else None
            failing_above = [
                s["calls"]
                for s in mine
                if not s["passed"] and (not best or s["calls"] > best["calls"])
            ]
            per_packet = [
                s["relay_cpu_us_per_packet"] for s in mine if s.get("relay_cpu_us_per_packet")
            ]
            summary[f"{relay}/{mode}"] = {
                "largest_calls_under_limit": best["calls"] if best else 0,
                "smallest_failing_above": min(failing_above) if failing_above else None,
                "relay_cpu_us_per_packet_there": best["relay_cpu_us_per_packet"] if best else None,
                "relay_cpu_us_per_packet_median": round(statistics.median(per_packet), 2)
                if per_packet
                else None,
                "relay_kib_per_call_there": best["relay_kib_per_call"] if best else None,
                "generator_cpu_us_per_packet_there": best["generator_cpu_us_per_packet"]
                if best
                else None,
            }
    ratios: dict[str, Any] = {}
    for mode in modes:
        ours, theirs = summary.get(f"trunkline/{mode}"), summary.get(f"rtpengine/{mode}")
        if not ours or not theirs:
            continue
        by_n: dict[int, dict[str, dict[str, Any]]] = {}
        for s in steps:
            if s["mode"] != mode or s["relay"] not in ("trunkline", "rtpengine") or "error" in s:
                continue
            by_n.setdefault(s["calls"], {})[s["relay"]] = s
        ratios[mode] = {
            "largest_calls": _ratio(
                ours["largest_calls_under_limit"], theirs["largest_calls_under_limit"]
            ),
            "cpu_us_per_packet_by_calls": {
                n: _ratio(
                    pair["trunkline"]["relay_cpu_us_per_packet"],
                    pair["rtpengine"]["relay_cpu_us_per_packet"],
                )
                for n, pair in sorted(by_n.items())
                if len(pair) == 2
            },
        }
    # The bound on a relay on uvloop transports: how near Trunkline is, and rtpengine.
    over_floor: dict[str, Any] = {}
    for mode in modes:
        floor = summary.get(f"uvloop-floor/{mode}")
        if floor:
            over_floor[mode] = {
                f"{relay}_largest_calls_over_floor": _ratio(
                    summary[f"{relay}/{mode}"]["largest_calls_under_limit"],
                    floor["largest_calls_under_limit"],
                )
                for relay in ("trunkline", "rtpengine")
                if f"{relay}/{mode}" in summary
            }
    targets: dict[str, Any] = {}
    base = summary.get("rtpengine/rtp")
    if base:
        rtpengine_n = base["largest_calls_under_limit"]
        if "trunkline/rtp" in summary:
            n = summary["trunkline/rtp"]["largest_calls_under_limit"]
            targets["rtp_calls_at_least_rtpengine"] = {"trunkline": n, "rtpengine": rtpengine_n,
                                                       "met": n >= rtpengine_n}  # fmt: skip
        if "trunkline/srtp" in summary:
            n = summary["trunkline/srtp"]["largest_calls_under_limit"]
            targets["srtp_calls_at_least_0.7_rtpengine_rtp"] = {
                "trunkline": n, "rtpengine_rtp": rtpengine_n, "met": n >= 0.7 * rtpengine_n
            }  # fmt: skip
    for mode in modes:
        ours = summary.get(f"trunkline/{mode}")
        if ours and ours["relay_kib_per_call_there"] is not None:
            kib = ours["relay_kib_per_call_there"]
            targets[f"memory_{mode}_at_most_20KB_per_call"] = {
                "trunkline_kB": round(kib * 1.024, 2),
                "met": kib * 1.024 <= 20,
            }
    return {
        "by_relay_mode": summary,
        "trunkline_over_rtpengine": ratios,
        "over_uvloop_floor": over_floor,
        "targets": targets,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def machine() -> dict[str, Any]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "rmem_max": int(Path("/proc/sys/net/core/rmem_max").read_text()),
        "loadavg_at_start": os.getloadavg(),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    relays = [r for r in args.relays.split(",") if r]
    modes = [m for m in args.modes.split(",") if m]
    calls = [int(n) for n in args.calls.split(",") if n]
    notes: list[str] = []
    if "trunkline" in relays and not TrunklineMedia.available():
        notes.append("trunkline skipped: no trunkline.media.__main__ (the service is not in yet)")
        print(notes[-1], flush=True)
        relays.remove("trunkline")
    steps: list[dict[str, Any]] = []
    generators = Generators(args.generators, args.generator_priority)
    print(f"generators: {generators.ports}", flush=True)
    with tempfile.TemporaryDirectory(prefix="media-relay-bench-") as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        instances = {name: make_relay(name, args, workdir) for name in relays}
        fresh = not args.reuse_relay
        try:
            if not fresh:
                for relay in instances.values():
                    await relay.start()

            async def once(relay: Relay, mode: str, n: int) -> dict[str, Any]:
                try:
                    result = await run_step(relay, mode, n, args, generators, fresh)
                except Exception as err:  # a relay that refuses or dies fails its step only
                    error = f"{type(err).__name__}: {err}"[:2000]
                    result = {"relay": relay.name, "mode": mode, "calls": n, "passed": False,
                              "loss": 1.0, "error": error}  # fmt: skip
                    print(f"{mode:>4} {relay.name:>12} {n:>5} error: {result['error']}")
                    if isinstance(relay, Rtpengine | TrunklineMedia):
                        print(relay.tail(10))
                else:
                    print_step(result)
                return result

            async def step(relay: Relay, mode: str, n: int) -> dict[str, Any]:
                """`--repeat` runs; the step is the run with the median loss (of an even
                number, the worse of the middle two) among those that had the machine to
                themselves (other% at most OTHER_WORK_WARN), or among all if none did:
                other work only ever adds loss."""
                runs = [await once(relay, mode, n) for _ in range(args.repeat)]
                alone = [r for r in runs if r.get("other_work_percent", 0) <= OTHER_WORK_WARN]
                pool = alone or runs
                result = sorted(pool, key=lambda r: r["loss"])[len(pool) // 2]
                if len(runs) > 1:
                    result = {**result, "repeats": [
                        {k: r.get(k) for k in ("loss", "passed", "relay_cpu_us_per_packet",
                                               "other_work_percent", "error")}
                        for r in runs
                    ]}  # fmt: skip
                steps.append(result)
                return result

            print(HEADER, flush=True)
            for mode in modes:
                for n in calls:
                    for name, relay in instances.items():
                        if name in RTP_ONLY and mode == "srtp":
                            continue
                        await step(relay, mode, n)
            if args.search:
                for mode in modes:
                    for name, relay in instances.items():
                        if name in RTP_ONLY and mode == "srtp":
                            continue
                        await search(relay, mode, args, steps, step)
        finally:
            if not fresh:
                for relay in instances.values():
                    await relay.stop()
            generators.close()
        infos = {name: relay.info() for name, relay in instances.items()}
    return {
        "benchmark": "media_relay",
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "packets_per_second_each_way": PACKETS_PER_SECOND,
            "payload_bytes": args.payload_bytes,
            "codec": "PCMU",
            "late_ms_counts_as_lost": LATE_NS // 1_000_000,
            "loss_limit": LOSS_LIMIT,
            "warmup_s": WARMUP_S,
            "seconds": args.seconds,
            "generators": args.generators,
            "slices_per_tick": args.slices,
            "fresh_relay_per_step": fresh,
            "symmetric_rtp": args.symmetric,
            "srtp_suite": SRTP_SUITE,
            "generator_rcvbuf": generators.ports[0]["rcvbuf"],
            "generator_scheduling": generators.ports[0]["scheduling"],
        },
        "relays": infos,
        "notes": notes,
        "steps": steps,
        **summarize(steps, list(instances), modes),
    }


async def search(
    relay: Relay,
    mode: str,
    args: argparse.Namespace,
    steps: list[dict[str, Any]],
    step: Callable[[Relay, str, int], Awaitable[dict[str, Any]]],
) -> None:
    """Bisect for the largest N under the loss limit, from the steps already run."""

    def known() -> tuple[int, int | None]:
        mine = {s["calls"]: s["passed"] for s in steps if s["relay"] == relay.name
                and s["mode"] == mode}  # fmt: skip
        lo = max((n for n, ok in mine.items() if ok), default=0)
        hi = min((n for n, ok in mine.items() if not ok and n > lo), default=None)
        return lo, hi

    resolution = args.search_resolution
    lo, hi = known()
    while hi is None and lo < args.max_calls:
        await step(relay, mode, min(max(2 * lo, 100), lo + 600, args.max_calls))
        lo, hi = known()
    while hi is not None and hi - lo > resolution:
        mid = (lo + hi) // 2 // resolution * resolution
        if mid <= lo:
            mid = lo + resolution
        await step(relay, mode, mid)
        lo, hi = known()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--relays",
        default="rtpengine,trunkline",
        help="rtpengine, trunkline, direct, uvloop-floor (comma-separated)",
    )
    parser.add_argument("--modes", default="rtp,srtp", help="rtp (both legs), srtp (leg B)")
    parser.add_argument("--calls", default="100,300,600,900,1200")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--search", action="store_true",
                        help="then bisect for the largest N with loss under 0.1 %%")  # fmt: skip
    parser.add_argument("--search-resolution", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per step; the step is the median-loss run")  # fmt: skip
    parser.add_argument("--max-calls", type=int, default=2800)
    parser.add_argument("--generators", type=int, default=1)
    parser.add_argument("--slices", type=int, default=10, help="send slices per 10 ms tick")
    parser.add_argument("--generator-priority", type=int, default=10,
                        help="SCHED_FIFO priority of the generators; 0: CFS")  # fmt: skip
    parser.add_argument("--payload-bytes", type=int, default=80, choices=(80, 160))
    parser.add_argument("--port-min", type=int, default=20000)
    parser.add_argument("--port-max", type=int, default=31999)
    parser.add_argument("--reuse-relay", action="store_true",
                        help="one relay process for all steps, not one per step")  # fmt: skip
    parser.add_argument("--symmetric", action="store_true", help="symmetric RTP on both legs")
    parser.add_argument("--rtpengine-threads", type=int)
    parser.add_argument("--rtpengine-arg", action="append", default=[])
    parser.add_argument("--trunkline-workers", type=int)
    parser.add_argument("--floor-workers", type=int, help="processes of the uvloop-floor relay")
    parser.add_argument("--control-concurrency", type=int, default=32)
    parser.add_argument("--workdir", type=Path, help="keep the relays' logs here")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    # Before grpc is first imported: starting a relay forks this process, and gRPC's fork
    # handlers would log that other threads are in gRPC calls (harmless, but noise).
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
    if args.seconds + WARMUP_S > 600:
        raise SystemExit("--seconds: at most 599 (16-bit sequence numbers name the ticks)")
    report = asyncio.run(run(args))
    print()
    for key, value in report["by_relay_mode"].items():
        print(f"{key:>16}: {json.dumps(value)}")
    for key in ("trunkline_over_rtpengine", "over_uvloop_floor", "targets"):
        if report[key]:
            print(f"{key}: {json.dumps(report[key])}")
    busy = [s for s in report["steps"] if s.get("other_work_percent", 0) > OTHER_WORK_WARN]
    if busy:
        report["notes"].append(
            f"{len(busy)} of {len(report['steps'])} steps shared the CPUs with other work "
            f"(other% over {OTHER_WORK_WARN}: CPU of every other process, % of one CPU); "
            "their loss and capacity are not the relay's alone"
        )
    for note in report["notes"]:
        print(f"note: {note}")
    path = args.json or RESULTS / f"media_relay-{datetime.datetime.now():%Y%m%dT%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
