"""Capture the INVITE a real pjsua2 (pjsip 2.15) user agent sends, as golden test data.

Run: .venv/bin/python services/signaling/tests/golden/capture_pjsua2.py OUT.sip
A UDP socket on 127.0.0.1 plays the far end and records the first INVITE; pjsua2 runs in
this process with a null audio device (FIELD-NOTES: one Endpoint per process).
"""

from __future__ import annotations

import socket
import sys
import time

import pjsua2 as pj


def main(out: str) -> None:
    far = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    far.bind(("127.0.0.1", 0))
    far.settimeout(10)
    port = far.getsockname()[1]
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.logConfig.level = 0
    cfg.logConfig.consoleLevel = 0
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    tcfg.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    acfg = pj.AccountConfig()
    acfg.idUri = "sip:+14155550100@127.0.0.1"
    account = pj.Account()
    account.create(acfg)
    call = pj.Call(account)
    prm = pj.CallOpParam(True)
    call.makeCall(f"sip:+14155550199@127.0.0.1:{port}", prm)
    data = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ep.libHandleEvents(50)
        try:
            far.settimeout(0.05)
            data, _ = far.recvfrom(65535)
        except TimeoutError:
            continue
        if data.startswith(b"INVITE "):
            break
    if not data.startswith(b"INVITE "):
        raise SystemExit("pjsua2 sent no INVITE")
    with open(out, "wb") as f:
        f.write(data)
    call = None
    account.shutdown()
    ep.libDestroy()


if __name__ == "__main__":
    main(sys.argv[1])
