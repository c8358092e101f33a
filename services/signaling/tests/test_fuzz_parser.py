"""Coverage-guided fuzzing of the message parser with atheris (libFuzzer).

`test_fuzz_parse_message` runs this file as a fuzzer in a subprocess for a bounded time
(TRUNKLINE_FUZZ_SECONDS, default 20), seeded with the golden messages. On every input only
ParseError may escape, a parse must not take more than 10 s (libFuzzer's -timeout), and
whatever parses must serialize to bytes that parse back to an equal message. Any input that
breaks this is copied to golden/fuzz-crashes/, fails the test, and from then on runs as a
regular test case in `test_golden_input_keeps_the_invariants`.

By hand: .venv/bin/python services/signaling/tests/test_fuzz_parser.py -max_total_time=600
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trunkline.signaling.sip.message import (
    MAX_HEADERS,
    MAX_MESSAGE_SIZE,
    ParseError,
    Request,
    Response,
    make_response,
    parse_message,
)

GOLDEN = Path(__file__).parent / "golden"
CRASHES = GOLDEN / "fuzz-crashes"
FUZZ_SECONDS = int(os.environ.get("TRUNKLINE_FUZZ_SECONDS", "20"))


def _comparable(msg: Request | Response) -> tuple[object, ...]:
    start: tuple[object, ...] = (
        (msg.method, msg.uri) if isinstance(msg, Request) else (msg.status, msg.reason)
    )
    # Content-Length is rewritten from the body on output; every other line must survive.
    lines = [
        (n, v) for n, v in msg.headers if n.strip(" \t").lower() not in ("content-length", "l")
    ]
    return (type(msg), start, lines, msg.body)


def exercise(data: bytes) -> None:
    """The invariants the fuzzer checks on every input."""
    try:
        msg = parse_message(data)
    except ParseError as err:
        if err.request is not None:
            bytes(make_response(err.request, err.status, err.reason, to_tag="fuzz"))
            bytes(err.request)
        return
    for name in ("vias", "contacts", "routes", "record_routes", "parsed_uri"):
        if name == "parsed_uri" and not isinstance(msg, Request):
            continue
        with contextlib.suppress(ParseError):
            getattr(msg, name)
    if isinstance(msg, Request):
        bytes(make_response(msg, 200, to_tag="fuzz"))
    out = bytes(msg)
    # bytes() adds a Content-Length line when the input had none, so a message right at the
    # header-count or size limit may come back one line over it.
    again = parse_message(
        out,
        max_size=MAX_MESSAGE_SIZE + len(b"Content-Length: 65536\r\n"),
        max_headers=MAX_HEADERS + 1,
    )
    assert _comparable(again) == _comparable(msg), (data, out)
    assert bytes(again) == out


def _golden_inputs() -> list[Path]:
    inputs = sorted(GOLDEN.glob("*.sip"))
    if CRASHES.is_dir():
        inputs += sorted(p for p in CRASHES.iterdir() if p.is_file())
    return inputs


@pytest.mark.parametrize("path", _golden_inputs(), ids=lambda p: p.name)
def test_golden_input_keeps_the_invariants(path: Path) -> None:
    exercise(path.read_bytes())


def test_fuzz_parse_message(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    artifacts = tmp_path / "artifacts"
    corpus.mkdir()
    artifacts.mkdir()
    for path in _golden_inputs():
        shutil.copy(path, corpus / path.name)
    command = [
        sys.executable,
        __file__,
        f"-max_total_time={FUZZ_SECONDS}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        "-max_len=24000",
        f"-dict={GOLDEN / 'sip.dict'}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
        str(corpus),
    ]
    proc = subprocess.run(  # noqa: S603 - our own interpreter and file
        command, capture_output=True, text=True, timeout=FUZZ_SECONDS + 300, check=False
    )
    found = sorted(artifacts.iterdir())
    for artifact in found:
        CRASHES.mkdir(exist_ok=True)
        # Keep the input as a regression case, named by kind (crash, timeout, oom) and content.
        kind = artifact.name.split("-", 1)[0]
        digest = hashlib.sha1(artifact.read_bytes(), usedforsecurity=False).hexdigest()[:16]
        shutil.copy(artifact, CRASHES / f"{kind}-{digest}.bin")
    assert not found, f"fuzzer found {len(found)} failing inputs:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Done " in proc.stderr, proc.stderr[-4000:]


def _main() -> None:
    import gc
    import types

    import atheris

    # Coverage feedback from the SIP core only: instrumenting everything loaded (pytest
    # included, as atheris.instrument_all does) costs half a minute of start-up.
    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType) and (obj.__module__ or "").startswith(
            "trunkline.signaling.sip"
        ):
            atheris.instrument_func(obj)
    atheris.Setup(sys.argv, exercise)
    atheris.Fuzz()


if __name__ == "__main__":
    _main()
