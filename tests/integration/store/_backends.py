"""The backends the store contract suite runs against, and how a test opens a store of
one (see conftest.py). A backend joins by adding an opener to ``OPENERS``: a function that
opens a store object over one state (``location`` names it; the same location is the
same state) with the given options."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

from certstore.facade import DEFAULT_AUDIT_LIMIT, DEFAULT_REJECTED_LIMIT, RepositoryStore
from certstore.sqlite import SqliteStore


class Opener(Protocol):
    def __call__(
        self,
        location: Path,
        *,
        clock: Callable[[], datetime],
        rejected_limit: int,
        audit_limit: int,
    ) -> RepositoryStore: ...


def open_sqlite(
    location: Path, *, clock: Callable[[], datetime], rejected_limit: int, audit_limit: int
) -> RepositoryStore:
    return SqliteStore(
        location / "store.db", clock=clock, rejected_limit=rejected_limit, audit_limit=audit_limit
    )


OPENERS: dict[str, Opener] = {"sqlite": open_sqlite}
STORE_BACKENDS = tuple(OPENERS)


class OpenStore(Protocol):
    """Open a store object of the backend under test over the named state: ``main`` is
    what ``store`` holds; another name is a state of its own, new and empty when first
    opened. Two objects over one state are like two gateways (or a gateway and the CLI)
    sharing it."""

    def __call__(
        self,
        state: str = "main",
        *,
        clock: Callable[[], datetime] | None = None,
        rejected_limit: int = DEFAULT_REJECTED_LIMIT,
        audit_limit: int = DEFAULT_AUDIT_LIMIT,
    ) -> RepositoryStore: ...
