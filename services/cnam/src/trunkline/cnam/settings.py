"""CNAM service settings, from `TRUNKLINE_*` environment variables.

| variable | default | what |
|---|---|---|
| `TRUNKLINE_CNAM_GRPC_ADDRESS` | `127.0.0.1:7300` | where the gRPC API listens |
| `TRUNKLINE_CNAM_HEALTH_PORT` | unset (none) | `/healthz` and `/metrics` on the gRPC host |
| `TRUNKLINE_STORE` | `sqlite:///./data/trunkline.db` | the store (with the CNAM table) |
| `TRUNKLINE_NATS_URL` | unset (not billed) | NATS with JetStream for the usage events |
| `TRUNKLINE_CNAM_PROVIDER_URL` | unset (table only) | HTTP(S) provider (below) |
| `TRUNKLINE_CNAM_PROVIDER_TOKEN` | unset | sent as `Authorization: Bearer ...` |
| `TRUNKLINE_CNAM_PROVIDER_TIMEOUT` | `1.0` | seconds the provider may take |
| `TRUNKLINE_CNAM_CACHE_TTL` | `3600` | seconds a provider answer is kept; 0: none |
| `TRUNKLINE_CNAM_CACHE_SIZE` | `100000` | provider answers kept at most (LRU) |

The provider is asked for the numbers the table lacks: `{number}` in its URL becomes the
E.164 number, percent-encoded. It may take the timeout, then the answer is "not found".
It answers `{"caller_name": "..."}` (JSON) or the name as plain text; 404, 204, an empty
name or `null` mean "no name", cached like a name. Anything else (a timeout, 5xx,
a body it cannot read) is a failure: "not found" for this call, logged, and not cached.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

N = TypeVar("N", int, float)

NUMBER_PLACEHOLDER = "{number}"


@dataclass(frozen=True)
class Settings:
    grpc_address: str = "127.0.0.1:7300"
    health_port: int = 0  # 0: no health server
    store_url: str = "sqlite:///./data/trunkline.db"
    nats_url: str | None = None
    # Kept out of repr: a provider URL may carry an API key in its query.
    provider_url: str | None = field(default=None, repr=False)
    provider_token: str | None = field(default=None, repr=False)
    provider_timeout: float = 1.0
    cache_ttl: float = 3600.0
    cache_size: int = 100_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the environment; SystemExit naming the variable when a value is unusable."""
        e = os.environ if env is None else env
        settings = cls(
            grpc_address=e.get("TRUNKLINE_CNAM_GRPC_ADDRESS") or cls.grpc_address,
            health_port=_number(e, "TRUNKLINE_CNAM_HEALTH_PORT", 0, int),
            store_url=e.get("TRUNKLINE_STORE") or cls.store_url,
            nats_url=e.get("TRUNKLINE_NATS_URL") or None,
            provider_url=_provider_url(e.get("TRUNKLINE_CNAM_PROVIDER_URL") or None),
            provider_token=e.get("TRUNKLINE_CNAM_PROVIDER_TOKEN") or None,
            provider_timeout=_number(e, "TRUNKLINE_CNAM_PROVIDER_TIMEOUT", 1.0, float),
            cache_ttl=_number(e, "TRUNKLINE_CNAM_CACHE_TTL", 3600.0, float),
            cache_size=_number(e, "TRUNKLINE_CNAM_CACHE_SIZE", 100_000, int),
        )
        if settings.provider_timeout <= 0:
            raise SystemExit("TRUNKLINE_CNAM_PROVIDER_TIMEOUT must be positive")
        if settings.cache_ttl < 0:
            raise SystemExit("TRUNKLINE_CNAM_CACHE_TTL must not be negative")
        if settings.cache_size <= 0:
            raise SystemExit("TRUNKLINE_CNAM_CACHE_SIZE must be positive")
        return settings

    @property
    def provider_host(self) -> str | None:
        """The provider's host, what the logs name (never the URL: it may hold a key)."""
        return urlsplit(self.provider_url).hostname if self.provider_url else None


def _provider_url(text: str | None) -> str | None:
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Only the scheme is echoed: the rest may carry a key.
        raise SystemExit(
            f"TRUNKLINE_CNAM_PROVIDER_URL must be an http:// or https:// URL "
            f"(got scheme {parts.scheme!r})"
        )
    if NUMBER_PLACEHOLDER not in text:
        raise SystemExit(
            f"TRUNKLINE_CNAM_PROVIDER_URL must contain {NUMBER_PLACEHOLDER}, where the number goes"
        )
    return text


def _number(env: Mapping[str, str], name: str, default: N, kind: type[N]) -> N:
    text = env.get(name)
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {text!r}") from None
