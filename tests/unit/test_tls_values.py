"""Pure pieces of the TLS package: targets, settings, error wording, metrics."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from OpenSSL import SSL

from certstore.model import Settings
from certstore.snapshot import TrustSnapshot
from gateway.metrics import MetricsRegistry
from gateway.tls.engine import (
    TlsSettings,
    client_certificate_refused,
    describe_handshake_failure,
    openssl_reasons,
)
from gateway.tls.policy import TlsTarget, is_ip_literal, same_state, target_from_uri


class TestTlsTarget:
    def test_sni_is_the_host_name(self) -> None:
        """A DNS name is sent as SNI, lowercased and without a trailing dot."""
        assert TlsTarget.sips("SIP.Example.NET.").sni == "sip.example.net"

    @pytest.mark.parametrize("host", ["192.0.2.7", "2001:db8::1", "[2001:db8::1]"])
    def test_no_sni_for_ip_literals(self, host: str) -> None:
        """IP literals never go out as SNI."""
        target = TlsTarget.sips(host)
        assert target.sni is None
        assert target.is_ip

    def test_default_ports(self) -> None:
        """5061 for sips, 443 for https."""
        assert TlsTarget.sips("a.test").port == 5061
        assert TlsTarget.https("a.test").port == 443

    def test_address_defaults_to_the_identity(self) -> None:
        """Without an override the dialled address is the identity."""
        assert TlsTarget.sips("a.test", 5062).address == ("a.test", 5062)

    def test_connect_override_keeps_the_identity(self) -> None:
        """--connect dials elsewhere; host, port and SNI stay the URI's."""
        target = TlsTarget.sips("a.test", connect_host="127.0.0.1", connect_port=7000)
        assert target.address == ("127.0.0.1", 7000)
        assert target.destination == "a.test:5061"
        assert target.sni == "a.test"

    def test_ipv6_destination_is_bracketed(self) -> None:
        """IPv6 destinations are shown in brackets, and dialled without."""
        target = TlsTarget.https("2001:db8::1", 8443)
        assert target.destination == "[2001:db8::1]:8443"
        assert target.uri == "https://[2001:db8::1]:8443"
        assert target.address == ("2001:db8::1", 8443)

    @pytest.mark.parametrize("port", [0, 65536, -1])
    def test_bad_port_is_refused(self, port: int) -> None:
        """Ports outside 1..65535 are refused with the range named."""
        with pytest.raises(ValueError, match="1 to 65535"):
            TlsTarget(scheme="sips", host="a.test", port=port)

    def test_empty_host_is_refused(self) -> None:
        """A target needs a host."""
        with pytest.raises(ValueError, match="host"):
            TlsTarget(scheme="sips", host="", port=5061)

    def test_is_ip_literal(self) -> None:
        """Host names are not IP literals."""
        assert not is_ip_literal("sip.example.net")
        assert is_ip_literal("10.0.0.1")


class TestTlsSettings:
    def test_defaults(self) -> None:
        """TLS 1.2 minimum, 1.3 maximum, 10 s handshake timeout."""
        s = TlsSettings()
        assert (s.min_version, s.max_version, s.handshake_timeout) == ("1.2", "1.3", 10.0)

    def test_unknown_version_is_refused(self) -> None:
        """Only 1.2 and 1.3 are versions we speak."""
        with pytest.raises(ValueError, match=r"tls.min_version is '1.1'"):
            TlsSettings(min_version="1.1")

    def test_min_above_max_is_refused(self) -> None:
        """A minimum above the maximum cannot work."""
        with pytest.raises(ValueError, match=r"above tls\.max_version"):
            TlsSettings(min_version="1.3", max_version="1.2")

    def test_timeouts_must_be_positive(self) -> None:
        """Zero timeouts are refused."""
        with pytest.raises(ValueError, match="handshake_timeout"):
            TlsSettings(handshake_timeout=0)


