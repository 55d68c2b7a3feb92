"""The relay's status model: bounded, counted over a window, problems in words."""

from __future__ import annotations

from gateway.relay.status import MAX_STATIONS, WINDOW_MINUTES, RelayStatus, UpstreamError


def test_base_stations_are_bounded_most_recent_first() -> None:
    status = RelayStatus(upstream="sips:provider.example")
    for i in range(MAX_STATIONS + 5):
        status.answered(1000.0 + i, source=f"10.0.{i // 250}.{i % 250}:5060", method="REGISTER",
                        status=200, local=False)  # fmt: skip
    status.answered(5000.0, source="10.0.0.7:5060", method="OPTIONS", status=200, local=False)
    stations = status.view(5000.0)["base_stations"]
    assert isinstance(stations, list)
    assert len(stations) == MAX_STATIONS
    assert stations[0]["source"] == "10.0.0.7:5060"
    assert stations[0]["messages"] == 2
    assert stations[0]["last_method"] == "OPTIONS"
    assert "10.0.0.0:5060" not in {s["source"] for s in stations}  # the oldest went first


def test_counters_cover_only_the_window() -> None:
    status = RelayStatus(upstream="sips:provider.example")
    status.answered(0.0, source="upstream", method="INVITE", status=200, local=False)
    later = WINDOW_MINUTES * 60.0 + 120.0
    status.answered(later, source="10.0.0.1:5060", method="REGISTER", status=503, local=True)
    status.answered(later, source="10.0.0.1:5060", method="REGISTER", status=200, local=False)
    counters = status.view(later)["counters"]
    assert counters == {
        "window_minutes": WINDOW_MINUTES,
        "relayed": 1,
        "rejected_handshakes": 0,
        "service_unavailable": 1,
    }


def test_problems_and_readiness_say_why() -> None:
    status = RelayStatus()
    assert status.problems() == [
        "No upstream is configured: set sip.upstream to the provider's sips: URI."
    ]
    status.configured("sips:provider.example")
    assert status.problems() == []
    status.failed(
        10.0,
        UpstreamError(kind="connect", reason="Upstream unreachable", sentence="refused.",
                      codes=(), at=10.0),
        retry_at=20.0,
    )  # fmt: skip
    assert status.readiness_problem() == "Upstream unreachable"
    assert status.problems() == ["Upstream unreachable: refused."]
    view = status.view(10.0)["upstream"]
    assert isinstance(view, dict)
    assert view["state"] == "down"
    assert view["retry_at"] == "1970-01-01T00:00:20+00:00"
