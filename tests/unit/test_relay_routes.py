"""RFC 3261 §16.4 on requests from the LAN: sipsgate as a base station's outbound proxy.

A base station configured with sipsgate as outbound proxy preloads a Route naming it
(by listen address or host name). That entry must not travel upstream: the provider
would route the request back to the LAN address. Strict routers put sipsgate into the
Request-URI instead; the real target then comes back from the last Route.
"""

from __future__ import annotations

import random

from gateway.relay.flows import LanFlow
from gateway.relay.proxy import ProxyCore
from gateway.relay.settings import Listener, ProxySettings
from gateway.sip import Request
from tests.unit.test_relay_proxy import BS, KEY, answer, request, sent_upstream, up

TCP_BS = LanFlow("tcp", "192.168.1.20", 40123, 1, 7)


def core(host_names: tuple[str, ...] = ("sipsgate.lan",)) -> ProxyCore:
    listeners = (
        Listener(transport="udp", host="192.168.1.1", port=5060),
        Listener(transport="tcp", host="192.168.1.1", port=5070),
    )
    c = ProxyCore(
        ProxySettings(listeners=listeners, key=KEY, host_names=host_names),
        rng=random.Random(1).random,
    )
    c.lan_connection_opened(TCP_BS)
    return up(c)


def forward(c: ProxyCore, raw: bytes, flow: LanFlow = BS) -> Request:
    (fwd,) = sent_upstream(c.receive_lan_datagram(raw, flow, 0.0))
    assert isinstance(fwd, Request)
    return fwd


class TestLooseRouting:
    def test_outbound_proxy_route_by_address_is_removed_and_the_invite_record_routed(
        self,
    ) -> None:
        """Route: <sip:192.168.1.1;lr> (port 5060 by default) is sipsgate: removed."""
        c = core()
        fwd = forward(c, request("INVITE", extra=["Route: <sip:192.168.1.1;lr>"]))
        assert "Route" not in fwd.headers
        assert fwd.uri == "sip:bob@example.net"
        assert len(fwd.headers.get_list("Record-Route")) == 2

    def test_route_by_host_name_and_tcp_port_is_removed(self) -> None:
        """A configured host name with the TCP listener's port names sipsgate too."""
        c = core()
        raw = request("OPTIONS", extra=["Route: <sip:SIPSGATE.lan:5070;transport=tcp;lr>"])
        fwd = forward(c, raw, TCP_BS)
        assert "Route" not in fwd.headers

    def test_only_the_entries_naming_sipsgate_are_removed(self) -> None:
        """The provider's entry below sipsgate's stays, in order."""
        c = core()
        raw = request(
            "OPTIONS",
            extra=["Route: <sip:192.168.1.1:5060;lr>, <sip:edge.provider.example;lr>"],
        )
        fwd = forward(c, raw)
        assert fwd.headers.get_list("Route") == ("<sip:edge.provider.example;lr>",)

    def test_other_hosts_and_ports_are_not_sipsgate(self) -> None:
        """Failure twins: another host, our address on another port, an unknown name."""
        c = core()
        for i, route in enumerate(
            (
                "<sip:192.168.1.9;lr>",
                "<sip:192.168.1.1:5099;lr>",
                "<sip:other.lan;lr>",
                "<sips:192.168.1.1;lr>",  # sips: means port 5061, where nothing listens
            )
        ):
            fwd = forward(c, request("OPTIONS", branch=f"z9hG4bK-{i}", extra=[f"Route: {route}"]))
            assert fwd.headers.get_list("Route") == (route,), route

    def test_without_host_names_only_addresses_match(self) -> None:
        c = core(host_names=())
        fwd = forward(c, request("OPTIONS", extra=["Route: <sip:sipsgate.lan;lr>"]))
        assert fwd.headers.get_list("Route") == ("<sip:sipsgate.lan;lr>",)

    def test_ack_for_a_2xx_loses_the_outbound_proxy_route(self) -> None:
        """The ACK of a 2xx is forwarded statelessly; its preloaded Route goes as well."""
        c = core()
        raw = request("ACK", to_tag=";tag=b2", extra=["Route: <sip:192.168.1.1;lr>"])
        fwd = forward(c, raw)
        assert fwd.method == "ACK" and "Route" not in fwd.headers

    def test_cancel_follows_the_invite_without_the_route(self) -> None:
        """The CANCEL sipsgate sends for a pending INVITE carries the INVITE's Route set."""
        c = core()
        invite = request(
            "INVITE", extra=["Route: <sip:192.168.1.1;lr>, <sip:edge.provider.example;lr>"]
        )
        inv = forward(c, invite)
        c.receive_upstream(answer(inv, 180), 0.1)
        cancel = request(
            "CANCEL", extra=["Route: <sip:192.168.1.1;lr>, <sip:edge.provider.example;lr>"]
        )
        out = c.receive_lan_datagram(cancel, BS, 0.2)
        (fwd,) = [m for m in sent_upstream(out) if isinstance(m, Request)]
        assert fwd.method == "CANCEL"
        assert fwd.headers.get_list("Route") == ("<sip:edge.provider.example;lr>",)

    def test_unmatched_cancel_is_forwarded_without_the_route(self) -> None:
        c = core()
        raw = request("CANCEL", branch="z9hG4bK-lost", extra=["Route: <sip:192.168.1.1;lr>"])
        fwd = forward(c, raw)
        assert fwd.method == "CANCEL" and "Route" not in fwd.headers


class TestStrictRouting:
    def test_request_uri_naming_a_record_route_of_ours_is_replaced_by_the_last_route(
        self,
    ) -> None:
        """RFC 3261 §16.4: a strict router's BYE regains its target from the last Route."""
        c = core()
        inv = forward(c, request("INVITE"))
        lan_rr = inv.headers.get_list("Record-Route")[1]
        assert "192.168.1.1:5060" in lan_rr
        tls_rr = inv.headers.get_list("Record-Route")[0]
        rr_uri = lan_rr.strip("<>")
        bye = request(
            "BYE",
            uri=rr_uri,
            branch="z9hG4bK-bye",
            cseq=2,
            to_tag=";tag=b2",
            extra=[f"Route: {tls_rr}, <sip:bob@10.0.0.5:5060>"],
        )
        fwd = forward(c, bye)
        assert fwd.uri == "sip:bob@10.0.0.5:5060"
        assert "Route" not in fwd.headers

    def test_outbound_proxy_without_lr_puts_sipsgate_in_the_request_uri(self) -> None:
        """An outbound proxy set without ;lr: R-URI sipsgate, target as the only Route."""
        c = core()
        raw = request("INVITE", uri="sip:192.168.1.1", extra=["Route: <sip:bob@example.net>"])
        fwd = forward(c, raw)
        assert fwd.uri == "sip:bob@example.net"
        assert "Route" not in fwd.headers

    def test_request_uri_naming_someone_else_is_left(self) -> None:
        """Failure twin: a Request-URI with a user at sipsgate's address is a target."""
        c = core()
        raw = request(
            "OPTIONS", uri="sip:100@192.168.1.1", extra=["Route: <sip:edge.provider.example;lr>"]
        )
        fwd = forward(c, raw)
        assert fwd.uri == "sip:100@192.168.1.1"
        assert fwd.headers.get_list("Route") == ("<sip:edge.provider.example;lr>",)
