"""Fixtures for the admin endpoint: a real store in tmp_path and the app on HTTPS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from certstore.sqlite import SqliteStore
from tests.admin_support import TEST_ACTOR, AdminHarness, open_store, start_admin


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "var"
    path.mkdir()
    return path


@pytest.fixture
def store(data_dir: Path) -> Iterator[SqliteStore]:
    """A new store with an empty trust list (the builtin CAs removed), so tests see
    exactly what they add."""
    value = open_store(data_dir)
    value.clear_trust(actor=TEST_ACTOR)
    yield value
    value.close()


@pytest.fixture
async def admin(store: SqliteStore, data_dir: Path) -> AsyncIterator[AdminHarness]:
    harness = await start_admin(store, data_dir)
    yield harness
    await harness.close()
