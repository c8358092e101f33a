"""Auth service settings, from `TRUNKLINE_*` environment variables.

| variable | default | what |
|---|---|---|
| `TRUNKLINE_AUTH_GRPC_ADDRESS` | `127.0.0.1:7200` | where the gRPC API listens |
| `TRUNKLINE_AUTH_HEALTH_PORT` | unset (none) | `/healthz` and `/metrics` on the gRPC host |
| `TRUNKLINE_STORE` | `sqlite:///./data/trunkline.db` | the store URL (as the API's) |
| `TRUNKLINE_NATS_URL` | unset | configuration-change notices that clear the config cache |
| `TRUNKLINE_CONFIG_CACHE_TTL` | `30` | seconds a configuration read is cached |
| `TRUNKLINE_REALM` | `TRUNKLINE_ZONE`, else `trunkline.local` | digest realm of the stored HA1s |
| `TRUNKLINE_AUTH_NONCE_SECRET` | generated per process | signs digest nonces (16+ bytes) |
| `TRUNKLINE_AUTH_NONCE_PREVIOUS_SECRETS` | unset | comma-separated secrets still accepted |
| `TRUNKLINE_AUTH_LOCKOUT_FAILURES` | `10` | failures from one source that lock it out |
| `TRUNKLINE_AUTH_LOCKOUT_WINDOW` | `60` | seconds in which those failures count |
| `TRUNKLINE_AUTH_LOCKOUT_SECONDS` | `300` | how long a locked-out source is ignored |
| `TRUNKLINE_AUTH_VERDICT_REUSE` | `10` | seconds signaling may reuse an IP-ACL verdict (0: never) |

Every auth pod must have the same nonce secret: a nonce issued by one pod is verified by
whichever pod the challenged retry reaches. Rotate by moving the old secret to
`TRUNKLINE_AUTH_NONCE_PREVIOUS_SECRETS` for a nonce lifetime (5 minutes).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from trunkline.digest.sip import MIN_SECRET_LENGTH
from trunkline.store.cache import ttl_from_env

N = TypeVar("N", int, float)


@dataclass(frozen=True)
class Settings:
    grpc_address: str = "127.0.0.1:7200"
    health_port: int = 0  # 0: no health server
    store_url: str = "sqlite:///./data/trunkline.db"
    nats_url: str | None = None
    cache_ttl: float = 30.0
    realm: str = "trunkline.local"
    # None: generated at start (one process only). Kept out of repr, so never logged.
    nonce_secret: bytes | None = field(default=None, repr=False)
    previous_nonce_secrets: tuple[bytes, ...] = field(default=(), repr=False)
    lockout_failures: int = 10
    lockout_window: float = 60.0
    lockout_seconds: float = 300.0
    verdict_reuse: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the environment; SystemExit naming the variable when a value is unusable."""
        e = os.environ if env is None else env
        zone = e.get("TRUNKLINE_ZONE") or "trunkline.local"
        secret = e.get("TRUNKLINE_AUTH_NONCE_SECRET") or None
        previous = e.get("TRUNKLINE_AUTH_NONCE_PREVIOUS_SECRETS", "")
        try:
            cache_ttl = ttl_from_env(e)
        except ValueError as error:
            raise SystemExit(str(error)) from None
        settings = cls(
            grpc_address=e.get("TRUNKLINE_AUTH_GRPC_ADDRESS") or cls.grpc_address,
            health_port=_number(e, "TRUNKLINE_AUTH_HEALTH_PORT", 0, int),
            store_url=e.get("TRUNKLINE_STORE") or cls.store_url,
            nats_url=e.get("TRUNKLINE_NATS_URL") or None,
            cache_ttl=cache_ttl,
            realm=e.get("TRUNKLINE_REALM") or zone,
            nonce_secret=_secret(secret, "TRUNKLINE_AUTH_NONCE_SECRET") if secret else None,
            previous_nonce_secrets=tuple(
                _secret(s.strip(), "TRUNKLINE_AUTH_NONCE_PREVIOUS_SECRETS")
                for s in previous.split(",")
                if s.strip()
            ),
            lockout_failures=_number(e, "TRUNKLINE_AUTH_LOCKOUT_FAILURES", 10, int),
            lockout_window=_number(e, "TRUNKLINE_AUTH_LOCKOUT_WINDOW", 60.0, float),
            lockout_seconds=_number(e, "TRUNKLINE_AUTH_LOCKOUT_SECONDS", 300.0, float),
            verdict_reuse=_number(e, "TRUNKLINE_AUTH_VERDICT_REUSE", 10.0, float),
        )
        if settings.verdict_reuse < 0:
            raise SystemExit("TRUNKLINE_AUTH_VERDICT_REUSE must not be negative")
        for name, value in (
            ("TRUNKLINE_AUTH_LOCKOUT_FAILURES", settings.lockout_failures),
            ("TRUNKLINE_AUTH_LOCKOUT_WINDOW", settings.lockout_window),
            ("TRUNKLINE_AUTH_LOCKOUT_SECONDS", settings.lockout_seconds),
        ):
            if value <= 0:
                raise SystemExit(f"{name} must be positive")
        return settings


def _number(env: Mapping[str, str], name: str, default: N, kind: type[N]) -> N:
    text = env.get(name)
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {text!r}") from None


def _secret(text: str, name: str) -> bytes:
    secret = text.encode()
    if len(secret) < MIN_SECRET_LENGTH:
        # The value itself is never echoed: it is a secret.
        raise SystemExit(f"{name} must be at least {MIN_SECRET_LENGTH} bytes long")
    return secret
