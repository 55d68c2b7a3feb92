"""Stream framing: messages, keep-alives, limits, end of stream."""

from __future__ import annotations

import pytest

from gateway.sip import (
    CONNECTION_CLOSED,
    NEED_DATA,
    KeepAlivePing,
    KeepAlivePong,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    Response,
    StreamFramer,
    parse_datagram,
)

OPTIONS = b"OPTIONS sip:h SIP/2.0\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
MESSAGE = b"MESSAGE sip:h SIP/2.0\r\nl: 5\r\n\r\nhello"
OK = b"SIP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok"


def events(framer: StreamFramer) -> list[object]:
    out: list[object] = []
    while (event := framer.next_event()) is not NEED_DATA:
        out.append(event)
        if event is CONNECTION_CLOSED:
            break
    return out


class TestMessages:
    def test_several_in_one_chunk(self) -> None:
        """Back-to-back messages come out in order with their bodies."""
        framer = StreamFramer()
        framer.receive_data(OPTIONS + MESSAGE + OK)
        got = events(framer)
        assert [type(e) for e in got] == [Request, Request, Response]
        assert isinstance(got[1], Request) and got[1].body == b"hello"
        assert isinstance(got[2], Response) and got[2].body == b"ok"
        assert framer.buffered == 0

    def test_byte_by_byte(self) -> None:
        """Feeding one octet at a time gives the same messages."""
        framer = StreamFramer()
        got: list[object] = []
        for i in range(len(MESSAGE + OK)):
            framer.receive_data((MESSAGE + OK)[i : i + 1])
            got.extend(events(framer))
        assert got == [parse_datagram(MESSAGE), parse_datagram(OK)]

    def test_content_length_mandatory(self) -> None:
        """RFC 3261 §18.3: a stream message without Content-Length is refused."""
        framer = StreamFramer()
        framer.receive_data(b"OPTIONS sip:h SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n")
        with pytest.raises(RemoteProtocolError, match="must carry Content-Length") as info:
            framer.next_event()
        assert info.value.status_hint == 400
        head = info.value.head  # read, so that the request can still be answered
        assert isinstance(head, Request) and head.method == "OPTIONS" and head.cseq is not None

    @pytest.mark.parametrize("wire", [False, True])
    def test_unframeable_heads_are_full_messages(self, wire: bool) -> None:
        """Scanned or parsed, the head an error carries is the full parser's message."""
        framer = StreamFramer(max_body_size=10, wire=wire)
        framer.receive_data(b"MESSAGE sip:h SIP/2.0\r\nCall-ID: c1\r\nContent-Length: 11\r\n\r\n")
        with pytest.raises(RemoteProtocolError) as info:
            framer.next_event()
        head = info.value.head
        assert type(head) is Request  # not the fast path's Wire: answers are built from it
        assert (head.method, head.call_id, head.headers.get("Content-Length")) == (
            "MESSAGE",
            "c1",
            "11",
        )

    def test_error_is_sticky(self) -> None:
        """After an error the stream cannot be trusted: every call raises."""
        framer = StreamFramer()
        framer.receive_data(b"garbage\r\n\r\n" + OPTIONS)
        with pytest.raises(RemoteProtocolError):
            framer.next_event()
        with pytest.raises(RemoteProtocolError, match="earlier error"):
            framer.next_event()


class TestKeepAlive:
    def test_ping_and_pong(self) -> None:
        """RFC 5626 §4.4.1: CRLF CRLF is a ping, a single CRLF a pong."""
        framer = StreamFramer()
        framer.receive_data(b"\r\n\r\n" + OPTIONS + b"\r\n" + OK)
        got = events(framer)
        assert got[0] == KeepAlivePing() and isinstance(got[1], Request)
        assert got[2] == KeepAlivePong() and isinstance(got[3], Response)

    def test_lone_pong_reported_at_once(self) -> None:
        """A single CRLF on its own is a pong right away, not held back."""
        framer = StreamFramer()
        framer.receive_data(b"\r\n")
        assert framer.next_event() == KeepAlivePong()
        assert framer.next_event() is NEED_DATA

    def test_partial_ping_waits(self) -> None:
        """Three octets of a possible ping wait for the fourth."""
        framer = StreamFramer()
        framer.receive_data(b"\r\n\r")
        assert framer.next_event() is NEED_DATA
        framer.receive_data(b"\n")
        assert framer.next_event() == KeepAlivePing()
        framer.receive_data(b"\r")
        assert framer.next_event() is NEED_DATA


class TestLimits:
    def test_header_block_cap(self) -> None:
        """A header block that never ends is refused once past the cap (513)."""
        framer = StreamFramer(max_header_size=1024)
        framer.receive_data(b"OPTIONS sip:h SIP/2.0\r\n")
        assert framer.next_event() is NEED_DATA
        framer.receive_data(b"X-Filler: " + b"a" * 2000)
        with pytest.raises(RemoteProtocolError, match="within 1024 octets") as info:
            framer.next_event()
        assert info.value.status_hint == 513

    def test_header_block_cap_when_complete(self) -> None:
        """A complete but oversized header block is refused too."""
        framer = StreamFramer(max_header_size=64)
        framer.receive_data(b"OPTIONS sip:h SIP/2.0\r\nX: " + b"a" * 100 + b"\r\nl: 0\r\n\r\n")
        with pytest.raises(RemoteProtocolError, match="above the limit") as info:
            framer.next_event()
        assert info.value.status_hint == 513
        assert info.value.head is None  # nothing was read that could be answered

    def test_body_cap(self) -> None:
        """A Content-Length above the body cap is refused before buffering it (413)."""
        framer = StreamFramer(max_body_size=10)
        framer.receive_data(b"MESSAGE sip:h SIP/2.0\r\nl: 11\r\n\r\n")
        with pytest.raises(RemoteProtocolError, match="above the body limit") as info:
            framer.next_event()
        assert info.value.status_hint == 413

    def test_bad_limits(self) -> None:
        """Limits that make no sense are the caller's mistake."""
        with pytest.raises(LocalProtocolError):
            StreamFramer(max_header_size=0)


class TestEndOfStream:
    def test_clean_close(self) -> None:
        """After the last message, b'' yields CONNECTION_CLOSED, repeatedly."""
        framer = StreamFramer()
        framer.receive_data(OK)
        framer.receive_data(b"")
        assert isinstance(framer.next_event(), Response)
        assert framer.next_event() is CONNECTION_CLOSED
        assert framer.next_event() is CONNECTION_CLOSED
        framer.receive_data(b"")  # repeating the end is harmless

    def test_close_mid_message(self) -> None:
        """A stream ending inside a message is a RemoteProtocolError."""
        framer = StreamFramer()
        framer.receive_data(MESSAGE[:-1])
        assert framer.next_event() is NEED_DATA
        framer.receive_data(b"")
        with pytest.raises(RemoteProtocolError, match="ended inside a message"):
            framer.next_event()

    def test_data_after_close(self) -> None:
        """Feeding data after the end is the caller's mistake."""
        framer = StreamFramer()
        framer.receive_data(b"")
        with pytest.raises(LocalProtocolError):
            framer.receive_data(b"x")
