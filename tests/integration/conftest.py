"""Fixtures shared by the loopback TLS tests: a PKI made per session, a connector."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.pki import CertFactory, Issued
from tests.revocation_support import CrlServer

if TYPE_CHECKING:
    from tests.integration.trust_env import Env


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


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """A fresh SQLite store, the production trust policy over it, and a connector."""
    from tests.integration.trust_env import make_env

    environment = make_env(tmp_path / "store.db")
    try:
        yield environment
    finally:
        environment.store.close()


@pytest.fixture
async def crl_server() -> AsyncIterator[CrlServer]:
    """A loopback HTTP server for CRLs (GET /ca.crl) and OCSP answers (POST /ocsp)."""
    server = CrlServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
