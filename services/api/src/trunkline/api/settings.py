"""API settings, from `TRUNKLINE_*` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    store_url: str = "sqlite:///./data/trunkline.db"
    nats_url: str | None = None
    admin_token: str | None = None
    zone: str = "trunkline.local"
    realm: str = "trunkline.local"
    public_url: str | None = None
    max_trunks_per_account: int = 100

    @property
    def base_url(self) -> str:
        """Absolute base of the URLs the API puts in its answers."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        zone = e.get("TRUNKLINE_ZONE", cls.zone)
        return cls(
            host=e.get("TRUNKLINE_API_HOST", cls.host),
            port=int(e.get("TRUNKLINE_API_PORT", str(cls.port))),
            store_url=e.get("TRUNKLINE_STORE", cls.store_url),
            nats_url=e.get("TRUNKLINE_NATS_URL") or None,
            admin_token=e.get("TRUNKLINE_ADMIN_TOKEN") or None,
            zone=zone,
            realm=e.get("TRUNKLINE_REALM", zone),
            public_url=e.get("TRUNKLINE_PUBLIC_URL") or None,
            max_trunks_per_account=int(
                e.get("TRUNKLINE_MAX_TRUNKS_PER_ACCOUNT", str(cls.max_trunks_per_account))
            ),
        )
