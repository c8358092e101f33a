"""The data directory of the embedded platform: where each file lives and who may read it.

Secrets (the admin token, the bootstrap credentials, the supervisord config that carries the
admin token in a program's environment, the SIP TLS key) are written mode 0600; the run
directory holding supervisord's control socket is mode 0700, so only the owner can drive
supervisord.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS), including the final NUL.
MAX_SOCKET_PATH = 103
# The self-signed SIP TLS certificate: how long it is valid, and how long before its end a
# start replaces it (so that it does not expire under a running platform).
CERTIFICATE_VALIDITY = dt.timedelta(days=365)
CERTIFICATE_RENEWAL = dt.timedelta(days=7)
# RSA rather than ECDSA: every PBX and SBC that speaks TLS at all speaks RSA.
RSA_KEY_BITS = 2048


@dataclass(frozen=True)
class DataDir:
    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> DataDir:
        # Absolute, because supervisord and its programs run with `directory=` set to it.
        return cls(Path(path).expanduser().resolve())

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def nats(self) -> Path:
        return self.root / "nats"

    @property
    def database(self) -> Path:
        return self.root / "trunkline.db"

    @property
    def admin_token_file(self) -> Path:
        return self.root / "admin-token"

    @property
    def bootstrap_file(self) -> Path:
        return self.root / "bootstrap.json"

    @property
    def supervisord_conf(self) -> Path:
        return self.run / "supervisord.conf"

    @property
    def supervisord_socket(self) -> Path:
        return self.run / "supervisor.sock"

    @property
    def supervisord_pidfile(self) -> Path:
        return self.run / "supervisord.pid"

    @property
    def sip_tls_cert(self) -> Path:
        """The signaling service's TLS certificate (self-signed; PBXs trust this file)."""
        return self.root / "sip-tls-cert.pem"

    @property
    def sip_tls_key(self) -> Path:
        return self.root / "sip-tls-key.pem"

    @property
    def endpoints_file(self) -> Path:
        """Where the running platform says which URLs it listens on (for status and admin)."""
        return self.run / "endpoints.json"

    def log_file(self, program: str) -> Path:
        return self.logs / f"{program}.log"

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for directory in (self.logs, self.nats):
            directory.mkdir(exist_ok=True)
        self.run.mkdir(mode=0o700, exist_ok=True)
        # mkdir's mode is filtered by the umask and ignored for an existing directory.
        self.run.chmod(0o700)

    def load_or_create_admin_token(self) -> tuple[str, bool]:
        """The admin token and whether it was created now; reused on every later start."""
        existing = read_text(self.admin_token_file)
        if existing is not None and existing.strip():
            return existing.strip(), False
        token = secrets.token_urlsafe(32)
        write_private(self.admin_token_file, token + "\n")
        return token, True

    def load_or_create_nonce_secret(self) -> str:
        """The auth service's digest nonce secret, kept across restarts so that challenges
        issued before a restart still verify after it."""
        path = self.root / "nonce-secret"
        existing = read_text(path)
        if existing is not None and existing.strip():
            return existing.strip()
        secret = secrets.token_urlsafe(32)
        write_private(path, secret + "\n")
        return secret

    def load_or_create_sip_certificate(
        self, names: CertificateNames, now: dt.datetime | None = None
    ) -> str | None:
        """Keep the SIP TLS certificate and key usable for `names`: reused while they are
        valid, cover the names and belong together; else a new self-signed pair is written.
        Returns why a new one was made (None: the existing one is kept)."""
        now = now or dt.datetime.now(dt.UTC)
        problem = certificate_problem(self.sip_tls_cert, self.sip_tls_key, names, now)
        if problem is None:
            # The key stays the owner's even if someone loosened its mode.
            self.sip_tls_key.chmod(0o600)
            return None
        write_self_signed(self.sip_tls_cert, self.sip_tls_key, names, now)
        return problem

    def read_admin_token(self) -> str | None:
        text = read_text(self.admin_token_file)
        return text.strip() if text and text.strip() else None

    def read_bootstrap(self) -> dict[str, Any] | None:
        return read_json(self.bootstrap_file)

    def write_bootstrap(self, state: dict[str, Any]) -> None:
        write_private(self.bootstrap_file, json.dumps(state, indent=2) + "\n")

    def read_endpoints(self) -> dict[str, Any] | None:
        return read_json(self.endpoints_file)

    def write_endpoints(self, endpoints: dict[str, Any]) -> None:
        write_private(self.endpoints_file, json.dumps(endpoints, indent=2) + "\n")


