"""Tests of what only the PostgreSQL backend has: several gateways on one database,
concurrent writers, per-gateway rows, the schema version table, connection errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres_server import PostgresServer, start_postgres


@pytest.fixture
def store_backend() -> str:
    return "postgres"


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A cluster of the test's own, which it may stop, kill and restart."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
