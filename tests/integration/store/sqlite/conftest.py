"""Tests of what only the SQLite backend has: the file, its modes and locks, schema
versions and upgrades, crashes of writer processes."""

from __future__ import annotations

import pytest


@pytest.fixture
def store_backend() -> str:
    return "sqlite"
