"""What the upstream can make the relay send on the LAN, in the pure core."""

from __future__ import annotations

from gateway.relay.outputs import Dropped
from gateway.relay.proxy import ProxyCore
from gateway.sip import Request, Response, parse_datagram
from tests.unit.test_relay_proxy import BS, answer, core, request, sent_lan, sent_upstream, up


def from_upstream(method: str, uri: str, branch: str) -> Request:
    message = parse_datagram(request(method, uri=uri, branch=branch, via_host="10.0.0.9:5061"))
    assert isinstance(message, Request)
    return message


def options_forwarded(c: ProxyCore, now: float = 0.0) -> Request:
    (fwd,) = sent_upstream(c.receive_lan_datagram(request(), BS, now))
    assert isinstance(fwd, Request)
    return fwd


class TestRequestUriByAddress:
    def test_an_address_nobody_sent_from_is_404_and_reported(self) -> None:
        c = up(core())
        out = c.receive_upstream(
            from_upstream("MESSAGE", "sip:x@192.168.1.99:5099", "z9hG4bK-u1"), 1.0
        )
        assert sent_lan(out) == []
        assert [r.status for r in sent_upstream(out) if isinstance(r, Response)] == [404]
        assert [d.reason for d in out if isinstance(d, Dropped)] == ["unknown-destination"]

    def test_a_base_station_that_sent_a_request_is_reachable_for_a_while(self) -> None:
        c = up(core())
        options_forwarded(c)
        uri = f"sip:bs1@{BS.host}:{BS.port}"
        lan = sent_lan(c.receive_upstream(from_upstream("MESSAGE", uri, "z9hG4bK-u2"), 1.0))
        assert [flow for flow, _ in lan] == [BS]
        later = c.receive_upstream(from_upstream("MESSAGE", uri, "z9hG4bK-u3"), 10_000.0)
        assert sent_lan(later) == []

    def test_a_registration_keeps_the_address_until_it_expires(self) -> None:
        c = up(core())
        (fwd,) = sent_upstream(
            c.receive_lan_datagram(
                request("REGISTER", uri="sip:example.net",
                        extra=["Contact: <sip:bs1@192.168.1.20:5060>"]),
                BS, 0.0,
            )
        )  # fmt: skip
        assert isinstance(fwd, Request)
        reply = answer(
            fwd, 200, extra=[("Contact", "<sip:bs1@192.168.1.20:5060>;expires=7200"), ("Path", "x")]
        )
        c.receive_upstream(reply, 0.1)
        uri = f"sip:bs1@{BS.host}:{BS.port}"
        lan = sent_lan(c.receive_upstream(from_upstream("MESSAGE", uri, "z9hG4bK-u4"), 7000.0))
        assert [flow for flow, _ in lan] == [BS]
        gone = sent_lan(c.receive_upstream(from_upstream("MESSAGE", uri, "z9hG4bK-u5"), 8000.0))
        assert gone == []


class TestStrayResponses:
    def stray(self, fwd: Request, second_via: str, cseq: str = "1 OPTIONS") -> Response:
        headers = [
            ("Via", fwd.headers.get_all("Via")[0]),
            ("Via", second_via),
            ("From", fwd.headers.get("From") or ""),
            ("To", fwd.headers.get("To") or ""),
            ("Call-ID", fwd.headers.get("Call-ID") or ""),
            ("CSeq", cseq),
        ]
        return Response(status=200, reason="OK", headers=headers)  # type: ignore[arg-type]

    def test_a_via_our_branch_was_not_made_for_is_dropped(self) -> None:
        c = up(core())
        fwd = options_forwarded(c)
        out = c.receive_upstream(
            self.stray(fwd, "SIP/2.0/UDP 192.168.1.99:5099;branch=z9hG4bK-x", "1 INFO"), 1.0
        )
        assert sent_lan(out) == []
        assert [d.reason for d in out if isinstance(d, Dropped)] == ["stray-response"]

    def test_the_right_via_with_another_received_address_is_dropped(self) -> None:
        """A replay of a genuine pair of Vias, redirected with received/rport."""
        c = up(core())
        fwd = options_forwarded(c)
        genuine = fwd.headers.get_all("Via")[1]
        redirected = genuine + ";received=192.168.1.99;rport=5099"
        c.handle_timer(100.0)  # the client transaction is gone
        out = c.receive_upstream(self.stray(fwd, redirected), 100.0)
        assert sent_lan(out) == []

    def test_a_late_answer_still_reaches_the_base_station(self) -> None:
        """The twin: the same stray answer with the genuine Via goes back to it."""
        c = up(core())
        fwd = options_forwarded(c)
        c.handle_timer(100.0)
        out = c.receive_upstream(self.stray(fwd, fwd.headers.get_all("Via")[1]), 100.0)
        assert [flow for flow, _ in sent_lan(out)] == [BS]