def write_private(path: Path, text: str) -> None:
    """Write `text` so that only the owner can read it, atomically (no half-written secret).

    The temporary file is created 0600 by os.open, so the secret is never readable by others,
    not even for the instant between creating and chmod-ing it.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_public(path: Path, text: str) -> None:
    """Write `text` atomically, readable by everyone (mode 0644: a certificate, say)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


# --- the SIP TLS certificate ---------------------------------------------------------------


@dataclass(frozen=True)
class CertificateNames:
    """The names a server certificate must cover: DNS names (wildcards allowed) and IP
    addresses, for its subjectAltName."""

    dns: tuple[str, ...]
    ips: tuple[str, ...] = ()

    def general_names(self) -> list[x509.GeneralName]:
        return [
            *(x509.DNSName(name) for name in self.dns),
            *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in self.ips),
        ]


def certificate_problem(
    cert_path: Path, key_path: Path, names: CertificateNames, now: dt.datetime
) -> str | None:
    """Why the certificate and key at these paths cannot serve `names` now (None: they can)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError:
        return "there was none"
    except (OSError, ValueError, TypeError) as error:
        return f"the existing one could not be read ({error})"
    if cert.not_valid_after_utc - CERTIFICATE_RENEWAL <= now:
        return f"the existing one expires {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if cert.not_valid_before_utc > now:
        return f"the existing one is valid only from {cert.not_valid_before_utc:%Y-%m-%d} UTC"
    if _spki(cert.public_key()) != _spki(key.public_key()):
        return "the existing key does not belong to the certificate"
    try:
        present = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "the existing one names no subjectAltName"
    missing = [str(name.value) for name in names.general_names() if name not in present]
    if missing:
        return "the existing one does not cover " + ", ".join(missing)
    return None


def _spki(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def write_self_signed(
    cert_path: Path, key_path: Path, names: CertificateNames, now: dt.datetime
) -> None:
    """A new RSA key (mode 0600) and a self-signed certificate for `names` (mode 0644).

    The certificate is its own CA (basicConstraints CA, keyCertSign), so a PBX can add the
    file to its trusted CAs, and a TLS server certificate (digitalSignature, keyEncipherment,
    serverAuth) whose subjectAltName lists the names clients verify.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Trunkline (self-signed)"),
            x509.NameAttribute(NameOID.COMMON_NAME, _common_name(names)),
        ]
    )
    public = key.public_key()
    identifier = x509.SubjectKeyIdentifier.from_public_key(public)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        # A little slack for a client whose clock is slightly behind.
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + CERTIFICATE_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names.general_names()), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(identifier, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(identifier),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    # The key first: a crash between the two writes leaves a pair that does not match,
    # which the next start replaces.
    write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii"),
    )
    write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))


def _common_name(names: CertificateNames) -> str:
    first: Sequence[str] = names.dns or names.ips or ("trunkline",)
    return first[0][:64]  # the X.520 upper bound of a common name


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def read_json(path: Path) -> dict[str, Any] | None:
    text = read_text(path)
    if text is None:
        return None
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return value


def tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file, or a note that it does not exist."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            # Logs rotate at a few MB; the last 64 KiB hold far more than 20 lines.
            handle.seek(max(0, size - 65536))
            data = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    selected = data.splitlines()[-lines:]
    return "\n".join(selected) if selected else f"({path} is empty)"
