"""SIP test peers: sipp (Debian `sip-tester`) and the pjsua2-python wheel.

Nothing runs until a test starts its own peers (each test picks its scenario and ports), so
start() only checks the tools and reports where they are and which versions they are.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

# The one apt helper of the harness lives with its first user.
from trunkline.harness.component import apt_install

HOST = "127.0.0.1"
PACKAGES = ("sip-tester",)


class Sip:
    name = "sip"

    def sipp(self) -> str | None:
        return shutil.which("sipp") or shutil.which("sipp", path="/usr/bin")

    def install(self) -> None:
        if self.sipp() is None:
            apt_install(PACKAGES)
        if self.sipp() is None:
            raise FileNotFoundError(f"sipp missing after installing {PACKAGES}")
        # The wheel is a dependency of the harness; importing it in a child process checks
        # its bundled native library loads here without loading pjsip into our own process.
        subprocess.run([sys.executable, "-c", "import pjsua2"], check=True, capture_output=True)

    def start(self) -> dict[str, Any]:
        sipp = self.sipp()
        if sipp is None:
            raise FileNotFoundError("sipp is not installed: run install() first")
        # `sipp -v` prints its banner and exits non-zero by design; only the text matters.
        banner = subprocess.run([sipp, "-v"], capture_output=True, text=True, check=False)
        found = re.search(r"SIPp v?(\d+(?:\.\d+)+)", banner.stdout + banner.stderr)
        return {
            "host": HOST,
            "sipp": sipp,
            "sipp_version": found.group(1) if found else "unknown",
            "python": sys.executable,
            "pjsua2_version": importlib.metadata.version("pjsua2-python"),
            "pids": [],
        }

    def ready(self, endpoints: Mapping[str, Any]) -> bool:
        sipp = endpoints.get("sipp")
        return (
            isinstance(sipp, str)
            and os.access(sipp, os.X_OK)
            and importlib.util.find_spec("pjsua2") is not None
        )

    def stop(self, endpoints: Mapping[str, Any]) -> None:
        # Peers belong to the tests that start them; the component runs no process.
        return None


COMPONENT = Sip()
