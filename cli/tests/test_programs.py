"""The program table: what `trunkline up` runs, with which arguments and probes."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from trunkline.cli import programs
from trunkline.cli.datadir import DataDir
from trunkline.cli.programs import HttpProbe, Platform, TcpProbe, build_programs, url_host


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return Platform(
        data=DataDir.at(tmp_path),
        host="127.0.0.1",
        api_port=18080,
        nats_port=14222,
        nats_monitor_port=18222,
        zone="example.test",
        admin_token="secret",
        store_url="cassandra://127.0.0.1:19042/trunkline_test",
        python="/usr/bin/python3.11",
    )


def test_nats_starts_before_the_api(platform: Platform) -> None:
    assert [program.name for program in build_programs(platform)] == [
        "nats",
        "api",
        "media",
        "auth",
        "cnam",
        "signaling",
    ]


def test_media_listens_on_the_platform_host_and_its_grpc_port(platform: Platform) -> None:
    media = build_programs(platform)[2]
    assert media.command[1:] == ("-m", "trunkline.media")
    assert media.environment["TRUNKLINE_MEDIA_GRPC_ADDRESS"] == f"127.0.0.1:{platform.media_port}"
    assert media.environment["TRUNKLINE_MEDIA_RTP_ADDRESS"] == "127.0.0.1"
    assert media.listens == (("127.0.0.1", platform.media_port),)


def test_nats_runs_jetstream_in_the_data_dir_with_monitoring(platform: Platform) -> None:
    nats = build_programs(platform)[0]
    args = list(nats.command)
    assert os.access(args[0], os.X_OK)
    assert args[args.index("-a") + 1] == "127.0.0.1"
    assert args[args.index("-p") + 1] == "14222"
    assert "-js" in args
    assert args[args.index("-sd") + 1] == str(platform.data.nats)
    assert args[args.index("-m") + 1] == "18222"
    assert nats.probes == (
        TcpProbe("127.0.0.1", 14222),
        HttpProbe("http://127.0.0.1:18222/healthz"),
    )


def test_api_gets_its_settings_from_the_environment(platform: Platform) -> None:
    api = build_programs(platform)[1]
    assert api.command == ("/usr/bin/python3.11", "-m", "trunkline.api")
    assert api.environment["TRUNKLINE_API_HOST"] == "127.0.0.1"
    assert api.environment["TRUNKLINE_API_PORT"] == "18080"
    assert api.environment["TRUNKLINE_STORE"] == "cassandra://127.0.0.1:19042/trunkline_test"
    assert api.environment["TRUNKLINE_NATS_URL"] == "nats://127.0.0.1:14222"
    assert api.environment["TRUNKLINE_ADMIN_TOKEN"] == "secret"
    assert api.environment["TRUNKLINE_ZONE"] == "example.test"
    assert api.environment["TRUNKLINE_PUBLIC_URL"] == "http://127.0.0.1:18080"
    assert api.probes == (HttpProbe("http://127.0.0.1:18080/healthz"),)


def test_nats_server_binary_can_be_overridden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(programs.NATS_SERVER_ENV, "/opt/nats/nats-server")
    assert programs.nats_server_binary() == "/opt/nats/nats-server"


def test_ipv6_hosts_are_bracketed_in_urls(tmp_path: Path) -> None:
    assert url_host("::1") == "[::1]"
    assert url_host("127.0.0.1") == "127.0.0.1"


def test_signaling_listens_on_tls_with_the_data_dirs_certificate(platform: Platform) -> None:
    data = platform.data
    with_tls = dataclasses.replace(
        platform,
        sip_port=15060,
        sip_tls_port=15061,
        sip_tls_cert=str(data.sip_tls_cert),
        sip_tls_key=str(data.sip_tls_key),
    )
    signaling = build_programs(with_tls)[-1]
    assert signaling.command[1:] == ("-m", "trunkline.signaling")
    env = signaling.environment
    assert env["TRUNKLINE_SIP_HOST"] == "127.0.0.1"
    assert env["TRUNKLINE_SIP_PORT"] == "15060"
    assert env["TRUNKLINE_SIP_TLS_PORT"] == "15061"
    assert env["TRUNKLINE_SIP_TLS_CERT"] == str(data.root / "sip-tls-cert.pem")
    assert env["TRUNKLINE_SIP_TLS_KEY"] == str(data.root / "sip-tls-key.pem")
    assert env["TRUNKLINE_ZONE"] == "example.test"
    assert env["TRUNKLINE_EDGE"] == "local"
    # Both ports are checked for being free before the start, and probed after it.
    assert signaling.listens == (("127.0.0.1", 15060), ("127.0.0.1", 15061))
    assert signaling.probes == (TcpProbe("127.0.0.1", 15060), TcpProbe("127.0.0.1", 15061))
    assert with_tls.sip_tls_address == "127.0.0.1:15061"


def test_signaling_without_a_certificate_listens_on_udp_and_tcp_only(platform: Platform) -> None:
    signaling = build_programs(platform)[-1]
    assert not any(name.startswith("TRUNKLINE_SIP_TLS") for name in signaling.environment)
    assert signaling.listens == (("127.0.0.1", platform.sip_port),)
