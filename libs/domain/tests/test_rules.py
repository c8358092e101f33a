"""Domain rules: numbers, passwords and digest hashes, trunk domains, ACL entries."""

from __future__ import annotations

import hashlib

import pytest

from trunkline.domain.addresses import network_problem
from trunkline.domain.credentials import ha1, password_problem
from trunkline.domain.domains import labels, parent_of
from trunkline.domain.numbers import is_e164, normalize
from trunkline.domain.sid import is_sid, new_sid


def test_sid_shape() -> None:
    sid = new_sid("TK")
    assert is_sid(sid, "TK") and not is_sid(sid, "AC")
    assert not is_sid("TK" + "G" * 32)
    with pytest.raises(ValueError):
        new_sid("tk")


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+14155550100", "+14155550100"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("4155550100", "+14155550100"),
        ("14155550100", "+14155550100"),
        ("+442071838750", "+442071838750"),
        ("0155550100", None),
        ("+0123", None),
        ("call me", None),
    ],
)
def test_normalize(raw: str, e164: str | None) -> None:
    assert normalize(raw) == e164


def test_e164_needs_plus() -> None:
    assert is_e164("+14155550100") and not is_e164("14155550100")


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("Short1a", "at least 12"),
        ("nodigitsHereAtAll", "digit"),
        ("alllower12345", "upper-case"),
        ("ALLUPPER12345", "lower-case"),
        ("Strong-Enough-123", None),
    ],
)
def test_password_policy(password: str, problem: str | None) -> None:
    found = password_problem(password)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_ha1_matches_rfc7616_definition() -> None:
    expected_md5 = hashlib.md5(b"alice:trunkline.test:Secret-Pass-123").hexdigest()  # noqa: S324
    expected_sha = hashlib.sha256(b"alice:trunkline.test:Secret-Pass-123").hexdigest()
    assert ha1("MD5", "alice", "trunkline.test", "Secret-Pass-123") == expected_md5
    assert ha1("SHA-256", "alice", "trunkline.test", "Secret-Pass-123") == expected_sha


def test_domain_labels_and_parent() -> None:
    assert labels("Acme.pstn.example.net", "example.net") == ["acme"]
    assert labels("a.acme.pstn.example.net", "example.net") == ["a", "acme"]
    assert "must end with" in str(labels("acme.example.com", "example.net"))
    assert "reserved" in str(labels("dublin.pstn.example.net", "example.net"))
    assert "at most one subdomain" in str(labels("a.b.c.pstn.example.net", "example.net"))
    assert parent_of("a.acme.pstn.example.net") == "acme.pstn.example.net"
    assert parent_of("acme.pstn.example.net") is None


@pytest.mark.parametrize(
    ("ip", "prefix", "ok"),
    [
        ("192.0.2.10", 32, True),
        ("192.0.2.0", 24, True),
        ("2001:db8::1", 64, True),
        ("192.0.2.10", 33, False),
        ("999.1.1.1", 32, False),
        ("2001:db8::1", 129, False),
    ],
)
def test_acl_entries(ip: str, prefix: int, ok: bool) -> None:
    assert (network_problem(ip, prefix) is None) is ok
