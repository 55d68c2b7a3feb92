"""Relay workers, the pure parts: tokens name their worker, a request from upstream
for another worker's flow is handed to that worker whole (CANCEL and ACK too), the
workers' metrics add up and their status facts reach the gateway's view."""

from __future__ import annotations

import pytest

from gateway.metrics import MetricsRegistry, merge_snapshots
from gateway.relay.flows import FlowTokens, LanFlow
from gateway.relay.outputs import HandOff, SendLan, SendUpstream
from gateway.relay.proxy import ProxyCore
from gateway.relay.status import RelayStatus
from gateway.sip import Request, parse_datagram
from gateway.sip.wire import scan_datagram
from gateway.workers.pool import exit_text
from gateway.workers.status import ForwardedStatus, apply_facts
from tests.unit.test_relay_proxy import BS, KEY, core, request, sent_lan, sent_upstream, up

A_FLOW = LanFlow("tcp", "192.168.1.21", 40312, 1, conn_id=7)


def test_token_names_the_worker_that_wrote_it() -> None:
    for worker in (0, 1, 5, 63):
        tokens = FlowTokens(KEY, worker=worker)
        for token in (tokens.flow_token(A_FLOW), tokens.contact_token(BS, "sip:bs@192.0.2.1")):
            # any worker (same key) reads it, and learns whose flow it is
            decoded = FlowTokens(KEY, worker=0).decode(token)
            assert decoded is not None and decoded.worker == worker
    assert decoded.flow == BS and decoded.contact == "sip:bs@192.0.2.1"


def test_worker_index_is_checked() -> None:
    with pytest.raises(ValueError, match="one octet"):
        FlowTokens(KEY, worker=256)


def test_the_worker_index_is_authenticated() -> None:
    """Changing the worker octet of a token breaks its MAC: a peer cannot steer requests
    to another worker."""
    import base64

    token = FlowTokens(KEY, worker=1).flow_token(A_FLOW)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[8 + 3] = 0  # the worker octet follows kind, transport and listener
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert FlowTokens(KEY).decode(forged) is None


def _path_of(c: ProxyCore) -> str:
    """The Path the core adds to a base station's REGISTER (its flow token inside)."""
    register = request("REGISTER", uri="sip:example.net", extra=["Contact: <sip:bs1@192.168.1.20>"])
    (fwd,) = sent_upstream(c.receive_lan_datagram(register, BS, 0.0))
    assert isinstance(fwd, Request)
    return (fwd.headers.get("Path") or "").replace(";ob", "")


def _invite(route: str, *, branch: str = "z9hG4bK-up1", method: str = "INVITE") -> bytes:
    return request(
        method, uri="sip:bs1@192.168.1.20:5060", branch=branch, via_host="10.0.0.9:5061",
        extra=[f"Route: {route}"],
    )  # fmt: skip


class TestHandOff:
    def test_request_for_another_workers_flow_is_handed_over_whole(self) -> None:
        owner = up(core(worker=1, workers=2))
        other = up(core(worker=0, workers=2))
        path = _path_of(owner)
        for method in ("INVITE", "CANCEL", "ACK", "BYE"):
            data = _invite(path, method=method)
            for message in (parse_datagram(data), scan_datagram(data)):
                assert message is not None
                out = other.receive_upstream(message, 0.1)
                assert out == [HandOff(1, data)], method
        assert other.table.get_timer() is None  # no transaction was made for it

    def test_the_owner_relays_what_was_handed_over(self) -> None:
        owner = up(core(worker=1, workers=2))
        data = _invite(_path_of(owner))
        (handed,) = up(core(worker=0, workers=2)).receive_upstream(parse_datagram(data), 0.1)
        assert isinstance(handed, HandOff)
        out = owner.receive_upstream(parse_datagram(handed.data), 0.2)
        ((flow, fwd),) = sent_lan(out)
        assert flow == BS and isinstance(fwd, Request) and fwd.method == "INVITE"
        assert any(isinstance(o, SendUpstream) for o in out)  # its 100 Trying

    def test_own_flows_and_requests_without_token_stay(self) -> None:
        c = up(core(worker=1, workers=2))
        out = c.receive_upstream(parse_datagram(_invite(_path_of(c))), 0.1)
        assert any(isinstance(o, SendLan) for o in out)
        plain = request("OPTIONS", uri="sip:192.168.1.1", via_host="10.0.0.9:5061")
        out = c.receive_upstream(parse_datagram(plain), 0.2)
        assert not any(isinstance(o, HandOff) for o in out)

    def test_one_worker_never_hands_off(self) -> None:
        """workers = 1: the token's worker octet is not even read."""
        writer = up(core(worker=1, workers=2))
        single = up(core())
        out = single.receive_upstream(parse_datagram(_invite(_path_of(writer))), 0.1)
        assert not any(isinstance(o, HandOff) for o in out)


