"""Two processes writing at once (the gateway and the CLI): they queue, nothing is lost."""

from __future__ import annotations

import subprocess
from pathlib import Path

from certstore.model import TrustSource
from certstore.sqlite import SqliteStore
from tests.integration._store_support import FakeClock, audit_actions, worker_command, worker_env

COUNT = 40


def test_two_writer_processes(store: SqliteStore, store_path: Path, clock: FakeClock) -> None:
    """Two processes adding distinct certificates and pins concurrently both succeed fully."""
    workers = [
        subprocess.Popen(
            worker_command("writer", str(store_path), tag, str(COUNT)),
            env=worker_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("gateway", "cli")
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "READY"
        for worker in workers:  # release both at once
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=120) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    for worker, (_out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        assert err == ""
    reported = [line.split() for out, _ in outputs for line in out.splitlines()]
    certs = {fp for kind, fp in reported if kind == "cert"}
    pins = {fp for kind, fp in reported if kind == "pin"}
    assert len(certs) == len(pins) == 2 * COUNT

    snap = store.snapshot()
    assert certs <= set(snap.trust_by_fingerprint)
    assert pins <= set(snap.pins_by_fingerprint)
    uploaded = {e.certificate.fingerprint for e in snap.trust if e.source is TrustSource.UPLOADED}
    assert uploaded == certs
    actions = audit_actions(store)
    assert actions.count("trust.add") == actions.count("pin.add") == 2 * COUNT
    # Every change bumped the generation exactly once.
    assert snap.generation == 1 + 4 * COUNT
    store.verify()
