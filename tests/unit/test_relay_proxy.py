"""The edge proxy core, pure: messages and time in, outputs out."""

from __future__ import annotations

import gc
import random
from collections.abc import Sequence

import pytest

from gateway.relay.flows import FlowTokens, LanFlow, uri_user
from gateway.relay.limits import SourceLimiter
from gateway.relay.outputs import (
    CloseUpstream,
    ConnectUpstream,
    Dropped,
    Output,
    PathSupport,
    SendLan,
    SendUpstream,
    TransactionDone,
)
from gateway.relay.proxy import ProxyCore
from gateway.relay.resolve import ResolveError, resolve_upstream
from gateway.relay.settings import Listener, ProxySettings
from gateway.relay.transaction import Transaction
from gateway.sip import (
    RemoteProtocolError,
    Request,
    Response,
    StreamFramer,
    parse_datagram,
    serialise,
)

KEY = bytes(range(32))
BS = LanFlow("udp", "192.168.1.20", 5060, 0)
LOCAL = ("10.0.0.1", 40000)


def core(**settings: object) -> ProxyCore:
    listeners = (
        Listener(transport="udp", host="192.168.1.1", port=5060),
        Listener(transport="tcp", host="192.168.1.1", port=5060),
    )
    return ProxyCore(
        ProxySettings(listeners=listeners, key=KEY, **settings),  # type: ignore[arg-type]
        rng=random.Random(1).random,
    )


def up(c: ProxyCore) -> ProxyCore:
    c.upstream_up(*LOCAL, now=0.0)
    return c


def request(
    method: str = "OPTIONS",
    *,
    uri: str = "sip:bob@example.net",
    branch: str = "z9hG4bK-1",
    extra: Sequence[str] = (),
    max_forwards: int = 70,
    cseq: int = 1,
    via_host: str = "192.168.1.20:5060",
    to_tag: str = "",
) -> bytes:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {via_host};branch={branch}",
        f"Max-Forwards: {max_forwards}",
        "From: <sip:bs1@example.net>;tag=a1",
        f"To: <sip:bob@example.net>{to_tag}",
        "Call-ID: call-1",
        f"CSeq: {cseq} {method}",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def sent_upstream(outputs: Sequence[Output]) -> list[Request | Response]:
    return [parse_datagram(o.data) for o in outputs if isinstance(o, SendUpstream)]


def sent_lan(outputs: Sequence[Output]) -> list[tuple[LanFlow, Request | Response]]:
    return [(o.flow, parse_datagram(o.data)) for o in outputs if isinstance(o, SendLan)]


def answer(forwarded: Request, status: int, *, extra: Sequence[tuple[str, str]] = ()) -> Response:
    headers = [
        (n, v)
        for n, v in forwarded.headers
        if n.lower() in ("via", "from", "to", "call-id", "cseq")
    ]
    return Response(status=status, reason="X", headers=[*headers, *extra])  # type: ignore[arg-type]