class TestMetricsAcrossWorkers:
    def test_snapshots_sum_by_series(self) -> None:
        a, b = MetricsRegistry(), MetricsRegistry()
        for registry, count in ((a, 2), (b, 3)):
            registry.counter("t_total", "help", ("method",)).inc(count, method="INVITE")
            registry.gauge("t_flows", "open").set(1)
        b.counter("t_total", "help", ("method",)).inc(method="BYE")
        merged = {m.name: dict(m.samples) for m in merge_snapshots([a.snapshot(), b.snapshot()])}
        assert merged == {"t_total": {("INVITE",): 5.0, ("BYE",): 1.0}, "t_flows": {(): 2.0}}

    def test_a_clashing_form_keeps_the_first(self) -> None:
        a, b = MetricsRegistry(), MetricsRegistry()
        a.counter("x_total", "help").inc()
        b.gauge("x_total", "help", ("y",)).set(7, y="z")
        (merged,) = merge_snapshots([a.snapshot(), b.snapshot()])
        assert (merged.kind, merged.samples) == ("counter", (((), 1.0),))

    def test_a_source_renders_with_the_own_metrics(self) -> None:
        gateway, worker = MetricsRegistry(), MetricsRegistry()
        gateway.counter("req_total", "requests", ("code",)).inc(code="200")
        worker.counter("req_total", "requests", ("code",)).inc(4, code="200")
        worker.gauge("sip_flows", "flows").set(1)
        gateway.add_source(worker.snapshot)
        gateway.add_source(worker.snapshot)  # a second worker, alike
        text = gateway.render()
        assert 'req_total{code="200"} 9' in text
        assert "# TYPE sip_flows gauge\nsip_flows 2" in text

    def test_without_sources_the_rendering_is_unchanged(self) -> None:
        registry = MetricsRegistry()
        registry.counter("c_total", "c").inc()
        registry.gauge("g", "g")
        assert registry.render() == "# HELP c_total c\n# TYPE c_total counter\nc_total 1\n" + (
            "# HELP g g\n# TYPE g gauge\ng 0\n"
        )


class TestStatusAcrossWorkers:
    def test_facts_reach_the_gateway_view(self) -> None:
        worker = ForwardedStatus(upstream="sips:sip.example.net")
        worker.up(100.0, peer="192.0.2.1:5061", tls_version="TLSv1.3", certificate=None)
        worker.registered(
            101.0, source="192.168.1.20:5060", transport="udp", aor="sip:bs@x", expires=600
        )
        worker.answered(
            102.0, source="192.168.1.20:5060", method="INVITE", status=200, local=False,
            transport="udp",
        )  # fmt: skip
        gateway = RelayStatus(upstream="sips:sip.example.net")
        apply_facts(gateway, worker.take())
        assert gateway.state == "up"
        assert gateway.view(103.0) == worker.view(103.0)
        assert worker.take() == []

    def test_only_status_calls_are_applied(self) -> None:
        gateway = RelayStatus(upstream="sips:sip.example.net")
        apply_facts(gateway, [("_changed", (), {}), ("view", (0.0,), {})])
        assert gateway.state == "connecting"


def testexit_text_names_the_signal() -> None:
    assert exit_text(-9) == "killed by SIGKILL"
    assert exit_text(1) == "exit status 1"
    assert exit_text(None) == "running"
