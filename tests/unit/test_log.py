"""Logging: JSON lines off a terminal, and secrets never rendered."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from gateway.log import REDACTED, configure_logging, get_logger


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_json_lines_when_not_a_terminal() -> None:
    """Each event is one JSON object on one line, with level and timestamp."""
    out = io.StringIO()
    configure_logging("info", "auto", stream=out)
    get_logger(conn_id="c1").info("tls.handshake.complete", peer="sip.example.net:5061")
    get_logger().debug("not.shown")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["event"] == "tls.handshake.complete"
    assert event["conn_id"] == "c1" and event["level"] == "info" and "timestamp" in event


class _Writes(io.StringIO):
    """A stream that keeps each write() on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_each_line_is_one_write() -> None:
    """Relay workers share the gateway's standard error (unbuffered on a pipe): a line
    written as message and newline apart can get another process's line in between."""
    out = _Writes()
    configure_logging("info", "json", stream=out)
    get_logger().info("sip.worker.started", pid=1)
    get_logger().info("sip.worker.stopped", pid=1)
    assert [w.count("\n") for w in out.writes] == [1, 1]
    assert all(w.endswith("\n") for w in out.writes)


def test_secrets_are_redacted() -> None:
    """Values of keys that name secrets never reach the output."""
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    get_logger().info(
        "settings.update",
        http_auth_password="hunter2",
        private_key_pem="-----BEGIN",
        password_set=True,
    )
    text = out.getvalue()
    assert "hunter2" not in text and "BEGIN" not in text
    event = json.loads(text)
    assert event["http_auth_password"] == REDACTED and event["password_set"] is True


@pytest.mark.parametrize(("level", "fmt"), [("loud", "json"), ("info", "xml")])
def test_bad_level_or_format(level: str, fmt: str) -> None:
    with pytest.raises(ValueError, match="not"):
        configure_logging(level, fmt, stream=io.StringIO())