class TestOutbound:
    def test_request_gets_our_via_and_decremented_max_forwards(self) -> None:
        """RFC 3261 §16.6: own Via with a z9hG4bK branch on top, Max-Forwards - 1."""
        c = up(core())
        (fwd,) = sent_upstream(c.receive_lan_datagram(request(), BS, 0.0))
        assert isinstance(fwd, Request)
        top, second = fwd.vias[:2]
        assert top.transport == "TLS" and top.sent_by == "10.0.0.1:40000"
        assert top.branch and top.branch.startswith("z9hG4bK")
        assert second.branch == "z9hG4bK-1"
        assert fwd.max_forwards == 69

    def test_received_and_rport_are_stamped(self) -> None:
        """RFC 3581: the base station's Via learns where it really came from."""
        c = up(core())
        raw = request(via_host="10.9.9.9:5070").replace(
            b"branch=z9hG4bK-1", b"rport;branch=z9hG4bK-1"
        )
        (fwd,) = sent_upstream(c.receive_lan_datagram(raw, BS, 0.0))
        via = fwd.vias[1]
        assert via.received == "192.168.1.20"
        assert via.rport == 5060

    def test_response_goes_back_without_our_via(self) -> None:
        """The 200 reaches the base station with its own Via on top; logged once."""
        c = up(core())
        (fwd,) = sent_upstream(c.receive_lan_datagram(request(), BS, 0.0))
        assert isinstance(fwd, Request)
        out = c.receive_upstream(answer(fwd, 200), 0.01)
        ((flow, resp),) = sent_lan(out)
        assert flow == BS
        assert isinstance(resp, Response) and resp.status == 200
        assert [v.branch for v in resp.vias] == ["z9hG4bK-1"]
        (done,) = [o for o in out if isinstance(o, TransactionDone)]
        assert (done.method, done.status, done.call_id, done.local) == (
            "OPTIONS",
            200,
            "call-1",
            False,
        )

    def test_retransmission_is_absorbed_and_answered_from_the_transaction(self) -> None:
        """The same request again is not forwarded twice; after the answer it gets it again."""
        c = up(core())
        (fwd,) = sent_upstream(c.receive_lan_datagram(request(), BS, 0.0))
        assert c.receive_lan_datagram(request(), BS, 0.5) == []
        assert isinstance(fwd, Request)
        c.receive_upstream(answer(fwd, 200), 0.6)
        ((_, again),) = sent_lan(c.receive_lan_datagram(request(), BS, 1.0))
        assert isinstance(again, Response) and again.status == 200

    def test_answered_udp_transaction_is_held_for_timer_j_only(self) -> None:
        """RFC 3261 §17.2.2: retransmissions get the final answer again until Timer J
        (64*T1) fires; after that the same request is a new transaction."""
        c = up(core())
        (fwd,) = sent_upstream(c.receive_lan_datagram(request(), BS, 0.0))
        assert isinstance(fwd, Request)
        (first,) = [o for o in c.receive_upstream(answer(fwd, 200), 0.1) if isinstance(o, SendLan)]
        for at in (1.0, 20.0, 32.0):
            (again,) = c.receive_lan_datagram(request(), BS, at)
            assert isinstance(again, SendLan) and again == first
        c.handle_timer(32.09)
        assert len(c.table) == 1
        c.handle_timer(32.1)
        assert len(c.table) == 0
        assert len(sent_upstream(c.receive_lan_datagram(request(), BS, 33.0))) == 1

    def test_answered_udp_transactions_hold_nothing_the_collector_tracks(self) -> None:
        """Thousands of answered transactions a second wait out Timer J: as objects they
        made every full garbage collection pause the relay. They are plain records."""
        c = up(core())
        for i in range(300):
            raw = request(branch=f"z9hG4bK-{i}", via_host=f"192.168.1.20:{5060 + i}")
            (fwd,) = sent_upstream(c.receive_lan_datagram(raw, BS, 0.0))
            assert isinstance(fwd, Request)
            c.receive_upstream(answer(fwd, 200), 0.01)
        assert len(c.table) == 300
        gc.collect()
        held = [o for o in gc.get_objects() if isinstance(o, Transaction)]
        assert held == []

    def test_401_challenge_is_passed_untouched(self) -> None:
        """Digest auth is end to end: the challenge arrives exactly as the registrar sent it."""
        c = up(core())
        (fwd,) = sent_upstream(
            c.receive_lan_datagram(request("REGISTER", uri="sip:example.net"), BS, 0.0)
        )
        challenge = 'Digest realm="example.net", nonce="abc", qop="auth"'
        assert isinstance(fwd, Request)
        out = c.receive_upstream(answer(fwd, 401, extra=[("WWW-Authenticate", challenge)]), 0.1)
        ((_, resp),) = sent_lan(out)
        assert resp.headers.get("WWW-Authenticate") == challenge

    def test_max_forwards_zero_is_answered_483(self) -> None:
        c = up(core())
        out = c.receive_lan_datagram(request(max_forwards=0), BS, 0.0)
        assert sent_upstream(out) == []
        ((_, resp),) = sent_lan(out)
        assert isinstance(resp, Response) and resp.status == 483

    def test_a_request_carrying_our_own_branch_is_a_loop(self) -> None:
        """RFC 3261 §16.3: the same request coming back gets 482."""
        c = up(core())
        (fwd,) = sent_upstream(c.receive_lan_datagram(request(), BS, 0.0))
        looped = serialise(fwd).replace(b"Max-Forwards: 69", b"Max-Forwards: 60")
        out = c.receive_lan_datagram(looped, LanFlow("udp", "192.168.1.21", 5060, 0), 0.1)
        ((_, resp),) = sent_lan(out)
        assert isinstance(resp, Response) and resp.status == 482

    def test_malformed_datagram_is_dropped_without_answer(self) -> None:
        """DESIGN §9: UDP garbage is dropped (never an exception)."""
        c = up(core())
        out = c.receive_lan_datagram(b"\x00\xffnot sip\r\n\r\n", BS, 0.0)
        assert [type(o) for o in out] == [Dropped]

    def test_malformed_request_on_tcp_gets_400(self) -> None:
        """DESIGN §9: answered 400 on a stream."""
        c = up(core())
        tcp = LanFlow("tcp", "192.168.1.20", 40001, 1, conn_id=7)
        c.lan_connection_opened(tcp)
        bad = parse_datagram(request().replace(b"From: <sip:bs1@example.net>;tag=a1\r\n", b""))
        out = c.receive_lan(bad, tcp, 0.0)
        ((flow, resp),) = sent_lan(out)
        assert flow == tcp and isinstance(resp, Response) and resp.status == 400

    def test_unframeable_stream_is_answered_when_its_head_was_read(self) -> None:
        """RFC 3261 §18.3: a stream request without Content-Length gets a 400 that says
        so (then the caller closes); a header block without end gets nothing to answer."""
        c = up(core())
        tcp = LanFlow("tcp", "192.168.1.20", 40001, 1, conn_id=7)
        c.lan_connection_opened(tcp)
        framer = StreamFramer()
        framer.receive_data(request().replace(b"Content-Length: 0\r\n", b""))
        with pytest.raises(RemoteProtocolError) as info:
            framer.next_event()
        out = c.lan_stream_broken(info.value, tcp)
        ((flow, resp),) = sent_lan(out)
        assert flow == tcp and isinstance(resp, Response) and resp.status == 400
        assert "Content-Length" in resp.reason and resp.call_id == "call-1"
        assert [d.reason for d in out if isinstance(d, Dropped)] == ["malformed"]
        blind = c.lan_stream_broken(RemoteProtocolError("no end", status_hint=513), tcp)
        assert sent_lan(blind) == [] and [type(o) for o in blind] == [Dropped]

    def test_upstream_timeout_answers_408(self) -> None:
        """Timer F without an answer: the base station gets 408."""
        c = up(core())
        c.receive_lan_datagram(request(), BS, 0.0)
        deadline = c.get_timer()
        while deadline is not None and deadline < 32.0:
            c.handle_timer(deadline)
            deadline = c.get_timer()
        assert deadline == pytest.approx(32.0)
        ((_, resp),) = sent_lan(c.handle_timer(32.0))
        assert isinstance(resp, Response) and resp.status == 408


