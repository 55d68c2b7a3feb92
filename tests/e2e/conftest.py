"""End-to-end fixtures: a provider PKI, a trust environment, and SIPp processes a
failed test left behind killed by PID."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.trust_env import Env, make_env
from tests.pki import CertFactory, Issued
from tests.sip_peers import DOMAIN, Sipp


@pytest.fixture(autouse=True)
async def _sipp_cleanup() -> AsyncIterator[None]:
    yield
    await Sipp.cleanup()


@dataclass(frozen=True)
class Pki:
    """The provider's CA and leaf (named DOMAIN), and an unknown CA with its own leaf."""

    root: Issued
    leaf: Issued
    other_root: Issued
    other_leaf: Issued


@pytest.fixture(scope="module")
def pki() -> Pki:
    factory = CertFactory()
    root = factory.ca("sipsgate e2e Root CA")
    other = factory.ca("Unknown Provider CA")
    return Pki(
        root=root,
        leaf=factory.leaf(root, cn=DOMAIN, dns=(DOMAIN,)),
        other_root=other,
        other_leaf=factory.leaf(other, cn=DOMAIN, dns=(DOMAIN,)),
    )


@pytest.fixture
def env(tmp_path: Path, pki: Pki) -> Iterator[Env]:
    """A real SQLite store and connector that trust the provider's CA."""
    environment = make_env(tmp_path / "store.db")
    environment.trust(pki.root)
    try:
        yield environment
    finally:
        environment.store.close()
