"""Every fast path equals its full path: one generic harness, one entry per pair.

A :class:`Pair` names generated inputs, the full path, and the fast path, which either
declines an input (the full path then takes it) or gives the full path's result. The
harness runs both on every input and compares; it also checks that the fast path is
taken on a share of the inputs, so that a fast path that always declined would fail
rather than pass vacuously.

The pairs: the datagram scan (``scan_datagram`` against ``parse_datagram``), the wire
framer against the plain one, the plain Via and name-addr recognisers against the full
header parsers, and the relay core fed scanned messages (spliced fast path) against
the same core fed parsed messages, over a whole exchange: request, retransmission,
answers from upstream, and the timers that follow.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.relay.fastpath import FastPath
from gateway.relay.flows import LanFlow
from gateway.relay.outputs import Output, SendUpstream
from gateway.relay.proxy import ProxyCore
from gateway.relay.settings import Listener, ProxySettings
from gateway.sip import (
    RemoteProtocolError,
    Request,
    Response,
    StreamFramer,
    header_key,
    parse_datagram,
    parse_name_addr,
    parse_name_addr_list,
    parse_via,
    serialise,
)
from gateway.sip.wire import Wire, scan_datagram, simple_name_addr, simple_via
from tests.unit.test_sip_fuzz import any_input

I = TypeVar("I")  # noqa: E741 - the input of a pair
O = TypeVar("O")  # noqa: E741 - what both paths give

FIXTURES = sorted((Path(__file__).parent / "sip_torture").glob("*.dat"))
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Fast(NamedTuple, Generic[O]):
    """The fast path's answer: whether it took the input itself, and its result (None
    when it declined and there is nothing of its own to compare)."""

    taken: bool
    result: O | None


@dataclass(frozen=True)
class Pair(Generic[I, O]):
    name: str
    inputs: st.SearchStrategy[I]
    full: Callable[[I], O]
    fast: Callable[[I], Fast[O]]
    #: The share of generated inputs the fast path must take (it exists for them).
    min_taken: float = 0.2
    #: Raises when the two results differ; plain equality unless given.
    same: Callable[[O, O], None] | None = None


def check_pair(pair: Pair[Any, Any]) -> None:
    runs = [0, 0]

    @SETTINGS
    @given(pair.inputs)
    def run(value: Any) -> None:
        fast = pair.fast(value)
        runs[0] += 1
        runs[1] += fast.taken
        if fast.result is None:
            assert not fast.taken, "a fast path that took an input must give its result"
            return
        full = pair.full(value)
        if pair.same is not None:
            pair.same(fast.result, full)
        else:
            assert fast.result == full

    run()
    assert runs[1] >= pair.min_taken * runs[0], f"the fast path took {runs[1]} of {runs[0]}"


# --- the datagram scan -----------------------------------------------------------------


def parsed(data: bytes) -> Request | Response | None:
    try:
        return parse_datagram(data)
    except RemoteProtocolError:
        return None


def message_view(message: Request | Response | None) -> tuple[object, ...] | None:
    """What a reader of a message sees: the message, its fields as written, their
    look-up keys, start line and body."""
    if message is None:
        return None
    fields = [(f.name, f.value) for f in message.headers]
    if isinstance(message, Request):
        start: tuple[object, ...] = (message.method, message.uri, 0)
    else:
        start = ("", "", message.status)
    return message, fields, [header_key(n) for n, _ in fields], start, message.body


def wire_view(wire: Wire) -> tuple[object, ...]:
    """The same view read off the scanned lines; its rendering must parse back to it."""
    message = wire.to_message()
    assert parse_datagram(wire.render(wire.lines)) == message
    fields = [(line.partition(": ")[0], v) for line, v in zip(wire.lines, wire.values, strict=True)]
    start = (wire.method, wire.uri, wire.status) if not wire.status else ("", "", wire.status)
    return message, fields, wire.keys, start, wire.body


def scan_fast(data: bytes) -> Fast[tuple[object, ...] | None]:
    wire = scan_datagram(data)
    return Fast(False, None) if wire is None else Fast(True, wire_view(wire))


def scan_same(fast: tuple[object, ...] | None, full: tuple[object, ...] | None) -> None:
    assert full is not None, "the scan took a message the parser refuses"
    assert fast == full


_torture = st.sampled_from(FIXTURES).map(lambda p: p.read_bytes())

# --- the framer ------------------------------------------------------------------------

_cuts = st.lists(st.binary(min_size=1, max_size=40), max_size=6)


def frame(cuts: list[bytes], *, wire: bool) -> list[object]:
    """The events a framer yields for the bytes, up to the first error or need of data."""
    data = FIXTURES[0].read_bytes() if not cuts else b"".join(cuts)
    framer = StreamFramer(wire=wire)
    framer.receive_data(data)
    events: list[object] = []
    for _ in range(50):
        try:
            event = framer.next_event()
        except RemoteProtocolError:
            events.append(RemoteProtocolError)
            break
        events.append(event.to_message() if isinstance(event, Wire) else event)
        if not isinstance(event, Wire | Request | Response):
            break
    return events


def frame_fast(cuts: list[bytes]) -> Fast[list[object]]:
    events = frame(cuts, wire=True)
    return Fast(any(isinstance(e, Request | Response) for e in events), events)


# --- the plain recognisers -------------------------------------------------------------

_token = st.text("abcXYZ019-.!%*_+`'~", min_size=1, max_size=8)
_host = st.sampled_from(["192.168.1.20", "10.0.0.7", "[2001:db8::1]", "bs.example.net"])


@st.composite
def via_values(draw: st.DrawFn) -> str:
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS", "udp"]))
    port = draw(st.one_of(st.none(), st.integers(0, 70000)))
    text = f"SIP/2.0/{transport} {draw(_host)}" + ("" if port is None else f":{port}")
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(["branch", "rport", "received", "ttl", "maddr", "x"]))
        value = draw(st.one_of(st.none(), _token, st.integers(0, 300).map(str)))
        text += f";{name}" if value is None else f";{name}={value}"
    return text


def via_full(value: str) -> tuple[object, ...]:
    via = parse_via(value)
    branch, rport = via.branch, (via.has_rport, via.param("rport"))
    return via.host, via.port, via.sent_by, via.params, branch, rport, str(via)


def via_fast(value: str) -> Fast[tuple[object, ...]]:
    simple = simple_via(value)
    if simple is None:
        return Fast(False, None)
    view = (
        simple.host, simple.port, simple.sent_by, tuple(simple.params),
        simple.param("branch")[1], simple.param("rport"), str(simple),
    )  # fmt: skip
    return Fast(True, view)


_name_addrs = st.one_of(
    st.builds(
        lambda d, u, p: f"{d}<sip:{u}@example.net>{p}",
        st.sampled_from(["", '"Base 1" ', '""', "Base ", "sipp ", "a b<", "Base"]),
        _token,
        st.sampled_from(["", ";tag=a1", ";tag=x;foo", ";tag=", ",<sip:b>"]),
    ),
    st.builds(
        lambda u, h, p: f"sip:{u}@{h}{p}",
        _token,
        st.sampled_from(["127.0.0.1:5061", "[::1]", "a?b", "a,b", "a b", "a>", ""]),
        st.sampled_from(["", ";expires=60", ";q=0.5;x", ";transport=tcp", ";", ", *"]),
    ),
    st.text(max_size=40),
)


def name_addr_full(value: str) -> bool:
    """Valid as one address, and as a list of exactly one (Contact, Path, Record-Route)."""
    parse_name_addr(value)
    return len(parse_name_addr_list(value, allow_wildcard=True)) == 1


def name_addr_fast(value: str) -> Fast[bool]:
    return Fast(True, True) if simple_name_addr(value) else Fast(False, None)


# --- the relay core ----------------------------------------------------------------------

KEY = bytes(range(32))
LISTENERS = (
    Listener(transport="udp", host="192.168.1.1", port=5060),
    Listener(transport="tcp", host="192.168.1.1", port=5060),
)


def make_core(core: type[ProxyCore] = ProxyCore) -> ProxyCore:
    c = core(ProxySettings(listeners=LISTENERS, key=KEY), rng=random.Random(1).random)
    c.upstream_up("10.0.0.1", 40000, now=0.0)
    return c


class CountingCore(ProxyCore):
    """A core that counts the messages its fast path took."""

    taken = 0

    def _fast_request(self, *args: Any) -> bool:
        took = FastPath._fast_request(self, *args)
        self.taken += took
        return took

    def _fast_response(self, *args: Any) -> bool:
        took = FastPath._fast_response(self, *args)
        self.taken += took
        return took


plain_vias = st.builds(
    lambda host, port, branch, rport: f"SIP/2.0/UDP {host}{port};branch=z9hG4bK{branch}{rport}",
    st.sampled_from(["192.168.1.20", "bs1.example.net"]),
    st.sampled_from(["", ":5060", ":40000"]),
    _token,
    st.sampled_from(["", ";rport", ";rport=5060"]),
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["OPTIONS", "REGISTER", "MESSAGE", "INFO", "INVITE"]))
    via = draw(st.one_of(via_values(), plain_vias, plain_vias, plain_vias))
    lines = [
        f"{method} sip:bob@example.net SIP/2.0",
        f"{draw(st.sampled_from(['Via', 'v']))}: {via}",
        f"Max-Forwards: {draw(st.integers(0, 70))}",
        f"{draw(st.sampled_from(['From', 'f']))}: <sip:bs1@example.net>;tag=a1",
        f"To: {draw(st.sampled_from(['<sip:bob@example.net>', 'Bob <sip:bob@example.net>']))}",
        f"Call-ID: {draw(_token)}",
        f"CSeq: {draw(st.integers(1, 9))} {draw(st.sampled_from([method] * 5 + ['BYE']))}",
    ]
    if draw(st.booleans()):
        lines.append("Via: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKold")
    if method in ("REGISTER", "INVITE"):
        lines.append("Contact: <sip:bs1@192.168.1.20>;expires=60")
    if method == "REGISTER":
        if draw(st.booleans()):
            lines.append(f"Supported: {draw(st.sampled_from(['path', 'outbound, path', 'x']))}")
        if draw(st.booleans()):
            lines.insert(3, "Path: <sip:edge@10.1.1.1;lr>")
    if draw(st.integers(0, 5)) == 0:
        lines.insert(2, "Route: <sip:192.168.1.1;lr>")
    body = draw(st.sampled_from([b"", b"hello"]))
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


_ANSWER = ("via", "from", "to", "call-id", "cseq", "path", "contact")


def answer(data: bytes, status: int, *, join_vias: bool = False) -> bytes:
    """The upstream's answer to a relayed request (what kamailio and the far end write).

    With ``join_vias`` every Via value is on the first Via line, comma-separated (what
    SIPp's ``[last_Via:]`` writes). The fields go in a fixed order, so that requests the
    two paths sent with the same values in another order get the same answer.
    """
    request = parse_datagram(data)
    keep = [(f.name, f.value) for f in request.headers if header_key(f.name) in _ANSWER]
    keep.sort(key=lambda field: _ANSWER.index(header_key(field[0])))
    if join_vias:
        vias = [v for name, v in keep if header_key(name) == "via"]
        first = next(i for i, (name, _) in enumerate(keep) if header_key(name) == "via")
        keep = [(n, v) for n, v in keep if header_key(n) != "via"]
        keep.insert(first, ("Via", ", ".join(vias)))
    return serialise(Response(status=status, reason="X", headers=keep))


class Exchange(NamedTuple):
    request: bytes
    flow: LanFlow
    retransmit: bool
    statuses: tuple[int, ...]  # the upstream's answers, in order
    join_vias: bool
    timers: int  # how many timer deadlines to run afterwards
    #: What the core knows of the registrar's Path support (False: Contacts rewritten).
    path_supported: bool | None = None


exchanges = st.builds(
    Exchange,
    requests(),
    st.one_of(
        st.builds(lambda p: LanFlow("udp", "192.168.1.20", p, 0), st.integers(1, 65535)),
        st.just(LanFlow("tcp", "192.168.1.20", 40123, 1, 7)),
    ),
    st.booleans(),
    st.lists(st.sampled_from([100, 180, 200, 200, 401, 404, 420, 503]), max_size=3).map(tuple),
    st.booleans(),
    st.integers(0, 6),
    st.sampled_from([None, None, True, False]),
)


def shape(data: bytes) -> tuple[object, ...]:
    """What matters in a relayed request: start line, body, each header's values in order
    (the fast path writes Path where the line was; the full path prepends it)."""
    if not data.strip():
        return ("keep-alive", data)
    message = parse_datagram(data)
    by_key: dict[str, list[str]] = {}
    for f in message.headers:
        by_key.setdefault(header_key(f.name), []).append(f.value)
    start = message.method if isinstance(message, Request) else message.status
    return start, message.body, sorted(by_key.items())


def view(outputs: list[Output]) -> list[object]:
    """Outputs compared: requests to upstream by shape, everything else exactly."""
    return [("up", shape(o.data)) if isinstance(o, SendUpstream) else o for o in outputs]


def wire_of(data: bytes) -> Wire:
    framer = StreamFramer(wire=True)
    framer.receive_data(data)
    event = framer.next_event()
    assert isinstance(event, Wire)
    return event


def run_exchange(x: Exchange, *, fast: bool) -> tuple[int, list[object]]:
    """The transcript of an exchange: every step's outputs, then the transactions left."""
    core = make_core(CountingCore)
    assert isinstance(core, CountingCore)
    core.path_supported = x.path_supported
    if x.flow.transport == "tcp":
        core.lan_connection_opened(x.flow)

    def from_lan(data: bytes, now: float) -> list[Output]:
        if not fast:
            message = parsed(data)
            if message is None:  # both drop it, or answer 400 on TCP, as the parser says
                return core.receive_lan_datagram(data, x.flow, now)
            return core.receive_lan(message, x.flow, now)
        if x.flow.transport == "udp":
            return core.receive_lan_datagram(data, x.flow, now)
        return core.receive_lan(wire_of(data), x.flow, now)

    def from_upstream(data: bytes, now: float) -> list[Output]:
        message = wire_of(data) if fast else parse_datagram(data)
        return core.receive_upstream(message, now)

    transcript: list[object] = []
    out = from_lan(x.request, 1.0)
    transcript.append(view(out))
    sent = [o.data for o in out if isinstance(o, SendUpstream)]
    if x.retransmit:
        transcript.append(view(from_lan(x.request, 1.2)))
    now = 1.5
    for status in x.statuses if sent else ():
        transcript.append(view(from_upstream(answer(sent[0], status, join_vias=x.join_vias), now)))
        now += 0.5
    for _ in range(x.timers):
        deadline = core.get_timer()
        if deadline is None:
            break
        now = max(now, deadline)
        transcript.append((now, view(core.handle_timer(now))))
    transcript.append(sorted(core.table.by_key))
    return core.taken, transcript


def relay_full(x: Exchange) -> list[object]:
    taken, transcript = run_exchange(x, fast=False)
    assert taken == 0, "parsed messages never take the fast path"
    return transcript


def relay_fast(x: Exchange) -> Fast[list[object]]:
    taken, transcript = run_exchange(x, fast=True)
    return Fast(taken > 0, transcript)


# --- the harness --------------------------------------------------------------------------

PAIRS: list[Pair[Any, Any]] = [
    Pair(
        "scan_datagram",
        st.one_of(_torture, any_input, requests()),
        lambda data: message_view(parsed(data)),
        scan_fast,
        min_taken=0.05,
        same=scan_same,
    ),
    Pair("wire framer", _cuts, lambda cuts: frame(cuts, wire=False), frame_fast, min_taken=0.0),
    Pair("simple_via", st.one_of(via_values(), st.text(max_size=60)), via_full, via_fast),
    Pair("simple_name_addr", _name_addrs, name_addr_full, name_addr_fast),
    Pair("relay core", exchanges, relay_full, relay_fast, min_taken=0.15),
]


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p.name)
def test_fast_path_is_full_path(pair: Pair[Any, Any]) -> None:
    check_pair(pair)


