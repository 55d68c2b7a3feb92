"""``kill -9`` of PostgreSQL in the middle of a burst of writes: after the restart every
acknowledged write is there, the stores reconnect by themselves, and two gateways end
on the same snapshot."""

from __future__ import annotations

import hashlib
import threading
import time

from certstore.errors import StorageError
from certstore.model import PinDecision, PinMatch
from certstore.postgres import PostgresStore
from certstore.store import PinRequest
from tests.integration._store_support import ADMIN, FakeClock
from tests.postgres_server import PostgresServer

BEFORE, AFTER = 40, 40  # acknowledged writes wanted before the kill and after the restart
WAIT = 120.0


def request(n: int) -> PinRequest:
    return PinRequest(
        decision=PinDecision.ACCEPT,
        match=PinMatch.CERTIFICATE,
        fingerprint=hashlib.sha256(str(n).encode()).hexdigest(),
        note=f"burst {n}",
    )


def test_acknowledged_writes_survive_kill_9(own_server: PostgresServer, clock: FakeClock) -> None:
    url = own_server.create_database("crash")
    with (
        PostgresStore(url, gateway="a", clock=clock) as a,
        PostgresStore(url, gateway="b", clock=clock) as b,
    ):
        acknowledged: list[str] = []
        failures: list[str] = []
        stop = threading.Event()

        def burst() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    pin = a.add_pin(request(n), actor=ADMIN)
                except StorageError as exc:
                    failures.append(str(exc))
                    time.sleep(0.05)
                else:
                    acknowledged.append(pin.fingerprint)

        writer = threading.Thread(target=burst)
        writer.start()
        try:
            deadline = time.monotonic() + WAIT
            while len(acknowledged) < BEFORE:
                assert time.monotonic() < deadline, "the burst did not start"
                time.sleep(0.01)
            own_server.kill()
            time.sleep(0.5)
            own_server.start()
            restarted = len(acknowledged)
            while len(acknowledged) < restarted + AFTER:
                assert time.monotonic() < deadline, f"no writes after the restart: {failures[-3:]}"
                time.sleep(0.05)
        finally:
            stop.set()
            writer.join(timeout=WAIT)
        assert not writer.is_alive()

        # A write in flight at the kill failed with a sentence, or waited for the pool's
        # reconnection and was then acknowledged: either way nothing acknowledged is lost.
        assert all("certificate store" in message for message in failures)
        with PostgresStore(url, gateway="c", clock=clock, listen=False) as fresh:
            stored = {pin.fingerprint for pin in fresh.list_pins()}
            generation = fresh.generation()
        assert set(acknowledged) <= stored
        # Both gateways converge on the same snapshot.
        deadline = time.monotonic() + WAIT
        while True:
            try:
                snaps = [store.snapshot() for store in (a, b)]
            except StorageError:
                snaps = []
            if snaps and all(s.generation == generation for s in snaps):
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert snaps[0].pins == snaps[1].pins
        assert {p.fingerprint for p in snaps[0].pins} == stored
