"""RFC 5626 §4.4.1 keep-alive on the upstream flow, pure: what is sent, what closes it.

Pongs are expected only from an upstream that negotiated outbound or has answered a
ping: many registrars (Net::SIP, ejabberd) ignore CRLF pings, and their flows, which
carry the base stations' registrations, must stay open.
"""

from __future__ import annotations

from gateway.relay.outputs import CloseUpstream, PongSupport, SendLan, SendUpstream
from gateway.relay.proxy import ProxyCore
from gateway.sip import Request, parse_datagram
from tests.unit.test_relay_proxy import BS, answer, core, request, sent_upstream, up

PING = SendUpstream(b"\r\n\r\n")


def run_until(c: ProxyCore, end: float) -> list[tuple[float, object]]:
    """Fire the core's timer until ``end``; (time, output) of everything it produced."""
    seen: list[tuple[float, object]] = []
    for _ in range(10_000):
        at = c.get_timer()
        if at is None or at > end:
            return seen
        seen.extend((at, o) for o in c.handle_timer(at))
    raise AssertionError("the timer never passed the end")


def register(c: ProxyCore, *extra: tuple[str, str]) -> list[object]:
    raw = request("REGISTER", uri="sip:example.net", extra=["Contact: <sip:bs1@192.168.1.20:5060>"])
    (fwd,) = sent_upstream(c.receive_lan_datagram(raw, BS, 0.0))
    assert isinstance(fwd, Request)
    path = fwd.headers.get("Path") or ""
    reply = answer(
        fwd, 200, extra=[("Contact", "<sip:bs1@192.168.1.20:5060>"), ("Path", path), *extra]
    )
    return list(c.receive_upstream(reply, 0.1))


class TestPongSupport:
    def test_silent_upstream_keeps_its_flow_for_an_hour(self) -> None:
        """No pong ever: pings go out every ~30 s and the flow is never closed."""
        c = up(core(keepalive=30.0, pong_timeout=10.0))
        register(c)
        seen = run_until(c, 3600.0)
        outputs = [o for _, o in seen]
        assert not any(isinstance(o, CloseUpstream) for o in outputs)
        assert 120 <= outputs.count(PING) <= 150

    def test_an_answered_ping_arms_dead_flow_detection(self) -> None:
        """Failure twin: after one pong, the next unanswered ping closes the flow."""
        c = up(core(keepalive=30.0, pong_timeout=10.0))
        ((_, first),) = run_until(c, 30.0)
        assert first == PING
        assert c.receive_pong() == [PongSupport("the upstream answered a CRLF keep-alive")]
        assert c.receive_pong() == []  # learned once
        seen = run_until(c, 100.0)
        ((closed_at, closed),) = [(t, o) for t, o in seen if isinstance(o, CloseUpstream)]
        second_ping = next(t for t, o in seen if o == PING)
        assert closed_at == second_ping + 10.0
        assert "no keep-alive answer within 10 s" in closed.reason

    def test_outbound_in_the_registrars_2xx_arms_detection(self) -> None:
        """RFC 5626 §6: Require: outbound on the REGISTER 2xx means pongs will come."""
        c = up(core(keepalive=30.0, pong_timeout=10.0))
        notes = [o for o in register(c, ("Require", "outbound")) if isinstance(o, PongSupport)]
        assert notes and "outbound" in notes[0].detail
        assert any(isinstance(o, CloseUpstream) for _, o in run_until(c, 60.0))

    def test_other_option_tags_do_not(self) -> None:
        c = up(core(keepalive=30.0))
        register(c, ("Supported", "path, gruu"), ("Require", "outboundx"))
        assert not any(isinstance(o, CloseUpstream) for _, o in run_until(c, 300.0))

    def test_support_learned_survives_a_reconnect(self) -> None:
        """The same upstream behind a new flow: a missing pong still means a dead flow."""
        c = up(core(keepalive=30.0, pong_timeout=10.0))
        c.receive_pong()
        c.upstream_down(1.0)
        c.upstream_up("10.0.0.1", 40001, now=2.0)
        assert any(isinstance(o, CloseUpstream) for _, o in run_until(c, 60.0))


class TestShortInterval:
    def test_pings_faster_than_the_pong_timeout_do_not_postpone_the_deadline(self) -> None:
        """keepalive 4 s, pong timeout 10 s: dead 10 s after the first unanswered ping."""
        c = up(core(keepalive=4.0, pong_timeout=10.0))
        c.receive_pong()
        seen = run_until(c, 60.0)
        closes = [t for t, o in seen if isinstance(o, CloseUpstream)]
        first_ping = next(t for t, o in seen if o == PING)
        assert closes == [first_ping + 10.0]

    def test_a_pong_in_time_keeps_the_short_interval_flow(self) -> None:
        """Failure twin: each ping answered within the timeout: the flow stays."""
        c = up(core(keepalive=4.0, pong_timeout=10.0))
        c.receive_pong()
        for _ in range(100):
            at = c.get_timer()
            assert at is not None and at < 400.0
            outputs = c.handle_timer(at)
            assert not any(isinstance(o, CloseUpstream) for o in outputs)
            if PING in outputs:
                c.receive_pong()


class TestOptionsKeepAlive:
    def options(self, seen: list[tuple[float, object]]) -> list[Request]:
        sent = [o.data for _, o in seen if isinstance(o, SendUpstream) and o != PING]
        parsed = [parse_datagram(data) for data in sent]
        assert all(isinstance(m, Request) for m in parsed)
        return parsed  # type: ignore[return-value]

    def test_silent_upstream_gets_an_options_from_the_second_ping_on(self) -> None:
        """An upstream ignoring pings may not count them as activity either: from the
        second unanswered ping, each ping comes with an OPTIONS that no hop forwards."""
        c = up(core(keepalive=30.0, upstream_uri="sips:sip.example.net"))
        seen = run_until(c, 600.0)
        pings = [t for t, o in seen if o == PING]
        sent = self.options(seen)
        assert len(sent) == len(pings) - 1
        first = sent[0]
        assert (first.method, first.uri, first.max_forwards) == (
            "OPTIONS",
            "sips:sip.example.net",
            0,
        )
        assert first.top_via is not None and first.top_via.sent_by == "10.0.0.1:40000"
        assert len({m.call_id for m in sent}) == len(sent)
        assert len(c.table.by_key) <= 3  # unanswered ones time out and go

    def test_an_answer_to_the_options_goes_nowhere(self) -> None:
        c = up(core(keepalive=30.0, upstream_uri="sips:sip.example.net"))
        (sent,) = self.options(run_until(c, 60.0))
        out = c.receive_upstream(answer(sent, 483), 61.0)
        assert not [o for o in out if isinstance(o, SendUpstream | SendLan)]

    def test_an_upstream_answering_pings_gets_no_options(self) -> None:
        """Failure twin: pongs come back, so CRLF pings are all it gets."""
        c = up(core(keepalive=30.0))
        for _ in range(40):
            at = c.get_timer()
            assert at is not None
            out = c.handle_timer(at)
            assert all(o == PING for o in out), out
            if PING in out:
                c.receive_pong()
