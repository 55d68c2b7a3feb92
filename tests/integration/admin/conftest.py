"""Fixtures for the admin endpoint: a real store in tmp_path and the app on HTTPS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.admin_support import AdminHarness, start_admin
from tests.memory_store import MemoryStore


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "var"
    path.mkdir()
    return path


@pytest.fixture
def store(data_dir: Path) -> Iterator[MemoryStore]:
    value = MemoryStore()
    yield value
    value.close()


@pytest.fixture
async def admin(store: MemoryStore, data_dir: Path) -> AsyncIterator[AdminHarness]:
    harness = await start_admin(store, data_dir)
    yield harness
    await harness.close()
