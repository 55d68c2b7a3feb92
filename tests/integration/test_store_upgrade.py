"""Upgrades: a store written by the first release opens, and a schema migration is
preceded by a complete copy of the old store."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certstore import sqlite as sqlite_store
from certstore.errors import StorageError
from certstore.model import (
    Finding,
    PinDecision,
    PinMatch,
    RejectedChain,
    Rule,
    Verdict,
    VerdictKind,
)
from certstore.sqlite import SqliteStore

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store-schema-v1.sql"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NEXT = sqlite_store.SCHEMA_VERSION + 1


def first_release_store(tmp_path: Path) -> Path:
    """The store file the first release wrote (kept as an SQL dump in the fixtures)."""
    path = tmp_path / "data" / "sipsgate.db"
    path.parent.mkdir(mode=0o700)
    conn = sqlite3.connect(path)
    try:
        conn.executescript(FIXTURE.read_text())
    finally:
        conn.close()
    os.chmod(path, 0o600)
    return path


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
    finally:
        conn.close()
    return int(version)


def test_first_release_store_opens_with_everything(tmp_path: Path) -> None:
    """Trust list, pins, rejected chains, settings and the device identity survive."""
    with SqliteStore(first_release_store(tmp_path), clock=lambda: NOW) as store:
        assert len(store.list_trust()) == 2
        (pin,) = store.list_pins()
        assert pin.decision is PinDecision.REJECT and pin.match is PinMatch.PUBLIC_KEY
        assert pin.scope == "sip.provider.example:5061" and pin.note == "compromised key"
        (rejected,) = store.list_rejected()
        assert rejected.peer.host == "sip.other.example"
        assert rejected.address is None  # the first release did not keep the address
        settings = store.get_settings()
        assert settings.http_auth_username == "dect01" and settings.allow_wildcards
        assert settings.http_auth_password == "first-release-secret"
        identity = store.device_identity()
        assert identity is not None and identity.certificate.common_name == "sipsgate-v1"
        assert store.snapshot().generation > 0
        assert [e.action for e in store.audit(limit=500)][-1] == "store.create"


@pytest.fixture
def next_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the next release adds a table: one schema version more."""
    migration = ("CREATE TABLE upgrade_probe (id INTEGER PRIMARY KEY)",)
    monkeypatch.setattr(sqlite_store, "SCHEMA_VERSION", NEXT)
    monkeypatch.setattr(sqlite_store, "_MIGRATIONS", (*sqlite_store._MIGRATIONS, migration))


@pytest.mark.usefixtures("next_schema")
def test_upgrade_copies_the_old_store_then_migrates(tmp_path: Path) -> None:
    path = first_release_store(tmp_path)
    with SqliteStore(path, clock=lambda: NOW) as store:
        events = store.audit(limit=5)
        assert events[0].action == "store.migrate"
        assert json.loads(events[0].details) == {"from_version": 1, "to_version": NEXT}
        assert len(store.list_trust()) == 2
    assert user_version(path) == NEXT
    (copy,) = path.parent.glob("sipsgate.db.schema-v1-*.bak")
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert user_version(copy) == 1
    with SqliteStore(copy, clock=lambda: NOW) as old:  # the copy is a working store
        assert old.device_identity() is not None


@pytest.mark.usefixtures("next_schema")
def test_no_copy_no_upgrade(tmp_path: Path) -> None:
    """Failure twin: when the copy cannot be written, the store is left as it was."""
    path = first_release_store(tmp_path)
    blocker = path.with_name("sipsgate.db.schema-v1-20261201T120000Z.bak")
    blocker.write_text("in the way")
    with pytest.raises(StorageError, match="nothing was changed"):
        SqliteStore(path, clock=lambda: NOW)
    assert user_version(path) == 1
    assert blocker.read_text() == "in the way"


def test_first_release_rejected_list_keeps_the_dialled_address_after_upgrade(
    tmp_path: Path,
) -> None:
    """Version 2 adds rejected.address: an old entry gains it when it is seen again."""
    path = first_release_store(tmp_path)
    with SqliteStore(path, clock=lambda: NOW) as store:
        (old,) = store.list_rejected()
        assert store.audit(limit=5)[0].action == "store.migrate"
        verdict = Verdict(
            verdict=VerdictKind.REJECT,
            rule=Rule.UNTRUSTED,
            findings=tuple(Finding(reason=r, message="") for r in old.reasons),
            leaf_fingerprint=old.leaf.fingerprint,
        )
        again = store.record_handshake(verdict, old.chain, old.peer, NOW, address="192.0.2.7:5062")
        assert isinstance(again, RejectedChain)
        assert (again.id, again.count, again.address) == (old.id, old.count + 1, "192.0.2.7:5062")
        assert store.get_rejected(old.id).address == "192.0.2.7:5062"
    assert user_version(path) == sqlite_store.SCHEMA_VERSION
