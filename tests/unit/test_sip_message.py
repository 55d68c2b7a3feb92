"""Message values, header editing, datagram parsing and serialising."""

from __future__ import annotations

import pytest

from gateway.sip import (
    Headers,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    Response,
    canonical_name,
    header_key,
    parse_datagram,
    serialise,
    validate_request,
)

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa1;rport\r\n"
    b"v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa0, SIP/2.0/TCP h0;branch=z9hG4bKz\r\n"
    b"Max-Forwards: 70\r\n"
    b"f: Alice <sip:alice@example.com>;tag=1\r\n"
    b"t: <sip:bob@example.com>\r\n"
    b"i: abc@192.0.2.10\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"m: <sip:alice@192.0.2.10>\r\n"
    b"c: application/sdp\r\n"
    b"l: 5\r\n"
    b"\r\n"
    b"v=0\r\n"
)


def invite() -> Request:
    msg = parse_datagram(INVITE)
    assert isinstance(msg, Request)
    return msg


class TestHeaderNames:
    @pytest.mark.parametrize(
        ("short", "long"),
        [
            ("i", "Call-ID"),
            ("m", "Contact"),
            ("f", "From"),
            ("t", "To"),
            ("v", "Via"),
            ("l", "Content-Length"),
            ("c", "Content-Type"),
            ("k", "Supported"),
            ("s", "Subject"),
            ("e", "Content-Encoding"),
            ("o", "Event"),
            ("r", "Refer-To"),
            ("b", "Referred-By"),
            ("u", "Allow-Events"),
            ("x", "Session-Expires"),
            ("y", "Identity"),
            ("a", "Accept-Contact"),
            ("d", "Request-Disposition"),
            ("j", "Reject-Contact"),
            ("n", "Identity-Info"),
        ],
    )
    def test_compact_forms(self, short: str, long: str) -> None:
        """Each compact form, in either case, finds the long name and back."""
        assert header_key(short) == header_key(short.upper()) == header_key(long.upper())
        assert canonical_name(short) == long
        headers = Headers.from_pairs(((short.upper(), "x"),))
        assert headers.get(long) == "x" and long in headers

    def test_unknown_names_as_given(self) -> None:
        """Unknown names keep their spelling and look up case-insensitively."""
        assert canonical_name("X-Thing") == "X-Thing"
        assert Headers.from_pairs((("X-Thing", "1"),)).get("x-THING") == "1"


