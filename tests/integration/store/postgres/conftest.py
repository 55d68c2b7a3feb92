"""Tests of what only the PostgreSQL backend has: several gateways on one database,
concurrent writers, per-gateway rows, the schema version table, connection errors."""

from __future__ import annotations

import pytest


@pytest.fixture
def store_backend() -> str:
    return "postgres"
