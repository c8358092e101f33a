"""JSON logs: one object per line, with the service name and the current trace on each line.

A line looks like

    {"timestamp": "2026-01-01T12:00:00.123456+00:00", "level": "INFO", "logger": "trunkline.api",
     "message": "trunk created", "service": "api", "trace_id": "4bf9...", "span_id": "00f0...",
     "account_sid": "AC..."}

`trace_id` and `span_id` are present when a valid span is current where the log call is made;
anything passed as `extra=` (call_sid, call_id, account_sid, ...) is added as its own field.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

LOG_LEVEL_ENV = "TRUNKLINE_LOG_LEVEL"

_installed: logging.Handler | None = None  # the handler configure_logging added last


class TraceJsonFormatter(JsonFormatter):
    """python-json-logger's formatter plus the service name and the current trace ids."""

    def __init__(self, service: str) -> None:
        super().__init__(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            static_fields={"service": service},
            timestamp=True,
        )

    def add_fields(
        self,
        log_data: dict[str, Any],
        record: logging.LogRecord,
        message_dict: dict[str, Any],
    ) -> None:
        # A placeholder keeps the timestamp first in the object (dicts keep insertion order
        # and the base class adds it last), which makes raw lines easier to read.
        log_data["timestamp"] = None
        super().add_fields(log_data, record, message_dict)
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            # setdefault: a caller that logs on behalf of another trace may pass its ids in extra.
            log_data.setdefault("trace_id", trace.format_trace_id(span_context.trace_id))
            log_data.setdefault("span_id", trace.format_span_id(span_context.span_id))


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stderr` is when a record is emitted, not when it was created.

    Test runners and daemonizers replace sys.stderr; a handler holding the old object would
    write to a closed file.
    """

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        # StreamHandler.setStream assigns here; the stream always follows sys.stderr.
        return None


def log_level_from_env(default: str = "INFO") -> int:
    """TRUNKLINE_LOG_LEVEL as a logging level; a misspelt level fails the start, loudly."""
    name = (os.environ.get(LOG_LEVEL_ENV) or default).strip().upper()
    levels = logging.getLevelNamesMapping()
    if name not in levels:
        raise ValueError(f"{LOG_LEVEL_ENV}={name!r} is not one of {', '.join(sorted(levels))}")
    return levels[name]


def configure_logging(service: str, level: int | None = None, stream: TextIO | None = None) -> None:
    """Make the root logger write JSON lines for `service` to `stream` (default: stderr).

    Replaces a handler that an earlier call installed, so calling it again (tests, a changed
    level) never duplicates lines; handlers that others added to the root logger stay.
    `level` defaults to TRUNKLINE_LOG_LEVEL, else INFO.
    """
    global _installed
    handler: logging.Handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(TraceJsonFormatter(service))
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    root.addHandler(handler)
    _installed = handler
    root.setLevel(log_level_from_env() if level is None else level)
    # warnings.warn(...) from libraries then arrives as JSON too, not as bare stderr text.
    logging.captureWarnings(True)