class TestHeaders:
    def test_lookups(self) -> None:
        """get, get_all, get_list and count across spellings, in order."""
        h = invite().headers
        assert h.count("Via") == 2
        assert h.get_all("VIA")[1].startswith("SIP/2.0/UDP 192.0.2.1")
        assert len(h.get_list("via")) == 3
        assert h.get("Record-Route") is None and h.get("Route", "none") == "none"
        assert "call-id" in h and "Route" not in h and 3 not in h
        assert len(h) == 10 and next(iter(h)).name == "Via"

    def test_constructor_checks(self) -> None:
        """Names must be tokens and values single lines; values are trimmed."""
        assert Headers.from_pairs((("To", "  <sip:a@b>\t"),)).get("To") == "<sip:a@b>"
        with pytest.raises(LocalProtocolError, match="not a token"):
            Headers.from_pairs((("Bad Name", "x"),))
        with pytest.raises(LocalProtocolError, match="line break"):
            Headers.from_pairs((("X", "a\r\nInjected: 1"),))
        with pytest.raises(LocalProtocolError, match="must be a str"):
            Headers.from_pairs((("X", 5),))  # type: ignore[arg-type]

    def test_prepend_goes_on_top_of_its_name(self) -> None:
        """A proxy's Via goes before the first Via, wherever that is."""
        h = Headers.from_pairs((("To", "a"), ("Via", "SIP/2.0/UDP x"))).prepend(
            "Via", "SIP/2.0/TLS me"
        )
        assert [f.value for f in h] == ["a", "SIP/2.0/TLS me", "SIP/2.0/UDP x"]
        h2 = h.prepend("Record-Route", "<sip:me;lr>")
        assert h2.fields[-1].name == "Record-Route"

    def test_set_keeps_place_and_spelling(self) -> None:
        """set() rewrites the first field in place and drops the others."""
        h = Headers.from_pairs((("max-forwards", "70"), ("To", "a"), ("Max-Forwards", "9")))
        h2 = h.set("Max-Forwards", "69")
        assert [tuple(f) for f in h2] == [("max-forwards", "69"), ("To", "a")]
        assert h.get("Max-Forwards") == "70"  # the original is untouched
        assert h.set("Route", "<sip:r>").fields[-1] == ("Route", "<sip:r>")

    def test_remove_and_append(self) -> None:
        """remove() drops every spelling; append() adds at the end."""
        h = invite().headers.remove("Via")
        assert "v" not in h and h.count("Via") == 0
        assert h.append("Path", "<sip:p>").fields[-1] == ("Path", "<sip:p>")

    def test_pop_first_value(self) -> None:
        """Popping takes the top value; a line with several values keeps the rest."""
        h = Headers.from_pairs((("v", "SIP/2.0/UDP a, SIP/2.0/UDP b"), ("Via", "SIP/2.0/UDP c")))
        top, h1 = h.pop_first_value("Via")
        assert top == "SIP/2.0/UDP a" and h1.fields[0] == ("v", "SIP/2.0/UDP b")
        second, h2 = h1.pop_first_value("Via")
        assert second == "SIP/2.0/UDP b" and h2.get_all("Via") == ("SIP/2.0/UDP c",)
        assert h2.pop_first_value("Route") == (None, h2)

    def test_equality_and_hash(self) -> None:
        """Headers are values: equal by content, hashable."""
        a = Headers.from_pairs((("To", "x"),))
        assert a == Headers.from_pairs((("To", "x"),)) and hash(a) == hash(
            Headers.from_pairs((("To", "x"),))
        )
        assert a != Headers.from_pairs((("t", "x"),))  # spelling is part of the value


class TestMessages:
    def test_accessors(self) -> None:
        """Structured accessors parse on demand."""
        msg = invite()
        assert msg.call_id == "abc@192.0.2.10"
        assert msg.cseq is not None and msg.cseq.number == 1
        assert [v.branch for v in msg.vias] == ["z9hG4bKa1", "z9hG4bKa0", "z9hG4bKz"]
        assert msg.top_via is not None and msg.top_via.port == 5060
        assert msg.from_ is not None and msg.from_.display_name == "Alice"
        assert msg.to is not None and msg.to.tag is None
        assert msg.contacts[0].uri == "sip:alice@192.0.2.10"
        assert msg.max_forwards == 70 and msg.content_length == 5
        assert msg.routes == () and msg.record_routes == ()

    def test_absent_accessors(self) -> None:
        """Accessors give None or () when the header is absent."""
        msg = Request(method="OPTIONS", uri="sip:h")
        assert msg.cseq is None and msg.top_via is None and msg.from_ is None
        assert msg.to is None and msg.max_forwards is None and msg.content_length is None

    def test_proxy_edits_without_reparsing(self) -> None:
        """The relay's edits: Via on top, Record-Route, Max-Forwards down, Via popped."""
        msg = invite()
        relayed = (
            msg.prepend_header("Via", "SIP/2.0/TLS gw.example.net;branch=z9hG4bKgw")
            .prepend_header("Record-Route", "<sip:gw.example.net;lr>")
            .set_header("Max-Forwards", str((msg.max_forwards or 0) - 1))
        )
        assert relayed.top_via is not None and relayed.top_via.host == "gw.example.net"
        assert relayed.max_forwards == 69 and len(relayed.vias) == 4
        assert relayed.record_routes[0].uri == "sip:gw.example.net;lr"
        ours, back = relayed.pop_header_value("Via")
        assert ours == "SIP/2.0/TLS gw.example.net;branch=z9hG4bKgw"
        assert back.vias == msg.vias
        assert back.remove_header("Record-Route").set_header("Max-Forwards", "70") == msg
        assert msg.max_forwards == 70  # untouched

    def test_with_body(self) -> None:
        """A new body gets a new Content-Length when serialised."""
        msg = invite().with_body(b"hello", content_type="text/plain")
        wire = serialise(msg)
        assert b"\r\nl: 5\r\n" in wire and wire.endswith(b"\r\n\r\nhello")
        assert msg.headers.get("Content-Type") == "text/plain"

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"method": "IN VITE", "uri": "sip:a"},
            {"method": "INVITE", "uri": "sip:a b"},
            {"method": "INVITE", "uri": ""},
            {"method": "INVITE", "uri": "sip:a", "version": "HTTP/1.1"},
            {"method": "INVITE", "uri": "sip:a", "body": "text"},
        ],
    )
    def test_request_misuse(self, kwargs: dict[str, object]) -> None:
        """Building a request that cannot go on the wire is a LocalProtocolError."""
        with pytest.raises(LocalProtocolError):
            Request(**kwargs)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "kwargs", [{"status": 99}, {"status": 700}, {"status": 200, "reason": "a\r\nb"}]
    )
    def test_response_misuse(self, kwargs: dict[str, object]) -> None:
        """Status outside 100-699 or a multi-line reason is a LocalProtocolError."""
        with pytest.raises(LocalProtocolError):
            Response(**kwargs)  # type: ignore[arg-type]

    def test_headers_from_pairs(self) -> None:
        """Plain (name, value) pairs are accepted and checked."""
        r = Response(status=180, reason="Ringing", headers=(("To", "<sip:a@b>"),))  # type: ignore[arg-type]
        assert isinstance(r.headers, Headers) and r.to is not None


