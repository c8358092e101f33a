"""The SIP peers from the harness: sipp calls sipp, and pjsua2 starts and stops cleanly."""

from __future__ import annotations

import csv
import errno
import signal
import socket
import subprocess
import textwrap
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

CALLS = 5


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def udp_bound(host: str, port: int) -> bool:
    """Whether something listens on host:port/udp: our own bind then fails with EADDRINUSE."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return True
            raise
        return False


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout} s")


def last_stats(path: Path) -> dict[str, str]:
    """The final row of sipp's -trace_stat CSV (';'-separated, a header row first)."""
    rows = list(csv.DictReader(path.read_text().splitlines(), delimiter=";"))
    assert rows, f"no statistics in {path}"
    return rows[-1]


def test_sipp_uac_calls_sipp_uas(harness_sip: Mapping[str, Any], tmp_path: Path) -> None:
    host, sipp = harness_sip["host"], harness_sip["sipp"]
    uas_port = free_udp_port(host)
    uac_port = free_udp_port(host)
    while uac_port == uas_port:  # both sockets were closed: the kernel may hand it out twice
        uac_port = free_udp_port(host)
    common = ["-i", host, "-nostdin", "-m", str(CALLS), "-timeout", "30s", "-timeout_error"]
    # Both ends exit after CALLS calls; the test's working directory keeps their log files.
    uas = subprocess.Popen(
        [sipp, "-sn", "uas", "-p", str(uas_port), *common],
        cwd=tmp_path,
        stdout=(tmp_path / "uas.out").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: udp_bound(host, uas_port) or uas.poll() is not None, 10, "sipp uas")
        assert uas.poll() is None, (tmp_path / "uas.out").read_text(errors="replace")
        stats = tmp_path / "uac.csv"
        uac = subprocess.run(
            [sipp, "-sn", "uac", f"{host}:{uas_port}", "-p", str(uac_port), *common,
             "-r", str(CALLS), "-trace_stat", "-stf", str(stats)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        assert uac.returncode == 0, f"sipp uac exit {uac.returncode}:\n{uac.stdout}{uac.stderr}"
        final = last_stats(stats)
        assert int(final["SuccessfulCall(C)"]) == CALLS, final
        assert int(final["FailedCall(C)"]) == 0, final
    finally:
        # The built-in uas lingers some seconds after its last call to absorb
        # retransmissions; the UAC's counts already proved the calls, so stop it now.
        if uas.poll() is None:
            uas.send_signal(signal.SIGTERM)
            uas.wait(timeout=10)


# One Endpoint per process (FIELD-NOTES): the smoke runs in a child interpreter.
PJSUA2_SMOKE = textwrap.dedent(
    """
    import sys
    import pjsua2 as pj

    ep = pj.Endpoint()
    ep.libCreate()
    config = pj.EpConfig()
    config.logConfig.level = 1
    config.logConfig.consoleLevel = 1
    ep.libInit(config)
    ep.audDevManager().setNullDev()  # no sound card on a test machine
    transport_config = pj.TransportConfig()
    transport_config.boundAddress = sys.argv[1]
    transport_config.port = 0  # any free port
    transport = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport_config)
    ep.libStart()
    print("version", ep.libVersion().full)
    print("transport", ep.transportGetInfo(transport).localName)
    ep.libDestroy()
    print("destroyed")
    """
)


def test_pjsua2_endpoint_starts_and_stops(harness_sip: Mapping[str, Any]) -> None:
    host = harness_sip["host"]
    done = subprocess.run(
        [harness_sip["python"], "-c", PJSUA2_SMOKE, host],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stdout}{done.stderr}"
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert lines["version"].startswith("2."), done.stdout
    assert lines["transport"].startswith(f"{host}:"), done.stdout
    assert int(lines["transport"].rsplit(":", 1)[1]) > 0
    assert "destroyed" in done.stdout.splitlines()
