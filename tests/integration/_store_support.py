"""Fixtures and helpers shared by the store tests: a fake clock, stores in tmp_path,
verdicts as the decision would return them."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from certstore.model import (
    Actor,
    Certificate,
    Finding,
    Peer,
    Reason,
    Rule,
    Transport,
    Verdict,
    VerdictKind,
)
from certstore.sqlite import SqliteStore
from certstore.store import DeviceIdentity, PendingCsr
from tests.pki import CertFactory, key_pem, make_key

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
PKI = CertFactory(now=BASE_TIME, organization=None)
ADMIN = Actor(name="admin", interface="api")
CLI = Actor(name="root", interface="cli")
PEER = Peer(host="sip.example.net", port=5061, transport=Transport.SIPS, sni="sip.example.net")


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: datetime = BASE_TIME) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "store.db"


@pytest.fixture
def store(store_path: Path, clock: FakeClock) -> Iterator[SqliteStore]:
    with SqliteStore(store_path, clock=clock) as opened:
        yield opened


def untrusted(*reasons: Reason) -> Verdict:
    reasons = reasons or (Reason.UNKNOWN_ISSUER,)
    return Verdict(
        verdict=VerdictKind.REJECT,
        rule=Rule.UNTRUSTED,
        findings=tuple(Finding(reason=r, message=f"{r.value}.", depth=0) for r in reasons),
        leaf_fingerprint=None,
    )


def accept_all(*reasons: Reason) -> Verdict:
    return Verdict(
        verdict=VerdictKind.ACCEPT,
        rule=Rule.ACCEPT_ALL,
        findings=tuple(Finding(reason=r, message=f"{r.value}.", depth=0) for r in reasons),
        leaf_fingerprint=None,
    )


def first_use() -> Verdict:
    return Verdict(
        verdict=VerdictKind.ACCEPT, rule=Rule.FIRST_USE, findings=(), leaf_fingerprint=None
    )


def chain_valid() -> Verdict:
    return Verdict(
        verdict=VerdictKind.ACCEPT, rule=Rule.CHAIN_VALID, findings=(), leaf_fingerprint=None
    )


def audit_actions(store: SqliteStore, limit: int = 1000) -> list[str]:
    """Audit actions, oldest first."""
    return [e.action for e in reversed(store.audit(limit=limit))]


def last_details(store: SqliteStore) -> dict[str, object]:
    details = json.loads(store.audit(limit=1)[0].details)
    assert isinstance(details, dict)
    return details


def trust_state(store: SqliteStore) -> tuple[object, ...]:
    """Everything a backup carries, as comparable values."""
    snap = store.snapshot()
    return (
        snap.trust,
        snap.pins,
        snap.settings,
        store.list_rejected(),
    )


PROJECT_ROOT = Path(__file__).resolve().parents[2]


def worker_command(*args: str) -> list[str]:
    """The command line of a store worker process (tests/integration/_store_worker.py)."""
    return [sys.executable, "-m", "tests.integration._store_worker", *args]


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
    )
    env["PYTHONWARNINGS"] = "error"
    return env


def make_chain(host: str = "sip.example.net") -> tuple[Certificate, Certificate, Certificate]:
    """(leaf, intermediate, root) as the store sees them, each with its own name."""
    root = PKI.ca(f"Root for {host}")
    intermediate = PKI.ca(f"Intermediate for {host}", issuer=root)
    leaf = PKI.leaf(intermediate, cn=host)
    return leaf.model, intermediate.model, root.model


def identity(cn: str = "sipsgate", *, days: int = 365, kind: str = "standard") -> DeviceIdentity:
    issued = PKI.leaf(None, cn=cn, not_after=BASE_TIME + timedelta(days=days))
    return DeviceIdentity(
        kind=kind, chain=(issued.model,), private_key_pem=issued.key_pem, created_at=BASE_TIME
    )


def csr(cn: str = "sipsgate") -> PendingCsr:
    key = make_key()
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    return PendingCsr(
        csr_pem=request.public_bytes(serialization.Encoding.PEM),
        private_key_pem=key_pem(key),
        key_spec="ec-p256",
        created_at=BASE_TIME,
    )