class TestUpstreamFlow:
    def test_requests_wait_for_the_flow_then_go(self) -> None:
        """No flow yet: one ConnectUpstream, the request waits and leaves once it is up."""
        c = core()
        out = c.receive_lan_datagram(request(), BS, 0.0)
        assert out == [ConnectUpstream()]
        assert c.receive_lan_datagram(request(branch="z9hG4bK-2"), BS, 0.0) == []
        assert len(sent_upstream(c.upstream_up(*LOCAL, now=0.1))) == 2

    def test_failed_flow_answers_503_with_warning_and_reason(self) -> None:
        """Failure twin: a rejected certificate becomes a 503 that says so and where to look."""
        c = core()
        c.receive_lan_datagram(request(), BS, 0.0)
        warning = 'The upstream certificate was rejected: "see the rejected list".'
        out = c.upstream_failed(
            warning, 0.1, reason_text="Upstream certificate rejected", retry_after=3
        )
        ((_, resp),) = sent_lan(out)
        assert isinstance(resp, Response) and resp.status == 503
        assert "certificate was rejected" in (resp.headers.get("Warning") or "")
        assert resp.headers.get("Warning", "").startswith("399 sipsgate ")
        assert "cause=503" in (resp.headers.get("Reason") or "")
        assert resp.headers.get("Retry-After") == "3"

    def test_lost_flow_answers_requests_in_progress(self) -> None:
        c = up(core())
        c.receive_lan_datagram(request(), BS, 0.0)
        ((_, resp),) = sent_lan(c.upstream_down(1.0))
        assert isinstance(resp, Response) and resp.status == 503

    def test_keepalive_ping_and_missing_pong_closes_the_flow(self) -> None:
        """RFC 5626 §4.4.1: CRLF CRLF every ~keepalive; once the upstream has answered
        pings, no pong within 10 s: dead."""
        c = up(core(keepalive=30.0, pong_timeout=10.0))
        c.receive_pong()
        ping_at = c.get_timer()
        assert ping_at is not None and 24.0 <= ping_at <= 30.0
        assert c.handle_timer(ping_at) == [SendUpstream(b"\r\n\r\n")]
        assert c.get_timer() == pytest.approx(ping_at + 10.0)
        out = c.handle_timer(ping_at + 10.0)
        assert [type(o) for o in out] == [CloseUpstream]

    def test_pong_keeps_the_flow(self) -> None:
        c = up(core(keepalive=30.0))
        ping_at = c.get_timer()
        assert ping_at is not None
        c.handle_timer(ping_at)
        c.receive_pong()
        next_at = c.get_timer()
        assert next_at is not None and next_at > ping_at + 10.0


