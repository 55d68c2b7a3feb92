"""Property tests: no input escapes the error hierarchy, valid messages round-trip, framing
does not depend on how the stream is cut."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.sip import (
    CONNECTION_CLOSED,
    NEED_DATA,
    Headers,
    KeepAlivePing,
    KeepAlivePong,
    RemoteProtocolError,
    Request,
    Response,
    StreamFramer,
    header_key,
    parse_datagram,
    serialise,
    validate_request,
    validate_response,
)

FIXTURES = sorted((Path(__file__).parent / "sip_torture").glob("*.dat"))
SEEDS = [p.read_bytes() for p in FIXTURES]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse_everything(message: Request | Response) -> None:
    """Touch every structured accessor and validation: only RemoteProtocolError may escape."""
    for accessor in ("cseq", "vias", "from_", "to", "contacts", "routes", "max_forwards"):
        with contextlib.suppress(RemoteProtocolError):
            getattr(message, accessor)
    try:
        if isinstance(message, Request):
            validate_request(message)
        else:
            validate_response(message)
    except RemoteProtocolError:
        pass
    again = parse_datagram(serialise(message))
    if message.headers.fields:  # a message without headers comes back with Content-Length
        assert again.headers.fields[:1] == message.headers.fields[:1]


def drain(framer: StreamFramer) -> list[object]:
    out: list[object] = []
    for _ in range(10_000):
        event = framer.next_event()
        if event is NEED_DATA or event is CONNECTION_CLOSED:
            return out
        out.append(event)
    raise AssertionError("the framer kept producing events without consuming input")


mutated = st.builds(
    lambda seed, edits: _mutate(seed, edits),
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 4000), st.binary(max_size=4), st.integers(0, 3)), max_size=6),
)


def _mutate(seed: bytes, edits: list[tuple[int, bytes, int]]) -> bytes:
    data = bytearray(seed)
    for pos, insert, delete in edits:
        pos %= len(data) + 1
        data[pos : pos + delete] = insert
    return bytes(data)


any_input = st.one_of(st.binary(max_size=600), mutated)


class TestNoOtherException:
    @SETTINGS
    @given(any_input)
    def test_parse_datagram(self, data: bytes) -> None:
        """Any bytes: a message or RemoteProtocolError, never another exception."""
        try:
            message = parse_datagram(data)
        except RemoteProtocolError:
            return
        parse_everything(message)

    @SETTINGS
    @given(any_input, st.lists(st.integers(1, 64), max_size=40))
    def test_stream_framer(self, data: bytes, cuts: list[int]) -> None:
        """Any bytes in any chunking: events or RemoteProtocolError, and no hang."""
        framer = StreamFramer(max_header_size=2048, max_body_size=2048)
        pos = 0
        try:
            for size in [*cuts, len(data)]:
                framer.receive_data(data[pos : pos + size])
                pos += size
                for event in drain(framer):
                    if isinstance(event, Request | Response):
                        parse_everything(event)
                if pos >= len(data):
                    break
            framer.receive_data(b"")
            drain(framer)
        except RemoteProtocolError:
            pass


# --- generated valid messages -----------------------------------------------------

TCHAR = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
tokens = st.text(alphabet=TCHAR, min_size=1, max_size=12)
header_names = st.one_of(
    st.sampled_from(
        [
            "Via",
            "v",
            "From",
            "f",
            "To",
            "t",
            "Call-ID",
            "i",
            "CSeq",
            "Contact",
            "m",
            "Subject",
            "s",
            "k",
            "Supported",
            "c",
            "Content-Type",
            "o",
            "Event",
            "x",
            "y",
            "Max-Forwards",
            "Record-Route",
            "Route",
            "Path",
            "User-Agent",
        ]
    ).map(lambda n: "".join(c.upper() if i % 2 else c for i, c in enumerate(n))),
    tokens,
).filter(lambda n: header_key(n) != "content-length")
value_chars = st.characters(codec="utf-8", exclude_characters="\r\n")
header_values = st.text(value_chars, max_size=40).map(lambda v: v.strip(" \t"))
uris = st.builds(
    lambda scheme, user, host: f"{scheme}:{user}@{host}",
    st.sampled_from(["sip", "sips", "tel", "urn"]),
    tokens,
    st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True),
)
headers_st = st.lists(st.tuples(header_names, header_values), max_size=12).map(Headers.from_pairs)
requests = st.builds(
    lambda method, uri, headers, body: Request(method=method, uri=uri, headers=headers, body=body),
    tokens,
    uris,
    headers_st,
    st.binary(max_size=300),
)
reason_chars = st.characters(codec="utf-8").filter(str.isprintable)
responses = st.builds(
    lambda status, reason, headers, body: Response(
        status=status, reason=reason, headers=headers, body=body
    ),
    st.integers(100, 699),
    st.text(reason_chars, max_size=30),
    headers_st,
    st.binary(max_size=300),
)
messages = st.one_of(requests, responses)


class TestRoundTrip:
    @SETTINGS
    @given(messages)
    def test_serialise_parse(self, message: Request | Response) -> None:
        """parse(serialise(m)) is m plus the Content-Length it gained, and a fixed point."""
        first = parse_datagram(serialise(message))
        assert first.headers.fields[:-1] == message.headers.fields
        assert first.headers.fields[-1] == ("Content-Length", str(len(message.body)))
        assert first.body == message.body
        assert first.replace_headers(message.headers) == message
        assert parse_datagram(serialise(first)) == first
        assert serialise(first) == serialise(message)

    @SETTINGS
    @given(st.sampled_from(SEEDS))
    def test_torture_fixtures_round_trip(self, data: bytes) -> None:
        """Every fixture that parses is a fixed point of parse(serialise(...))."""
        try:
            message = parse_datagram(data)
        except RemoteProtocolError:
            return
        if message.content_length is not None:
            assert parse_datagram(serialise(message)) == message


class TestStreamSplitting:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.lists(messages, min_size=1, max_size=3), st.lists(st.sampled_from([0, 1, 2]), max_size=3)
    )
    def test_every_boundary(self, batch: list[Request | Response], keepalives: list[int]) -> None:
        """The same events whatever two chunks the stream is cut into."""
        stream = b""
        expected: list[object] = []
        for i, message in enumerate(batch):
            if i < len(keepalives) and keepalives[i]:
                stream += b"\r\n" * keepalives[i]
                expected.append(KeepAlivePing() if keepalives[i] == 2 else KeepAlivePong())
            stream += serialise(message)
            expected.append(parse_datagram(serialise(message)))
        whole = StreamFramer()
        whole.receive_data(stream)
        assert drain(whole) == expected
        for cut in range(1, len(stream)):
            framer = StreamFramer()
            framer.receive_data(stream[:cut])
            got = drain(framer)
            framer.receive_data(stream[cut:])
            got += drain(framer)
            framer.receive_data(b"")
            assert framer.next_event() is CONNECTION_CLOSED
            got_messages = [e for e in got if isinstance(e, Request | Response)]
            assert got_messages == [e for e in expected if isinstance(e, Request | Response)]
            if not (
                stream[cut - 1 : cut + 1] == b"\n\r" and stream[cut - 2 : cut + 2] == b"\r\n\r\n"
            ):
                assert got == expected
