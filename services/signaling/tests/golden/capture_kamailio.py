"""Capture an INVITE as forwarded by a real Kamailio (5.6) proxy, as golden test data.

Run: .venv/bin/python services/signaling/tests/golden/capture_kamailio.py OUT.sip
Needs `kamailio` (Debian package) and `sipp` (Debian `sip-tester`) on PATH. Everything runs
on 127.0.0.1: a minimal kamailio.cfg in a temp dir (maxfwd check, record_route(), t_relay()
to a UDP socket this script owns), sipp's built-in `uac` scenario sends one INVITE to
Kamailio, and the first INVITE Kamailio forwards to the socket is written out byte for byte.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
disable_tcp=yes
auto_aliases=no
dns=no
rev_dns=no
listen=udp:127.0.0.1:{kam_port}

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "pv.so"
loadmodule "textops.so"

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (is_method("INVITE")) {{
        record_route();
    }}
    $du = "sip:127.0.0.1:{far_port}";
    t_relay();
    exit;
}}
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(out: str) -> None:
    far = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    far.bind(("127.0.0.1", 0))
    far_port = far.getsockname()[1]
    kam_port = free_udp_port()
    sipp_port = free_udp_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "kamailio.cfg"
        cfg.write_text(CFG.format(kam_port=kam_port, far_port=far_port))
        pidfile = Path(tmp) / "kamailio.pid"
        kam_log = open(Path(tmp) / "kamailio.log", "wb")  # noqa: SIM115
        kam_cmd = ["kamailio", "-f", str(cfg), "-DD", "-E", "-n", "1", "-w", tmp, "-Y", tmp]
        kam = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
            [*kam_cmd, "-P", str(pidfile)],
            stdout=kam_log,
            stderr=subprocess.STDOUT,
        )
        sipp = None
        data = b""
        try:
            deadline = time.monotonic() + 10
            while not pidfile.exists() and kam.poll() is None:
                if time.monotonic() > deadline:
                    raise SystemExit("kamailio did not start")
                time.sleep(0.05)
            if kam.poll() is not None:
                kam_log.flush()
                log = (Path(tmp) / "kamailio.log").read_text(errors="replace")
                raise SystemExit(f"kamailio exited {kam.returncode}:\n{log}")
            sipp_cmd = ["sipp", "-sn", "uac", f"127.0.0.1:{kam_port}", "-m", "1", "-nostdin"]
            sipp = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
                [*sipp_cmd, "-i", "127.0.0.1", "-p", str(sipp_port)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=tmp,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                far.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data, _ = far.recvfrom(65535)
                except TimeoutError:
                    break
                if data.startswith(b"INVITE "):
                    break
        finally:
            if sipp is not None:
                stop(sipp)
            stop(kam)
            kam_log.close()
            far.close()
    if not data.startswith(b"INVITE "):
        raise SystemExit("kamailio forwarded no INVITE")
    with open(out, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main(sys.argv[1])
