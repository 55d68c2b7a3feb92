"""Peer identity matching: RFC 5922 for SIPS, RFC 6125 / 9110 for HTTPS."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certstore.identity import (
    check_identity,
    identity_matches,
    match_dns_pattern,
    normalize_host,
    sip_domain_of_uri,
)
from certstore.model import Certificate, Transport
from tests.pki import CertFactory

SIPS, HTTPS = Transport.SIPS, Transport.HTTPS

PKI = CertFactory(now=datetime(2026, 6, 1, tzinfo=UTC), organization=None)


@cache
def _base() -> Certificate:
    return PKI.leaf(None, cn="identity-base").model


def cert(
    *,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    uris: tuple[str, ...] = (),
    cn: str | None = None,
    san: bool | None = None,
) -> Certificate:
    """A certificate model with exactly these names (only names matter here)."""
    has_san = bool(dns or ips or uris) if san is None else san
    return replace(_base(), san_dns=dns, san_ip=ips, san_uri=uris, common_name=cn, has_san=has_san)


def matches(c: Certificate, host: str, transport: Transport, *, wildcards: bool = False) -> bool:
    """Both entry points, which must always agree."""
    fast = identity_matches(c, host, transport, allow_wildcards=wildcards)
    full = check_identity(c, host, transport, allow_wildcards=wildcards)
    assert fast is full.matched
    return fast


class TestSips:
    def test_dns_name(self) -> None:
        """A DNS name equal to the SIP domain matches."""
        assert matches(cert(dns=("sip.example.net",)), "sip.example.net", SIPS)

    def test_twin_other_dns_name(self) -> None:
        """Another DNS name does not."""
        assert not matches(cert(dns=("sip.example.org",)), "sip.example.net", SIPS)

    def test_case_and_trailing_dot(self) -> None:
        """Comparison ignores case and one trailing dot on either side."""
        assert matches(cert(dns=("SIP.Example.NET.",)), "sip.EXAMPLE.net", SIPS)
        assert matches(cert(dns=("sip.example.net",)), "sip.example.net.", SIPS)

    def test_sip_uri_matches_domain(self) -> None:
        """`sip:example.net` names the SIP domain example.net."""
        assert matches(cert(uris=("sip:example.net",)), "example.net", SIPS)

    def test_sip_uri_takes_precedence_over_dns(self) -> None:
        """With sip: URIs present, DNS names are ignored (RFC 5922 §7.1)."""
        c = cert(uris=("sip:example.net",), dns=("sip.example.net",))
        assert matches(c, "example.net", SIPS)
        assert not matches(c, "sip.example.net", SIPS)
        result = check_identity(c, "sip.example.net", SIPS, allow_wildcards=False)
        assert any("DNS names are ignored" in note for note in result.notes)

    def test_sip_uri_with_user_part_is_not_a_domain(self) -> None:
        """`sip:alice@example.net` is not a domain identity, and still hides the DNS names."""
        c = cert(uris=("sip:alice@example.net",), dns=("example.net",))
        assert not matches(c, "example.net", SIPS)

    def test_sips_and_https_uris_do_not_hide_dns(self) -> None:
        """Only sip: URIs switch DNS names off; sips: and https: URIs are not domain ids."""
        for uri in ("sips:example.net", "https://example.net/"):
            c = cert(uris=(uri,), dns=("sip.example.net",))
            assert matches(c, "sip.example.net", SIPS)
            assert not matches(cert(uris=(uri,)), "example.net", SIPS)

    @pytest.mark.parametrize(
        "uri",
        [
            "sip:example.net:5061",
            "sip:example.net;transport=tls",
            "SIP:Example.NET",
            "sip:example.net?x=y",
        ],
    )
    def test_sip_uri_forms(self, uri: str) -> None:
        """Ports, parameters and case around the domain are ignored."""
        assert matches(cert(uris=(uri,)), "example.net", SIPS)

    def test_cn_only_without_san(self) -> None:
        """The CN is read when the certificate has no subjectAltName extension."""
        assert matches(cert(cn="sip.example.net"), "sip.example.net", SIPS)

    def test_twin_cn_ignored_with_san(self) -> None:
        """Any subjectAltName extension (even IP-only) turns the CN fallback off."""
        c = cert(cn="sip.example.net", ips=("192.0.2.1",))
        assert not matches(c, "sip.example.net", SIPS)
        empty = cert(cn="sip.example.net", san=True)
        assert not matches(empty, "sip.example.net", SIPS)

    def test_wildcard_off_by_default(self) -> None:
        """Wildcards are refused for SIPS unless the setting allows them, with a note."""
        c = cert(dns=("*.example.net",))
        assert not matches(c, "sip.example.net", SIPS)
        result = check_identity(c, "sip.example.net", SIPS, allow_wildcards=False)
        assert any("allow_wildcards" in note for note in result.notes)
        assert matches(c, "sip.example.net", SIPS, wildcards=True)

    def test_wildcard_cn_with_setting(self) -> None:
        """With the setting on, a CN-only wildcard matches too."""
        assert matches(cert(cn="*.example.net"), "sip.example.net", SIPS, wildcards=True)
        assert not matches(cert(cn="*.example.net"), "sip.example.net", SIPS)


class TestHttps:
    def test_dns_name_and_wildcard(self) -> None:
        """Standard wildcards are always allowed for HTTPS."""
        assert matches(cert(dns=("prov.example.net",)), "prov.example.net", HTTPS)
        assert matches(cert(dns=("*.example.net",)), "prov.example.net", HTTPS)

    @pytest.mark.parametrize(
        ("pattern", "host"),
        [
            ("*.example.net", "example.net"),  # the wildcard needs a label
            ("*.example.net", "a.b.example.net"),  # exactly one label
            ("*.com", "example.com"),  # too few labels after the wildcard
            ("*.", "example"),
            ("f*.example.com", "foo.example.com"),  # partial wildcard, RFC 6125 strict
            ("*oo.example.com", "foo.example.com"),
            ("*.*.example.com", "a.b.example.com"),
            ("sip.*.example.com", "sip.a.example.com"),
            ("*..example.com", "a..example.com"),
        ],
    )
    def test_wildcards_refused(self, pattern: str, host: str) -> None:
        """Wildcards outside RFC 6125 §6.4.3's strict form never match."""
        assert not matches(cert(dns=(pattern,)), host, HTTPS)

    def test_uris_ignored(self) -> None:
        """sip: URIs say nothing for HTTPS."""
        assert not matches(cert(uris=("sip:example.net",)), "example.net", HTTPS)
        assert matches(cert(uris=("sip:example.net",), dns=("example.net",)), "example.net", HTTPS)

    def test_cn_fallback_only_without_san(self) -> None:
        """Legacy provisioning servers with CN-only certificates still match."""
        assert matches(cert(cn="prov.example.net"), "prov.example.net", HTTPS)
        assert not matches(
            cert(cn="prov.example.net", dns=("x.example",)), "prov.example.net", HTTPS
        )