class TestRegisterAndPath:
    def register(self, c: ProxyCore) -> Request:
        (fwd,) = sent_upstream(
            c.receive_lan_datagram(
                request(
                    "REGISTER",
                    uri="sip:example.net",
                    extra=["Contact: <sip:bs1@192.168.1.20:5060>"],
                ),
                BS,
                0.0,
            )
        )
        assert isinstance(fwd, Request)
        return fwd

    def test_register_gets_path_with_flow_token_and_supported_path(self) -> None:
        """RFC 3327: Path names our end of the TLS flow and the base station's flow."""
        c = up(core())
        fwd = self.register(c)
        (path,) = fwd.headers.get_all("Path")
        assert "@10.0.0.1:40000;transport=tls;lr;ob>" in path
        token = uri_user(path.strip("<>").split(">")[0])
        decoded = FlowTokens(KEY).decode(token or "")
        assert decoded is not None and decoded.flow == BS
        assert "path" in ",".join(fwd.headers.get_all("Supported"))

    def test_incoming_request_follows_the_path_token_to_the_flow(self) -> None:
        """The registrar's INVITE with our Path as Route goes to the registered flow."""
        c = up(core())
        path = self.register(c).headers.get("Path") or ""
        invite = request(
            "INVITE", uri="sip:bs1@192.168.1.20:5060", branch="z9hG4bK-up1",
            via_host="10.0.0.9:5061", extra=[f"Route: {path.replace(';ob', '')}"],
        )  # fmt: skip
        out = c.receive_upstream(parse_datagram(invite), 0.1)
        lan = sent_lan(out)
        assert [r.status for _, r in lan if isinstance(r, Response)] == []
        (flow, fwd) = lan[0]
        assert flow == BS
        assert isinstance(fwd, Request) and "Route" not in fwd.headers
        rr = fwd.headers.get_all("Record-Route")
        assert (
            len(rr) == 2 and "192.168.1.1:5060;transport=udp" in rr[0] and "transport=tls" in rr[1]
        )
        assert [r.status for r in sent_upstream(out) if isinstance(r, Response)] == [100]

    def test_forged_token_is_not_followed(self) -> None:
        """Failure twin: a Route user part we did not sign routes nowhere (404)."""
        c = up(core())
        other = FlowTokens(bytes(32)).flow_token(LanFlow("udp", "192.168.1.99", 5060, 0))
        invite = request(
            "INVITE", uri="sip:bs1@example.net", branch="z9hG4bK-up2", via_host="10.0.0.9:5061",
            extra=[f"Route: <sip:{other}@10.0.0.1:40000;transport=tls;lr>"],
        )  # fmt: skip
        out = c.receive_upstream(parse_datagram(invite), 0.1)
        assert sent_lan(out) == []
        assert [r.status for r in sent_upstream(out) if isinstance(r, Response)] == [404]

    def test_registrar_without_path_support_switches_to_contact_rewriting(self) -> None:
        """RFC 3327 fallback: a 2xx without Path; the next REGISTER carries our Contact."""
        c = up(core())
        fwd = self.register(c)
        out = c.receive_upstream(
            answer(fwd, 200, extra=[("Contact", "<sip:bs1@192.168.1.20:5060>")]), 0.1
        )
        notes = [o for o in out if isinstance(o, PathSupport)]
        assert [n.supported for n in notes] == [False]
        raw = request(
            "REGISTER", uri="sip:example.net", branch="z9hG4bK-r2", cseq=2,
            extra=["Contact: <sip:bs1@192.168.1.20:5060>;expires=60"],
        )  # fmt: skip
        (fwd2,) = sent_upstream(c.receive_lan_datagram(raw, BS, 1.0))
        assert isinstance(fwd2, Request) and "Path" not in fwd2.headers
        (contact,) = fwd2.contacts
        assert (
            contact.uri.endswith("@10.0.0.1:40000;transport=tls")
            and contact.param("expires") == "60"
        )
        # the 200 shows the base station its own Contact again
        reply = answer(fwd2, 200, extra=[("Contact", f"<{contact.uri}>;expires=60")])
        ((_, back),) = sent_lan(c.receive_upstream(reply, 1.1))
        assert [na.uri for na in back.contacts] == ["sip:bs1@192.168.1.20:5060"]
        # and a request for that Contact reaches the base station with its URI restored
        invite = request("INVITE", uri=contact.uri, branch="z9hG4bK-up3", via_host="10.0.0.9:5061")
        lan = sent_lan(c.receive_upstream(parse_datagram(invite), 2.0))
        flow, fwd_invite = lan[0]
        assert flow == BS and isinstance(fwd_invite, Request)
        assert fwd_invite.uri == "sip:bs1@192.168.1.20:5060"