class TestHandshakeWording:
    def test_reasons_come_out_of_pyopenssl_errors(self) -> None:
        """OpenSSL's (lib, func, reason) triples become the reason strings."""
        error = SSL.Error([("SSL routines", "", "wrong version number")])
        assert openssl_reasons(error) == ("wrong version number",)

    def test_syscall_errors_keep_their_text(self) -> None:
        """SysCallError (errno, text) keeps the text."""
        assert openssl_reasons(SSL.SysCallError(-1, "Unexpected EOF")) == ("Unexpected EOF",)

    @pytest.mark.parametrize(
        ("reason", "advice"),
        [
            ("wrong version number", "5061"),
            ("tlsv13 alert certificate required", "device-certificate.md"),
            ("tlsv1 alert unknown ca", "refused sipsgate's client certificate"),
            ("tlsv1 alert access denied", "refused sipsgate's client certificate"),
            ("sslv3 alert bad certificate", "refused sipsgate's client certificate"),
            ("tlsv1 alert protocol version", "TLS 1.2 or 1.3"),
        ],
    )
    def test_known_failures_get_advice(self, reason: str, advice: str) -> None:
        """Each failure an operator meets comes with what to do."""
        text = describe_handshake_failure(TlsTarget.sips("a.test"), (reason,))
        assert reason in text
        assert advice in text
        assert text.startswith("The TLS handshake with sips:a.test:5061 failed")

    def test_unknown_failure_still_says_what_to_check(self) -> None:
        """Unlisted reasons are shown, with a general hint."""
        text = describe_handshake_failure(TlsTarget.sips("a.test"), ("something odd",))
        assert "something odd" in text
        assert "TLS 1.2 or 1.3" in text


class TestMetrics:
    def test_counters_render_with_labels(self) -> None:
        """Counters render as Prometheus text, labels escaped, sorted."""
        registry = MetricsRegistry()
        c = registry.counter("x_total", "Things.", ("rule",))
        c.inc(rule="untrusted")
        c.inc(2, rule='we"ird')
        text = registry.render()
        assert "# TYPE x_total counter" in text
        assert 'x_total{rule="untrusted"} 1' in text
        assert 'x_total{rule="we\\"ird"} 2' in text

    def test_gauge_goes_both_ways(self) -> None:
        """Gauges go up and down."""
        g = MetricsRegistry().gauge("open", "Open.", ("t",))
        g.inc(t="sips")
        g.inc(t="sips")
        g.dec(t="sips")
        assert g.value(t="sips") == 1

    def test_wrong_labels_are_refused(self) -> None:
        """Label sets must match the declaration exactly."""
        c = MetricsRegistry().counter("y_total", "Y.", ("a",))
        with pytest.raises(ValueError, match="takes the labels"):
            c.inc(b="1")

    def test_counters_cannot_go_down(self) -> None:
        """A negative increment is a bug."""
        with pytest.raises(ValueError, match="cannot go down"):
            MetricsRegistry().counter("z_total", "Z.").inc(-1)

    def test_re_registration_returns_the_same_metric(self) -> None:
        """Asking twice for one name gives one metric; a clash is refused."""
        registry = MetricsRegistry()
        assert registry.counter("a_total", "A.") is registry.counter("a_total", "A.")
        with pytest.raises(ValueError, match="already registered"):
            registry.gauge("a_total", "A.")

    def test_unlabelled_metric_renders_zero(self) -> None:
        """A never-touched unlabelled metric shows 0."""
        registry = MetricsRegistry()
        registry.counter("b_total", "B.")
        assert "b_total 0" in registry.render()


