"""Logging: structlog configured once per process.

One event per line; JSON when the output is not a terminal (production, systemd's
journal), readable console output on one. Events are named ``area.noun.verb``.
A last-line-of-defence processor removes values of keys that name secrets, so a
careless ``log.info(..., password=...)`` cannot leak one.

Every event name is rate-limited (:class:`EventRateLimit`): a flood of one kind of
event (a LAN client hammering a port, descriptors running out) writes a bounded
number of lines and cannot fill the disk; the next line of that kind that is written
says how many were left out. Records of Python's own ``logging`` (asyncio, aiohttp)
go through the same pipeline, so they are limited too.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
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


# Per event name: this many lines at once, then this many per second.
RATE_BURST = 200
RATE_PER_SECOND = 20.0
_MAX_KINDS = 2000  # distinct event names tracked; beyond, the table starts afresh


class EventRateLimit:
    """A structlog processor: a token bucket per event name.

    An event over its bucket is dropped and counted; the next event of that name that
    is written carries ``suppressed``, the number left out since the last one.
    """

    def __init__(
        self,
        *,
        burst: int = RATE_BURST,
        per_second: float = RATE_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = float(burst)
        self.per_second = per_second
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, list[float]] = {}  # name -> [tokens, updated, suppressed]

    def __call__(
        self, _logger: object, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        name = str(event_dict.get("event", ""))
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(name)
            if bucket is None:
                if len(self._buckets) >= _MAX_KINDS:
                    self._buckets.clear()
                bucket = self._buckets[name] = [self.burst, now, 0.0]
            tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.per_second)
            bucket[1] = now
            if tokens < 1.0:
                bucket[0] = tokens
                bucket[2] += 1
                raise structlog.DropEvent
            bucket[0] = tokens - 1.0
            suppressed, bucket[2] = int(bucket[2]), 0.0
        if suppressed:
            event_dict["suppressed"] = suppressed
        return event_dict


class _StdlibBridge(logging.Handler):
    """Python ``logging`` records (asyncio, aiohttp) as structlog events, so they share
    the format, the secret filter and the rate limit."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        fields: dict[str, Any] = {"logger": record.name, "message": message}
        if record.exc_info:
            fields["exc_info"] = record.exc_info
        log = structlog.get_logger()
        if record.levelno >= logging.ERROR:
            log.error("gateway.python.logged", **fields)
        elif record.levelno >= logging.WARNING:
            log.warning("gateway.python.logged", **fields)
        else:
            log.info("gateway.python.logged", **fields)


def _bridge_stdlib_logging() -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StdlibBridge)]:
        root.removeHandler(handler)
    root.addHandler(_StdlibBridge(level=logging.WARNING))


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
            EventRateLimit(),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        # One write per line: relay workers share the gateway's standard error, and a
        # line written in two parts (message, then newline) can be split by another's.
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    _bridge_stdlib_logging()


def get_logger(**initial: Any) -> Any:
    """A logger; ``initial`` values are bound to every event it emits.

    The logger is assembled from the configuration at each use, not when it is created,
    so module-level loggers made at import follow :func:`configure_logging` called later.
    """
    return structlog.get_logger(**initial)
