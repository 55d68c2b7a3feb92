"""Path validation rules of issue #13, each with a passing twin.

Name constraints (RFC 5280 §4.2.1.10), critical extensions, server-leaf rules, refused
keys, path building among many certificates, and whole-second validity. Every test
builds its chain with ``tests.pki.CertFactory`` at a fixed ``NOW`` and decides it with
:func:`certstore.decision.decide`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier
from hypothesis import given, settings
from hypothesis import strategies as st

from certstore import nameconstraints, pathvalidation
from certstore.decision import decide
from certstore.model import (
    Certificate,
    GeneralSubtree,
    Peer,
    Reason,
    Rule,
    Settings,
    Transport,
    TrustEntry,
    TrustKind,
    TrustSource,
    Verdict,
)
from certstore.pathvalidation import SignatureCache, validate_path
from certstore.snapshot import TrustSnapshot
from certstore.x509 import parse_der
from tests.pki import CertFactory, Issued, PrivateKey, make_key

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
HOST = "sip.example.test"
R = Reason

ExtraExtensions = Sequence[tuple[x509.ExtensionType, bool]]


@pytest.fixture(scope="module")
def f() -> CertFactory:
    return CertFactory(now=NOW)


@pytest.fixture(scope="module")
def root(f: CertFactory) -> Issued:
    return f.ca("Rules Root CA")


def model(cert: Issued) -> Certificate:
    return parse_der(cert.der)


def trust(*certs: Issued, server: Sequence[Issued] = ()) -> TrustSnapshot:
    entries = [
        TrustEntry(
            certificate=model(c),
            kind=TrustKind.SERVER if c in server else TrustKind.CA,
            source=TrustSource.UPLOADED,
            added_at=NOW,
        )
        for c in certs
    ]
    return TrustSnapshot.build(generation=1, settings=Settings(), trust=entries, pins=())


def run(
    *certs: Issued,
    anchors: Sequence[Issued],
    host: str = HOST,
    transport: Transport = Transport.SIPS,
    now: dt.datetime = NOW,
    server: Sequence[Issued] = (),
) -> Verdict:
    return decide(
        tuple(model(c) for c in certs),
        Peer(host=host, port=5061, transport=transport),
        now,
        trust(*anchors, server=server),
    )


def constrained(
    f: CertFactory,
    issuer: Issued,
    *,
    permitted: Sequence[x509.GeneralName] | None = None,
    excluded: Sequence[x509.GeneralName] | None = None,
    cn: str = "Constrained CA",
) -> Issued:
    nc = x509.NameConstraints(
        permitted_subtrees=list(permitted) if permitted else None,
        excluded_subtrees=list(excluded) if excluded else None,
    )
    return f.ca(cn, issuer=issuer, extra_extensions=[(nc, True)])


def accepted(v: Verdict) -> bool:
    return v.rule is Rule.CHAIN_VALID


def only(v: Verdict, reason: Reason) -> str:
    """The message of the one finding of ``reason``, after checking it is rejected."""
    assert v.rule is Rule.UNTRUSTED, v
    messages = [x.message for x in v.findings if x.reason is reason]
    assert messages, [x.message for x in v.findings]
    return messages[0]


class TestNameConstraintsDns:
    def test_permitted_dns_accepts_name_inside(self, f: CertFactory, root: Issued) -> None:
        """A leaf under a CA permitted example.test, named sip.example.test, is accepted."""
        ca = constrained(f, root, permitted=[x509.DNSName("example.test")])
        leaf = f.leaf(ca, dns=(HOST,))
        assert accepted(run(leaf, ca, anchors=[root]))

    def test_permitted_dns_rejects_name_outside(self, f: CertFactory, root: Issued) -> None:
        """A second SAN outside the permitted subtree rejects, and the sentence names the
        CA, the constraint and the name."""
        ca = constrained(f, root, permitted=[x509.DNSName("example.test")])
        leaf = f.leaf(ca, dns=(HOST, "sip.evil.test"))
        message = only(run(leaf, ca, anchors=[root]), R.NAME_CONSTRAINTS)
        assert "CN=Constrained CA" in message
        assert "DNS:example.test" in message
        assert "DNS:sip.evil.test" in message

    def test_excluded_dns_rejects(self, f: CertFactory, root: Issued) -> None:
        """An excluded subtree rejects a name below it; its twin excludes another domain."""
        bad = constrained(f, root, excluded=[x509.DNSName("example.test")])
        message = only(run(f.leaf(bad), bad, anchors=[root]), R.NAME_CONSTRAINTS)
        assert "excludes DNS:example.test" in message
        good = constrained(f, root, excluded=[x509.DNSName("other.test")])
        assert accepted(run(f.leaf(good), good, anchors=[root]))

    def test_constraint_in_trust_anchor_is_honoured(self, f: CertFactory) -> None:
        """Constraints in the trusted root itself bind the leaf."""
        nc = x509.NameConstraints(
            permitted_subtrees=[x509.DNSName("example.test")], excluded_subtrees=None
        )
        anchor = f.ca("Constrained Root", extra_extensions=[(nc, True)])
        assert accepted(run(f.leaf(anchor), anchors=[anchor]))
        out = f.leaf(anchor, dns=("sip.other.test",))
        assert only(run(out, anchors=[anchor], host="sip.other.test"), R.NAME_CONSTRAINTS)

    def test_noncritical_constraint_is_still_honoured(self, f: CertFactory, root: Issued) -> None:
        """A non-critical nameConstraints extension is not ignored."""
        nc = x509.NameConstraints(
            permitted_subtrees=[x509.DNSName("other.test")], excluded_subtrees=None
        )
        ca = f.ca("Soft CA", issuer=root, extra_extensions=[(nc, False)])
        assert only(run(f.leaf(ca), ca, anchors=[root]), R.NAME_CONSTRAINTS)

    def test_constraint_above_intermediate_binds_leaf(self, f: CertFactory, root: Issued) -> None:
        """A constraint two levels up binds the leaf below an unconstrained intermediate."""
        ca = constrained(f, root, excluded=[x509.DNSName("example.test")])
        inter = f.ca("Plain Issuing CA", issuer=ca)
        assert only(run(f.leaf(inter), inter, ca, anchors=[root]), R.NAME_CONSTRAINTS)
        ok = constrained(f, root, excluded=[x509.DNSName("example.org")])
        inter_ok = f.ca("Plain Issuing CA", issuer=ok)
        assert accepted(run(f.leaf(inter_ok), inter_ok, ok, anchors=[root]))

    def test_wildcard_that_may_match_excluded_name(self, f: CertFactory, root: Issued) -> None:
        """*.example.test can name the excluded bar.example.test: rejected (CVE-2025-61727)."""
        settings = Settings(allow_wildcards=True)
        ca = constrained(f, root, excluded=[x509.DNSName("bar.example.test")])
        leaf = f.leaf(ca, dns=("*.example.test",))
        snap = TrustSnapshot.build(
            generation=1, settings=settings, trust=trust(root).trust, pins=()
        )
        chain = (model(leaf), model(ca))
        peer = Peer(host=HOST, port=5061, transport=Transport.SIPS)
        assert R.NAME_CONSTRAINTS in decide(chain, peer, NOW, snap).reasons
        twin = constrained(f, root, excluded=[x509.DNSName("bar.other.test")])
        chain = (model(f.leaf(twin, dns=("*.example.test",))), model(twin))
        assert decide(chain, peer, NOW, snap).rule is Rule.CHAIN_VALID

    def test_wildcard_wider_than_permitted(self, f: CertFactory, root: Issued) -> None:
        """*.example.test is not inside the permitted sip.example.test subtree."""
        ca = constrained(f, root, permitted=[x509.DNSName("sip.example.test")])
        leaf = f.leaf(ca, dns=("*.example.test", HOST))
        assert only(run(leaf, ca, anchors=[root]), R.NAME_CONSTRAINTS)
        assert accepted(run(f.leaf(ca, dns=(HOST,)), ca, anchors=[root]))

    def test_common_name_identity_is_constrained(self, f: CertFactory, root: Issued) -> None:
        """Without a SAN the CN is the identity, so the constraint applies to it."""
        ca = constrained(f, root, permitted=[x509.DNSName("example.test")])
        out = f.leaf(ca, cn="sip.other.test", san=False)
        message = only(run(out, ca, anchors=[root], host="sip.other.test"), R.NAME_CONSTRAINTS)
        assert "DNS:sip.other.test" in message
        assert accepted(run(f.leaf(ca, cn=HOST, san=False), ca, anchors=[root]))

    def test_common_name_outside_dns_syntax_is_not_a_way_around(
        self, f: CertFactory, root: Issued
    ) -> None:
        """A CN identity with characters a DNS constraint cannot compare is refused."""
        ca = constrained(f, root, excluded=[x509.DNSName("other.test")])
        odd = f.leaf(ca, cn="sip_1.other.test", san=False)
        v = run(odd, ca, anchors=[root], host="sip_1.other.test")
        assert "DNS:sip_1.other.test" in only(v, R.NAME_CONSTRAINTS)


class TestNameConstraintsOtherForms:
    def test_ipv4_with_mask(self, f: CertFactory, root: Issued) -> None:
        """10.0.0.0/8 permits 10.1.2.3 and not 192.0.2.1."""
        ca = constrained(f, root, permitted=[x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))])
        inside = f.leaf(ca, dns=(), ips=("10.1.2.3",))
        assert accepted(run(inside, ca, anchors=[root], host="10.1.2.3", transport=Transport.HTTPS))
        outside = f.leaf(ca, dns=(), ips=("192.0.2.1",))
        v = run(outside, ca, anchors=[root], host="192.0.2.1", transport=Transport.HTTPS)
        assert "IP:10.0.0.0/8" in only(v, R.NAME_CONSTRAINTS)

    def test_ipv6_excluded(self, f: CertFactory, root: Issued) -> None:
        """An excluded 2001:db8::/32 rejects 2001:db8::5; 2001:db9::5 passes."""
        net = x509.IPAddress(ipaddress.ip_network("2001:db8::/32"))
        ca = constrained(f, root, excluded=[net])
        bad = f.leaf(ca, dns=(), ips=("2001:db8::5",))
        v = run(bad, ca, anchors=[root], host="2001:db8::5", transport=Transport.HTTPS)
        assert only(v, R.NAME_CONSTRAINTS)
        good = f.leaf(ca, dns=(), ips=("2001:db9::5",))
        v = run(good, ca, anchors=[root], host="2001:db9::5", transport=Transport.HTTPS)
        assert accepted(v)

    def test_sip_uri_host(self, f: CertFactory, root: Issued) -> None:
        """The host of a sip: URI SAN is held to URI constraints (RFC 5922 identities)."""
        ca = constrained(f, root, permitted=[x509.UniformResourceIdentifier("example.test")])
        good = f.leaf(ca, dns=(), uris=("sip:example.test",))
        assert accepted(run(good, ca, anchors=[root], host="example.test"))
        bad = f.leaf(ca, dns=(), uris=("sip:example.test", "sip:evil.test"))
        message = only(run(bad, ca, anchors=[root], host="example.test"), R.NAME_CONSTRAINTS)
        assert "URI:sip:evil.test" in message

    def test_email(self, f: CertFactory, root: Issued) -> None:
        """rfc822Name constraints bind mailbox SANs: .example.test permits ops@a.example.test."""
        ca = constrained(f, root, permitted=[x509.RFC822Name(".example.test")])

        def with_mail(mail: str) -> Issued:
            san = x509.SubjectAlternativeName([x509.DNSName(HOST), x509.RFC822Name(mail)])
            return f.leaf(ca, san=False, extra_extensions=[(san, False)])

        assert accepted(run(with_mail("ops@a.example.test"), ca, anchors=[root]))
        bad = with_mail("ops@evil.test")
        assert "email:ops@evil.test" in only(run(bad, ca, anchors=[root]), R.NAME_CONSTRAINTS)

    def test_directory_name(self, f: CertFactory, root: Issued) -> None:
        """A permitted directoryName binds the subject of every certificate below."""
        org = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sipsgate tests")])
        ca = constrained(f, root, permitted=[x509.DirectoryName(org)])
        assert accepted(run(f.leaf(ca), ca, anchors=[root]))
        other = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Elsewhere Ltd"),
                x509.NameAttribute(NameOID.COMMON_NAME, HOST),
            ]
        )
        bad = f.leaf(ca, subject=other)
        assert "DirName:" in only(run(bad, ca, anchors=[root]), R.NAME_CONSTRAINTS)

    def test_unprocessed_form_rejects_only_when_used(self, f: CertFactory, root: Issued) -> None:
        """An excluded otherName rejects a leaf with an otherName SAN, not one without."""
        other = x509.OtherName(ObjectIdentifier("1.3.6.1.4.1.55738.1"), b"\x05\x00")
        ca = constrained(f, root, excluded=[other])
        assert accepted(run(f.leaf(ca), ca, anchors=[root]))
        san = x509.SubjectAlternativeName([x509.DNSName(HOST), other])
        bad = f.leaf(ca, san=False, extra_extensions=[(san, False)])
        assert "otherName" in only(run(bad, ca, anchors=[root]), R.NAME_CONSTRAINTS)

    def test_malformed_constraint_rejects(self, f: CertFactory, root: Issued) -> None:
        """A DNS constraint with a leading period is refused, not ignored."""
        ca = constrained(f, root, permitted=[x509.DNSName(".example.test")])
        message = only(run(f.leaf(ca), ca, anchors=[root]), R.NAME_CONSTRAINTS)
        assert "cannot be processed" in message
        twin = constrained(f, root, permitted=[x509.DNSName("example.test")])
        assert accepted(run(f.leaf(twin), twin, anchors=[root]))

    def test_constraints_in_leaf_rejected(self, f: CertFactory, root: Issued) -> None:
        """Only a CA may carry name constraints."""
        nc = x509.NameConstraints(
            permitted_subtrees=[x509.DNSName("example.test")], excluded_subtrees=None
        )
        leaf = f.leaf(root, extra_extensions=[(nc, True)])
        assert "only a CA" in only(run(leaf, anchors=[root]), R.NAME_CONSTRAINTS)

    def test_comparison_budget(self, f: CertFactory, root: Issued) -> None:
        """Thousands of subtrees over many names stop at the budget with a reason."""
        many = [x509.DNSName(f"n{i}.example.org") for i in range(1500)]
        ca = constrained(f, root, excluded=many)
        leaf = f.leaf(ca, dns=tuple(f"h{i}.example.test" for i in range(4)))
        v = run(leaf, ca, anchors=[root], host="h0.example.test")
        assert "name comparisons" in only(v, R.CHAIN_TOO_COMPLEX)
        few = constrained(f, root, excluded=many[:20])
        assert accepted(
            run(f.leaf(few, dns=("h0.example.test",)), few, anchors=[root], host="h0.example.test")
        )


class TestCriticalExtensions:
    OID = ObjectIdentifier("1.3.6.1.4.1.55738.42")

    def ext(self, critical: bool) -> ExtraExtensions:
        return [(x509.UnrecognizedExtension(self.OID, b"\x05\x00"), critical)]

    @pytest.mark.parametrize("where", ["leaf", "intermediate", "root"])
    def test_unknown_critical_extension(self, f: CertFactory, where: str) -> None:
        """A critical extension sipsgate does not process rejects at any depth, naming
        its OID and the certificate; the non-critical twin is accepted."""
        for critical in (True, False):
            extra = self.ext(critical)
            anchor = f.ca("Ext Root", extra_extensions=extra if where == "root" else ())
            inter = f.ca(
                "Ext Issuing CA",
                issuer=anchor,
                extra_extensions=extra if where == "intermediate" else (),
            )
            leaf = f.leaf(inter, extra_extensions=extra if where == "leaf" else ())
            v = run(leaf, inter, anchors=[anchor])
            if critical:
                message = only(v, R.UNKNOWN_CRITICAL_EXTENSION)
                assert "1.3.6.1.4.1.55738.42" in message
                cn = {"leaf": HOST, "intermediate": "Ext Issuing CA", "root": "Ext Root"}[where]
                assert f"CN={cn}" in message
            else:
                assert accepted(v), [x.message for x in v.findings]

    def test_critical_policies_not_processed(self, f: CertFactory, root: Issued) -> None:
        """certificatePolicies is not processed, so a critical one rejects."""
        policies = x509.CertificatePolicies(
            [x509.PolicyInformation(ObjectIdentifier("2.23.140.1.2.1"), None)]
        )
        bad = f.leaf(root, extra_extensions=[(policies, True)])
        assert "certificatePolicies" in only(run(bad, anchors=[root]), R.UNKNOWN_CRITICAL_EXTENSION)
        good = f.leaf(root, extra_extensions=[(policies, False)])
        assert accepted(run(good, anchors=[root]))

    def test_processed_list_is_what_is_documented(self) -> None:
        """docs/trust-decision.md lists exactly the processed critical extensions."""
        text = (Path(__file__).parents[2] / "docs" / "trust-decision.md").read_text()
        for oid, name in pathvalidation.PROCESSED_CRITICAL_EXTENSIONS.items():
            assert f"{name} ({oid})" in text


class TestServerLeaf:
    def _san(self) -> ExtraExtensions:
        return [(x509.SubjectAlternativeName([x509.DNSName(HOST)]), False)]

    def test_ca_as_server_rejected(self, f: CertFactory, root: Issued) -> None:
        """An intermediate CA presented as the server is refused; trusted itself it is
        accepted."""
        ca = f.ca(HOST, issuer=root, extra_extensions=self._san())
        message = only(run(ca, anchors=[root]), R.BAD_USAGE)
        assert "CA:TRUE" in message
        assert accepted(run(ca, anchors=[root, ca], server=[ca]))
        assert accepted(run(ca, anchors=[root, ca]))  # trusted itself, even as a CA entry

    def test_self_signed_ca_true_server_trusted_itself(self, f: CertFactory) -> None:
        """A PBX certificate made by `openssl req -x509` says CA:TRUE: once trusted (filed
        as a CA entry) it is accepted as the server; untrusted it is only self-signed."""
        pbx = f.ca(HOST, extra_extensions=self._san())
        assert accepted(run(pbx, anchors=[pbx]))
        assert R.SELF_SIGNED in run(pbx, anchors=[]).reasons

    def test_keycertsign_leaf_rejected(self, f: CertFactory, root: Issued) -> None:
        """A leaf whose key usage allows keyCertSign is refused; digitalSignature is fine."""

        def usage(cert_sign: bool) -> ExtraExtensions:
            ku = x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
                crl_sign=False, encipher_only=False, decipher_only=False,
            )  # fmt: skip
            return [(ku, True)]

        bad = f.leaf(root, extra_extensions=usage(True))
        assert "keyCertSign" in only(run(bad, anchors=[root]), R.BAD_USAGE)
        assert accepted(run(f.leaf(root, extra_extensions=usage(False)), anchors=[root]))

    def test_dsa_key_refused(self, f: CertFactory, root: Issued) -> None:
        """A DSA server key is refused whatever its size; the EC twin passes."""
        bad = f.leaf(root, key="dsa2048")
        assert "DSA" in only(run(bad, anchors=[root]), R.UNSUPPORTED_KEY)
        assert accepted(run(f.leaf(root), anchors=[root]))

    def test_explicit_curve_refused(self, f: CertFactory, root: Issued) -> None:
        """An EC key with explicit curve parameters is refused; the named-curve twin passes."""
        bad = f.openssl_issue(HOST, issuer=root, explicit_curve=True, dns=[HOST])
        good = f.openssl_issue(HOST, issuer=root, dns=[HOST])
        assert "explicit curve" in only(run(bad, anchors=[root]), R.UNSUPPORTED_KEY)
        assert accepted(run(good, anchors=[root]))

    def test_ca_with_empty_subject_cannot_issue(self, f: CertFactory, root: Issued) -> None:
        """A CA with an empty subject name issues nothing; its named twin does."""
        empty = f.ca("ignored", issuer=root, subject=x509.Name([]))
        v = run(f.leaf(empty), empty, anchors=[root])
        assert "subject name is empty" in only(v, R.NOT_A_CA)
        named = f.ca("Named CA", issuer=root)
        assert accepted(run(f.leaf(named), named, anchors=[root]))


class TestPathBuilding:
    def test_valid_path_among_many(self, f: CertFactory, root: Issued) -> None:
        """36 certificates, 35 look-alike intermediates first: the genuine path is found."""
        inter = f.ca("Look-alike CA", issuer=root)
        # No key identifiers: only a signature check tells a look-alike from the issuer.
        fakes = [_bare_ca(f, inter.cert.subject, make_key("ec"), root) for _ in range(35)]
        leaf = f.leaf(inter)
        assert accepted(run(leaf, *fakes, inter, anchors=[root]))
        assert R.BAD_SIGNATURE in run(leaf, *fakes, anchors=[root]).reasons

    def test_sixty_four_certificates_considered(self, f: CertFactory, root: Issued) -> None:
        """The genuine intermediate as the 65th certificate the peer sends still counts."""
        inter = f.ca("Far CA", issuer=root)
        junk = [f.ca(f"Junk {i}", issuer=root) for i in range(63)]
        assert accepted(run(f.leaf(inter), *junk, inter, anchors=[root]))

    def test_hostile_chain_is_bounded(self, f: CertFactory, root: Issued) -> None:
        """Look-alike CAs that all verify each other exhaust a counted budget."""
        key = make_key("ec")
        cas = [_bare_ca(f, "Loop CA", key, None)]
        for _ in range(40):
            cas.append(_bare_ca(f, "Loop CA", key, cas[-1]))
        leaf = f.leaf(cas[-1])
        counter = _CountingCache()
        result = validate_path(
            tuple(model(c) for c in (leaf, *reversed(cas))), NOW, trust(root), cache=counter
        )
        assert not result.valid
        assert R.CHAIN_TOO_COMPLEX in {x.reason for x in result.findings}
        assert counter.calls <= pathvalidation.MAX_SIGNATURE_CHECKS + pathvalidation.MAX_DEPTH


class TestValidityAndReporting:
    def test_whole_seconds(self, f: CertFactory, root: Issued) -> None:
        """Half a second past notAfter is still inside it; a second later is expired."""
        leaf = f.leaf(root)
        end = leaf.cert.not_valid_after_utc
        assert accepted(run(leaf, anchors=[root], now=end + dt.timedelta(milliseconds=500)))
        assert only(run(leaf, anchors=[root], now=end + dt.timedelta(seconds=1)), R.EXPIRED)

    def test_every_problem_reported(self, f: CertFactory, root: Issued) -> None:
        """Name constraints, a critical extension and expiry are all reported together."""
        ca = constrained(f, root, excluded=[x509.DNSName("example.test")])
        ext = [
            (x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55738.7"), b"\x05\x00"), True)
        ]
        leaf = f.leaf(ca, valid_days=(-30, -1), extra_extensions=ext)
        reasons = set(run(leaf, ca, anchors=[root]).reasons)
        assert {R.NAME_CONSTRAINTS, R.UNKNOWN_CRITICAL_EXTENSION, R.EXPIRED} <= reasons


class _CountingCache(SignatureCache):
    def __init__(self) -> None:
        super().__init__(maxsize=0)
        self.calls = 0

    def check(self, cert: Certificate, issuer: Certificate) -> str | None:
        self.calls += 1
        return super().check(cert, issuer)


def _bare_ca(f: CertFactory, cn: str | x509.Name, key: PrivateKey, issuer: Issued | None) -> Issued:
    """A CA with basicConstraints only and no key identifiers: CAs sharing a name and
    ``key`` verify each other, and only a signature check tells look-alikes apart."""
    subject = (
        cn
        if isinstance(cn, x509.Name)
        else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    return f.issue(
        None,
        subject=subject,
        issuer=issuer,
        key=key,
        ca=True,
        key_ids=False,
        key_usage=None,
        valid_days=(-1, 30),
    )


class TestNameMatchingNeverRaises:
    @settings(max_examples=200, deadline=None)
    @given(
        kind=st.sampled_from(["DNS", "IP", "email", "URI"]),
        constraint=st.text(max_size=30),
        name=st.text(max_size=40),
        excluded=st.booleans(),
    )
    def test_any_text(self, kind: str, constraint: str, name: str, excluded: bool) -> None:
        """Whatever a certificate says, comparing it answers True or False, never raises."""
        network = ipaddress.ip_network("10.0.0.0/8") if kind == "IP" else None
        subtree = GeneralSubtree(kind=kind, value=constraint, network=network)
        result = nameconstraints._matches(
            subtree, nameconstraints._Name(kind, name), excluded=excluded
        )
        assert isinstance(result, bool)
        host = nameconstraints.uri_host(name)
        assert host is None or isinstance(host, str)

    @pytest.mark.parametrize(
        ("uri", "host"),
        [
            ("sip:example.test", "example.test"),
            ("sips:alice@Example.Test:5061;transport=tls", "example.test"),
            ("sip:[2001:db8::1]:5061", "2001:db8::1"),
            ("https://user@host.example.test:8443/path", "host.example.test"),
            ("urn:uuid:1234", None),
            ("no-scheme", None),
        ],
    )
    def test_uri_host(self, uri: str, host: str | None) -> None:
        """The host of sip:, sips: and authority URIs; none for URNs."""
        assert nameconstraints.uri_host(uri) == host