class TestIpAddresses:
    @pytest.mark.parametrize("transport", [SIPS, HTTPS])
    def test_ipv4_and_ipv6(self, transport: Transport) -> None:
        """IP literals match IP SANs, IPv6 in any notation, with or without brackets."""
        c = cert(ips=("192.0.2.1", "2001:db8::1"))
        assert matches(c, "192.0.2.1", transport)
        assert matches(c, "2001:DB8:0:0:0:0:0:1", transport)
        assert matches(c, "[2001:db8::1]", transport)
        assert not matches(c, "192.0.2.2", transport)
        assert not matches(c, "2001:db8::2", transport)

    @pytest.mark.parametrize("transport", [SIPS, HTTPS])
    def test_ip_never_matches_names(self, transport: Transport) -> None:
        """Neither a DNS name, a sip: URI nor the CN spelling the address can vouch for it."""
        assert not matches(cert(dns=("192.0.2.1",)), "192.0.2.1", transport)
        assert not matches(cert(uris=("sip:192.0.2.1",)), "192.0.2.1", transport)
        assert not matches(cert(cn="192.0.2.1"), "192.0.2.1", transport)
        result = check_identity(cert(cn="192.0.2.1"), "192.0.2.1", transport, allow_wildcards=True)
        assert any("IP address entry" in note for note in result.notes)

    def test_dns_host_never_matches_ip_san(self) -> None:
        """An IP SAN does not vouch for a host name."""
        assert not matches(cert(ips=("192.0.2.1",)), "host.example", HTTPS)


class TestInternationalNames:
    def test_unicode_host_matches_a_label(self) -> None:
        """A peer host given in Unicode is compared in A-label form."""
        c = cert(dns=("xn--bcher-kva.example",))
        assert matches(c, "bücher.example", HTTPS)
        assert matches(c, "xn--bcher-kva.example", SIPS)

    def test_non_ascii_certificate_name_refused(self) -> None:
        """A U-label in a certificate never matches, and the reason is given."""
        c = cert(dns=("bücher.example",))
        assert not matches(c, "bücher.example", HTTPS)
        result = check_identity(c, "bücher.example", HTTPS, allow_wildcards=True)
        assert any("not plain ASCII" in note for note in result.notes)

    @pytest.mark.parametrize(
        ("host", "lookalike"),
        [
            ("a\u200d.example", "a.example"),  # IDNA 2003 would drop the zero-width joiner
            ("stra\u00dfe.example", "strasse.example"),  # ... and fold sharp s to ss
            ("a\u00ad.example", "a.example"),  # ... and drop the soft hyphen
        ],
    )
    def test_lossy_idna_conversion_refused(self, host: str, lookalike: str) -> None:
        """A host whose IDNA 2003 conversion is lossy matches nothing, not its look-alike."""
        assert normalize_host(host) == host.lower()
        assert not matches(cert(dns=(lookalike,)), host, HTTPS)

    def test_idna_refused_host(self) -> None:
        """A host the codec refuses outright (an over-long label) is kept and matches nothing."""
        host = "\u00fc" + "a" * 70 + ".example"
        assert normalize_host(host) == host
        assert not matches(cert(dns=(host,)), host, HTTPS)


