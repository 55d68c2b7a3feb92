"""SIP URIs: the parts a proxy compares (RFC 3261 §19.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sip import RemoteProtocolError, SipUri, parse_sip_uri


class TestParseSipUri:
    def test_user_host_port_and_params(self) -> None:
        """Every part, the user's own parameters dropped, names lower-cased."""
        uri = parse_sip_uri("sip:alice;npdi@Example.NET:5070;Transport=TCP;lr?Subject=x")
        assert uri == SipUri(
            scheme="sip",
            user="alice",
            host="example.net",
            port=5070,
            params=(("transport", "TCP"), ("lr", None)),
        )
        assert uri.transport == "tcp" and uri.has_param("LR")

    def test_ipv6_host_without_brackets_and_default_ports(self) -> None:
        uri = parse_sip_uri("sips:[2001:DB8::1]")
        assert (uri.host, uri.port, uri.default_port, uri.user) == ("2001:db8::1", None, 5061, None)
        assert parse_sip_uri("sip:h;transport=tls").default_port == 5061
        assert parse_sip_uri("sip:h").default_port == 5060

    @pytest.mark.parametrize(
        "text", ["tel:+4930123", "sip:", "sip:host:99999", "sip:host:0", "<sip:host>", "sip:a b"]
    )
    def test_what_is_not_a_sip_uri_is_refused_with_the_text(self, text: str) -> None:
        """Failure twins: another scheme, no host, a port outside 1-65535, brackets."""
        with pytest.raises(RemoteProtocolError, match="URI"):
            parse_sip_uri(text)

    @given(st.text(max_size=80))
    def test_any_text_parses_or_raises_the_layers_error(self, text: str) -> None:
        try:
            uri = parse_sip_uri(text)
        except RemoteProtocolError:
            return
        assert uri.scheme in ("sip", "sips") and uri.host
