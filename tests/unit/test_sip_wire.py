"""The scanned form (gateway.sip.wire) agrees with the full parser on every message both take,
and the relay's spliced fast path sends what its full path sends."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.relay.flows import LanFlow
from gateway.relay.outputs import SendLan, SendUpstream
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
from gateway.sip.wire import Wire, _split_head, scan_datagram, simple_name_addr, simple_via
from tests.unit.test_sip_fuzz import any_input

FIXTURES = sorted((Path(__file__).parent / "sip_torture").glob("*.dat"))
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def full(data: bytes) -> Request | Response | None:
    try:
        return parse_datagram(data)
    except RemoteProtocolError:
        return None


def assert_agrees(wire: Wire, data: bytes) -> None:
    message = full(data)
    assert message is not None, "the scan took a message the parser refuses"
    assert wire.to_message() == message
    fields = [(f.name, f.value) for f in message.headers]
    assert [
        (line.partition(": ")[0], v) for line, v in zip(wire.lines, wire.values, strict=True)
    ] == fields
    assert wire.keys == [header_key(name) for name, _ in fields]
    assert wire.body == message.body
    if isinstance(message, Request):
        assert (wire.method, wire.uri, wire.status) == (message.method, message.uri, 0)
    else:
        assert wire.status == message.status
    assert parse_datagram(wire.render(wire.lines)) == message


class TestScanAgreesWithParser:
    @pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
    def test_torture_messages(self, path: Path) -> None:
        """Every RFC 4475 message the scan takes parses to the same values."""
        data = path.read_bytes()
        wire = scan_datagram(data)
        if wire is not None:
            assert_agrees(wire, data)

    @SETTINGS
    @given(any_input)
    def test_any_input(self, data: bytes) -> None:
        """Any bytes: the scan takes nothing the parser refuses, and agrees on the rest."""
        wire = scan_datagram(data)
        if wire is not None:
            assert_agrees(wire, data)

    @SETTINGS
    @given(st.lists(st.binary(min_size=1, max_size=40), max_size=6))
    def test_stream_cut_anywhere(self, cuts: list[bytes]) -> None:
        """The framer in wire mode yields what the plain framer yields, however cut."""
        data = FIXTURES[0].read_bytes() if not cuts else b"".join(cuts)
        plain, fast = StreamFramer(), StreamFramer(wire=True)
        for framer in (plain, fast):
            framer.receive_data(data)
        for _ in range(50):
            try:
                a = plain.next_event()
            except RemoteProtocolError:
                with pytest.raises(RemoteProtocolError):
                    fast.next_event()
                return
            b = fast.next_event()
            assert (b.to_message() if isinstance(b, Wire) else b) == a
            if not isinstance(a, Request | Response):
                return


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


class TestRecognisers:
    @SETTINGS
    @given(st.one_of(via_values(), st.text(max_size=60)))
    def test_simple_via_is_parse_via(self, value: str) -> None:
        """A Via the plain recogniser takes is valid and reads the same."""
        simple = simple_via(value)
        if simple is None:
            return
        via = parse_via(value)
        assert (simple.host, simple.port, simple.sent_by) == (via.host, via.port, via.sent_by)
        assert tuple(simple.params) == via.params
        assert simple.param("branch")[1] == via.branch
        assert simple.param("rport") == (via.has_rport, via.param("rport"))
        assert str(simple) == str(via)

    @SETTINGS
    @given(
        st.one_of(
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
    )
    def test_simple_name_addr_is_valid(self, value: str) -> None:
        """An address the plain recogniser takes, the full parser takes too, as one
        address of a list (how the relay uses it for Contact, Path, Record-Route)."""
        if simple_name_addr(value):
            parse_name_addr(value)
            assert len(parse_name_addr_list(value, allow_wildcard=True)) == 1


# The canonical head as a regular expression: what _split_head checks with string methods.
_TCHAR = r"A-Za-z0-9\-.!%*_+`'~"
_LINE = f"[{_TCHAR}]+: (?:[^\\r\\n \\t](?:[^\\r\\n]*[^\\r\\n \\t])?)?"
CANONICAL_HEAD = re.compile(f"[^\\r\\n]+(?:\\r\\n{_LINE})*")
_PIECES = st.sampled_from(
    ["\r\n", "\r", "\n", ": ", ":", " ", "\t", "Via", "v", "X-a", "x y", "é", "\x00", "a,b", ""]
)


class TestSplitHead:
    @SETTINGS
    @given(st.one_of(st.lists(_PIECES, max_size=14).map("".join), st.text(max_size=40)))
    def test_canonical_exactly_when_the_expression_matches(self, text: str) -> None:
        """The string-method check takes a head exactly when the regular expression does."""
        split = _split_head(text)
        assert (split is not None) == (CANONICAL_HEAD.fullmatch(text) is not None)
        if split is not None:
            start, lines, keys, values = split
            assert "\r\n".join([start, *lines]) == text
            assert keys == [header_key(line.partition(": ")[0]) for line in lines]
            assert values == [line.partition(": ")[2] for line in lines]


# --- the relay: fast path and full path send the same ---------------------------------

KEY = bytes(range(32))
BS = LanFlow("udp", "192.168.1.20", 5060, 0)


def make_core() -> ProxyCore:
    listeners = (Listener(transport="udp", host="192.168.1.1", port=5060),)
    c = ProxyCore(ProxySettings(listeners=listeners, key=KEY), rng=random.Random(1).random)
    c.upstream_up("10.0.0.1", 40000, now=0.0)
    return c


def shape(data: bytes) -> tuple[object, ...]:
    """What matters in a relayed message: start line, body, each header's values in order."""
    message = parse_datagram(data)
    by_key: dict[str, list[str]] = {}
    for f in message.headers:
        by_key.setdefault(header_key(f.name), []).append(f.value)
    start = message.method if isinstance(message, Request) else message.status
    return start, message.body, sorted(by_key.items())


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["OPTIONS", "REGISTER", "MESSAGE", "INFO"]))
    via = draw(via_values())
    lines = [
        f"{method} sip:bob@example.net SIP/2.0",
        f"{draw(st.sampled_from(['Via', 'v']))}: {via}",
        f"Max-Forwards: {draw(st.integers(0, 70))}",
        f"{draw(st.sampled_from(['From', 'f']))}: <sip:bs1@example.net>;tag=a1",
        f"To: {draw(st.sampled_from(['<sip:bob@example.net>', 'Bob <sip:bob@example.net>']))}",
        f"Call-ID: {draw(_token)}",
        f"CSeq: {draw(st.integers(1, 9))} {draw(st.sampled_from([method, method, 'BYE']))}",
    ]
    if draw(st.booleans()):
        lines.append("Via: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKold")
    if method == "REGISTER":
        lines.append("Contact: <sip:bs1@192.168.1.20>;expires=60")
        if draw(st.booleans()):
            lines.append(f"Supported: {draw(st.sampled_from(['path', 'outbound, path', 'x']))}")
        if draw(st.booleans()):
            lines.insert(3, "Path: <sip:edge@10.1.1.1;lr>")
    body = draw(st.sampled_from([b"", b"hello"]))
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def answer(data: bytes, status: int, *, join_vias: bool = False) -> bytes:
    """The upstream's answer to a relayed request (what kamailio and the far end write).

    With ``join_vias`` every Via value is on the first Via line, comma-separated (what
    SIPp's ``[last_Via:]`` writes).
    """
    request = parse_datagram(data)
    keep = [(f.name, f.value) for f in request.headers if header_key(f.name) in _ANSWER]
    if join_vias:
        vias = [v for name, v in keep if header_key(name) == "via"]
        first = next(i for i, (name, _) in enumerate(keep) if header_key(name) == "via")
        keep = [(n, v) for n, v in keep if header_key(n) != "via"]
        keep.insert(first, ("Via", ", ".join(vias)))
    return serialise(Response(status=status, reason="X", headers=keep))


