"""The embedded SQLite backend of the store.

``schema`` holds the versioned migrations, ``connection`` the file, its connections and
transactions (:class:`SqliteBackend`), ``codecs`` how values are written in columns,
``repositories`` the SQL of each table, and ``store`` :class:`SqliteStore`, the facade
over them that callers open.
"""

from __future__ import annotations

from certstore.sqlite.codecs import pack_chain, unpack_chain
from certstore.sqlite.schema import SCHEMA_VERSION
from certstore.sqlite.store import SqliteStore
from certstore.validation import MAX_RECORDED_CHAIN_CERTS

__all__ = [
    "MAX_RECORDED_CHAIN_CERTS",
    "SCHEMA_VERSION",
    "SqliteStore",
    "pack_chain",
    "unpack_chain",
]
