"""Structured header parsers: each success with its failure twins."""

from __future__ import annotations

import pytest

from gateway.sip import (
    CSeq,
    NameAddr,
    RemoteProtocolError,
    Via,
    check_call_id,
    parse_content_length,
    parse_cseq,
    parse_max_forwards,
    parse_name_addr,
    parse_name_addr_list,
    parse_via,
    parse_via_list,
    split_comma_list,
)


class TestSplitCommaList:
    def test_plain(self) -> None:
        """Commas split, whitespace around elements goes."""
        assert split_comma_list("a, b ,\tc") == ("a", "b", "c")

    def test_quotes_and_angles_protect_commas(self) -> None:
        """Commas in quoted strings (with escapes) and in <...> do not split."""
        value = '"Bell, A. \\" x" <sip:a@b;p=1,2>;tag=1, <sip:c@d>'
        assert split_comma_list(value) == ('"Bell, A. \\" x" <sip:a@b;p=1,2>;tag=1', "<sip:c@d>")

    def test_empty_elements_kept(self) -> None:
        """Empty elements come back so that callers can refuse them."""
        assert split_comma_list(";;,,") == (";;", "", "")

    def test_unbalanced_never_raises(self) -> None:
        """An unterminated quote or '<' swallows the rest instead of raising."""
        assert split_comma_list('"a, b') == ('"a, b',)
        assert split_comma_list("<a, b") == ("<a, b",)


class TestVia:
    def test_full(self) -> None:
        """Protocol, transport, host, port and the well-known parameters."""
        via = parse_via("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK77;received=10.0.0.1;rport=5062")
        assert (via.protocol, via.version, via.transport) == ("SIP", "2.0", "UDP")
        assert (via.host, via.port) == ("192.0.2.1", 5060)
        assert via.branch == "z9hG4bK77" and via.received == "10.0.0.1"
        assert via.has_rport and via.rport == 5062

    def test_rport_without_value(self) -> None:
        """A bare rport asks for the source port (RFC 3581)."""
        via = parse_via("SIP/2.0/TCP h;rport;branch=z9hG4bKx")
        assert via.has_rport and via.rport is None
        assert not parse_via("SIP/2.0/TCP h;branch=z9hG4bKx").has_rport

    def test_ipv6_sent_by_and_maddr_ttl(self) -> None:
        """An IPv6 reference keeps its address without brackets; maddr and ttl are read."""
        via = parse_via(
            "SIP/2.0/UDP [2001:db8::9:1]:5070;maddr=[2001:db8::1];ttl=16;branch=z9hG4bK1"
        )
        assert (via.host, via.port) == ("2001:db8::9:1", 5070)
        assert via.maddr == "[2001:db8::1]" and via.ttl == 16
        assert via.sent_by == "[2001:db8::9:1]:5070"

    def test_lws_everywhere(self) -> None:
        """LWS around '/', ':', ';' and '=' is allowed."""
        via = parse_via("SIP / 2.0 / TLS  host.example.com : 5061 ; branch = z9hG4bKa ; rport")
        assert via.transport == "TLS" and via.port == 5061 and via.branch == "z9hG4bKa"

    def test_str_round_trip(self) -> None:
        """str() gives a value that parses back to an equal Via."""
        via = parse_via("SIP/2.0/UDP [::1]:5060;branch=z9hG4bKq;rport")
        assert str(via) == "SIP/2.0/UDP [::1]:5060;branch=z9hG4bKq;rport"
        assert parse_via(str(via)) == via
        assert str(Via(transport="TCP", host="h")) == "SIP/2.0/TCP h"

    def test_list(self) -> None:
        """A line with several values gives several Vias."""
        vias = parse_via_list("SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b:5080;branch=z9hG4bK2")
        assert [(v.host, v.port) for v in vias] == [("a", None), ("b", 5080)]

    @pytest.mark.parametrize(
        "value",
        [
            "SIP/2.0 host",  # no transport
            "SIP/2.0/UDP",  # no sent-by
            "SIP/2.0/UDP h:70000",  # port out of range
            "SIP/2.0/UDP h;;branch=z9hG4bK1",  # empty parameter
            "SIP/2.0/UDP h;branch",  # branch without value
            "SIP/2.0/UDP h;rport=abc",  # rport not a number
            "SIP/2.0/UDP h;ttl=300",  # ttl above 255
            "SIP/2.0/UDP h junk",  # trailing text
            "SIP/2.0/UDP [zz::1]",  # not an IPv6 reference
        ],
    )
    def test_malformed(self, value: str) -> None:
        """Each malformed Via raises RemoteProtocolError naming the header."""
        with pytest.raises(RemoteProtocolError, match="Via header") as info:
            parse_via(value)
        assert info.value.status_hint == 400

    def test_list_with_empty_element(self) -> None:
        """An empty value between commas is refused."""
        with pytest.raises(RemoteProtocolError, match="empty value"):
            parse_via_list("SIP/2.0/UDP a,,SIP/2.0/UDP b")


