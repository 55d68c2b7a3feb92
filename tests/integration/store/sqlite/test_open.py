"""Opening a store: files and modes, seeding, schema versions, failures mapped to StorageError."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from certstore.builtin import builtin_certificates, builtin_fingerprints
from certstore.errors import StorageError, ValidationError
from certstore.model import Settings, TrustKind, TrustSource
from certstore.sqlite import SCHEMA_VERSION, SqliteStore
from tests.integration._store_support import ADMIN, PKI, FakeClock, audit_actions


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


class TestCreate:
    def test_creates_directory_0700_and_files_0600(
        self, store: SqliteStore, store_path: Path
    ) -> None:
        """A new data directory is 0700 and the database, WAL and SHM files are 0600."""
        store.add_trust(
            [PKI.leaf(None, cn="mode.example").model], source=TrustSource.UPLOADED, actor=ADMIN
        )
        assert _mode(store_path.parent) == 0o700
        for suffix in ("", "-wal", "-shm"):
            path = Path(f"{store_path}{suffix}")
            assert path.exists(), path
            assert _mode(path) == 0o600, path

    def test_existing_directory_mode_is_left_alone(self, tmp_path: Path, clock: FakeClock) -> None:
        """An operator's existing data directory keeps its mode; the file is still 0600."""
        tmp_path.chmod(0o755)
        with SqliteStore(tmp_path / "store.db", clock=clock):
            pass
        assert _mode(tmp_path) == 0o755
        assert _mode(tmp_path / "store.db") == 0o600

    def test_loose_file_mode_is_tightened(self, store_path: Path, clock: FakeClock) -> None:
        """A store file copied in with mode 0644 is set back to 0600 at open."""
        SqliteStore(store_path, clock=clock).close()
        store_path.chmod(0o644)
        with SqliteStore(store_path, clock=clock):
            assert _mode(store_path) == 0o600

    def test_seeds_builtins_and_default_settings(
        self, store: SqliteStore, clock: FakeClock
    ) -> None:
        """A new store holds every builtin CA (source builtin, kind ca) and default settings."""
        entries = store.list_trust()
        assert {e.certificate.fingerprint for e in entries} == builtin_fingerprints()
        assert len(entries) == len(builtin_certificates()) > 100
        assert all(e.source is TrustSource.BUILTIN for e in entries)
        assert all(e.kind is TrustKind.CA for e in entries)
        assert all(e.added_at == clock.now for e in entries)
        assert store.get_settings() == Settings()
        assert audit_actions(store) == ["store.create"]

    def test_uses_wal_and_full_sync(self, store: SqliteStore, store_path: Path) -> None:
        """The file is in WAL mode; connections commit with synchronous=FULL."""
        conn = sqlite3.connect(store_path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        finally:
            conn.close()
        assert store.backend.connection().execute("PRAGMA synchronous").fetchone()[0] == 2

    def test_reopen_keeps_state_and_does_not_reseed(
        self, store_path: Path, clock: FakeClock
    ) -> None:
        """Reopening finds what was written and does not add the builtins again."""
        with SqliteStore(store_path, clock=clock) as first:
            first.clear_trust(actor=ADMIN)
        with SqliteStore(store_path, clock=clock) as second:
            assert second.list_trust() == ()
            assert audit_actions(second) == ["store.create", "trust.clear"]

    def test_bad_limits_are_refused(self, store_path: Path) -> None:
        """A rejected or audit limit under 1 is refused before any file is made."""
        with pytest.raises(ValidationError) as info:
            SqliteStore(store_path, rejected_limit=0)
        assert info.value.field == "rejected_limit"
        with pytest.raises(ValidationError):
            SqliteStore(store_path, audit_limit=0)
        assert not store_path.exists()


class TestRefuse:
    def test_newer_schema_is_refused(self, store_path: Path, clock: FakeClock) -> None:
        """A store written by a newer sipsgate is refused with a clear error and left as is."""
        SqliteStore(store_path, clock=clock).close()
        conn = sqlite3.connect(store_path)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
        with pytest.raises(StorageError, match="newer sipsgate") as info:
            SqliteStore(store_path, clock=clock)
        assert f"schema version {SCHEMA_VERSION + 1}" in str(info.value)
        conn = sqlite3.connect(store_path)
        try:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        finally:
            conn.close()

    def test_not_a_database(self, store_path: Path) -> None:
        """A file that is not SQLite gives a StorageError that says it is damaged."""
        store_path.parent.mkdir(mode=0o700)
        store_path.write_bytes(b"this is not a database at all" * 200)
        with pytest.raises(StorageError, match="damaged or not a sipsgate store"):
            SqliteStore(store_path)

    def test_unwritable_directory(self, tmp_path: Path) -> None:
        """A data directory that cannot be created gives a StorageError naming it."""
        blocker = tmp_path / "file"
        blocker.write_text("x")
        with pytest.raises(StorageError, match="could not be created"):
            SqliteStore(blocker / "sub" / "store.db")

    def test_closed_store_refuses_calls(self, store_path: Path) -> None:
        """After close() every call raises StorageError instead of reopening silently."""
        opened = SqliteStore(store_path)
        opened.close()
        with pytest.raises(StorageError, match="was closed"):
            opened.snapshot()
        opened.close()  # closing twice is harmless


class TestDiskFull:
    def test_full_disk_maps_to_storage_error_and_changes_nothing(self, store: SqliteStore) -> None:
        """SQLITE_FULL becomes a StorageError saying the disk is full; the store is unchanged."""
        before = store.snapshot()
        conn = store.backend.connection()
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")
        big = [
            PKI.leaf(
                None, cn=f"fill-{n}.example", dns=tuple(f"n{i}.x{n}.example" for i in range(200))
            ).model
            for n in range(20)
        ]
        with pytest.raises(StorageError, match=r"disk .* is full") as info:
            store.add_trust(big, source=TrustSource.UPLOADED, actor=ADMIN)
        assert "unchanged" in str(info.value)
        conn.execute("PRAGMA max_page_count = 1073741823")
        after = store.snapshot()
        assert after.generation == before.generation
        assert after.trust == before.trust
        assert audit_actions(store) == ["store.create"]
        # The store still works once there is room again.
        assert store.add_trust(big, source=TrustSource.UPLOADED, actor=ADMIN).added
