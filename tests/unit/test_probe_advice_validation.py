"""Probe advice for the reasons path validation added in issue #13 names the certificate."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from certstore.model import Peer, Transport
from certstore.x509 import parse_der
from gateway.tls.advice import advise
from tests.pki import CertFactory

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
PEER = Peer(host="sip.example.test", port=5061, transport=Transport.SIPS)


def test_unsupported_key_names_the_key() -> None:
    """A DSA server key is named as such, with the fix."""
    f = CertFactory(now=NOW)
    root = f.ca("Advice Root")
    leaf = f.leaf(root, key="dsa2048")
    chain = (parse_der(leaf.der), parse_der(root.der))
    sentence = advise("unsupported-key", chain=chain, peer=PEER, now=NOW).sentence
    assert sentence.startswith("the server's certificate has a DSA key;")
    assert "named curve" in sentence


def test_unknown_critical_extension_names_the_oid() -> None:
    """The advice names the certificate and the OID it marks critical."""
    f = CertFactory(now=NOW)
    root = f.ca("Advice Root")
    ext = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55738.5"), b"\x05\x00")
    inter = f.ca("Advice CA", issuer=root, extra_extensions=[(ext, True)])
    chain = (parse_der(f.leaf(inter).der), parse_der(inter.der))
    sentence = advise("unknown-critical-extension", chain=chain, peer=PEER, now=NOW).sentence
    assert "the CA certificate 'Advice CA' marks 1.3.6.1.4.1.55738.5 critical" in sentence
