"""RFC 4475 torture messages: the valid ones parse to the right values, the others are refused.

Each fixture in ``sip_torture/`` is the message of the RFC section named in
its test, CRLF line ends and all. Invalid messages fall into three groups,
documented per message below:

* refused by the parser (framing or start-line syntax): RemoteProtocolError
  from ``parse_datagram``;
* refused by ``validate_request``/``validate_response`` (a malformed or
  missing header a proxy needs, or a semantic fault such as a CSeq method
  mismatch): the message parses, validation raises RemoteProtocolError(400);
* acceptable at this layer (the fault is for a registrar, a UA or the
  transaction layer to judge): parses and validates.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from gateway.sip import (
    NEED_DATA,
    KeepAlivePong,
    RemoteProtocolError,
    Request,
    Response,
    StreamFramer,
    parse_datagram,
    serialise,
    validate_request,
    validate_response,
)

FIXTURES = Path(__file__).parent / "sip_torture"


def load(name: str) -> bytes:
    return (FIXTURES / f"{name}.dat").read_bytes()


def request(name: str) -> Request:
    message = parse_datagram(load(name))
    assert isinstance(message, Request)
    return message


def response(name: str) -> Response:
    message = parse_datagram(load(name))
    assert isinstance(message, Response)
    return message


def validate(message: Request | Response) -> None:
    if isinstance(message, Request):
        validate_request(message)
    else:
        validate_response(message)


def test_fixtures_are_crlf_files() -> None:
    """Every fixture uses CRLF line ends: no LF without its CR."""
    names = sorted(p.stem for p in FIXTURES.glob("*.dat"))
    assert len(names) == 49
    for name in names:
        data = load(name)
        head = data.split(b"\r\n\r\n", 1)[0]
        assert head.count(b"\n") == head.count(b"\r\n"), name


class TestValidMessages:
    """RFC 4475 §3.1.1: every element must accept these."""

    def test_wsinv(self) -> None:
        """§3.1.1.1: folding, LWS around colons, compact and long forms, odd case."""
        msg = request("wsinv")
        assert msg.method == "INVITE"
        assert msg.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
        to = msg.to
        assert to is not None and to.uri == "sip:vivekg@chair-dnrc.example.com"
        assert to.tag == "1918181833n" and to.display_name is None
        sender = msg.from_
        assert sender is not None and sender.display_name == 'J Rosenberg \\"'
        assert sender.uri == "sip:jdrosen@example.com" and sender.tag == "98asjd8"
        assert msg.max_forwards == 68
        assert msg.headers.get("MaX-fOrWaRdS") == "0068"
        assert msg.call_id == "wsinv.ndaksdj@192.0.2.1"
        cseq = msg.cseq
        assert cseq is not None and (cseq.number, cseq.method) == (9, "INVITE")
        assert msg.headers.get("CSeq") == "0009 INVITE"
        vias = msg.vias
        assert [(v.transport, v.host, v.port, v.branch) for v in vias] == [
            ("UDP", "192.0.2.2", None, "390skdjuw"),
            ("TCP", "spindle.example.com", None, "z9hG4bK9ikj8"),
            ("UDP", "192.168.255.111", None, "z9hG4bK30239"),
        ]
        assert msg.headers.count("Via") == 2  # one "Via" line and one "v" line
        assert msg.headers.get("Subject") == ""
        assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
        assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
        assert msg.routes[0].uri == "sip:services.example.com;lr;unknownwith=value;unknown-no-value"
        (contact,) = msg.contacts
        assert contact.display_name == 'Quoted string ""'
        assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
        assert msg.content_length == 150 and len(msg.body) == 150
        assert msg.body.startswith(b"v=0\r\n") and msg.body.endswith(b"a=rtpmap:31 LPC\r\n")
        validate_request(msg)

    def test_intmeth(self) -> None:
        """§3.1.1.2: every token character in method, branch, tags; quoted NUL; UTF-8."""
        msg = request("intmeth")
        method = "!interesting-Method0123456789_*+`.%indeed'~"
        assert msg.method == method
        assert msg.uri == (
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,"
            "weird!*pas$wo~d_too.(doesn't-it)@example.com"
        )
        assert msg.top_via is not None and msg.top_via.branch == "z9hG4bK-.!%66*_+`'~"
        to = msg.to
        assert to is not None and to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
        assert to.uri == "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com"
        sender = msg.from_
        assert sender is not None and sender.display_name == "token1~` token2'+_ token3*%!.-"
        assert sender.param("fromParam''~+*_!.-%") == '"работающий"'
        assert sender.tag == "_token~1'+`*%!-."
        assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
        assert msg.cseq is not None and msg.cseq.method == method
        assert msg.max_forwards == 255
        assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
        validate_request(msg)

    def test_esc01(self) -> None:
        """§3.1.1.3: %-escapes are kept verbatim in every URI."""
        msg = request("esc01")
        assert msg.uri == "sip:sips%3Auser%40example.com@example.net"
        assert msg.to is not None and msg.to.uri == "sip:%75se%72@example.com"
        assert msg.from_ is not None and msg.from_.uri == "sip:I%20have%20spaces@example.net"
        assert msg.call_id == "esc01.239409asdfakjkn23onasd0-3234"  # from compact "i"
        assert msg.headers.get("Content-Type") == "application/sdp"  # from compact "C"
        (contact,) = msg.contacts
        assert contact.uri == "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31"
        assert contact.params == ()
        validate_request(msg)

    def test_escnull(self) -> None:
        """§3.1.1.4: %00 in user parts; two Contact lines give two contacts."""
        msg = request("escnull")
        assert msg.to is not None and msg.to.uri == "sip:null-%00-null@example.com"
        assert [c.uri for c in msg.contacts] == [
            "sip:%00@host5.example.com",
            "sip:%00%00@host5.example.com",
        ]
        assert msg.content_length == 0 and msg.body == b""
        validate_request(msg)

    def test_esc02(self) -> None:
        """§3.1.1.5: % is no escape in a method, a display name or a header name."""
        msg = request("esc02")
        assert msg.method == "RE%47IST%45R"
        assert msg.to is not None and msg.to.display_name == "%Z%45"
        assert msg.top_via is not None and msg.top_via.branch == "z9hG4bK209%fzsnel234"
        assert [c.uri for c in msg.contacts] == [
            "sip:alias1@host1.example.com",
            "sip:alias3@host3.example.com",
        ]
        assert msg.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
        validate_request(msg)

    def test_lwsdisp(self) -> None:
        """§3.1.1.6: no LWS between a token display name and '<'."""
        msg = request("lwsdisp")
        sender = msg.from_
        assert sender is not None
        assert (sender.display_name, sender.uri, sender.tag) == (
            "caller",
            "sip:caller@example.com",
            "323",
        )
        validate_request(msg)

    def test_longreq(self) -> None:
        """§3.1.1.7: long values and 34 Via values in every spelling."""
        msg = request("longreq")
        vias = msg.vias
        assert len(vias) == 34
        assert [v.host for v in vias[:33]] == [f"sip{n}.example.com" for n in range(33, 0, -1)]
        assert vias[-1].received == "192.0.2.5"
        assert vias[-1].branch == "very" + "long" * 50 + "branchvalue"
        to = msg.to
        assert to is not None and to.uri.startswith("sip:user@example.com:6000;unknownparam1=")
        sender = msg.from_
        assert sender is not None and sender.tag == "12" + "982" * 50 + "424"
        assert sender.has_param("unknownValueless" + "paramname" * 10)
        assert msg.call_id == "longreq.one" + "really" * 20 + "longcallid"
        assert len(msg.body) == 150
        validate_request(msg)

    def test_dblreq_datagram(self) -> None:
        """§3.1.1.8: on UDP the octets after Content-Length are discarded."""
        msg = request("dblreq")
        assert msg.method == "REGISTER" and msg.body == b""
        assert msg.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
        assert b"INVITE" not in serialise(msg)
        validate_request(msg)

    def test_dblreq_stream(self) -> None:
        """§3.1.1.8 on a stream: the REGISTER, the CRLF between, then the INVITE."""
        framer = StreamFramer()
        framer.receive_data(load("dblreq"))
        first = framer.next_event()
        assert isinstance(first, Request) and first.method == "REGISTER"
        assert framer.next_event() == KeepAlivePong()
        second = framer.next_event()
        assert isinstance(second, Request) and second.method == "INVITE"
        assert second.call_id == "dblreq.0ha0isnda977644900765@192.0.2.15"
        assert len(second.body) == 150
        # The INVITE's body is three octets longer than its Content-Length says.
        assert framer.next_event() is NEED_DATA and framer.buffered == 3

    def test_semiuri(self) -> None:
        """§3.1.1.9: a ';' in the user part; a folded, comma-separated Accept."""
        msg = request("semiuri")
        assert msg.uri == "sip:user;par=u%40example.net@example.com"
        assert msg.headers.get_list("Accept") == (
            "application/sdp",
            "application/pkcs7-mime",
            "multipart/mixed",
            "multipart/signed",
            "message/sip",
            "message/sipfrag",
        )
        validate_request(msg)

    def test_transports(self) -> None:
        """§3.1.1.10: every transport token, known or not."""
        msg = request("transports")
        assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
        assert msg.call_id == "transports.kijh4akdnaqjkwendsasfdj"
        validate_request(msg)

    def test_mpart01(self) -> None:
        """§3.1.1.11: a binary body part with NULs is framed by Content-Length."""
        msg = request("mpart01")
        assert msg.method == "MESSAGE" and len(msg.body) == 553
        assert b"\x00" in msg.body and msg.body.endswith(b"--7a9cbec02ceef655--\r\n")
        via = msg.top_via
        assert via is not None and via.port == 5070 and via.has_rport and via.rport is None
        assert msg.routes[0].uri == "sip:127.0.0.1:5080"
        assert msg.headers.get("y") == msg.headers.get("Identity")
        validate_request(msg)

    def test_unreason(self) -> None:
        """§3.1.1.12: a UTF-8 reason phrase."""
        msg = response("unreason")
        assert msg.status == 200
        assert msg.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
        assert len(msg.body) == 154
        validate_response(msg)

    def test_noreason(self) -> None:
        """§3.1.1.13: an empty reason phrase."""
        msg = response("noreason")
        assert (msg.status, msg.reason) == (100, "")
        assert serialise(msg).startswith(b"SIP/2.0 100 \r\n")
        validate_response(msg)

    @pytest.mark.parametrize(
        "name",
        [
            "wsinv",
            "intmeth",
            "esc01",
            "escnull",
            "esc02",
            "lwsdisp",
            "longreq",
            "semiuri",
            "transports",
            "mpart01",
            "unreason",
            "noreason",
        ],
    )
    def test_round_trip_and_stream(self, name: str) -> None:
        """Serialising and parsing again gives the same message; a stream gives it too."""
        msg = parse_datagram(load(name))
        assert parse_datagram(serialise(msg)) == msg
        framer = StreamFramer()
        framer.receive_data(load(name))
        assert framer.next_event() == msg


#: Refused by parse_datagram: the fault is in framing or the start line.
PARSER_REJECTS = {
    "clerr": (400, "Content-Length announces 9999"),  # §3.1.2.2: body shorter than declared
    "ncl": (400, "'-999'"),  # §3.1.2.3: negative Content-Length
    "ltgtruri": (400, "<sip:user@example.com>"),  # §3.1.2.7: <> around the Request-URI
    "lwsruri": (400, "single spaces"),  # §3.1.2.8: LWS inside the Request-URI
    "lwsstart": (400, "single spaces"),  # §3.1.2.9: several SP between start-line parts
    "trws": (400, "single spaces"),  # §3.1.2.10: SP after the version
    "escruri": (400, "URI headers"),  # §3.1.2.11: escaped headers in the Request-URI
    "badvers": (505, "SIP/7.0"),  # §3.1.2.16: unknown protocol version
    "bigcode": (400, "4294967301"),  # §3.1.2.19: status code of ten digits
    "mcl01": (400, "2 Content-Length headers"),  # §3.3.9: Content-Length twice
}

#: Parse, but a proxy's validation refuses them (status hint 400).
VALIDATION_REJECTS = {
    "badinv01": ("Via", "Contact"),  # §3.1.2.1: ';;,;,,' and ';;;;' are empty parameters
    "scalar02": ("CSeq", "Max-Forwards"),  # §3.1.2.4: CSeq beyond 2**31, Max-Forwards 300
    "scalarlg": ("CSeq",),  # §3.1.2.5 (a response): CSeq beyond 2**31
    "quotbal": ("To",),  # §3.1.2.6: unterminated quoted display name
    "regbadct": ("Contact",),  # §3.1.2.13: URI with '?' not in <> in an addr-spec
    "badaspec": ("To",),  # §3.1.2.14: whitespace inside < >
    "baddn": ("To", "From"),  # §3.1.2.15: unquoted display name with a comma
    "mismatch01": ("CSeq method",),  # §3.1.2.17: CSeq INVITE on an OPTIONS
    "mismatch02": ("CSeq method",),  # §3.1.2.18: CSeq INVITE on NEWMETHOD
    "insuf": ("To", "From", "Call-ID", "Max-Forwards"),  # §3.3.1: required headers missing
    "multi01": ("To", "From", "CSeq", "Call-ID", "Max-Forwards"),  # §3.3.8: twice each
}

#: Acceptable at this layer; what RFC 4475 asks of them is another element's business.
ACCEPTED = [
    "baddate",  # §3.1.2.12: non-GMT Date; a proxy forwards it
    "badbranch",  # §3.2.1: 'z9hG4bK' alone; the transaction layer's concern
    "unkscm",  # §3.3.2: unknown Request-URI scheme; the proxy answers 416 if it cannot route
    "novelsc",  # §3.3.3: known but atypical scheme
    "unksm2",  # §3.3.4: unknown schemes in To, From and Contact
    "bext01",  # §3.3.5: Require/Proxy-Require; the proxy answers 420
    "invut",  # §3.3.6: unknown Content-Type; the UA answers 415
    "regaut01",  # §3.3.7: unknown Authorization scheme; the registrar's concern
    "bcast",  # §3.3.10: broadcast Via in a response; the relay must not send to it
    "zeromf",  # §3.3.11: Max-Forwards 0; the relay answers 483 (see test_zeromf)
    "cparam01",  # §3.3.12: addr-spec Contact; the parameter belongs to the header
    "cparam02",  # §3.3.13: name-addr Contact; the parameter belongs to the URI
    "regescrt",  # §3.3.14: escaped Route in a Contact URI; the registrar refuses it
    "sdp01",  # §3.3.15: unacceptable Accept; the UA answers 406
]


class TestInvalidMessages:
    @pytest.mark.parametrize(("name", "expected"), sorted(PARSER_REJECTS.items()))
    def test_parser_rejects(self, name: str, expected: tuple[int, str]) -> None:
        """Malformed framing or start line: RemoteProtocolError with a status hint."""
        status, words = expected
        with pytest.raises(RemoteProtocolError) as info:
            parse_datagram(load(name))
        assert info.value.status_hint == status
        assert words in str(info.value)

    @pytest.mark.parametrize(("name", "headers"), sorted(VALIDATION_REJECTS.items()))
    def test_validation_rejects(self, name: str, headers: tuple[str, ...]) -> None:
        """Parse fine; validation names every offending header in one error."""
        message = parse_datagram(load(name))
        with pytest.raises(RemoteProtocolError) as info:
            validate(message)
        assert info.value.status_hint == 400
        for header in headers:
            assert header in str(info.value)
        assert len(info.value.problems) >= 1

    @pytest.mark.parametrize("name", ACCEPTED)
    def test_accepted_at_this_layer(self, name: str) -> None:
        """The fault is for another element to judge: the message parses and validates."""
        message = parse_datagram(load(name))
        validate(message)
        assert parse_datagram(serialise(message)) == message

    def test_clerr_on_a_stream_waits(self) -> None:
        """§3.1.2.2 on a stream: Content-Length 9999 means waiting for the rest."""
        framer = StreamFramer()
        framer.receive_data(load("clerr"))
        assert framer.next_event() is NEED_DATA
        framer.receive_data(b"")
        with pytest.raises(RemoteProtocolError, match="ended inside a message"):
            framer.next_event()

    def test_insuf_lists_every_missing_header(self) -> None:
        """§3.3.1: one problem names all four missing headers."""
        with pytest.raises(RemoteProtocolError) as info:
            validate_request(request("insuf"))
        assert info.value.problems == ("missing headers: To, From, Call-ID, Max-Forwards",)

    def test_zeromf(self) -> None:
        """§3.3.11: Max-Forwards 0 is reported for the relay to answer 483."""
        assert request("zeromf").max_forwards == 0

    def test_cparam01_param_belongs_to_header(self) -> None:
        """§3.3.12: in an addr-spec Contact, ';unknownparam' is a header parameter."""
        (contact,) = request("cparam01").contacts
        assert contact.uri == "sip:+19725552222@gw1.example.net"
        assert contact.has_param("unknownparam")

    def test_cparam02_param_belongs_to_uri(self) -> None:
        """§3.3.13: inside <>, ';unknownparam' is part of the URI."""
        (contact,) = request("cparam02").contacts
        assert contact.uri == "sip:+19725552222@gw1.example.net;unknownparam"
        assert contact.params == ()

    def test_unksm2_schemes_kept(self) -> None:
        """§3.3.4: isbn:, http: and name: URIs are carried as they are."""
        msg = request("unksm2")
        assert msg.to is not None and msg.to.uri == "isbn:2983792873"
        assert msg.from_ is not None and msg.from_.uri == "http://www.example.com"
        assert msg.contacts[0].uri == "name:John_Smith"

    def test_inv2543(self) -> None:
        """§3.4.1: RFC 2543 syntax parses; only the missing Max-Forwards is flagged."""
        msg = request("inv2543")
        assert msg.headers.get("Content-Length") is None and len(msg.body) == 105
        with pytest.raises(RemoteProtocolError, match="missing header: Max-Forwards"):
            validate_request(msg)
        validate_request(msg, require_max_forwards=False)

    def test_no_other_exception_anywhere(self) -> None:
        """Every fixture, every truncation of it: a message or RemoteProtocolError."""
        for path in sorted(FIXTURES.glob("*.dat")):
            data = path.read_bytes()
            for cut in range(0, len(data), 7):
                with contextlib.suppress(RemoteProtocolError):
                    validate(parse_datagram(data[:cut]))