_ANSWER = frozenset({"via", "from", "to", "call-id", "cseq", "path"})


class TestFastPathIsFullPath:
    @SETTINGS
    @given(requests(), st.sampled_from([100, 200, 404]), st.integers(1, 65535), st.booleans())
    def test_request_and_response(
        self, data: bytes, status: int, port: int, join_vias: bool
    ) -> None:
        """A request and its answer, fast (scanned) and full (parsed): same bytes out."""
        flow = LanFlow("udp", "192.168.1.20", port, 0)
        fast, slow = make_core(), make_core()
        try:
            parsed = parse_datagram(data)
        except RemoteProtocolError:
            return
        out_fast = fast.receive_lan_datagram(data, flow, 1.0)
        out_slow = slow.receive_lan(parsed, flow, 1.0)
        assert [type(o) for o in out_fast] == [type(o) for o in out_slow]
        for a, b in zip(out_fast, out_slow, strict=True):
            if isinstance(a, SendUpstream | SendLan):
                assert isinstance(b, SendUpstream | SendLan)
                assert shape(a.data) == shape(b.data)
        sent = [o.data for o in out_fast if isinstance(o, SendUpstream)]
        if not sent:
            return
        reply = answer(sent[0], status, join_vias=join_vias)
        framer = StreamFramer(wire=True)
        framer.receive_data(reply)
        event = framer.next_event()
        assert isinstance(event, Wire)
        back_fast = fast.receive_upstream(event, 1.1)
        back_slow = slow.receive_upstream(parse_datagram(reply), 1.1)
        assert [type(o) for o in back_fast] == [type(o) for o in back_slow]
        for a, b in zip(back_fast, back_slow, strict=True):
            if isinstance(a, SendLan):
                assert isinstance(b, SendLan)
                assert a.flow == b.flow
                assert a.data == b.data
            else:
                assert a == b

    def test_plain_request_takes_the_fast_path(self) -> None:
        """A plain OPTIONS is relayed without building the full request."""
        core = make_core()
        data = (
            b"OPTIONS sip:bob@example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20;branch=z9hG4bK1"
            b"\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.net>;tag=1\r\nTo: <sip:bob@example.net>"
            b"\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        out = core.receive_lan_datagram(data, BS, 1.0)
        assert [type(o) for o in out] == [SendUpstream]
        stx = core.table.get("s|z9hG4bK1|192.168.1.20|OPTIONS")
        assert stx is not None and stx._build is not None  # type: ignore[attr-defined]

    def test_answer_with_joined_vias_takes_the_fast_path(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A 200 whose Via line holds ours and the base station's is relayed from its lines."""
        core = make_core()
        data = (
            b"OPTIONS sip:bob@example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20;branch=z9hG4bK1"
            b"\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.net>;tag=1\r\nTo: <sip:bob@example.net>"
            b"\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        (sent,) = core.receive_lan_datagram(data, BS, 1.0)
        assert isinstance(sent, SendUpstream)
        reply = answer(sent.data, 200, join_vias=True)
        assert reply.count(b"Via:") == 1
        event = scan_datagram(reply)
        assert event is not None

        def refuse(self: Wire) -> Request | Response:
            raise AssertionError("the full parser was used")

        monkeypatch.setattr(Wire, "to_message", refuse)
        out = core.receive_upstream(event, 1.1)
        assert isinstance(out[0], SendLan)
        assert b"Via: SIP/2.0/UDP 192.168.1.20;branch=z9hG4bK1\r\n" in out[0].data

    def test_answer_with_a_bad_via_after_ours_is_relayed_as_the_full_path_does(self) -> None:
        """The values after ours on the joined line are passed on as they came, whatever."""
        core, slow = make_core(), make_core()
        data = (
            b"OPTIONS sip:bob@example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20;branch=z9hG4bK1"
            b"\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.net>;tag=1\r\nTo: <sip:bob@example.net>"
            b"\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        (sent,) = core.receive_lan_datagram(data, BS, 1.0)
        slow.receive_lan(parse_datagram(data), BS, 1.0)
        assert isinstance(sent, SendUpstream)
        ours = parse_datagram(sent.data).headers.get_all("Via")[0]
        reply = (
            f"SIP/2.0 200 OK\r\nVia: {ours},, junk\t,\r\nFrom: <sip:a@example.net>;tag=1"
            "\r\nTo: <sip:bob@example.net>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS"
            "\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        event = scan_datagram(reply)
        assert event is not None
        fast_out = core.receive_upstream(event, 1.1)
        slow_out = slow.receive_upstream(parse_datagram(reply), 1.1)
        assert fast_out == slow_out
