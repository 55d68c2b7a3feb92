"""The store contract suite: every test here runs against each backend in
``STORE_BACKENDS`` (tests/integration/store/_backends.py) unchanged, through the
``store`` and ``open_store`` fixtures. Tests that only make sense for one backend live
below it (``sqlite/``), where ``store_backend`` is fixed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from certstore.facade import DEFAULT_AUDIT_LIMIT, DEFAULT_REJECTED_LIMIT, RepositoryStore
from tests.integration._store_support import FakeClock, clock
from tests.integration.store._backends import (
    DEFAULT_GATEWAY,
    OPENERS,
    STORE_BACKENDS,
    OpenStore,
    open_postgres,
)
from tests.postgres_server import postgres_server

__all__ = ["clock", "postgres_server"]


@pytest.fixture(params=STORE_BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """Where the SQLite backend keeps the test's state (for the SQLite-only tests)."""
    return tmp_path / "data" / "store.db"


@pytest.fixture
def open_store(
    store_backend: str, store_path: Path, clock: FakeClock, request: pytest.FixtureRequest
) -> Iterator[OpenStore]:
    if store_backend == "postgres":
        open_postgres.server = request.getfixturevalue("postgres_server")
    opener = OPENERS[store_backend]
    opened: list[RepositoryStore] = []

    def open_(
        state: str = "main",
        *,
        clock: Callable[[], datetime] | None = None,
        rejected_limit: int = DEFAULT_REJECTED_LIMIT,
        audit_limit: int = DEFAULT_AUDIT_LIMIT,
        gateway: str = DEFAULT_GATEWAY,
    ) -> RepositoryStore:
        location = store_path.parent if state == "main" else store_path.parent.parent / state
        store = opener(
            location,
            clock=clock or default_clock,
            rejected_limit=rejected_limit,
            audit_limit=audit_limit,
            gateway=gateway,
        )
        opened.append(store)
        return store

    default_clock = clock
    try:
        yield open_
    finally:
        for store in opened:
            store.close()


@pytest.fixture
def store(open_store: OpenStore) -> RepositoryStore:
    """A new store (builtin certificates, default settings) of the backend under test."""
    return open_store()