class TestNameAddr:
    def test_quoted_display_with_params(self) -> None:
        """Display name unescaped; URI parameters stay in the URI; header params apart."""
        na = parse_name_addr('"Alice \\"A\\"" <sip:alice@example.com;transport=tcp>;tag=88;x')
        assert na.display_name == 'Alice "A"'
        assert na.uri == "sip:alice@example.com;transport=tcp"
        assert na.params == (("tag", "88"), ("x", None)) and na.tag == "88"

    def test_token_display_name(self) -> None:
        """Unquoted display names are tokens separated by LWS."""
        assert parse_name_addr("Bob  Smith <sip:b@h>").display_name == "Bob  Smith"

    def test_addr_spec_params_belong_to_header(self) -> None:
        """Without <>, everything after the first ';' is a header parameter."""
        na = parse_name_addr("sip:u@h;tag=x")
        assert na.uri == "sip:u@h" and na.tag == "x" and na.display_name is None

    def test_utf8_display_name(self) -> None:
        """RFC 3261 allows UTF-8 in quoted display names."""
        assert parse_name_addr('"Jürgen Größe" <sip:j@h>').display_name == "Jürgen Größe"

    def test_str(self) -> None:
        """str() writes a name-addr with the display name quoted."""
        na = NameAddr(display_name='a "b"', uri="sip:x@y", params=(("lr", None),))
        assert str(na) == '"a \\"b\\"" <sip:x@y>;lr'
        assert parse_name_addr(str(na)) == na

    def test_wildcard(self) -> None:
        """'*' is accepted only where asked (Contact of REGISTER)."""
        assert parse_name_addr_list("*", allow_wildcard=True)[0].is_wildcard
        with pytest.raises(RemoteProtocolError):
            parse_name_addr("*")
        with pytest.raises(RemoteProtocolError, match="only value"):
            parse_name_addr_list("*, <sip:a@b>", allow_wildcard=True)

    def test_list(self) -> None:
        """Contacts with commas inside quotes and angle brackets split correctly."""
        values = parse_name_addr_list('"A, B" <sip:a@h;x=1,2>;q=0.5, sip:b@h')
        assert [v.uri for v in values] == ["sip:a@h;x=1,2", "sip:b@h"]
        assert values[0].param("q") == "0.5"

    @pytest.mark.parametrize(
        ("value", "why"),
        [
            ('"unterminated <sip:a@b>', "not terminated"),
            ("< sip:a@b >", "whitespace"),
            ("<sip:a@b", "no matching"),
            ("Bell, Alexander <sip:a@b>", "display name"),
            ("sip:a@b?Route=x", "enclosed in <>"),
            ("<sip:a@b>;;tag=1", "parameter name"),
            ("<notauri>", "not a URI"),
            ("<sip:a@b> junk", "unexpected text"),
            ('"quoted" sip:a@b', "followed by <URI>"),
            ("", "no URI"),
        ],
    )
    def test_malformed(self, value: str, why: str) -> None:
        """Each malformed address raises RemoteProtocolError saying why."""
        with pytest.raises(RemoteProtocolError, match=why):
            parse_name_addr(value, header="To")


class TestScalars:
    def test_cseq(self) -> None:
        """Number and method, leading zeros and LWS allowed."""
        assert parse_cseq("0009  INVITE") == CSeq(number=9, method="INVITE")
        assert str(CSeq(number=2**31 - 1, method="ACK")) == "2147483647 ACK"

    @pytest.mark.parametrize("value", ["INVITE", "1", "x INVITE", "2147483648 INVITE", "1 IN VITE"])
    def test_cseq_malformed(self, value: str) -> None:
        """No number, no method, a number of 2**31 or more, or junk."""
        with pytest.raises(RemoteProtocolError, match="CSeq"):
            parse_cseq(value)

    def test_max_forwards(self) -> None:
        """0 to 255, leading zeros allowed."""
        assert parse_max_forwards("0068") == 68
        assert parse_max_forwards("0") == 0
        for bad in ("256", "-1", "", "seventy", "1" * 50):
            with pytest.raises(RemoteProtocolError, match="Max-Forwards"):
                parse_max_forwards(bad)

    def test_content_length(self) -> None:
        """Digits only; absurdly long numbers are refused as too large (413)."""
        assert parse_content_length(" 0150 ") == 150
        with pytest.raises(RemoteProtocolError) as info:
            parse_content_length("9" * 5000)
        assert info.value.status_hint == 413
        for bad in ("-999", "1.5", "", "12 3"):
            with pytest.raises(RemoteProtocolError, match="Content-Length"):
                parse_content_length(bad)

    def test_call_id(self) -> None:
        """word['@'word] with the odd characters of 'word' allowed."""
        assert check_call_id("a.b%c@host<>") == "a.b%c@host<>"
        for bad in ("a b", "a@b@c", "", "caf\u00e9"):
            with pytest.raises(RemoteProtocolError, match="Call-ID"):
                check_call_id(bad)
