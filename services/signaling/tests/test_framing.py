"""Stream framing (RFC 3261 18.3), RFC 5626 keep-alives, limits, and connection counting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkline.signaling.sip.framing import (
    PING,
    PONG,
    ConnectionLimits,
    FramedMessage,
    FramingError,
    FramingEvent,
    FramingLimits,
    Ping,
    StreamFramer,
)


def message(body: bytes = b"", *, length: str | None = None, name: str = "Content-Length") -> bytes:
    value = str(len(body)) if length is None else length
    return (
        b"INVITE sip:+14155550100@sip.trunkline.example SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
        b"Max-Forwards: 70\r\n"
        b"To: <sip:+14155550100@sip.trunkline.example>\r\n"
        b"From: <sip:+14155550199@carrier.example>;tag=1928301774\r\n"
        b"Call-ID: a84b4c76e66710@pc33.example\r\n"
        b"CSeq: 314159 INVITE\r\n" + f"{name}: {value}\r\n".encode() + b"\r\n" + body
    )


SDP = b"v=0\r\no=- 2890844526 2890842807 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n"
OPTIONS = b"OPTIONS sip:edge.trunkline.example SIP/2.0\r\nCall-ID: x\r\nl: 0\r\n\r\n"
RESPONSE = b"SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\ncontent-length:   4\r\n\r\nbody"


def messages(events: list[FramingEvent]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, FramedMessage)]


def feed_all(framer: StreamFramer, chunks: list[bytes]) -> list[FramingEvent]:
    events: list[FramingEvent] = []
    for chunk in chunks:
        events += framer.feed(chunk)
    return events


# --- framing ------------------------------------------------------------------------------


def test_one_message_with_a_body() -> None:
    data = message(SDP)
    framer = StreamFramer()
    assert framer.feed(data) == [FramedMessage(data)]
    assert framer.buffered == 0
    assert not framer.mid_message


def test_several_messages_in_one_chunk() -> None:
    stream = message(SDP) + OPTIONS + RESPONSE + message()
    events = StreamFramer().feed(stream)
    assert messages(events) == [message(SDP), OPTIONS, RESPONSE, message()]
    assert len(events) == 4


def test_body_bytes_are_taken_verbatim() -> None:
    # The body may hold anything, a CRLF CRLF or a Content-Length line included.
    body = b"\r\n\r\nContent-Length: 999\r\n\r\n"
    assert messages(StreamFramer().feed(message(body) + OPTIONS)) == [message(body), OPTIONS]


def test_partial_message_waits_for_more() -> None:
    data = message(SDP)
    framer = StreamFramer()
    assert framer.feed(data[:-1]) == []
    assert framer.mid_message
    assert framer.buffered == len(data) - 1
    assert framer.feed(data[-1:]) == [FramedMessage(data)]


STREAM = PING + message(SDP) + PONG + OPTIONS + PING + RESPONSE + PONG + PONG + message() + PING
EXPECTED: list[FramingEvent] = [
    Ping(),
    FramedMessage(message(SDP)),
    FramedMessage(OPTIONS),
    Ping(),
    FramedMessage(RESPONSE),
    Ping(),  # two pongs back to back read as a ping: answered by a lone, ignored CRLF
    FramedMessage(message()),
    Ping(),
]


def test_split_at_every_byte_boundary() -> None:
    for cut in range(len(STREAM) + 1):
        framer = StreamFramer()
        events = framer.feed(STREAM[:cut]) + framer.feed(STREAM[cut:])
        assert events == EXPECTED, cut
        assert framer.buffered == 0


def test_split_at_every_pair_of_boundaries() -> None:
    stream = PONG + OPTIONS + PING + RESPONSE
    expected = [FramedMessage(OPTIONS), Ping(), FramedMessage(RESPONSE)]
    for first in range(len(stream) + 1):
        for second in range(first, len(stream) + 1):
            chunks = [stream[:first], stream[first:second], stream[second:]]
            assert feed_all(StreamFramer(), chunks) == expected, (first, second)


def test_byte_by_byte() -> None:
    chunks = [STREAM[i : i + 1] for i in range(len(STREAM))]
    assert feed_all(StreamFramer(), chunks) == EXPECTED


# --- keep-alives (RFC 5626 3.5.1) ---------------------------------------------------------


def test_double_crlf_is_a_ping() -> None:
    assert StreamFramer().feed(PING) == [Ping()]
    assert PONG == b"\r\n"


def test_lone_crlf_is_skipped() -> None:
    framer = StreamFramer()
    assert framer.feed(PONG) == []
    assert framer.feed(OPTIONS) == [FramedMessage(OPTIONS)]


def test_a_crlf_waits_to_be_told_from_half_a_ping() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n") == [Ping()]
    assert framer.feed(b"\r") == []
    assert framer.buffered == 1
    assert framer.feed(b"\n" + OPTIONS) == [FramedMessage(OPTIONS)]


def test_pings_in_one_chunk_get_one_pong() -> None:
    assert StreamFramer().feed(PING * 50) == [Ping()]
    events = StreamFramer().feed(PING * 3 + OPTIONS + PING * 3)
    assert events == [Ping(), FramedMessage(OPTIONS), Ping()]


def test_pings_in_separate_chunks_each_get_a_pong() -> None:
    framer = StreamFramer()
    assert [framer.feed(PING) for _ in range(3)] == [[Ping()]] * 3


def test_crlf_inside_a_head_is_not_a_ping() -> None:
    events = StreamFramer().feed(OPTIONS[:10] + b"\r\n\r\n")
    assert events == [FramingError("Missing Content-Length", 400, OPTIONS[:10] + b"\r\n\r\n")]


# --- Content-Length ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Content-Length", "content-length", "CONTENT-LENGTH", "l", "L", "Content-Length "]
)
def test_content_length_names(name: str) -> None:
    data = message(SDP, name=name)
    assert StreamFramer().feed(data + OPTIONS) == [FramedMessage(data), FramedMessage(OPTIONS)]


@pytest.mark.parametrize("value", ["0010", f"{len(SDP)}  ", f"\t{len(SDP)}"])
def test_content_length_values(value: str) -> None:
    body = SDP[: int(value.strip())]
    data = message(body, length=value)
    assert StreamFramer().feed(data) == [FramedMessage(data)]


def test_folded_content_length() -> None:
    # RFC 3261 7.3.1: a header value may continue on lines that start with a blank.
    data = b"OPTIONS sip:a SIP/2.0\r\nContent-Length:\r\n   4\r\nCall-ID: x\r\n\r\nbody"
    assert StreamFramer().feed(data) == [FramedMessage(data)]


def test_start_line_is_not_read_as_a_header() -> None:
    data = b"OPTIONS sip:l:99@example.com SIP/2.0\r\nl: 0\r\n\r\n"
    assert StreamFramer().feed(data) == [FramedMessage(data)]


def test_similar_header_names_are_not_content_length() -> None:
    data = b"OPTIONS sip:a SIP/2.0\r\nLocation: 5\r\nX-Content-Length: 7\r\nl: 0\r\n\r\n"
    assert StreamFramer().feed(data) == [FramedMessage(data)]


def test_repeated_identical_content_length() -> None:
    data = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 4\r\nl: 4\r\n\r\nbody"
    assert StreamFramer().feed(data) == [FramedMessage(data)]


def test_missing_content_length_lets_the_transport_answer_400() -> None:
    head = b"OPTIONS sip:a SIP/2.0\r\nCall-ID: x\r\n\r\n"
    framer = StreamFramer()
    [error] = framer.feed(head + b"rest")
    assert error == FramingError("Missing Content-Length", 400, head)
    assert framer.failed
    assert framer.feed(OPTIONS) == []
    assert framer.buffered == 0


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("-1", "Bad Content-Length"),
        ("+4", "Bad Content-Length"),
        ("abc", "Bad Content-Length"),
        ("", "Bad Content-Length"),
        ("4, 4", "Bad Content-Length"),
        ("0x10", "Bad Content-Length"),
        ("4 4", "Bad Content-Length"),
        ("\u0664", "Bad Content-Length"),  # an Arabic-Indic four is not a DIGIT
    ],
)
def test_bad_content_length(value: str, reason: str) -> None:
    data = message(length=value)
    head = data[: data.index(b"\r\n\r\n") + 4]
    assert StreamFramer().feed(data) == [FramingError(reason, 400, head)]


def test_conflicting_content_lengths() -> None:
    data = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 4\r\nl: 5\r\n\r\nbody!"
    [error] = StreamFramer().feed(data)
    assert error == FramingError("Conflicting Content-Length", 400, data[:-5])


@pytest.mark.parametrize("value", ["65536", "99999999999", "9" * 13, "9" * 5000])
def test_huge_content_length_is_refused_before_the_body_arrives(value: str) -> None:
    data = message(length=value)
    [error] = StreamFramer().feed(data)
    assert isinstance(error, FramingError)
    assert (error.reason, error.status) == ("Message Too Large", 513)
    assert error.head == data


# --- limits -------------------------------------------------------------------------------


def test_message_size_limit_counts_head_and_body() -> None:
    data = message(SDP)
    exact = FramingLimits(max_head_size=len(data) - len(SDP), max_message_size=len(data))
    assert StreamFramer(exact).feed(data) == [FramedMessage(data)]
    smaller = FramingLimits(max_head_size=len(data) - len(SDP), max_message_size=len(data) - 1)
    [error] = StreamFramer(smaller).feed(data)
    assert isinstance(error, FramingError) and error.status == 513


def test_head_without_an_end_is_cut_off_at_the_head_limit() -> None:
    framer = StreamFramer(FramingLimits(max_head_size=100))
    assert framer.feed(b"INVITE sip:a SIP/2.0\r\n") == []
    events = feed_all(framer, [b"X-Junk: " + b"a" * 50 + b"\r\n"] * 3)
    assert events == [FramingError("Message head too large")]
    assert framer.buffered == 0


def test_head_over_the_limit_in_one_chunk() -> None:
    data = message()
    framer = StreamFramer(FramingLimits(max_head_size=len(data) - 1))
    assert framer.feed(data) == [FramingError("Message head too large")]
    assert StreamFramer(FramingLimits(max_head_size=len(data))).feed(data) == [FramedMessage(data)]


def test_too_many_header_lines() -> None:
    head = b"OPTIONS sip:a SIP/2.0\r\n" + b"X: y\r\n" * 10 + b"l: 0\r\n\r\n"
    assert StreamFramer(FramingLimits(max_header_lines=12)).feed(head) == [FramedMessage(head)]
    [error] = StreamFramer(FramingLimits(max_header_lines=11)).feed(head)
    assert error == FramingError("Too many header lines", 513, head)


def test_buffer_limit_caps_memory() -> None:
    limits = FramingLimits(max_head_size=64, max_message_size=1024, max_buffer_size=100)
    framer = StreamFramer(limits)
    data = b"OPTIONS sip:a SIP/2.0\r\nl: 500\r\n\r\n" + b"x" * 500
    events = framer.feed(data)
    assert events == [FramingError("Buffer limit exceeded")]
    assert framer.buffered == 0


def test_big_chunks_of_many_messages_fit_a_small_buffer() -> None:
    limits = FramingLimits(max_head_size=256, max_message_size=256, max_buffer_size=260)
    chunk = (OPTIONS + PONG + RESPONSE) * 200
    events = StreamFramer(limits).feed(chunk)
    assert messages(events) == [OPTIONS, RESPONSE] * 200


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        FramingLimits(max_head_size=2)
    with pytest.raises(ValueError):
        FramingLimits(max_head_size=1000, max_message_size=500)
    with pytest.raises(ValueError):
        FramingLimits(max_header_lines=0)


# --- properties ---------------------------------------------------------------------------

_BODIES = st.binary(max_size=200)
_UNITS = st.one_of(
    _BODIES.map(lambda body: ("message", message(body))),
    st.sampled_from([("ping", PING), ("pong", PONG)]),
)


@given(st.lists(_UNITS, max_size=12), st.lists(st.integers(0, 3000), max_size=10))
@settings(max_examples=300, deadline=None)
def test_any_chunking_frames_the_same_messages(
    units: list[tuple[str, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(data for _, data in units)
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    framer = StreamFramer()
    events = feed_all(framer, chunks)
    assert messages(events) == [data for kind, data in units if kind == "message"]
    assert not any(isinstance(e, FramingError) for e in events)


@given(st.lists(st.binary(max_size=400), max_size=20))
@settings(max_examples=500, deadline=None)
def test_arbitrary_bytes_never_raise_and_stay_bounded(chunks: list[bytes]) -> None:
    limits = FramingLimits(max_head_size=128, max_message_size=256, max_buffer_size=300)
    framer = StreamFramer(limits)
    for chunk in chunks:
        events = framer.feed(chunk)
        assert framer.buffered <= limits.max_buffer_size
        for event in events:
            assert isinstance(event, FramedMessage | Ping | FramingError)
            if isinstance(event, FramedMessage):
                assert len(event.data) <= limits.max_message_size
        if framer.failed:
            assert framer.feed(chunk) == []


@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"l: 1", b"A", b":", b" "]), max_size=40))
@settings(max_examples=500, deadline=None)
def test_hostile_fragments_never_raise(parts: list[bytes]) -> None:
    framer = StreamFramer(FramingLimits(max_head_size=64, max_message_size=64, max_buffer_size=80))
    for part in parts:
        framer.feed(part)
        assert framer.buffered <= 80


# --- connections per source ---------------------------------------------------------------


def test_connections_per_source() -> None:
    limits = ConnectionLimits(2)
    first, second = limits.acquire("192.0.2.1"), limits.acquire("192.0.2.1")
    assert first is not None and second is not None
    assert limits.acquire("192.0.2.1") is None
    assert limits.acquire("192.0.2.2") is not None
    assert (limits.count("192.0.2.1"), limits.total) == (2, 3)
    first.release()
    first.release()  # twice is harmless
    assert (limits.count("192.0.2.1"), limits.total) == (1, 2)
    assert limits.acquire("192.0.2.1") is not None


def test_total_limit() -> None:
    limits = ConnectionLimits(5, max_total=2)
    leases = [limits.acquire("192.0.2.1"), limits.acquire("198.51.100.1")]
    assert limits.acquire("203.0.113.1") is None
    lease = leases[0]
    assert lease is not None
    lease.release()
    assert limits.acquire("203.0.113.1") is not None


def test_ipv4_mapped_addresses_count_as_ipv4() -> None:
    limits = ConnectionLimits(1)
    assert limits.acquire("192.0.2.1") is not None
    assert limits.acquire("::ffff:192.0.2.1") is None
    assert limits.source_key("[::ffff:192.0.2.1]") == "192.0.2.1"


def test_ipv6_sources_count_by_prefix() -> None:
    limits = ConnectionLimits(1)
    assert limits.acquire("2001:db8:1:2::1") is not None
    assert limits.acquire("2001:db8:1:2:ffff::9") is None
    assert limits.acquire("[2001:db8:1:3::1]") is not None
    assert limits.source_key("fe80::1%eth0") == "fe80::/64"
    exact = ConnectionLimits(1, ipv6_prefix=128)
    assert exact.acquire("2001:db8::1") is not None
    assert exact.acquire("2001:db8::2") is not None


def test_released_sources_leave_the_table() -> None:
    limits = ConnectionLimits(3)
    leases = [limits.acquire(f"192.0.2.{i}") for i in range(10)]
    for lease in leases:
        assert lease is not None
        lease.release()
    assert limits.total == 0
    assert limits._counts == {}


def test_non_ip_sources_are_their_own_key() -> None:
    limits = ConnectionLimits(1)
    assert limits.source_key("/run/sip.sock") == "/run/sip.sock"
    assert limits.acquire("/run/sip.sock") is not None
    assert limits.acquire("/run/sip.sock") is None


def test_connection_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        ConnectionLimits(0)
    with pytest.raises(ValueError):
        ConnectionLimits(1, max_total=0)
    with pytest.raises(ValueError):
        ConnectionLimits(1, ipv6_prefix=129)
