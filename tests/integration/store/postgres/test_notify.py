"""Change notification: a write through one gateway rebuilds the others' snapshots
without them asking, and a dropped listener reconnects and catches up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from certstore.model import TrustSource
from certstore.postgres import PostgresStore
from tests.integration._store_support import ADMIN, PKI, FakeClock
from tests.integration.store._backends import open_postgres
from tests.postgres_server import PostgresServer

WAIT = 10.0


@pytest.fixture
def url(postgres_server: PostgresServer, tmp_path: Path) -> str:
    open_postgres.server = postgres_server
    return open_postgres.url(tmp_path)


def wait_until(condition: Callable[[], bool], within: float = WAIT) -> float:
    """Seconds until ``condition`` held (polled every millisecond, bounded)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise AssertionError(f"not within {within} s")
        time.sleep(0.001)
    return time.monotonic() - start


def cached_generation(store: PostgresStore) -> int:
    """The generation of the snapshot the store holds now, without asking the database."""
    cached = store._cached
    return -1 if cached is None else cached.snapshot.generation


def test_write_elsewhere_refreshes_snapshot(url: str, clock: FakeClock) -> None:
    """Gateway b never calls the store; its snapshot follows a's 100 changes by itself.
    The propagation times are printed (p50/p99)."""
    with (
        PostgresStore(url, gateway="a", clock=clock) as a,
        PostgresStore(url, gateway="b", clock=clock) as b,
    ):
        wait_until(lambda: b.backend.listening)
        times = []
        for n in range(100):
            a.add_trust(
                [PKI.ca(f"Notified CA {n}").model], source=TrustSource.UPLOADED, actor=ADMIN
            )
            target = a.generation()
            times.append(wait_until(lambda: cached_generation(b) >= target))  # noqa: B023
        ms = sorted(t * 1000 for t in times)
        p50, p99 = statistics.median(ms), ms[98]
        print(f"propagation over 100 changes: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        assert p99 < 1000


def test_dropped_listener_reconnects_and_catches_up(
    url: str, clock: FakeClock, postgres_server: PostgresServer
) -> None:
    """The listening connection is killed by the server; a change made while it is
    away is still seen, and notifications work again after it is back."""
    with (
        PostgresStore(url, gateway="a", clock=clock) as a,
        PostgresStore(url, gateway="b", clock=clock) as b,
    ):
        wait_until(lambda: b.backend.listening)
        with postgres_server.admin() as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE query = 'LISTEN sipsgate_store'"
            ).fetchone()
        assert killed is not None and killed[0] >= 1
        a.add_trust([PKI.ca("While away").model], source=TrustSource.UPLOADED, actor=ADMIN)
        target = a.generation()
        wait_until(lambda: b.backend.listening)
        wait_until(lambda: cached_generation(b) >= target)
        a.add_trust([PKI.ca("After return").model], source=TrustSource.UPLOADED, actor=ADMIN)
        target = a.generation()
        wait_until(lambda: cached_generation(b) >= target)
