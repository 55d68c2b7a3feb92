"""The SQLite handshake view across processes and threads: a change by another process
shows in the next snapshot, and each thread's connection is closed when it is done."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from certstore.sqlite import SqliteStore
from tests.integration._store_support import worker_command, worker_env


class TestOtherProcesses:
    def test_change_from_a_real_subprocess(self, store: SqliteStore, store_path: Path) -> None:
        """A certificate added by another process is in this process's next snapshot."""
        before = store.snapshot()
        done = subprocess.run(
            worker_command("add-cert", str(store_path), "subprocess.example"),
            env=worker_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        fingerprint = done.stdout.strip()
        after = store.snapshot()
        assert fingerprint in after.trust_by_fingerprint
        assert after.generation == before.generation + 1
        assert store.get_trust(fingerprint).certificate.common_name == "subprocess.example"


class TestConnections:
    def test_connections_of_ended_threads_are_closed(self, store: SqliteStore) -> None:
        """A thread that ends leaves no open connection behind once another thread opens one."""
        for _ in range(6):
            worker = threading.Thread(target=store.snapshot)
            worker.start()
            worker.join()
        # The main thread's connection and the last worker's (reaped by the next one).
        assert len(store.backend._conns) == 2
