"""The per-transaction log line and metric: written when the level lets them through."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
import structlog
from structlog.testing import capture_logs

from gateway.config import SipSection
from gateway.log import configure_logging
from gateway.metrics import MetricsRegistry
from gateway.relay.outputs import TransactionDone
from gateway.relay.service import SipRelay
from gateway.tls.connector import TlsConnector

DONE = TransactionDone(
    direction="outbound",
    method="OPTIONS",
    status=200,
    call_id="c1",
    duration=0.0012,
    peer="192.168.1.20:5060",
    local=False,
)


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def make_relay(registry: MetricsRegistry) -> SipRelay:
    return SipRelay(SipSection(), cast(TlsConnector, None), metrics=registry)


def counted(registry: MetricsRegistry, relay: SipRelay, **labels: str) -> float:
    return relay.metrics.transactions.value(**labels)


class TestTransactionDone:
    def test_logged_and_counted_at_info(self) -> None:
        """At level info the transaction's line is written and the counter goes up."""
        registry = MetricsRegistry()
        relay = make_relay(registry)
        with capture_logs() as logs:
            relay._done(DONE)
            relay._done(DONE._replace(method="FOO", status=404))
        assert [e["event"] for e in logs] == ["sip.request.relayed", "sip.request.relayed"]
        assert logs[0]["call_id"] == "c1" and logs[0]["duration_ms"] == 1.2
        assert counted(registry, relay, direction="outbound", method="OPTIONS", status="200") == 1
        assert counted(registry, relay, direction="outbound", method="other", status="404") == 1

    def test_not_logged_at_warning_but_counted(self) -> None:
        """At level warning no line is written; the metric counts all the same."""
        out = io.StringIO()
        configure_logging("warning", "json", stream=out)
        registry = MetricsRegistry()
        relay = make_relay(registry)
        relay._done(DONE)
        relay._done(DONE)
        assert out.getvalue() == ""
        assert counted(registry, relay, direction="outbound", method="OPTIONS", status="200") == 2

    def test_level_changed_while_running(self) -> None:
        """A configuration changed after the relay was made is followed at the next event."""
        out = io.StringIO()
        configure_logging("warning", "json", stream=out)
        relay = make_relay(MetricsRegistry())
        relay._done(DONE)
        assert out.getvalue() == ""
        configure_logging("info", "json", stream=out)
        relay._done(DONE._replace(local=True, status=503))
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [(e["event"], e["status"]) for e in lines] == [("sip.request.answered", 503)]

    def test_wrapper_without_level_check_always_logs(self) -> None:
        """A wrapper class that cannot say its level gets every event, as before."""
        seen: list[dict[str, Any]] = []

        def keep(_logger: object, _method: str, event: dict[str, Any]) -> dict[str, Any]:
            seen.append(dict(event))
            raise structlog.DropEvent

        structlog.configure(processors=[keep], wrapper_class=structlog.BoundLogger)
        make_relay(MetricsRegistry())._done(DONE)
        assert [e["event"] for e in seen] == ["sip.request.relayed"]
