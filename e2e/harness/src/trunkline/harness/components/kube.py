"""etcd and kube-apiserver, built from the Go module proxy and started like envtest.

No kubelet, no controllers: an API server over a throwaway etcd, enough for CustomResource-
Definitions, custom objects, watches and RBAC, which is what the operator and its tests need.
The versions are the ones e2e/k8s/go.mod pins; both binaries are built once into the cache.
Clients authenticate with a static bearer token of a `system:masters` user; the kubeconfig
written under the run directory carries it with the self-signed CA.
"""

from __future__ import annotations

import base64
import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trunkline.harness.component import (
    NotReady,
    Process,
    cache_dir,
    logs_dir,
    pid_alive,
    port_open,
    run_dir,
    stop_pid,
    wait_until,
)

HOST = "127.0.0.1"
ETCD_CLIENT_PORT = 12379
ETCD_PEER_PORT = 12380
APISERVER_PORT = 16443
ADMIN_USER = "trunkline-admin"

# This file is e2e/harness/src/trunkline/harness/components/kube.py; the module is e2e/k8s.
MODULE_DIR = Path(__file__).resolve().parents[5] / "k8s"
APISERVER_PACKAGE = "k8s.io/kubernetes/cmd/kube-apiserver"
ETCD_PACKAGE = "go.etcd.io/etcd/server/v3"  # etcd's main is the root package of this module
STAMP = "versions.json"


class BuildFailed(NotReady):
    """`go build` failed; the message has the build log's tail."""


def pinned_versions(module_dir: Path = MODULE_DIR) -> dict[str, str]:
    """The Kubernetes and etcd versions go.mod pins, and a digest of go.sum.

    The digest makes any change to the resolved dependency graph (a bumped grpc, say) rebuild,
    not only a change of the two headline versions.
    """
    go_mod = module_dir / "go.mod"
    if not go_mod.exists():
        raise FileNotFoundError(f"{go_mod} not found: the kube component builds from e2e/k8s")
    text = go_mod.read_text()
    versions: dict[str, str] = {}
    for key, module in (("kubernetes", "k8s.io/kubernetes"), ("etcd", ETCD_PACKAGE)):
        found = re.search(rf"^\s*{re.escape(module)} (v\S+)", text, re.MULTILINE)
        if found is None:
            raise ValueError(f"{go_mod} requires no {module}")
        versions[key] = found.group(1)
    versions["go_sum_sha256"] = hashlib.sha256((module_dir / "go.sum").read_bytes()).hexdigest()
    return versions


def apiserver_ldflags(version: str) -> str:
    """What Kubernetes' own build stamps in: without it the server reports v0.0.0-master.

    Both the server's version package and client-go's (the loopback client's user agent) get it,
    as hack/lib/version.sh does; kubectl's version-skew warning reads /version.
    """
    major, minor = version.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={version}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    return " ".join(flags)


def etcd_ldflags(version: str) -> str:
    # etcd's Version is a constant of its api module; only the git SHA is left to the build.
    return f"-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA={version}"


