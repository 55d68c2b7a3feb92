"""The backends the store contract suite runs against, and how a test opens a store of
one (see conftest.py). A backend joins by adding an opener to ``OPENERS``: a function that
opens a store object over one state (``location`` names it; the same location is the
same state) with the given options."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from certstore.facade import DEFAULT_AUDIT_LIMIT, DEFAULT_REJECTED_LIMIT, RepositoryStore
from certstore.postgres import PostgresStore
from certstore.sqlite import SqliteStore
from tests.postgres_server import PostgresServer


class Opener(Protocol):
    def __call__(
        self,
        location: Path,
        *,
        clock: Callable[[], datetime],
        rejected_limit: int,
        audit_limit: int,
        gateway: str,
    ) -> RepositoryStore: ...


def open_sqlite(
    location: Path,
    *,
    clock: Callable[[], datetime],
    rejected_limit: int,
    audit_limit: int,
    gateway: str,
) -> RepositoryStore:
    return SqliteStore(
        location / "store.db",
        clock=clock,
        rejected_limit=rejected_limit,
        audit_limit=audit_limit,
        gateway=gateway,
    )


class PostgresOpener:
    """Each location is a schema of its own in one database of the session's cluster
    (``server``, set by the contract suite's fixture): a new state costs one
    ``CREATE SCHEMA``, not a new database."""

    DATABASE = "contract"

    def __init__(self) -> None:
        self.server: PostgresServer | None = None
        self._schemas: set[str] = set()

    def url(self, location: Path) -> str:
        assert self.server is not None, "the postgres_server fixture starts the cluster"
        name = "s_" + hashlib.sha256(str(location).encode()).hexdigest()[:20]
        if not self._schemas:
            self.server.create_database(self.DATABASE)
        if name not in self._schemas:
            with self.server.admin(self.DATABASE) as conn:
                conn.execute(f"CREATE SCHEMA {name}")  # the name is hex from a hash
            self._schemas.add(name)
        return self.server.url(self.DATABASE) + "?options=" + quote(f"-c search_path={name}")

    def __call__(
        self,
        location: Path,
        *,
        clock: Callable[[], datetime],
        rejected_limit: int,
        audit_limit: int,
        gateway: str,
    ) -> RepositoryStore:
        return PostgresStore(
            self.url(location),
            gateway=gateway,
            clock=clock,
            rejected_limit=rejected_limit,
            audit_limit=audit_limit,
        )


open_postgres = PostgresOpener()

# The name a store of the contract suite uses unless a test names another.
DEFAULT_GATEWAY = "gateway-1"

OPENERS: dict[str, Opener] = {"sqlite": open_sqlite, "postgres": open_postgres}
STORE_BACKENDS = tuple(OPENERS)


class OpenStore(Protocol):
    """Open a store object of the backend under test over the named state: ``main`` is
    what ``store`` holds; another name is a state of its own, new and empty when first
    opened. Two objects over one state are like two gateways (or a gateway and the CLI)
    sharing it; ``gateway`` is the name each uses (``gateway.name``)."""

    def __call__(
        self,
        state: str = "main",
        *,
        clock: Callable[[], datetime] | None = None,
        rejected_limit: int = DEFAULT_REJECTED_LIMIT,
        audit_limit: int = DEFAULT_AUDIT_LIMIT,
        gateway: str = DEFAULT_GATEWAY,
    ) -> RepositoryStore: ...
