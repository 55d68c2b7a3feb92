"""Crash safety: a writer killed with SIGKILL at random moments never loses a reported
commit and never leaves a half-written change."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

from certstore.model import TrustSource
from certstore.sqlite import SqliteStore
from tests.integration._store_support import worker_command, worker_env

KILLS = 30


def _kill_one(path: Path, tag: str, rng: random.Random) -> list[list[str]]:
    """Run a streaming writer, SIGKILL it after a random number of commits plus a random
    delay, and return the lines it reported (each one a committed change)."""
    worker = subprocess.Popen(
        worker_command("stream", str(path), tag),
        env=worker_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline() == "OPEN\n"
        lines = [worker.stdout.readline() for _ in range(rng.randint(0, 12))]
        time.sleep(rng.uniform(0, 0.004))  # often lands inside the next transaction
        worker.send_signal(signal.SIGKILL)
        rest, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == -signal.SIGKILL, err
    lines.extend(rest.splitlines(keepends=True))
    # Only whole lines count: a line cut by the kill was not reported.
    return [line.split() for line in lines if line.endswith("\n")]


def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    """After each of 30 kills the store opens, passes its integrity check, every row reads
    back, the snapshot builds, and every change reported as committed is there."""
    path = tmp_path / "data" / "store.db"
    SqliteStore(path).close()
    seed = int(os.environ.get("STORE_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    certs: set[str] = set()
    pins: set[str] = set()
    rejected: set[str] = set()
    for round_no in range(KILLS):
        tag = f"w{round_no}"
        reported = _kill_one(path, tag, rng)
        certs |= {fp for kind, fp in reported if kind == "cert"}
        pins |= {fp for kind, fp in reported if kind == "pin"}
        rejected |= {fp for kind, fp in reported if kind == "rejected"}
        settings = [int(n) for kind, n in reported if kind == "setting"]

        context = f"seed {seed}, round {round_no}"
        with SqliteStore(path) as store:
            counts = store.verify()
            snap = store.snapshot()
            assert certs <= set(snap.trust_by_fingerprint), context
            assert pins <= set(snap.pins_by_fingerprint), context
            leaves = {r.leaf.fingerprint for r in store.list_rejected()}
            assert rejected <= leaves, context
            if settings:
                name_tag, _, n = snap.settings.http_auth_username.rpartition("-")
                assert name_tag == tag, context
                assert int(n) >= max(settings), context
            # Never a mix: each change wrote its rows and its audit event together.
            events = store.audit(limit=1000)
            actions = [e.action for e in events]
            uploaded = [e for e in snap.trust if e.source is TrustSource.UPLOADED]
            assert actions.count("trust.add") == len(uploaded), context
            assert actions.count("pin.add") == len(snap.pins) == counts["pins"], context
            assert actions.count("rejected.record") == counts["rejected"], context
            changes = len(uploaded) + len(snap.pins) + actions.count("settings.update")
            assert snap.generation == 1 + changes, context
