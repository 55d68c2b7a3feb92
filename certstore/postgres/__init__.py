"""The PostgreSQL backend of the store, for a fleet of gateways sharing one trust state.

``schema`` holds the versioned migrations (the same versions as SQLite's),
``connection`` the pool, transactions and migrations (:class:`PostgresBackend`),
``repositories`` the SQL where it differs from SQLite's, and ``store``
:class:`PostgresStore`, the facade over them that callers open.
"""

from __future__ import annotations

from certstore.postgres.schema import SCHEMA_VERSION
from certstore.postgres.store import PostgresStore

__all__ = ["SCHEMA_VERSION", "PostgresStore"]
