"""Fixtures shared by the loopback TLS tests: a PKI made per session, a connector."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.pki import CertFactory, Issued


@dataclass(frozen=True)
class Hierarchy:
    """Root CA → intermediate CA → leaf for ``sip.example.test``."""

    factory: CertFactory
    root: Issued
    intermediate: Issued
    leaf: Issued


@pytest.fixture(scope="session")
def pki() -> CertFactory:
    return CertFactory()


@pytest.fixture(scope="session")
def hierarchy(pki: CertFactory) -> Hierarchy:
    root = pki.ca("sipsgate Test Root CA")
    intermediate = pki.ca("sipsgate Test Intermediate CA", issuer=root)
    leaf = pki.leaf(intermediate, cn="sip.example.test", dns=("sip.example.test",))
    return Hierarchy(pki, root, intermediate, leaf)
