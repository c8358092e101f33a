"""SIP test peers: sipp (Debian `sip-tester`) and the pjsua2-python wheel.

Nothing runs until a test starts its own peers (each test picks its scenario and ports), so
start() only checks the tools and reports where they are and which versions they are.

Debian 12's sipp 3.6.1 is built without TLS, and the archive mirror serves no source
tarballs to rebuild it with. Debian unstable's sip-tester (3.8.0) links OpenSSL; its .deb and
the libraries it needs (with their own glibc, newer than Debian 12's) are fetched with a
private apt configuration and unpacked into the cache by `install_sipp_tls()` (only the
TLS interop tests call it), and that wrapper runs the sipp
through the unpacked dynamic loader. Nothing is installed into the system for it.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The one apt helper of the harness lives with its first user.
from trunkline.harness.component import apt_install, cache_dir, logs_dir

HOST = "127.0.0.1"
PACKAGES = ("sip-tester",)

# sipp with TLS: Debian unstable's binary package and the libraries it links, the C library
# and loader included (its glibc is newer than the system's, so the system's cannot run it).
TLS_ARCHIVE = "http://deb.debian.org/debian"
TLS_SUITE = "sid"
TLS_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
TLS_PACKAGES = (
    "sip-tester",
    "libc6",
    "libgcc-s1",
    "libstdc++6",
    "libssl3t64",
    "libpugixml1v5",
    "libgsl28",
    "libgslcblas0",
    "libncursesw6",
    "libtinfo6",
    "libpcap0.8t64",
    "libdbus-1-3",
    "libsystemd0",
    "libcap2",
    "libzstd1",
    "zlib1g",
    "libsctp1",
)


def sipp_tls_home() -> Path:
    return cache_dir() / "sipp-tls"


def sipp_tls_binary() -> Path:
    """A wrapper script running the unpacked sipp through the unpacked loader."""
    return sipp_tls_home() / "bin" / "sipp"


def install_sipp_tls() -> Path:
    """Fetch and unpack the TLS-capable sipp into the cache once; its path."""
    binary = sipp_tls_binary()
    if binary.exists():
        return binary
    home = sipp_tls_home()
    home.mkdir(parents=True, exist_ok=True)
    # Two sessions installing at once would both fetch; one waits for the other instead.
    with (home / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.exists():
            _fetch_sipp_tls(home, binary)
    return binary


def _fetch_sipp_tls(home: Path, binary: Path) -> None:
    apt = home / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    sources = apt / "sources.list"
    sources.write_text(f"deb [signed-by={TLS_KEYRING}] {TLS_ARCHIVE} {TLS_SUITE} main\n")
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # A private configuration: the system's sources, preferences and package state are
    # neither read nor changed.
    options = [
        f"-oDir::Etc::SourceList={sources}",
        "-oDir::Etc::SourceParts=/dev/null",
        "-oDir::Etc::Preferences=/dev/null",
        "-oDir::Etc::PreferencesParts=/dev/null",
        f"-oDir::State::Lists={apt / 'lists'}",
        f"-oDir::Cache={apt / 'cache'}",
        "-oDir::State::status=/dev/null",
        f"-oAPT::Architecture={arch}",
        f"-oAPT::Architectures={arch}",
        "-oAPT::Sandbox::User=root" if os.geteuid() == 0 else "-oAPT::Sandbox::User=_apt",
    ]
    debs = home / "debs"
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir()
    partial = home / "root.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    with (logs_dir() / "sipp-tls-build.log").open("ab") as out:
        subprocess.run(["apt-get", *options, "update"], stdout=out, stderr=out, check=True)
        subprocess.run(
            ["apt-get", *options, "download", *TLS_PACKAGES],
            cwd=debs,
            stdout=out,
            stderr=out,
            check=True,
        )
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(partial)], check=True)
    root = home / "root"
    shutil.rmtree(root, ignore_errors=True)
    partial.replace(root)
    shutil.rmtree(debs, ignore_errors=True)
    loaders = sorted(root.glob("usr/lib/*/ld-linux*.so.*"))
    if not loaders:
        raise FileNotFoundError(f"no dynamic loader unpacked under {root}")
    loader = loaders[0]
    script = (
        "#!/bin/sh\n"
        f"exec {shlex.quote(str(loader))} --library-path {shlex.quote(str(loader.parent))} "
        f'{shlex.quote(str(root / "usr" / "bin" / "sipp"))} "$@"\n'
    )
    binary.parent.mkdir(exist_ok=True)
    pending = binary.with_suffix(".partial")
    pending.write_text(script)
    pending.chmod(0o755)
    banner = _sipp_banner(str(pending))
    if "-TLS" not in banner:
        raise RuntimeError(f"the sipp unpacked from {TLS_SUITE} has no TLS: {banner!r}")
    pending.replace(binary)  # only a checked wrapper ever has the final name


def _sipp_banner(sipp: str) -> str:
    # `sipp -v` prints its banner and exits non-zero by design; only the text matters.
    banner = subprocess.run([sipp, "-v"], capture_output=True, text=True, check=False)
    return banner.stdout + banner.stderr


def _sipp_version(sipp: str) -> str:
    found = re.search(r"SIPp v?(\d+(?:\.\d+)+)", _sipp_banner(sipp))
    return found.group(1) if found else "unknown"


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
        return {
            "host": HOST,
            "sipp": sipp,
            "sipp_version": _sipp_version(sipp),
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
