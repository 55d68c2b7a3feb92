"""The per-source rule, pure: what happens to a message from a source over its rate.

Over ``sip.source_rate`` a new request (not ACK, not CANCEL) is answered 503 with
Retry-After while the source's answer budget allows; everything else is dropped and
counted; a retransmission of a transaction the core holds is absorbed as usual.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.relay.limits import Admission, SourceLimiter, answerable, datagram_method
from gateway.relay.outputs import Dropped, Output, Refused, SendLan, SendUpstream
from gateway.relay.proxy import ProxyCore
from gateway.relay.service import udp_drops
from gateway.sip import Response, parse_datagram, serialise
from tests.unit.test_relay_proxy import BS, core, request, up

METHODS = st.sampled_from([None, "INVITE", "REGISTER", "OPTIONS", "ACK", "CANCEL", "BYE"])
#: (seconds since the previous message, its method; None: a response)
TRAFFIC = st.lists(
    st.tuples(st.floats(min_value=0, max_value=0.05, allow_nan=False), METHODS), max_size=400
)


def run(limiter: SourceLimiter, traffic: list[tuple[float, str | None]]) -> list[Admission]:
    now = 0.0
    verdicts = []
    for gap, method in traffic:
        now += gap
        verdicts.append(limiter.admit("192.0.2.1", now, method))
    return verdicts


def span(traffic: list[tuple[float, str | None]]) -> float:
    return sum(gap for gap, _ in traffic)


@settings(max_examples=200, deadline=None)
@given(TRAFFIC, st.integers(1, 50), st.integers(1, 50), st.integers(0, 20))
def test_never_more_answers_than_the_answer_budget(
    traffic: list[tuple[float, str | None]], rate: int, burst: int, answers: int
) -> None:
    verdicts = run(SourceLimiter(rate, burst, answers), traffic)
    answered = verdicts.count(Admission.ANSWER)
    assert answered <= answers * span(traffic) + max(1, answers) + 1e-9
    if answers == 0:
        assert answered == 0
    relayed = verdicts.count(Admission.RELAY)
    assert relayed <= rate * span(traffic) + burst + 1e-9


@settings(max_examples=200, deadline=None)
@given(TRAFFIC, st.integers(1, 50), st.integers(1, 50), st.integers(0, 20))
def test_responses_ack_and_cancel_are_never_answered(
    traffic: list[tuple[float, str | None]], rate: int, burst: int, answers: int
) -> None:
    verdicts = run(SourceLimiter(rate, burst, answers), traffic)
    for (_, method), verdict in zip(traffic, verdicts, strict=True):
        if method in (None, "ACK", "CANCEL"):
            assert verdict is not Admission.ANSWER


@settings(max_examples=200, deadline=None)
@given(st.lists(METHODS, max_size=60), st.integers(1, 30), st.integers(1, 30))
def test_nothing_answerable_is_dropped_within_the_answer_budget(
    methods: list[str | None], burst: int, answers: int
) -> None:
    """All at one instant: the first ``burst`` are relayed, then every answerable one
    is answered until ``answers`` have been, and only then are requests dropped."""
    limiter = SourceLimiter(1, burst, answers)
    verdicts = [limiter.admit("192.0.2.1", 5.0, m) for m in methods]
    assert verdicts[:burst] == [Admission.RELAY] * min(burst, len(methods))
    over = [(m, v) for m, v in zip(methods, verdicts, strict=True)][burst:]
    asked = [v for m, v in over if answerable(m)]
    budget = max(1, answers)
    assert asked[:budget] == [Admission.ANSWER] * min(budget, len(asked))
    assert all(v is Admission.DROP for v in asked[budget:])
    assert all(v is Admission.DROP for m, v in over if not answerable(m))


def test_sources_are_limited_apart() -> None:
    limiter = SourceLimiter(rate=10, burst=2, answers=1)
    assert [limiter.admit("a", 0.0, "INVITE") for _ in range(4)] == [
        Admission.RELAY, Admission.RELAY, Admission.ANSWER, Admission.DROP,
    ]  # fmt: skip
    assert limiter.admit("b", 0.0, "INVITE") is Admission.RELAY
    assert limiter.admit("a", 0.1, "INVITE") is Admission.RELAY  # a token back after 1/rate
    assert limiter.admit("a", 1.0, "OPTIONS") is Admission.RELAY


def test_retry_after_is_when_half_the_burst_is_back() -> None:
    limiter = SourceLimiter(rate=100, burst=1000, answers=5)
    for _ in range(1000):
        limiter.admit("a", 0.0, "REGISTER")
    assert limiter.admit("a", 0.0, "REGISTER") is Admission.ANSWER
    assert limiter.retry_after("a") == math.ceil(500 / 100)
    assert limiter.retry_after("unknown") == 1  # never less than a second


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        SourceLimiter(0, 10)
    with pytest.raises(ValueError, match="negative"):
        SourceLimiter(10, 10, -1)


@pytest.mark.parametrize(
    ("data", "method"),
    [
        (b"INVITE sip:a@b SIP/2.0\r\n", "INVITE"),
        (b"X-PING.v2 sip:a@b SIP/2.0\r\n", "X-PING.v2"),
        (b"SIP/2.0 200 OK\r\n", None),
        (b"\x00\xffGARBAGE 1\r\n", None),
        (b"\r\n\r\n", None),
        (b"NOSPACEATALL", None),
    ],
)
def test_datagram_method_reads_only_the_request_line(data: bytes, method: str | None) -> None:
    assert datagram_method(data) == method


class TestRefuse:
    """ProxyCore.refuse_lan: the answer itself, made before any upstream work."""

    def test_new_request_gets_a_stateless_503_with_retry_after(self) -> None:
        c = up(core())
        out = c.refuse_lan(request("INVITE", extra=["Contact: <sip:bs1@192.168.1.20>"]), BS, 0, 7)
        assert [type(o) for o in out] == [Refused, SendLan]
        assert out[0] == Refused("source-rate", "message rate above sip.source_rate", BS.source)
        send = out[1]
        assert isinstance(send, SendLan) and send.flow == BS
        answer = parse_datagram(send.data)
        assert isinstance(answer, Response) and answer.status == 503
        assert answer.headers.get("Retry-After") == "7"
        assert "above the limit" in (answer.headers.get("Warning") or "")
        assert 'text="Source rate limit reached"' in (answer.headers.get("Reason") or "")
        assert ";tag=" in (answer.headers.get("To") or "")
        assert answer.call_id == "call-1"
        assert len(c.table) == 0  # stateless: nothing held

    def test_retransmission_of_a_held_transaction_is_absorbed(self) -> None:
        c = up(core())
        first = c.receive_lan_datagram(request("INVITE"), BS, 0.0)
        assert any(isinstance(o, SendUpstream) for o in first)
        again = c.refuse_lan(request("INVITE"), BS, 0.1, 7)
        assert not any(isinstance(o, Refused) for o in again)
        assert not any(isinstance(o, SendUpstream) for o in again)
        sent = [parse_datagram(o.data) for o in again if isinstance(o, SendLan)]
        assert all(isinstance(r, Response) and r.status == 100 for r in sent)

    def test_responses_and_garbage_are_not_answered(self) -> None:
        c = up(core())
        response = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.168.1.1;branch=z9hG4bK-x\r\n\r\n"
        assert [type(o) for o in c.refuse_lan(response, BS, 0.0, 1)] == [Dropped]
        assert [type(o) for o in c.refuse_lan(b"GARBAGE 1\r\n\r\n", BS, 0.0, 1)] == [Dropped]


def ack_for(answer: bytes, *, branch: str = "z9hG4bK-1") -> bytes:
    """The ACK a UAC sends for a non-2xx answer to request(): same branch, its To."""
    response = parse_datagram(answer)
    assert isinstance(response, Response)
    to = response.headers.get("To") or ""
    return request("ACK", branch=branch).replace(b"To: <sip:bob@example.net>", f"To: {to}".encode())


def answers(out: list[Output]) -> list[Response]:
    found = [parse_datagram(o.data) for o in out if isinstance(o, SendLan)]
    return [r for r in found if isinstance(r, Response)]


class TestShed:
    """Past max_transactions in progress, a new INVITE or REGISTER is answered 503 at
    once, before any upstream work; the rest goes on so calls in progress can end."""

    def loaded(self) -> ProxyCore:
        c = up(core(max_transactions=4))  # two INVITEs: a server and a client tx each
        for n in (1, 2):
            out = c.receive_lan_datagram(request("INVITE", branch=f"z9hG4bK-{n}"), BS, 0.0)
            assert any(isinstance(o, SendUpstream) for o in out)
        assert c.table.live >= 4
        return c

    @pytest.mark.parametrize("method", ["INVITE", "REGISTER"])
    def test_new_call_or_registration_gets_503_with_retry_after(self, method: str) -> None:
        c = self.loaded()
        live = c.table.live
        out = c.receive_lan_datagram(request(method, branch="z9hG4bK-new"), BS, 0.1)
        assert not any(isinstance(o, SendUpstream) for o in out)
        assert [o for o in out if isinstance(o, Refused)] == [
            Refused("overload", "sip.max_transactions transactions in progress", BS.source)
        ]
        (answer,) = answers(out)
        assert answer.status == 503
        assert 1 <= int(answer.headers.get("Retry-After") or 0) <= 5
        assert 'text="Overloaded"' in (answer.headers.get("Reason") or "")
        assert c.table.live == live  # nothing held for it

    def test_other_requests_retransmissions_and_dialogs_go_on(self) -> None:
        c = self.loaded()
        options = c.receive_lan_datagram(request("OPTIONS", branch="z9hG4bK-o"), BS, 0.1)
        assert any(isinstance(o, SendUpstream) for o in options)
        in_dialog = request("INVITE", branch="z9hG4bK-re", to_tag=";tag=b2")
        assert any(isinstance(o, SendUpstream) for o in c.receive_lan_datagram(in_dialog, BS, 0.1))
        again = c.receive_lan_datagram(request("INVITE", branch="z9hG4bK-1"), BS, 0.2)
        assert not any(isinstance(o, Refused | SendUpstream) for o in again)
        assert [r.status for r in answers(again)] == [100]  # the held answer, again

    def test_below_the_cap_nothing_is_shed(self) -> None:
        c = up(core(max_transactions=100))
        for n in range(5):
            out = c.receive_lan_datagram(request("INVITE", branch=f"z9hG4bK-{n}"), BS, 0.0)
            assert not any(isinstance(o, Refused) for o in out)

    def test_ack_for_a_refused_invite_is_absorbed(self) -> None:
        c = self.loaded()
        (answer,) = answers(c.receive_lan_datagram(request("INVITE", branch="z9hG4bK-n"), BS, 0))
        assert c.receive_lan_datagram(ack_for(serialise(answer), branch="z9hG4bK-n"), BS, 0) == []
        # An ACK with another To tag (for a 2xx, end to end) still goes upstream.
        stray = request("ACK", branch="z9hG4bK-n", to_tag=";tag=elsewhere")
        assert any(isinstance(o, SendUpstream) for o in c.receive_lan_datagram(stray, BS, 0))

    def test_ack_for_a_source_rate_503_is_absorbed(self) -> None:
        c = up(core())
        (send,) = [o for o in c.refuse_lan(request("INVITE"), BS, 0.0, 3) if isinstance(o, SendLan)]
        assert c.receive_lan_datagram(ack_for(send.data), BS, 0.1) == []


UDP_TABLE = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  616: 0100007F:CFFB 00000000:0000 07 00000000:0006EF00 00:00000000 00000000     0        0 1385307 2 0000000056dd6f31 110470
 1587: 0100007F:13C6 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1378052 2 0000000024a2403a 7
 1588: 0100007F:13C7 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 99 2 0000000024a2403b 5
"""  # noqa: E501


def test_udp_drops_sums_the_drops_column_of_our_sockets_only() -> None:
    assert udp_drops(UDP_TABLE, {1385307, 99}) == 110470 + 5
    assert udp_drops(UDP_TABLE, {1}) == 0
    assert udp_drops("", {99}) == 0
    assert udp_drops("sl local_address\n 1: x y\n", {99}) == 0  # no drops column: nothing
