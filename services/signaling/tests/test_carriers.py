"""Carrier gateways: the TOML file, the attempt order by priority and weight, failover."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.signaling.carriers import (
    CARRIERS_FILE_ENV,
    TIMEOUT_NO_RESPONSE,
    CarrierConfigError,
    Gateway,
    attempt_order,
    carriers_from_env,
    fails_over,
    load_carriers,
    parse_carriers,
)

EXAMPLE = """
[[gateway]]
name = "carrier-a-1"
address = "127.0.0.1:5080"
transport = "udp"
priority = 10
weight = 50
username = "acct"
password = "s3cret-pw"

[[gateway]]
name = "carrier-a-2"
address = "[2001:db8::1]:5061"
transport = "TLS"
priority = 10
weight = 50

[[gateway]]
name = "carrier-b"
address = "sbc.carrier-b.example.net"
transport = "tcp"
priority = 20
weight = 0
"""


def gw(name: str, priority: int = 10, weight: int = 1) -> Gateway:
    return Gateway(name, "192.0.2.1", 5060, "udp", priority, weight)


# --- parsing -----------------------------------------------------------------------------------


def test_parses_the_example_file() -> None:
    a1, a2, b = parse_carriers(EXAMPLE)
    assert a1 == Gateway("carrier-a-1", "127.0.0.1", 5080, "udp", 10, 50, "acct", "s3cret-pw")
    assert a1.address == "127.0.0.1:5080"
    assert a1.credentials == ("acct", "s3cret-pw")
    assert a2 == Gateway("carrier-a-2", "2001:db8::1", 5061, "tls", 10, 50)
    assert a2.address == "[2001:db8::1]:5061"
    assert a2.credentials is None
    assert b.host == "sbc.carrier-b.example.net"
    assert b.port == 5060
    assert (b.transport, b.priority, b.weight) == ("tcp", 20, 0)


@pytest.mark.parametrize(
    ("address", "transport", "host", "port"),
    [
        ("10.0.0.1", "udp", "10.0.0.1", 5060),
        ("10.0.0.1", "tls", "10.0.0.1", 5061),
        ("[::1]", "tcp", "::1", 5060),
        ("[2001:DB8:0:0::7]:5062", "udp", "2001:db8::7", 5062),
        ("GW.Example.COM.:7000", "udp", "gw.example.com", 7000),
        ("localhost:5080", "udp", "localhost", 5080),
    ],
)
def test_address_forms_and_default_ports(
    address: str, transport: str, host: str, port: int
) -> None:
    text = f'[[gateway]]\nname = "g"\naddress = "{address}"\ntransport = "{transport}"\n'
    (gateway,) = parse_carriers(text)
    assert (gateway.host, gateway.port) == (host, port)


def test_defaults_for_transport_priority_weight() -> None:
    (gateway,) = parse_carriers('[[gateway]]\nname = "g"\naddress = "192.0.2.1:5060"\n')
    assert (gateway.transport, gateway.priority, gateway.weight) == ("udp", 10, 1)


def test_an_empty_file_has_no_gateways() -> None:
    assert parse_carriers("") == ()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('address = "1.2.3.4"', "gateway #1: name: is required"),
        ('name = "bad name"\naddress = "1.2.3.4"', "gateway #1: name: 'bad name' must be"),
        ('name = "g"', "gateway 'g': address: is required"),
        ('name = "g"\naddress = 5060', "gateway 'g': address: must be a string"),
        ('name = "g"\naddress = "2001:db8::1"', "gateway 'g': address: '2001:db8::1': an IPv6"),
        ('name = "g"\naddress = "[2001:db8::1"', "address: '[2001:db8::1': unterminated"),
        ('name = "g"\naddress = "[10.0.0.1]:5060"', "not an IPv6 address"),
        ('name = "g"\naddress = "[::1]5060"', "expected ':port'"),
        ('name = "g"\naddress = "999.1.1.1"', "gateway 'g': address: '999.1.1.1': not an IP"),
        ('name = "g"\naddress = "bad_host:5060"', "not an IP address or host name"),
        ('name = "g"\naddress = ":5060"', "the host is missing"),
        ('name = "g"\naddress = "1.2.3.4:0"', "port must be a number 1-65535"),
        ('name = "g"\naddress = "1.2.3.4:65536"', "port must be a number 1-65535"),
        ('name = "g"\naddress = "1.2.3.4:x"', "port must be a number 1-65535"),
        ('name = "g"\naddress = "1.2.3.4"\ntransport = "sctp"', "gateway 'g': transport: must"),
        ('name = "g"\naddress = "1.2.3.4"\ntransport = 1', "transport: must be one of"),
        ('name = "g"\naddress = "1.2.3.4"\npriority = -1', "gateway 'g': priority: must be"),
        ('name = "g"\naddress = "1.2.3.4"\npriority = "1"', "priority: must be an integer"),
        ('name = "g"\naddress = "1.2.3.4"\npriority = true', "priority: must be an integer"),
        ('name = "g"\naddress = "1.2.3.4"\nweight = 65536', "gateway 'g': weight: must be"),
        ('name = "g"\naddress = "1.2.3.4"\nweight = 1.5', "weight: must be an integer"),
        ('name = "g"\naddress = "1.2.3.4"\nwieght = 5', "gateway 'g': wieght: unknown field"),
        ('name = "g"\naddress = "1.2.3.4"\nusername = "u"', "gateway 'g': password: is required"),
        ('name = "g"\naddress = "1.2.3.4"\npassword = "p"', "gateway 'g': username: is required"),
        ('name = "g"\naddress = "1.2.3.4"\nusername = ""\npassword = "p"', "username: must be"),
    ],
)
def test_bad_gateways_name_the_gateway_and_field(body: str, expected: str) -> None:
    with pytest.raises(CarrierConfigError, match=r"^carriers: ") as info:
        parse_carriers(f"[[gateway]]\n{body}\n")
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[gateway]\n", "not valid TOML"),
        ("gateways = []\n", "unknown top-level key 'gateways'"),
        ('[gateway]\nname = "g"\n', "must be an array of tables"),
        ('gateway = ["a"]\n', "must be an array of tables"),
        (
            '[[gateway]]\nname = "g"\naddress = "1.1.1.1"\n'
            '[[gateway]]\nname = "g"\naddress = "2.2.2.2"\n',
            "gateway 'g': name: used twice",
        ),
    ],
)
def test_bad_files(text: str, expected: str) -> None:
    with pytest.raises(CarrierConfigError) as info:
        parse_carriers(text)
    assert expected in str(info.value)


def test_error_is_a_value_error() -> None:
    assert issubclass(CarrierConfigError, ValueError)


@pytest.mark.parametrize(
    "body",
    [
        'address = "1.2.3.4"\npassword = 12345\nusername = "u"',
        'address = "1.2.3.4"\npassword = "hunter2-secret"\nusername = ""',
        'address = "1.2.3.4"\npassword = "hunter2-secret"\npriority = "x"',
        'address = "no good"\npassword = "hunter2-secret"\nusername = "u"',
        'address = "1.2.3.4"\npasword = "hunter2-secret"',
        'address = "1.2.3.4"\npassword = "hunter2-secret"',
    ],
)
def test_passwords_are_never_echoed(body: str) -> None:
    with pytest.raises(CarrierConfigError) as info:
        parse_carriers(f'[[gateway]]\nname = "g"\n{body}\n')
    assert "hunter2" not in str(info.value)
    assert "12345" not in str(info.value)


def test_toml_syntax_errors_do_not_echo_the_password() -> None:
    with pytest.raises(CarrierConfigError) as info:
        parse_carriers('[[gateway]]\npassword = "hunter2-secret\n')
    assert "hunter2" not in str(info.value)


def test_repr_hides_the_password() -> None:
    (gateway, *_) = parse_carriers(EXAMPLE)
    assert "s3cret-pw" not in repr(gateway)
    assert "acct" in repr(gateway)


def test_load_from_the_file_the_environment_names(tmp_path: Path) -> None:
    path = tmp_path / "carriers.toml"
    path.write_text(EXAMPLE, encoding="utf-8")
    assert [g.name for g in carriers_from_env({CARRIERS_FILE_ENV: str(path)})] == [
        "carrier-a-1",
        "carrier-a-2",
        "carrier-b",
    ]
    assert load_carriers(path) == parse_carriers(EXAMPLE)
    assert carriers_from_env({}) == ()
    assert carriers_from_env({CARRIERS_FILE_ENV: " "}) == ()


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(CarrierConfigError, match=r"nope\.toml: cannot read"):
        load_carriers(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text('[[gateway]]\nname = "g"\n', encoding="utf-8")
    with pytest.raises(CarrierConfigError, match=r"bad\.toml: gateway 'g': address"):
        load_carriers(bad)


# --- attempt order ------------------------------------------------------------------------------


def test_priority_groups_ascending() -> None:
    gateways = [gw("c", 30), gw("a1", 10), gw("b", 20), gw("a2", 10)]
    for seed in range(50):
        order = [g.name for g in attempt_order(gateways, random.Random(seed))]
        assert set(order[:2]) == {"a1", "a2"}
        assert order[2:] == ["b", "c"]


def test_weighted_split_of_the_first_attempt() -> None:
    gateways = [gw("a", weight=60), gw("b", weight=20), gw("c", weight=20)]
    rng = random.Random(20240501)
    draws = 10_000
    first = Counter(attempt_order(gateways, rng)[0].name for _ in range(draws))
    for name, share in (("a", 0.60), ("b", 0.20), ("c", 0.20)):
        assert abs(first[name] / draws - share) < 0.03, first


def test_second_attempt_follows_sampling_without_replacement() -> None:
    # P(b second) = P(a first) * 20/40 + P(c first) * 20/80 = 0.6*0.5 + 0.2*0.25 = 0.35
    gateways = [gw("a", weight=60), gw("b", weight=20), gw("c", weight=20)]
    rng = random.Random(7)
    draws = 10_000
    second = Counter(attempt_order(gateways, rng)[1].name for _ in range(draws))
    for name, share in (("a", 0.30), ("b", 0.35), ("c", 0.35)):
        assert abs(second[name] / draws - share) < 0.03, second


def test_weight_zero_only_after_the_others_of_its_group() -> None:
    gateways = [gw("z1", 10, 0), gw("a", 10, 1), gw("z2", 10, 0), gw("b", 10, 5), gw("n", 20, 3)]
    seen_last: Counter[str] = Counter()
    for seed in range(200):
        order = [g.name for g in attempt_order(gateways, random.Random(seed))]
        assert set(order[:2]) == {"a", "b"}
        assert set(order[2:4]) == {"z1", "z2"}
        assert order[4] == "n"
        seen_last[order[3]] += 1
    assert seen_last["z1"] > 50 and seen_last["z2"] > 50  # zero weights in random order


def test_all_weights_zero_still_tries_every_gateway() -> None:
    gateways = [gw("a", weight=0), gw("b", weight=0)]
    assert {g.name for g in attempt_order(gateways, random.Random(1))} == {"a", "b"}


def test_empty_and_single() -> None:
    assert attempt_order([], random.Random(0)) == []
    only = gw("only", weight=0)
    assert attempt_order([only], random.Random(0)) == [only]


def test_the_same_seed_gives_the_same_order() -> None:
    gateways = [gw(f"g{i}", i % 3, i) for i in range(10)]
    assert attempt_order(gateways, random.Random(3)) == attempt_order(gateways, random.Random(3))


@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 100)), min_size=0, max_size=12),
    st.integers(0, 2**32),
)
def test_order_is_a_permutation_sorted_by_priority_with_zero_weights_last(
    specs: list[tuple[int, int]], seed: int
) -> None:
    gateways = [gw(f"g{i}", priority, weight) for i, (priority, weight) in enumerate(specs)]
    order = attempt_order(gateways, random.Random(seed))
    assert sorted(g.name for g in order) == sorted(g.name for g in gateways)
    keys = [(g.priority, g.weight == 0) for g in order]
    assert keys == sorted(keys)


# --- failover -----------------------------------------------------------------------------------


def test_timeout_is_four_seconds() -> None:
    assert TIMEOUT_NO_RESPONSE == 4.0


@pytest.mark.parametrize("status", [None, 408, 500, 502, 503, 504, 580, 599])
def test_fails_over(status: int | None) -> None:
    assert fails_over(status)


@pytest.mark.parametrize(
    "status", [200, 202, 300, 302, 400, 403, 404, 407, 480, 486, 487, 488, 600, 603, 699]
)
def test_relays_every_other_final_answer(status: int) -> None:
    assert not fails_over(status)


@given(st.integers(200, 699))
def test_fails_over_exactly_on_408_and_5xx(status: int) -> None:
    assert fails_over(status) == (status == 408 or status // 100 == 5)


@pytest.mark.parametrize("status", [0, 100, 180, 183, 199, 700])
def test_a_provisional_status_is_no_outcome(status: int) -> None:
    with pytest.raises(ValueError, match="not a final SIP status"):
        fails_over(status)