class TestCancel:
    def test_cancel_waits_for_a_provisional_then_follows_the_invite(self) -> None:
        """RFC 3261 §9.1 and §16.10: 200 for the CANCEL at once, our CANCEL after the 180."""
        c = up(core())
        out = c.receive_lan_datagram(request("INVITE"), BS, 0.0)
        (invite,) = sent_upstream(out)
        assert [r.status for _, r in sent_lan(out) if isinstance(r, Response)] == [100]
        cancel = request("CANCEL", cseq=1)
        out = c.receive_lan_datagram(cancel, BS, 0.1)
        assert [r.status for _, r in sent_lan(out) if isinstance(r, Response)] == [200]
        assert sent_upstream(out) == []  # no provisional yet from upstream
        assert isinstance(invite, Request)
        out = c.receive_upstream(answer(invite, 180), 0.2)
        (our_cancel,) = [r for r in sent_upstream(out) if isinstance(r, Request)]
        assert our_cancel.method == "CANCEL"
        assert our_cancel.top_via is not None and invite.top_via is not None
        assert our_cancel.top_via.branch == invite.top_via.branch
        out = c.receive_upstream(answer(invite, 487), 0.3)
        (ack,) = [r for r in sent_upstream(out) if isinstance(r, Request)]
        assert ack.method == "ACK"
        assert [r.status for _, r in sent_lan(out) if isinstance(r, Response)] == [487]


