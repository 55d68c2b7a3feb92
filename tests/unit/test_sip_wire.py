"""The scanned form (gateway.sip.wire): its canonical head, and the relay's fast path being
taken for plain messages. That each fast path equals its full path is held by one harness,
tests/unit/test_fast_paths.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.relay.flows import LanFlow
from gateway.relay.outputs import SendLan, SendUpstream
from gateway.sip import (
    RemoteProtocolError,
    Request,
    Response,
    header_key,
    parse_datagram,
)
from gateway.sip.wire import Wire, _split_head, scan_datagram
from tests.unit.test_fast_paths import answer, make_core

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


# --- the relay: the fast path is taken (its equality with the full path is held by
# tests/unit/test_fast_paths.py) -----------------------------------------------------------

BS = LanFlow("udp", "192.168.1.20", 5060, 0)


class TestFastPathIsTaken:
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