class TestParseDatagram:
    def test_basic(self) -> None:
        """A request with compact headers and a body."""
        msg = invite()
        assert (
            msg.method == "INVITE" and msg.uri == "sip:bob@example.com" and msg.body == b"v=0\r\n"
        )

    def test_colon_without_space_and_compact(self) -> None:
        """'Via:SIP/2.0/UDP' and 'v:' parse: no reliance on ': '."""
        data = b"OPTIONS sip:h SIP/2.0\r\nVia:SIP/2.0/UDP h;branch=z9hG4bK1\r\nl:0\r\n\r\n"
        msg = parse_datagram(data)
        assert msg.top_via is not None and msg.top_via.host == "h" and msg.content_length == 0

    def test_folding_unfolded(self) -> None:
        """A continuation line joins its header with one space."""
        data = b"OPTIONS sip:h SIP/2.0\r\nSubject: a\r\n\t b\r\n   c\r\nl: 0\r\n\r\n"
        assert parse_datagram(data).headers.get("s") == "a b c"

    def test_excess_discarded_and_leading_crlf_skipped(self) -> None:
        """RFC 3261 §18.3 and §7.5."""
        msg = parse_datagram(b"\r\n\r\nSIP/2.0 200 OK\r\nl: 2\r\n\r\nokEXTRA")
        assert isinstance(msg, Response) and msg.body == b"ok" and msg.reason == "OK"

    def test_no_content_length_takes_rest(self) -> None:
        """Without Content-Length the datagram's rest is the body."""
        assert parse_datagram(b"MESSAGE sip:h SIP/2.0\r\nTo: <sip:a@b>\r\n\r\nhi").body == b"hi"

    def test_status_line_without_reason(self) -> None:
        """'SIP/2.0 100' with no space after the code is accepted with an empty reason."""
        msg = parse_datagram(b"SIP/2.0 100\r\n\r\n")
        assert isinstance(msg, Response) and msg.reason == ""

    @pytest.mark.parametrize(
        ("data", "why", "status"),
        [
            (b"", "no SIP message", 400),
            (b"\r\n\r\n", "no SIP message", 400),
            (b"OPTIONS sip:h SIP/2.0\r\nl: 0\r\n", "no empty line", 400),
            (b"OPTIONS sip:h SIP/2.0\r\nTo: \xff\r\n\r\n", "not valid UTF-8", 400),
            (b"OPTIONS sip:h SIP/2.0\nl: 0\r\n\r\n", "bare CR or LF", 400),
            (b"OPTIONS sip:h SIP/2.0\r\n folded\r\n\r\n", "starts with whitespace", 400),
            (b"OPTIONS sip:h SIP/2.0\r\nNoColon\r\n\r\n", "'Name: value'", 400),
            (b"OPTIONS sip:h SIP/2.0\r\nBad Name: x\r\n\r\n", "'Name: value'", 400),
            (b"OPTIONS sip:h SIP/3.0\r\n\r\n", "not supported", 505),
            (b"OPTIONS sip:h HTTP/1.1\r\n\r\n", "SIP version", 400),
            (b"OPT(ONS sip:h SIP/2.0\r\n\r\n", "not a token", 400),
            (b"OPTIONS sip:h\xc3\xa9 SIP/2.0\r\n\r\n", "not an absolute URI", 400),
            (b"SIP/2.0\r\n\r\n", "no status code", 400),
            (b"SIP/2.0 20 OK\r\n\r\n", "three-digit", 400),
            (b"SIP/2.0 099 Odd\r\n\r\n", "three-digit", 400),
            (b"SIP/2.0 200 O\x01K\r\n\r\n", "control characters", 400),
            (b"SIP/2.0 200 OK\r\nl: 5\r\n\r\nabc", "only 3", 400),
            (b"SIP/2.0 200 OK\r\nl: 99999999999\r\n\r\n", "far too large", 413),
        ],
    )
    def test_malformed(self, data: bytes, why: str, status: int) -> None:
        """Each malformed datagram raises RemoteProtocolError with a sentence and a hint."""
        with pytest.raises(RemoteProtocolError, match=why) as info:
            parse_datagram(data)
        assert info.value.status_hint == status