class TestTargetFromUri:
    @pytest.mark.parametrize(
        ("uri", "scheme", "host", "port"),
        [
            ("sips:sip.example.net", "sips", "sip.example.net", 5061),
            ("sips:sip.example.net:5062", "sips", "sip.example.net", 5062),
            ("SIPS:alice@sip.example.net;transport=tls", "sips", "sip.example.net", 5061),
            ("sips:[2001:db8::1]:5061", "sips", "2001:db8::1", 5061),
            ("sips:192.0.2.1", "sips", "192.0.2.1", 5061),
            ("https://prov.example.net", "https", "prov.example.net", 443),
            ("https://prov.example.net:8443/cfg.xml", "https", "prov.example.net", 8443),
            ("https://[2001:db8::2]/x", "https", "2001:db8::2", 443),
        ],
    )
    def test_uris(self, uri: str, scheme: str, host: str, port: int) -> None:
        """sips: and https:// URIs give the identity and the default ports."""
        target = target_from_uri(uri)
        assert (target.scheme, target.host, target.port) == (scheme, host, port)

    def test_connect_overrides_the_address_only(self) -> None:
        """--connect changes where to dial, not what is checked."""
        target = target_from_uri("sips:sip.example.net", "127.0.0.1:7000")
        assert target.address == ("127.0.0.1", 7000)
        assert (target.host, target.port, target.sni) == (
            "sip.example.net",
            5061,
            "sip.example.net",
        )

    def test_connect_without_port_keeps_the_uri_port(self) -> None:
        """--connect HOST alone dials the URI's port."""
        assert target_from_uri("sips:a.test:5070", "10.0.0.1").address == ("10.0.0.1", 5070)

    @pytest.mark.parametrize(
        ("uri", "connect", "message"),
        [
            ("sip:a.test", None, "not a sips: or https:// URI"),
            ("http://a.test", None, "not a sips: or https:// URI"),
            ("sips:a.test:99999", None, "use 1 to 65535"),
            ("sips:a.test:x", None, "use 1 to 65535"),
            ("sips:", None, "no host"),
            ("sips:[2001:db8::1", None, "unclosed"),
            ("sips:a.test", "b.test:0", "use 1 to 65535"),
            ("sips://a.test:5061", None, "no '//'"),
            ("sips:a.test/x", None, "neither a host name nor an IP address"),
            ("https://a b/", None, "neither a host name nor an IP address"),
            ("sips:a..test", None, "neither a host name nor an IP address"),
            ("sips:a.test", "b/c:5061", "neither a host name nor an IP address"),
        ],
    )
    def test_bad_input_says_what_is_wrong(
        self, uri: str, connect: str | None, message: str
    ) -> None:
        """Every malformed URI or --connect is refused with a sentence."""
        with pytest.raises(ValueError, match=message):
            target_from_uri(uri, connect)


class TestTargetFuzz:
    @given(st.text(max_size=40), st.sampled_from(["sips:", "https://", "SIPS:", ""]))
    @settings(max_examples=400, deadline=None)
    def test_every_input_is_refused_or_names_a_host(self, text: str, prefix: str) -> None:
        """Any text is a ValueError with a sentence, or a target whose host and SNI are a
        host name or an IP address (never '//host' or a path)."""
        try:
            target = target_from_uri(prefix + text)
        except ValueError as exc:
            message = str(exc)
        else:
            for name in (target.host, target.sni or ""):
                assert "/" not in name and not any(ch.isspace() for ch in name)
            assert target.is_ip or all(part for part in target.host.rstrip(".").split("."))
            return
        assert message.endswith("."), message


class TestClientCertificateRefusal:
    def test_an_alert_after_a_tls13_handshake_is_a_refusal(self) -> None:
        """At the first read after the handshake a generic alert can only be the
        server's verdict on our certificate flight."""
        error = client_certificate_refused(
            TlsTarget.sips("a.test"), ("tlsv1 alert handshake failure",), after_handshake=True
        )
        assert error is not None
        assert error.after_handshake
        assert error.alert == "tlsv1 alert handshake failure"
        assert str(error).startswith("The TLS session with sips:a.test:5061 failed")
        assert "install a certificate its CA issued" in str(error)

    def test_a_handshake_failure_during_the_handshake_is_not_called_a_refusal(self) -> None:
        """Its twin: during the handshake it may be ciphers; the advice says so."""
        target = TlsTarget.sips("a.test")
        reasons = ("sslv3 alert handshake failure",)
        assert client_certificate_refused(target, reasons, after_handshake=False) is None
        assert "cipher suite" in describe_handshake_failure(target, reasons)

    def test_reasons_without_an_alert_are_not_a_refusal(self) -> None:
        """Our own verification errors mention certificates too, but are no alert."""
        reasons = ("certificate verify failed",)
        target = TlsTarget.sips("a.test")
        assert client_certificate_refused(target, reasons, after_handshake=True) is None


class TestSameState:
    """Whether two snapshots show one trust state (the relay retries a rejection that
    a change has overtaken)."""

    @staticmethod
    def snapshot(generation: int) -> TrustSnapshot:
        return TrustSnapshot.build(generation=generation, settings=Settings(), trust=(), pins=())

    def test_store_snapshots_compare_by_generation(self) -> None:
        """Two objects built for one generation are one state; another generation is not."""
        first = self.snapshot(4)
        assert same_state(first, first)
        assert same_state(first, self.snapshot(4))
        assert not same_state(first, self.snapshot(5))

    def test_snapshots_without_a_generation_compare_as_values(self) -> None:
        """A policy whose snapshot is a plain value (a set of trusted fingerprints)."""
        assert same_state(frozenset({"a"}), frozenset({"a"}))
        assert not same_state(frozenset({"a"}), frozenset({"a", "b"}))
