"""Logging: structlog configured once per process.

One event per line; JSON when the output is not a terminal (production, systemd's
journal), readable console output on one. Events are named ``area.noun.verb``.
A last-line-of-defence processor removes values of keys that name secrets, so a
careless ``log.info(..., password=...)`` cannot leak one.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Keys whose values never reach a log line, whatever the caller passed.
_SECRET_KEY_PARTS = ("password", "passphrase", "private_key", "secret", "authorization", "pem")
REDACTED = "[redacted]"


def redact_secrets(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        lowered = key.lower()
        if any(part in lowered for part in _SECRET_KEY_PARTS) and not lowered.endswith("_set"):
            event_dict[key] = REDACTED
    return event_dict


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog for the whole process (call once, at start)."""
    out = stream or sys.stderr
    if fmt not in ("auto", "json", "console"):
        raise ValueError(f"log format {fmt!r} is not auto, json or console")
    if level not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if use_console
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(**initial: Any) -> Any:
    """A bound logger; ``initial`` values are bound to every event it emits."""
    return structlog.get_logger().bind(**initial)