class TestSerialise:
    def test_canonical_lines_and_spelling(self) -> None:
        """': ' separators, original names, CRLF ends, Content-Length kept in place."""
        data = b"OPTIONS sip:h SIP/2.0\r\nVIA  :SIP/2.0/UDP h\r\nl :  0\r\n\r\n"
        assert serialise(parse_datagram(data)) == (
            b"OPTIONS sip:h SIP/2.0\r\nVIA: SIP/2.0/UDP h\r\nl: 0\r\n\r\n"
        )

    def test_content_length_inserted_and_fixed(self) -> None:
        """Missing Content-Length is appended; a wrong one is corrected; duplicates go."""
        msg = Request(method="MESSAGE", uri="sip:h", body=b"abc")
        assert serialise(msg).endswith(b"\r\nContent-Length: 3\r\n\r\nabc")
        wrong = msg.append_header("Content-Length", "9").append_header("l", "1")
        assert serialise(wrong) == b"MESSAGE sip:h SIP/2.0\r\nContent-Length: 3\r\n\r\nabc"

    def test_leading_zero_length_kept(self) -> None:
        """A Content-Length already equal to the body's length is not rewritten."""
        data = b"OPTIONS sip:h SIP/2.0\r\nl: 0003\r\n\r\nabc"
        assert serialise(parse_datagram(data)) == data

    def test_response(self) -> None:
        """A response's status line."""
        wire = serialise(Response(status=486, reason="Busy Here"))
        assert wire == b"SIP/2.0 486 Busy Here\r\nContent-Length: 0\r\n\r\n"

    def test_misuse(self) -> None:
        """Only messages serialise."""
        with pytest.raises(LocalProtocolError):
            serialise("INVITE")  # type: ignore[arg-type]

    def test_validate_request_names_problems(self) -> None:
        """validate_request passes a good request and names the CSeq mismatch of a bad one."""
        validate_request(invite())
        bad = invite().set_header("CSeq", "1 BYE")
        with pytest.raises(RemoteProtocolError, match="differs from the request method"):
            validate_request(bad)