class TestExplanation:
    def test_lists_presented_and_expected(self) -> None:
        """The description names every identity of the certificate and the peer."""
        c = cert(dns=("a.example", "b.example"), ips=("192.0.2.9",), uris=("sips:x",), cn="A")
        result = check_identity(c, "Sip.Example.Net", SIPS, allow_wildcards=False)
        assert not result.matched
        text = result.describe()
        for part in ("DNS:a.example", "DNS:b.example", "IP:192.0.2.9", "URI:sips:x", "CN=A"):
            assert part in text
        assert "sip.example.net" in text
        assert "RFC 5922" in text
        assert result.considered == ("DNS:a.example", "DNS:b.example")

    def test_no_names_at_all(self) -> None:
        """A certificate naming nothing says so."""
        result = check_identity(cert(), "h.example", HTTPS, allow_wildcards=True)
        assert "no name at all" in result.describe()


class TestHelpers:
    @pytest.mark.parametrize(
        ("uri", "domain"),
        [
            ("sip:example.net", "example.net"),
            ("sip:[2001:db8::1]:5061", "[2001:db8::1]"),
            ("sip:alice@example.net", None),
            ("sips:example.net", None),
            ("sip:", None),
            ("sip:[2001:db8::1", None),
            ("example.net", None),
        ],
    )
    def test_sip_domain_of_uri(self, uri: str, domain: str | None) -> None:
        """Only user-less sip: URIs name a domain."""
        assert sip_domain_of_uri(uri) == domain

    @pytest.mark.parametrize(
        ("host", "normal"),
        [
            ("Example.NET.", "example.net"),
            ("[2001:DB8::1]", "2001:db8::1"),
            ("192.0.2.1", "192.0.2.1"),
            ("BÜCHER.example", "xn--bcher-kva.example"),
            ("1example.net", "1example.net"),
        ],
    )
    def test_normalize_host(self, host: str, normal: str) -> None:
        """Hosts are normalised to lowercase A-labels or canonical IP text."""
        assert normalize_host(host) == normal

    def test_match_dns_pattern_edge_cases(self) -> None:
        """Empty names and hosts never match."""
        assert not match_dns_pattern("", "a.example", wildcards=True)
        assert not match_dns_pattern(".", "a.example", wildcards=True)
        assert not match_dns_pattern("a.example", "", wildcards=True)
        assert match_dns_pattern("*.a.example", "x.a.example", wildcards=True)
        assert not match_dns_pattern("*.a.example", ".a.example", wildcards=True)


_LABELS = st.sampled_from(["a", "b", "example", "net", "*", "f*", "xn--bcher-kva", "ü"])
_NAMES = st.lists(_LABELS, min_size=1, max_size=4).map(".".join)
_URIS = st.one_of(
    _NAMES.map(lambda n: f"sip:{n}"),
    _NAMES.map(lambda n: f"sip:user@{n}"),
    _NAMES.map(lambda n: f"sips:{n}"),
)
_IPS = st.sampled_from(["192.0.2.1", "2001:db8::1", "10.0.0.1"])


@given(
    dns=st.lists(_NAMES, max_size=3).map(tuple),
    ips=st.lists(_IPS, max_size=2).map(tuple),
    uris=st.lists(_URIS, max_size=2).map(tuple),
    cn=st.one_of(st.none(), _NAMES, _IPS),
    san=st.sampled_from([None, True, False]),
    host=st.one_of(_NAMES, _IPS, st.sampled_from(["[2001:DB8::1]", "A.Example.Net."])),
    transport=st.sampled_from([SIPS, HTTPS]),
    wildcards=st.booleans(),
)
def test_fast_and_explained_checks_agree(
    dns: tuple[str, ...],
    ips: tuple[str, ...],
    uris: tuple[str, ...],
    cn: str | None,
    san: bool | None,
    host: str,
    transport: Transport,
    wildcards: bool,
) -> None:
    """identity_matches and check_identity give the same answer on any names."""
    if san is False:
        dns, ips, uris = (), (), ()
    c = cert(dns=dns, ips=ips, uris=uris, cn=cn, san=san)
    result = matches(c, host, transport, wildcards=wildcards)
    if result and "*" not in "".join((*dns, cn or "")):
        # Without wildcards a match is always an exact, case-insensitive name.
        expected = normalize_host(host)
        candidates = {normalize_host(n) for n in (*dns, *ips, cn or "")}
        candidates |= {normalize_host(d) for u in uris if (d := sip_domain_of_uri(u))}
        assert expected in candidates
