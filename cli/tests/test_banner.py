"""The banner `trunkline up` prints once ready."""

from __future__ import annotations

from pathlib import Path

from trunkline.cli.banner import READY_LINE, BannerFacts, render_banner


def facts(**changes: object) -> BannerFacts:
    base = BannerFacts(
        api_url="http://127.0.0.1:8080",
        console_url="http://127.0.0.1:8080/console",
        nats_url="nats://127.0.0.1:4222",
        nats_monitor_url="http://127.0.0.1:8222",
        data_dir=Path("/srv/trunkline"),
        bootstrap_file=Path("/srv/trunkline/bootstrap.json"),
        admin_token_file=Path("/srv/trunkline/admin-token"),
        account_sid="AC" + "0" * 32,
    )
    return BannerFacts(**{**base.__dict__, **changes})


def test_first_start_shows_the_bootstrap_credentials_once() -> None:
    text = render_banner(facts(auth_token="s3cret"))
    assert text.startswith(READY_LINE)
    assert "http://127.0.0.1:8080" in text
    assert "http://127.0.0.1:8080/console" in text
    assert "nats://127.0.0.1:4222" in text
    assert "/srv/trunkline" in text
    assert "AC" + "0" * 32 in text
    assert "s3cret" in text


def test_restart_points_to_the_bootstrap_file_instead_of_the_token() -> None:
    text = render_banner(facts())
    assert "Auth token" not in text
    assert "credentials in /srv/trunkline/bootstrap.json" in text
    assert "AC" + "0" * 32 in text


def test_sip_is_reported_honestly_until_signaling_exists() -> None:
    assert "SIP       not running yet (signaling service not built)" in render_banner(facts())
    text = render_banner(facts(sip_addresses=("sip:127.0.0.1:5060;transport=udp",)))
    assert "SIP       sip:127.0.0.1:5060;transport=udp" in text


def test_sip_lists_every_transport_and_the_certificate_to_trust() -> None:
    sip = ("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060", "tls:127.0.0.1:5061")
    cert = Path("/srv/trunkline/sip-tls-cert.pem")
    lines = render_banner(facts(sip_addresses=sip, sip_tls_certificate=cert)).splitlines()
    at = lines.index("  SIP       udp:127.0.0.1:5060, tcp:127.0.0.1:5060, tls:127.0.0.1:5061")
    assert lines[at + 1].startswith(f"  SIP cert  {cert}  (self-signed")
    assert "trust this file" in lines[at + 1]
    assert not any("SIP cert" in line for line in render_banner(facts()).splitlines())