class TestPieces:
    def test_flow_token_round_trip_and_tamper(self) -> None:
        tokens = FlowTokens(KEY)
        flow = LanFlow("tcp", "2001:db8::5", 5061, 1, conn_id=99)
        token = tokens.flow_token(flow)
        decoded = tokens.decode(token)
        assert decoded is not None and decoded.flow == flow and decoded.contact is None
        tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        assert tokens.decode(tampered) is None
        assert tokens.decode("bob") is None

    def test_limiter_allows_burst_then_rate(self) -> None:
        limiter = SourceLimiter(rate=10, burst=5)
        assert [limiter.allow("a", 0.0) for _ in range(6)] == [True] * 5 + [False]
        assert limiter.allow("b", 0.0)  # another source is not affected
        assert limiter.allow("a", 0.1)  # one token back after 1/rate


class _Rdata:
    def __init__(self, **fields: object) -> None:
        self.__dict__.update(fields)

    def __str__(self) -> str:
        return str(self.__dict__.get("text", ""))


class TestResolve:
    @staticmethod
    def lookup(records: dict[tuple[str, str], list[_Rdata]]):  # type: ignore[no-untyped-def]
        async def lookup(name: str, rdtype: str) -> list[_Rdata]:
            return records.get((name, rdtype), [])

        return lookup

    async def test_naptr_srv_then_addresses(self) -> None:
        """RFC 3263: NAPTR SIPS+D2T → SRV → A; the identity stays the domain."""
        records = {
            ("example.net", "NAPTR"): [
                _Rdata(
                    order=10,
                    preference=10,
                    flags=b"s",
                    service=b"SIPS+D2T",
                    replacement=_Rdata(text="_sips._tcp.example.net."),
                ),
                _Rdata(
                    order=20,
                    preference=10,
                    flags=b"s",
                    service=b"SIP+D2U",
                    replacement=_Rdata(text="_sip._udp.example.net."),
                ),
            ],
            ("_sips._tcp.example.net", "SRV"): [
                _Rdata(priority=20, weight=0, port=5062, target=_Rdata(text="b.example.net.")),
                _Rdata(priority=10, weight=0, port=5061, target=_Rdata(text="a.example.net.")),
            ],
            ("a.example.net", "A"): [_Rdata(address="192.0.2.1")],
            ("b.example.net", "A"): [_Rdata(address="192.0.2.2")],
        }
        targets = await resolve_upstream("sips:example.net", lookup=self.lookup(records))
        assert [t.address for t in targets] == [("192.0.2.1", 5061), ("192.0.2.2", 5062)]
        assert {t.host for t in targets} == {"example.net"}

    async def test_srv_without_naptr_and_a_fallback(self) -> None:
        srv_only = {
            ("_sips._tcp.example.net", "SRV"): [
                _Rdata(priority=1, weight=1, port=6061, target=_Rdata(text="s.example.net."))
            ],
            ("s.example.net", "AAAA"): [_Rdata(address="2001:db8::7")],
        }
        (t,) = await resolve_upstream("sips:example.net", lookup=self.lookup(srv_only))
        assert t.address == ("2001:db8::7", 6061)
        a_only = {("example.net", "A"): [_Rdata(address="192.0.2.9")]}
        (t,) = await resolve_upstream("sips:example.net", lookup=self.lookup(a_only))
        assert t.address == ("192.0.2.9", 5061)

    async def test_explicit_port_and_override_skip_srv(self) -> None:
        records = {("example.net", "A"): [_Rdata(address="192.0.2.3")]}
        (t,) = await resolve_upstream("sips:example.net:7000", lookup=self.lookup(records))
        assert t.address == ("192.0.2.3", 7000)
        (t,) = await resolve_upstream("sips:example.net", override="127.0.0.1:5999")
        assert t.address == ("127.0.0.1", 5999) and t.host == "example.net"

    async def test_nothing_found_is_a_clear_error(self) -> None:
        """Failure twin: no record at all names the fix."""
        with pytest.raises(ResolveError, match=r"sip\.upstream_address"):
            await resolve_upstream("sips:example.net", lookup=self.lookup({}))
        with pytest.raises(ResolveError, match="sips:"):
            await resolve_upstream("https://example.net", lookup=self.lookup({}))
