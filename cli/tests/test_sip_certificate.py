"""The SIP TLS certificate `trunkline up` makes: its names, its key's mode, reuse, renewal."""

from __future__ import annotations

import datetime as dt
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from trunkline.cli.datadir import CERTIFICATE_VALIDITY, DataDir
from trunkline.cli.programs import sip_certificate_names

NOW = dt.datetime(2030, 1, 15, 12, 0, tzinfo=dt.UTC)
NAMES = sip_certificate_names("example.test", "127.0.0.1")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load(data: DataDir) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data.sip_tls_cert.read_bytes())


def alt_names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        sans.get_values_for_type(x509.DNSName),
        [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)],
    )


def handshake(data: DataDir, server_name: str) -> None:
    """A TLS 1.2 handshake in memory: a client that trusts only the certificate file and
    checks `server_name` against the server that presents it (ssl.SSLError if it fails)."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(data.sip_tls_cert, data.sip_tls_key)
    client_context = ssl.create_default_context(cafile=str(data.sip_tls_cert))
    # As the PBXs with OpenSSL 1.0.2 that must work (pjsua2 among them).
    client_context.maximum_version = ssl.TLSVersion.TLSv1_2
    buffers = [ssl.MemoryBIO() for _ in range(2)]
    client = client_context.wrap_bio(buffers[0], buffers[1], server_hostname=server_name)
    server = server_context.wrap_bio(buffers[1], buffers[0], server_side=True)
    for _ in range(10):
        done = 0
        for side in (client, server):
            try:
                side.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        if done == 2:
            return
    raise AssertionError("the handshake did not finish")


@pytest.fixture
def data(tmp_path: Path) -> DataDir:
    directory = DataDir.at(tmp_path / "data")
    directory.create()
    return directory


def test_names_cover_every_trunk_domain_form_localhost_and_the_host() -> None:
    assert NAMES.dns[0] == "*.pstn.example.test"
    assert "*.pstn.local.example.test" in NAMES.dns  # the embedded platform's edge
    assert {"*.pstn.ashburn.example.test", "*.pstn.us1.example.test"} <= set(NAMES.dns)
    assert "localhost" in NAMES.dns
    assert NAMES.ips == ("127.0.0.1",)


@pytest.mark.parametrize(
    ("host", "dns", "ips"),
    [
        ("0.0.0.0", None, ("127.0.0.1", "::1")),  # noqa: S104 (every address: loopback)
        ("::", None, ("127.0.0.1", "::1")),
        ("::1", None, ("::1",)),
        ("192.0.2.7", None, ("192.0.2.7",)),
        ("sbc.Example.NET", "sbc.example.net", ()),
        ("localhost", None, ()),
    ],
)
def test_names_follow_the_host(host: str, dns: str | None, ips: tuple[str, ...]) -> None:
    names = sip_certificate_names("Trunkline.Local.", host)
    assert names.dns[0] == "*.pstn.trunkline.local"
    assert names.ips == ips
    assert names.dns[-1] == (dns or "localhost")


def test_first_start_makes_a_self_signed_certificate_for_the_names(data: DataDir) -> None:
    reason = data.load_or_create_sip_certificate(NAMES, NOW)
    assert reason == "there was none"
    cert = load(data)
    dns, ips = alt_names(cert)
    assert dns == list(NAMES.dns) and ips == ["127.0.0.1"]
    assert cert.issuer == cert.subject
    assert cert.not_valid_before_utc <= NOW
    assert cert.not_valid_after_utc == NOW + CERTIFICATE_VALIDITY
    # Its own CA, so a PBX can trust the file, and a TLS server certificate.
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    assert cert.public_key().key_size == 2048  # type: ignore[union-attr]


def test_the_key_is_owner_only_and_the_certificate_readable(data: DataDir) -> None:
    data.load_or_create_sip_certificate(NAMES, NOW)
    assert mode(data.sip_tls_key) == 0o600
    assert mode(data.sip_tls_cert) == 0o644
    assert b"PRIVATE KEY" in data.sip_tls_key.read_bytes()
    assert b"PRIVATE" not in data.sip_tls_cert.read_bytes()
    assert sorted(p.name for p in data.root.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    "server_name", ["acme.pstn.example.test", "acme.pstn.local.example.test", "127.0.0.1"]
)
def test_a_client_that_trusts_the_file_verifies_the_server(data: DataDir, server_name: str) -> None:
    data.load_or_create_sip_certificate(NAMES)  # now: the handshake checks the dates too
    handshake(data, server_name)


@pytest.mark.parametrize("server_name", ["example.test", "a.b.pstn.example.test", "10.0.0.1"])
def test_a_client_refuses_names_the_certificate_does_not_cover(
    data: DataDir, server_name: str
) -> None:
    data.load_or_create_sip_certificate(NAMES)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(data, server_name)


def test_later_starts_reuse_the_certificate_and_key(data: DataDir) -> None:
    data.load_or_create_sip_certificate(NAMES, NOW)
    cert, key = data.sip_tls_cert.read_bytes(), data.sip_tls_key.read_bytes()
    later = NOW + CERTIFICATE_VALIDITY / 2
    assert data.load_or_create_sip_certificate(NAMES, later) is None
    assert data.sip_tls_cert.read_bytes() == cert and data.sip_tls_key.read_bytes() == key


def test_reuse_tightens_a_loosened_key_mode(data: DataDir) -> None:
    data.load_or_create_sip_certificate(NAMES, NOW)
    data.sip_tls_key.chmod(0o644)
    assert data.load_or_create_sip_certificate(NAMES, NOW) is None
    assert mode(data.sip_tls_key) == 0o600


def test_an_expired_or_expiring_certificate_is_replaced(data: DataDir) -> None:
    data.load_or_create_sip_certificate(NAMES, NOW)
    first = load(data)
    # A start a few days before the end renews, so that it does not expire while running.
    soon = first.not_valid_after_utc - dt.timedelta(days=3)
    reason = data.load_or_create_sip_certificate(NAMES, soon)
    assert reason is not None and "expires" in reason
    second = load(data)
    assert second.serial_number != first.serial_number
    assert second.not_valid_after_utc == soon + CERTIFICATE_VALIDITY
    assert mode(data.sip_tls_key) == 0o600
    expired = second.not_valid_after_utc + dt.timedelta(days=1)
    assert "expires" in (data.load_or_create_sip_certificate(NAMES, expired) or "")


def test_another_zone_or_host_gets_a_certificate_that_names_it(data: DataDir) -> None:
    data.load_or_create_sip_certificate(NAMES, NOW)
    other = sip_certificate_names("other.test", "192.0.2.7")
    reason = data.load_or_create_sip_certificate(other, NOW)
    assert reason is not None and "*.pstn.other.test" in reason and "192.0.2.7" in reason
    dns, ips = alt_names(load(data))
    assert dns[0] == "*.pstn.other.test" and ips == ["192.0.2.7"]


def test_a_certificate_covering_more_than_needed_is_kept(data: DataDir) -> None:
    # An operator's own certificate in place of ours stays, as long as it covers the names.
    wider = sip_certificate_names("example.test", "127.0.0.1")
    wider = type(wider)(dns=(*wider.dns, "sip.example.test"), ips=(*wider.ips, "::1"))
    data.load_or_create_sip_certificate(wider, NOW)
    assert data.load_or_create_sip_certificate(NAMES, NOW) is None
    assert "sip.example.test" in alt_names(load(data))[0]


def test_a_key_that_does_not_match_or_a_broken_file_is_replaced(data: DataDir) -> None:
    data.load_or_create_sip_certificate(NAMES, NOW)
    other = DataDir.at(data.root / "other")
    other.create()
    other.load_or_create_sip_certificate(NAMES, NOW)
    data.sip_tls_key.write_bytes(other.sip_tls_key.read_bytes())
    assert "does not belong" in (data.load_or_create_sip_certificate(NAMES, NOW) or "")
    assert data.load_or_create_sip_certificate(NAMES, NOW) is None
    data.sip_tls_cert.write_text("not a certificate\n")
    assert "could not be read" in (data.load_or_create_sip_certificate(NAMES, NOW) or "")
    assert data.load_or_create_sip_certificate(NAMES, NOW) is None
    data.sip_tls_key.unlink()
    assert data.load_or_create_sip_certificate(NAMES, NOW) == "there was none"
