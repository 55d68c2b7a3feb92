"""Upgrades: a store written at every schema version opens with everything in it and
migrates to the current version, and a schema migration is preceded by a complete copy
of the old store.

The fixtures are SQL dumps of real store files: version 1 as the first release wrote
it, versions 2 to 4 as the code of that schema wrote them. They are never regenerated:
a change to an existing migration shows up here as a failing test."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

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
from certstore.sqlite import schema as sqlite_store

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
FIXTURE = FIXTURES / "store-schema-v1.sql"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NEXT = sqlite_store.SCHEMA_VERSION + 1


def store_at_version(tmp_path: Path, version: int) -> Path:
    """The store file written at schema ``version`` (kept as an SQL dump in the fixtures)."""
    path = tmp_path / "data" / "sipsgate.db"
    path.parent.mkdir(mode=0o700)
    conn = sqlite3.connect(path)
    try:
        conn.executescript((FIXTURES / f"store-schema-v{version}.sql").read_text())
    finally:
        conn.close()
    os.chmod(path, 0o600)
    return path


def first_release_store(tmp_path: Path) -> Path:
    """The store file the first release wrote."""
    return store_at_version(tmp_path, 1)


def schema_of(path: Path) -> list[tuple[str, str, str]]:
    """Every table and index of a store file with its SQL, in a stable order."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name"
        ).fetchall()
    finally:
        conn.close()
    return [(str(t), str(n), " ".join(str(q).split())) for t, n, q in rows]


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
    monkeypatch.setattr(sqlite_store, "MIGRATIONS", (*sqlite_store.MIGRATIONS, migration))


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


@pytest.mark.parametrize("version", range(1, sqlite_store.SCHEMA_VERSION + 1))
def test_store_of_every_schema_version_opens_and_upgrades(tmp_path: Path, version: int) -> None:
    """A store file of each schema version keeps its trust list, pins, rejected chain,
    settings and device identity, ends at the current version with the current schema, and
    is copied first and audited as a migration only when it was older."""
    path = store_at_version(tmp_path, version)
    with SqliteStore(path, clock=lambda: NOW) as store:
        assert len(store.list_trust()) == 2
        assert {p.note for p in store.list_pins()} >= {"compromised key"}
        (rejected,) = store.list_rejected()
        assert rejected.peer.host == "sip.other.example"
        assert rejected.address == (None if version == 1 else "192.0.2.10:5061")
        # Older entries and events name no gateway (version 4 kept them).
        assert rejected.seen_by == (("site-a", "site-b") if version >= 4 else ())
        events = store.audit(limit=500)
        assert events[-1].gateway == ("site-a" if version >= 4 else None)
        settings = store.get_settings()
        assert settings.http_auth_username == "dect01" and settings.allow_wildcards
        identity = store.device_identity()
        assert identity is not None and identity.certificate.common_name.startswith("sipsgate-v")
        sources = store.list_revocation()
        assert len(sources) == (1 if version >= 3 else 0)
        assert len(store.snapshot().revocation.crls) == len(sources)
        actions = [e.action for e in store.audit(limit=500)]
        assert actions[-1] == "store.create"
        migrated = [
            json.loads(e.details) for e in store.audit(limit=500) if e.action == "store.migrate"
        ]
        if version < sqlite_store.SCHEMA_VERSION:
            assert migrated == [
                {"from_version": version, "to_version": sqlite_store.SCHEMA_VERSION}
            ]
        else:
            assert migrated == []
    assert user_version(path) == sqlite_store.SCHEMA_VERSION
    copies = list(path.parent.glob("sipsgate.db.schema-v*.bak"))
    assert len(copies) == (1 if version < sqlite_store.SCHEMA_VERSION else 0)
    fresh = tmp_path / "fresh" / "sipsgate.db"
    SqliteStore(fresh, clock=lambda: NOW).close()
    assert schema_of(path) == schema_of(fresh)


def test_a_new_store_has_the_schema_of_the_last_version_fixture(tmp_path: Path) -> None:
    """The migrations of a new store give exactly the tables and indexes a store of the
    current schema version was written with: an edited migration fails here."""
    fixture = store_at_version(tmp_path, sqlite_store.SCHEMA_VERSION)
    fresh = tmp_path / "fresh" / "sipsgate.db"
    SqliteStore(fresh, clock=lambda: NOW).close()
    assert schema_of(fresh) == schema_of(fixture)
