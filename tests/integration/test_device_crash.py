"""Crash safety of the device identity: a process that installs, clears and renews in a
loop is SIGKILLed at random moments; after every kill the stored certificate and key
still belong together."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from certstore import device
from certstore.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
KILLS = 18

WORKER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime

    from certstore import device
    from certstore.device_service import DeviceService
    from certstore.model import Actor
    from certstore.sqlite import SqliteStore

    store = SqliteStore(sys.argv[1])
    service = DeviceService(store, name="crash-gw", host_names=("gw.example.net",))
    actor = Actor(name="crash-test", interface="cli")
    service.ensure_standard_identity(actor=actor)
    spec = device.build_spec(subject={"CN": "installed.example.net"})
    round = 0
    while True:
        round += 1
        if service.identity().kind == "installed":
            service.clear(actor=actor)
        elif round % 3 == 0:
            service.renew(actor=actor)
        else:
            material = device.create_self_signed(spec, datetime.now(UTC))
            upload = device.export_with_key(material.chain, material.private_key_pem)
            service.install(upload, actor=actor)
        print(round, flush=True)
    """
)


def check_store(path: Path) -> str:
    """The stored identity is whole: its key belongs to its certificate."""
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = SqliteStore(path)
    try:
        identity = store.device_identity()
        assert identity is not None
        assert identity.kind in ("standard", "installed")
        assert device.key_matches_certificate(identity.private_key_pem, identity.certificate)
        expected_cn = "crash-gw" if identity.kind == "standard" else "installed.example.net"
        assert identity.certificate.common_name == expected_cn
        return identity.certificate.fingerprint
    finally:
        store.close()


@pytest.mark.slow
def test_sigkill_never_splits_certificate_and_key(tmp_path: Path) -> None:
    """After each of many SIGKILLs mid-loop, certificate and key still match."""
    path = tmp_path / "data" / "sipsgate.db"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rng = random.Random(0x5195)
    fingerprints: set[str] = set()
    for _ in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            assert proc.stdout is not None
            # Let it get into the loop, then kill it at a random moment of a round.
            line = proc.stdout.readline()
            assert line.strip(), proc.stderr.read().decode() if proc.stderr else ""
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(timeout=rng.uniform(0.0, 0.15))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            if proc.stdout:
                proc.stdout.close()
            if proc.stderr:
                proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        fingerprints.add(check_store(path))
    # The kills landed at different moments: more than one identity was seen.
    assert len(fingerprints) > 1
