"""Log lines are bounded per kind of event, Python's own logging included."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from gateway.log import RATE_BURST, EventRateLimit, configure_logging, get_logger
from tests.doubles import ManualClock


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if type(h).__name__ == "_StdlibBridge"]:
        root.removeHandler(handler)


class TestEventRateLimit:
    def test_a_burst_then_the_rate_then_a_count_of_what_was_left_out(self) -> None:
        clock = ManualClock(100.0)
        limit = EventRateLimit(burst=3, per_second=2.0, clock=clock)
        kept = 0
        for _ in range(10):
            try:
                limit(None, "warning", {"event": "sip.message.dropped"})
                kept += 1
            except structlog.DropEvent:
                pass
        assert kept == 3
        clock.now += 1.0  # two tokens
        event = limit(None, "warning", {"event": "sip.message.dropped"})
        assert event["suppressed"] == 7
        assert "suppressed" not in limit(None, "warning", {"event": "sip.message.dropped"})

    def test_kinds_are_limited_separately(self) -> None:
        limit = EventRateLimit(burst=1, per_second=0.001, clock=ManualClock(100.0))
        limit(None, "info", {"event": "a.b.c"})
        with pytest.raises(structlog.DropEvent):
            limit(None, "info", {"event": "a.b.c"})
        assert limit(None, "info", {"event": "x.y.z"})["event"] == "x.y.z"


def test_a_flood_of_one_event_writes_a_bounded_number_of_lines() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    for i in range(20_000):
        get_logger().warning("sip.message.dropped", reason="flood", n=i)
    lines = out.getvalue().splitlines()
    assert RATE_BURST <= len(lines) < RATE_BURST + 50
    get_logger().warning("admin.login.failed", client="10.0.0.1")
    assert json.loads(out.getvalue().splitlines()[-1])["event"] == "admin.login.failed"


def test_pythons_own_logging_goes_through_the_same_limit() -> None:
    """asyncio's 'Too many open files' and the like: JSON lines, and bounded."""
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    for _ in range(5_000):
        logging.getLogger("asyncio").error("socket.accept() out of system resource")
    lines = out.getvalue().splitlines()
    assert RATE_BURST <= len(lines) < RATE_BURST + 50
    first = json.loads(lines[0])
    assert first["event"] == "gateway.python.logged"
    assert first["logger"] == "asyncio"
    assert first["message"] == "socket.accept() out of system resource"
