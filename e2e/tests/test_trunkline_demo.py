"""`trunkline up` then `trunkline demo on-net`: the two commands the README gives a newcomer
to call one softphone on this machine from another through two trunks. Here sipp plays the
two softphones (pjsua2 does it with audio in test_origination_pjsua2.py)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from trunkline.cli.testing import Launcher, trunkline_command
from trunkline.harness.modules import load_module

pytestmark = pytest.mark.e2e

support = load_module(Path(__file__).with_name("termination_support.py"))
SIPP_DIR = Path(__file__).parent.parent / "sipp"


def demo(platform: Any, softphone_port: int) -> str:
    result = subprocess.run(
        trunkline_command(
            "demo", "on-net", "--data-dir", str(platform.data.root),
            "--softphone-port", str(softphone_port),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + platform.diagnostics()
    return result.stdout


def test_demo_on_net_lets_softphone_a_call_softphone_b_through_two_trunks(
    trunkline: Launcher, harness_sip: Mapping[str, Any], tmp_path: Path
) -> None:
    platform = trunkline.start()  # no carriers file: on-net calls need none
    (softphone_b,) = support.free_udp_ports(1)
    printed = demo(platform, softphone_b)
    assert demo(platform, softphone_b) == printed  # a second run reuses what it made
    number_a = re.search(r"Trunk A (\S+) \(number (\+\d+)\)", printed)
    number_b = re.search(r"trunk B (\S+)\s+\(number (\+\d+)\)", printed)
    assert number_a and number_b, printed
    domain_a, caller = number_a.group(1), number_a.group(2)
    callee = number_b.group(2)

    sipp = harness_sip["sipp"]
    b = subprocess.Popen(
        [sipp, "-sf", str(SIPP_DIR / "carrier_uas.xml"), "-i", "127.0.0.1",
         "-p", str(softphone_b), "-m", "1", "-timeout", "20s", "-nostdin",
         "-trace_msg", "-message_file", str(tmp_path / "b.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        a = subprocess.run(
            [sipp, "-sf", str(SIPP_DIR / "pbx_uac.xml"), "-set", "domain", domain_a,
             "-set", "caller", caller, "-s", callee, f"127.0.0.1:{trunkline.sip_port}",
             "-i", "127.0.0.1", "-m", "1", "-d", "300", "-timeout", "20s", "-nostdin",
             "-trace_err", "-error_file", str(tmp_path / "a.err")],
            capture_output=True,
            timeout=30,
        )  # fmt: skip
        assert a.returncode == 0, (tmp_path / "a.err").read_text() + platform.diagnostics()
        assert b.wait(timeout=20) == 0
    finally:
        if b.poll() is None:
            b.kill()
            b.wait()
    invite = (tmp_path / "b.log").read_text()
    assert f"INVITE sip:{callee}@" in invite