def test_every_torture_message_the_scan_takes_parses_the_same() -> None:
    """RFC 4475: each message, not a sample of them."""
    for path in FIXTURES:
        data = path.read_bytes()
        fast = scan_fast(data)
        if fast.result is not None:
            scan_same(fast.result, message_view(parsed(data)))


def test_path_of_a_register_from_another_port_names_the_reply_flow() -> None:
    """A REGISTER over UDP whose Via names another port and no rport: the fast path's
    Path carries the flow responses go to, as the full path's does (it carried the
    source port before)."""
    request = (
        b"REGISTER sip:example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20;branch=z9hG4bK7"
        b"\r\nMax-Forwards: 70\r\nFrom: <sip:bs1@example.net>;tag=1\r\n"
        b"To: <sip:bs1@example.net>\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\n"
        b"Contact: <sip:bs1@192.168.1.20>\r\nContent-Length: 0\r\n\r\n"
    )
    x = Exchange(request, LanFlow("udp", "192.168.1.20", 40001, 0), False, (), False, 0)
    taken, fast = run_exchange(x, fast=True)
    assert taken == 1
    assert fast == relay_full(x)


def test_answers_to_register_take_the_fast_path() -> None:
    """The registrar's 200 and 401 to a REGISTER are relayed from their lines, with Path
    (RFC 3327) and with the Contact fallback, and equal the full path's."""
    request = (
        b"REGISTER sip:example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20;branch=z9hG4bK7"
        b"\r\nMax-Forwards: 70\r\nFrom: <sip:bs1@example.net>;tag=1\r\n"
        b"To: <sip:bs1@example.net>\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\n"
        b"Contact: <sip:bs1@192.168.1.20>;expires=60\r\nContent-Length: 0\r\n\r\n"
    )
    flow = LanFlow("udp", "192.168.1.20", 5060, 0)
    for path_supported, taken in ((None, 2), (True, 2), (False, 1)):
        for status in (200, 401):
            x = Exchange(request, flow, False, (status,), False, 0, path_supported)
            fast = run_exchange(x, fast=True)
            assert fast[0] == taken  # with the fallback, the REGISTER goes the full way
            assert fast[1] == relay_full(x)


def test_the_harness_catches_a_difference() -> None:
    """A fast path that differs from its full path on some input fails the harness."""
    wrong = Pair("wrong", st.integers(0, 20), lambda n: n, lambda n: Fast(True, n + (n == 7)))
    with pytest.raises(AssertionError):
        check_pair(wrong)
    lazy = Pair("lazy", st.integers(0, 20), lambda n: n, lambda n: Fast(False, None))
    with pytest.raises(AssertionError, match="took 0 of"):
        check_pair(lazy)
