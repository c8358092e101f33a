"""Digest credentials: the password policy and the HA1 hashes that replace passwords.

RFC 7616 section 3.4.2: HA1 = H(username ":" realm ":" password). Keeping HA1 for MD5 and
SHA-256 lets the auth service verify either algorithm without ever storing the password.
"""

from __future__ import annotations

import hashlib

MIN_PASSWORD_LENGTH = 12


def password_problem(password: str) -> str | None:
    """Why `password` is too weak, or None when it is strong enough."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"must be at least {MIN_PASSWORD_LENGTH} characters long"
    if not any(c.isdigit() for c in password):
        return "must contain at least one digit"
    if not any(c.islower() for c in password):
        return "must contain at least one lower-case letter"
    if not any(c.isupper() for c in password):
        return "must contain at least one upper-case letter"
    return None


def ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    data = f"{username}:{realm}:{password}".encode()
    if algorithm == "MD5":
        return hashlib.md5(data, usedforsecurity=False).hexdigest()
    if algorithm == "SHA-256":
        return hashlib.sha256(data).hexdigest()
    raise ValueError(f"unsupported digest algorithm {algorithm!r}")


def token_hash(token: str) -> str:
    """How an account's auth token is kept: its SHA-256, compared in constant time."""
    return hashlib.sha256(token.encode()).hexdigest()