class Kube:
    name = "kube"

    def bin_dir(self, versions: Mapping[str, str] | None = None) -> Path:
        versions = versions or pinned_versions()
        return cache_dir() / f"kube-{versions['kubernetes']}-etcd-{versions['etcd']}" / "bin"

    def installed(self, bin_dir: Path, versions: Mapping[str, str]) -> bool:
        stamp = bin_dir / STAMP
        if not stamp.exists():
            return False
        built = json.loads(stamp.read_text())
        same = all(built.get(k) == v for k, v in versions.items())
        return same and all((bin_dir / b).is_file() for b in ("etcd", "kube-apiserver"))

    def install(self) -> None:
        versions = pinned_versions()
        bin_dir = self.bin_dir(versions)
        if self.installed(bin_dir, versions):
            return
        go = shutil.which("go")
        if go is None:
            raise FileNotFoundError("go not found on PATH: the kube component builds with Go")
        # Two harness processes starting at once (the CLI and a test session) build only once.
        with (cache_dir() / "kube-build.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.installed(bin_dir, versions):
                return
            self.build(go, bin_dir, versions)

    def build(self, go: str, bin_dir: Path, versions: Mapping[str, str]) -> None:
        """Build both binaries into a scratch directory, then move it into place whole."""
        partial = bin_dir.with_name("bin.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        log = logs_dir() / "kube-build.log"
        # Static binaries as Kubernetes and etcd release them; no C toolchain needed either.
        env = {**os.environ, "CGO_ENABLED": "0"}
        seconds: dict[str, float] = {}
        targets = (
            ("etcd", ETCD_PACKAGE, etcd_ldflags(versions["etcd"])),
            ("kube-apiserver", APISERVER_PACKAGE, apiserver_ldflags(versions["kubernetes"])),
        )
        for binary, package, ldflags in targets:
            started = time.monotonic()
            argv = [go, "build", "-trimpath", "-buildvcs=false", f"-ldflags={ldflags}",
                    "-o", str(partial / binary), package]  # fmt: skip
            with log.open("ab") as out:
                out.write(f"$ {' '.join(argv)}\n".encode())
                out.flush()
                done = subprocess.run(
                    argv, cwd=MODULE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
                )
            if done.returncode != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                raise BuildFailed(f"building {binary} failed; log {log}:\n{tail}")
            seconds[binary] = round(time.monotonic() - started, 1)
        go_version = subprocess.run(
            [go, "env", "GOVERSION"], capture_output=True, text=True, check=True
        ).stdout.strip()
        stamp = {**versions, "go": go_version, "build_seconds": seconds}
        (partial / STAMP).write_text(json.dumps(stamp, indent=2))
        shutil.rmtree(bin_dir, ignore_errors=True)
        partial.rename(bin_dir)

    def start(self) -> dict[str, Any]:
        versions = pinned_versions()
        bin_dir = self.bin_dir(versions)
        for port in (ETCD_CLIENT_PORT, ETCD_PEER_PORT, APISERVER_PORT):
            if port_open(HOST, port):
                raise NotReady(
                    f"kube: {HOST}:{port} is already taken; another harness (other run "
                    f"directory?) or a leftover etcd/kube-apiserver holds it"
                )
        home = run_dir() / "kube"
        home.mkdir(exist_ok=True, mode=0o700)
        # Like envtest, every start begins with an empty store: tests never see an earlier
        # run's objects, and a member left by a killed etcd cannot block the new one.
        data = home / "etcd"
        shutil.rmtree(data, ignore_errors=True)
        pki = write_pki(home / "pki")
        token = admin_token(home)

        etcd_url = f"http://{HOST}:{ETCD_CLIENT_PORT}"
        peer_url = f"http://{HOST}:{ETCD_PEER_PORT}"
        etcd = Process(
            "etcd",
            [
                str(bin_dir / "etcd"),
                "--name=harness",
                f"--data-dir={data}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=harness={peer_url}",
                "--initial-cluster-state=new",
                # Throwaway data: skipping fsync makes every write (and so every test) faster.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        server = f"https://{HOST}:{APISERVER_PORT}"
        apiserver = Process(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={HOST}",
                f"--advertise-address={HOST}",
                f"--secure-port={APISERVER_PORT}",
                f"--tls-cert-file={pki['serving_cert']}",
                f"--tls-private-key-file={pki['serving_key']}",
                f"--client-ca-file={pki['ca_cert']}",
                f"--token-auth-file={home / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                # Mandatory even with no pods: the service-account token issuer and its keys.
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki['sa_public']}",
                f"--service-account-signing-key-file={pki['sa_private']}",
                # A range is mandatory for the `kubernetes` Service; nothing routes to it.
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                # With no controller manager no `default` ServiceAccount ever exists, and this
                # plugin would reject every pod for lacking one.
                "--disable-admission-plugins=ServiceAccount",
                # Endpoints and EndpointSlices reject loopback addresses, so publishing
                # 127.0.0.1 as the `kubernetes` Service's endpoint would fail (and log) every
                # few seconds; nothing routes to that Service here anyway.
                "--endpoint-reconciler-type=none",
            ],
        )
        endpoints: dict[str, Any] = {
            "server": server,
            "kubeconfig": str(write_kubeconfig(home, server, pki["ca_cert"], token)),
            "token": token,
            "user": ADMIN_USER,
            "ca": str(pki["ca_cert"]),
            "etcd": etcd_url,
            "pids": [],
            "logs": {"etcd": str(etcd.log), "kube-apiserver": str(apiserver.log)},
            "versions": {"kubernetes": versions["kubernetes"], "etcd": versions["etcd"]},
            "bin_dir": str(bin_dir),
        }
        try:
            endpoints["pids"].append(etcd.spawn())
            wait_until(lambda: etcd_healthy(etcd_url), 30, "etcd", etcd.log)
            endpoints["pids"].append(apiserver.spawn())
            # The first start on a slow machine installs CRD and RBAC bootstrap data.
            wait_until(lambda: self.ready(endpoints), 120, "kube-apiserver", apiserver.log)
        except BaseException:
            self.stop(endpoints)
            raise
        return endpoints

    def ready(self, endpoints: Mapping[str, Any]) -> bool:
        import httpx

        if not all(pid_alive(pid) for pid in endpoints.get("pids", [])):
            return False
        # /readyz covers etcd too (its etcd and post-start hook checks), so one call suffices;
        # sending the token also proves authentication works, not only that the port answers.
        resp = httpx.get(
            f"{endpoints['server']}/readyz",
            headers={"Authorization": f"Bearer {endpoints['token']}"},
            verify=ssl.create_default_context(cafile=endpoints["ca"]),
            timeout=5,
        )
        return resp.status_code == 200

    def stop(self, endpoints: Mapping[str, Any]) -> None:
        # The API server first, so it does not spend its shutdown retrying a vanished etcd.
        for pid in reversed(endpoints.get("pids", [])):
            stop_pid(pid)


def etcd_healthy(url: str) -> bool:
    import httpx

    resp = httpx.get(f"{url}/health", timeout=2)
    return resp.status_code == 200 and resp.json().get("health") == "true"


def admin_token(home: Path) -> str:
    """The admin's bearer token, one per run directory, in the apiserver's token file."""
    tokens = home / "tokens.csv"
    if tokens.exists():
        return tokens.read_text().split(",", 1)[0]
    token = secrets.token_urlsafe(32)
    # token,user,uid,"groups": system:masters bypasses RBAC, as a cluster admin does.
    tokens.write_text(f'{token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
    tokens.chmod(0o600)
    return token


def write_pki(pki: Path) -> dict[str, Path]:
    """A CA, a serving certificate for 127.0.0.1/localhost, and the service-account key pair.

    Made once per run directory and reused, so a kubeconfig written earlier stays valid across
    restarts (RSA key generation is also the slowest part of a warm start).
    """
    paths = {
        "ca_cert": pki / "ca.crt",
        "ca_key": pki / "ca.key",
        "serving_cert": pki / "apiserver.crt",
        "serving_key": pki / "apiserver.key",
        "sa_private": pki / "sa.key",
        "sa_public": pki / "sa.pub",
    }
    if all(p.exists() for p in paths.values()):
        return paths
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.datetime.now(datetime.UTC)
    valid_from, valid_to = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=365)

    def pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trunkline-harness-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(serving_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.IPAddress(ipaddress.ip_address(HOST)),
                    # The `kubernetes` Service's address, which in-cluster clients would use.
                    x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    # RSA for service-account tokens: RS256 is what every token verifier accepts.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    writes = {
        "ca_key": pem_key(ca_key),
        "serving_key": pem_key(serving_key),
        "sa_private": pem_key(sa_key),
        "ca_cert": ca_cert.public_bytes(serialization.Encoding.PEM),
        "serving_cert": serving_cert.public_bytes(serialization.Encoding.PEM),
        "sa_public": sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }
    for key, content in writes.items():
        paths[key].write_bytes(content)
        paths[key].chmod(0o600)
    return paths


def write_kubeconfig(home: Path, server: str, ca_cert: Path, token: str) -> Path:
    """A kubeconfig for kubectl and client libraries; JSON, which is valid YAML."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "harness",
                "cluster": {
                    "server": server,
                    # Embedded, so the file still works when copied elsewhere.
                    "certificate-authority-data": base64.b64encode(ca_cert.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": ADMIN_USER, "user": {"token": token}}],
        "contexts": [
            {
                "name": "harness",
                "context": {"cluster": "harness", "user": ADMIN_USER, "namespace": "default"},
            }
        ],
        "current-context": "harness",
    }
    path = home / "kubeconfig"
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


COMPONENT = Kube()
