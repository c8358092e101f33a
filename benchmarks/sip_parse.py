"""Microseconds per SIP parse and per serialize, on golden messages from real user agents.

For each message (default: the INVITEs and 200 OKs under services/signaling/tests/golden/):

- baseline: `data.split(b"\\r\\n")`, the least any parser must do, measured in the same run;
- parse: `parse_message(data)` (start line, framing, mandatory headers, top Via, CSeq, From,
  To, Call-ID and Max-Forwards validated and cached);
- parse+read: parse, then read what the transaction and dialog layers read (top Via branch,
  CSeq, Call-ID, From and To tags, and the Request-URI for requests);
- serialize: `bytes(msg)` of the parsed message, unchanged (the original head is reused);
- serialize (modified): `bytes(msg)` after adding a header (the head is rewritten);
- response: `make_response(request, 180, to_tag=...)` plus its serialization (requests only).

Each figure is the median over several repeats of the mean over many iterations, with the
garbage collector enabled (as in a running service), and is reported with its ratio to the
baseline. Targets (issue 4): an INVITE of about 800 bytes with SDP parses in at most 30 us and
serializes in at most 15 us on the 2-core machine.

    .venv/bin/python benchmarks/sip_parse.py [--repeat 7] [--min-time 0.2] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trunkline.signaling.sip.message import Request, make_response, parse_message

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "services" / "signaling" / "tests" / "golden"
RESULTS = Path(__file__).parent / "results"
DEFAULT_MESSAGES = [
    "pjsua2-invite.sip",
    "asterisk-invite.sip",
    "kamailio-forwarded-invite.sip",
    "sipp-uac-invite.sip",
    "pjsua2-200-invite.sip",
    "sipp-uas-200-invite.sip",
]
PARSE_TARGET_US = 30.0
SERIALIZE_TARGET_US = 15.0


def measure(func: Callable[[], object], repeat: int, min_time: float) -> dict[str, float]:
    """Median and minimum microseconds per call over `repeat` runs of about `min_time` s."""
    timer = timeit.Timer(func, setup="gc.enable()")
    number, _ = timer.autorange()
    per_run = timer.timeit(number) / number
    number = max(number, int(min_time / per_run) if per_run > 0 else number)
    runs = [t / number * 1e6 for t in timer.repeat(repeat=repeat, number=number)]
    return {"median_us": statistics.median(runs), "min_us": min(runs), "iterations": number}


def bench_message(name: str, repeat: int, min_time: float) -> dict[str, Any]:
    data = (GOLDEN / name).read_bytes()
    msg = parse_message(data)
    modified = parse_message(data)
    modified.headers.add("X-Trunkline-Trace", "4bf92f3577b34da6a3ce929d0e0e4736")

    def read(m: Any) -> None:
        _ = (m.top_via.branch, m.cseq.number, m.call_id, m.from_.tag, m.to.tag)
        if isinstance(m, Request):
            _ = m.parsed_uri.host

    cases: dict[str, Callable[[], object]] = {
        "baseline_split": lambda: data.split(b"\r\n"),
        "parse": lambda: parse_message(data),
        "parse_and_read": lambda: read(parse_message(data)),
        "serialize": lambda: bytes(msg),
        "serialize_modified": lambda: bytes(modified),
    }
    if isinstance(msg, Request):
        cases["response"] = lambda: bytes(make_response(msg, 180, to_tag="4f2a9c1e"))
    results = {key: measure(func, repeat, min_time) for key, func in cases.items()}
    baseline = results["baseline_split"]["median_us"]
    for result in results.values():
        result["ratio_to_baseline"] = result["median_us"] / baseline
    return {"bytes": len(data), "kind": type(msg).__name__, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", nargs="*", default=DEFAULT_MESSAGES)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per repeat")
    parser.add_argument("--json", type=Path, help="where to write results (default: results/)")
    args = parser.parse_args()

    report: dict[str, Any] = {
        "benchmark": "sip_parse",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "repeat": args.repeat,
        "gc": "enabled",
        "messages": {},
    }
    columns = [
        "baseline_split",
        "parse",
        "parse_and_read",
        "serialize",
        "serialize_modified",
        "response",
    ]
    print(f"{'message':32} {'bytes':>5}  " + "  ".join(f"{c:>18}" for c in columns))
    for name in args.messages:
        entry = bench_message(name, args.repeat, args.min_time)
        report["messages"][name] = entry
        cells = []
        for column in columns:
            r = entry["results"].get(column)
            cells.append(
                f"{'-':>18}"
                if r is None
                else f"{r['median_us']:7.2f} us ({r['ratio_to_baseline']:4.1f}x)"
            )
        print(f"{name:32} {entry['bytes']:5}  " + "  ".join(cells))

    invites = [
        n for n in args.messages if "invite" in n and report["messages"][n]["kind"] == "Request"
    ]
    if invites:
        worst_parse = max(report["messages"][n]["results"]["parse"]["median_us"] for n in invites)
        worst_ser = max(
            report["messages"][n]["results"]["serialize_modified"]["median_us"] for n in invites
        )
        report["targets"] = {
            "parse_us": PARSE_TARGET_US,
            "serialize_us": SERIALIZE_TARGET_US,
            "worst_invite_parse_us": worst_parse,
            "worst_invite_serialize_modified_us": worst_ser,
            "met": worst_parse <= PARSE_TARGET_US and worst_ser <= SERIALIZE_TARGET_US,
        }
        print(
            f"\nINVITEs: slowest parse {worst_parse:.2f} us (target {PARSE_TARGET_US:.0f}), "
            f"slowest serialize after a change {worst_ser:.2f} us (target "
            f"{SERIALIZE_TARGET_US:.0f}); load average {report['load_average'][0]:.2f}"
        )

    path = args.json or RESULTS / f"sip_parse-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
