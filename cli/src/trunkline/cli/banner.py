"""The text `trunkline up` prints once the platform is ready (pure: facts in, text out)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

READY_LINE = "Trunkline is ready."
TRUST_NOTE = "self-signed: PBXs using TLS trust this file as a CA"


@dataclass(frozen=True)
class BannerFacts:
    api_url: str
    console_url: str
    nats_url: str
    nats_monitor_url: str
    data_dir: Path
    bootstrap_file: Path
    admin_token_file: Path
    account_sid: str | None
    # Only on the first start: afterwards the token is in the bootstrap file, not on screen.
    auth_token: str | None = None
    sip_addresses: Sequence[str] = field(default_factory=tuple)
    # The self-signed certificate of SIP over TLS, which a PBX must trust.
    sip_tls_certificate: Path | None = None
    media_address: str | None = None


def render_banner(facts: BannerFacts) -> str:
    if facts.sip_addresses:
        sip = ", ".join(facts.sip_addresses)
    else:
        sip = "not running yet (signaling service not built)"
    lines = [
        READY_LINE,
        "",
        f"  API       {facts.api_url}",
        f"  Console   {facts.console_url}",
        f"  NATS      {facts.nats_url}  (monitoring {facts.nats_monitor_url})",
        f"  SIP       {sip}",
        *(
            [f"  SIP cert  {facts.sip_tls_certificate}  ({TRUST_NOTE})"]
            if facts.sip_tls_certificate
            else []
        ),
        *([f"  Media     gRPC {facts.media_address}  (RTP relay)"] if facts.media_address else []),
        f"  Data dir  {facts.data_dir}",
        f"  Logs      {facts.data_dir / 'logs'}",
        "",
    ]
    if facts.auth_token is not None:
        lines += [
            "Bootstrap account (created now; keep these credentials, they are shown once):",
            f"  Account SID  {facts.account_sid}",
            f"  Auth token   {facts.auth_token}",
            f"  Saved in     {facts.bootstrap_file} (mode 0600)",
        ]
    else:
        lines += [
            f"Bootstrap account {facts.account_sid or '(unknown)'}: "
            f"credentials in {facts.bootstrap_file}",
        ]
    lines += [
        f"Admin token in {facts.admin_token_file} (used by `trunkline admin`).",
        "",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines) + "\n"
