"""Copying an embedded SQLite store into an empty PostgreSQL database, all or nothing.

Every row is copied as stored (the same ids, times, DER and JSON text: both schemas
write values the same way), in one PostgreSQL transaction under the migration lock,
from one SQLite read transaction: the target ends as a complete copy or untouched. The
SQLite store's single device identity and signing request become those of the gateway
named ``gateway``. A target that already holds any table is refused.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import psycopg

from certstore.certcache import CertificateCache
from certstore.errors import StorageError
from certstore.postgres import schema
from certstore.postgres.connection import MIGRATION_LOCK, PostgresBackend, redacted
from certstore.sqlite import SqliteStore
from certstore.sqlite.schema import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION

# Tables copied column for column, parents before nothing (there are no foreign keys).
_TABLES = ("meta", "settings", "trust", "pins", "rejected", "audit", "revocation")
# The single-row device tables of SQLite, keyed by gateway name on PostgreSQL.
_DEVICE_TABLES = ("device_identity", "pending_csr")
# Tables whose ids come from an identity sequence that must move past the copied ids.
_SEQUENCED = ("trust", "pins", "rejected", "audit")


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationResult:
    target: str
    rows: dict[str, int]


@dataclass(frozen=True, slots=True)
class _Source:
    tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]]
    # The highest id each AUTOINCREMENT table ever handed out (rows may since be gone).
    sequences: dict[str, int]


def _read_source(conn: sqlite3.Connection) -> _Source:
    tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
    for table in (*_TABLES, *_DEVICE_TABLES):
        cursor = conn.execute(f"SELECT * FROM {table} ORDER BY rowid")  # noqa: S608
        columns = [d[0] for d in cursor.description]
        tables[table] = (columns, cursor.fetchall())
    sequences = {
        str(name): int(seq) for name, seq in conn.execute("SELECT name, seq FROM sqlite_sequence")
    }
    return _Source(tables, sequences)


def _empty_database(conn: psycopg.Connection[Any]) -> list[str]:
    """The tables already in the target's schema (an empty list: it may be written)."""
    return [
        str(name)
        for (name,) in conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() ORDER BY table_name"
        )
    ]


def migrate_sqlite(source: SqliteStore, url: str, *, gateway: str) -> MigrationResult:
    """Copy ``source`` into the empty PostgreSQL database at ``url``.

    Raises :class:`StorageError` (and writes nothing) when the target cannot be reached,
    already holds tables, or any row fails to copy."""
    if SQLITE_SCHEMA_VERSION != schema.SCHEMA_VERSION:  # pragma: no cover - kept in step
        raise StorageError("The SQLite and PostgreSQL schema versions differ.")
    data = source.backend.transaction("reading the store to migrate", _read_source, write=False)
    target = PostgresBackend(
        url,
        certificates=CertificateCache(f"The certificate store {redacted(url)}"),
        gateway=gateway,
    )
    try:
        target.connect()

        def copy(conn: psycopg.Connection[Any]) -> dict[str, int]:
            existing = _empty_database(conn)
            if existing:
                raise StorageError(
                    f"The database {redacted(url)} is not empty (it holds "
                    f"{', '.join(existing[:5])}{' ...' if len(existing) > 5 else ''}); "
                    "store migrate copies only into an empty database, and nothing was "
                    "written. Create a new database for the fleet (createdb) and try again."
                )
            for statements in schema.MIGRATIONS:
                for statement in statements:
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (id, version) VALUES (1, %s)", (schema.SCHEMA_VERSION,)
            )
            counts: dict[str, int] = {}
            with conn.cursor() as cursor:
                for table, (columns, values) in data.tables.items():
                    if table in _DEVICE_TABLES:
                        at = columns.index("id")
                        columns = ["gateway", *columns[:at], *columns[at + 1 :]]
                        values = [(gateway, *v[:at], *v[at + 1 :]) for v in values]
                    if values:
                        marks = ", ".join(["%s"] * len(columns))
                        cursor.executemany(
                            f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
                            f"VALUES ({marks})",
                            values,
                        )
                    counts[table] = len(values)
                for table in _SEQUENCED:
                    # Ids are never reused: the next one follows the highest SQLite gave.
                    conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                        f"GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), %s) + 1, false)",
                        (data.sequences.get(table, 0),),
                    )
            return counts

        counts = target.transaction(
            "copying the store",
            copy,
            write=True,
            lock=f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})",
        )
    finally:
        target.close()
    return MigrationResult(target=redacted(url), rows=counts)
