"""Debian's PostgreSQL as a test database server, started from its own cluster in a temp
directory: ``initdb`` then the ``postgres`` server in the foreground, on 127.0.0.1 at a
free port and on a Unix socket in that directory, stopped by its PID.

PostgreSQL refuses to run as root, so when the tests run as root the cluster directory
belongs to the ``postgres`` system user (created by Debian's package) and both programs
run as that user. Authentication is ``trust`` on loopback only: the cluster lives as
long as the test session.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.tls_servers import free_port

SUPERUSER = "sipsgate"
START_WAIT = 30.0


def postgres_bin() -> Path:
    """The newest installed Debian PostgreSQL's bin directory."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob("*") if (p / "bin" / "initdb").exists()),
        key=lambda p: int(p.name) if p.name.isdigit() else 0,
    )
    if not versions:
        raise RuntimeError(
            f"No PostgreSQL server under {root}: install Debian's postgresql package "
            "(make test does)."
        )
    return versions[-1] / "bin"


def _as_user() -> dict[str, Any]:
    """Popen arguments that drop root to the postgres system user."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam("postgres")
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


@dataclass
class PostgresServer:
    """One running cluster; ``url(db)`` is a connection string for a database in it."""

    root: Path
    port: int
    process: subprocess.Popen[bytes] | None
    version: str
    bin_dir: Path

    def start(self) -> None:
        """Start the server on the cluster (again, after :meth:`kill`); wait until it
        accepts connections. A restart after a kill retries while the killed server's
        backends still hold its shared memory."""
        deadline = time.monotonic() + START_WAIT
        log = self.root / "server.log"
        while True:
            with open(log, "ab") as out:
                process = subprocess.Popen(
                    [
                        str(self.bin_dir / "postgres"),
                        "-D",
                        str(self.root / "data"),
                        "-p",
                        str(self.port),
                        "-h",
                        "127.0.0.1",
                        "-k",
                        str(self.root),
                        # Test clusters are thrown away: no fsync, a fast start and stop
                        # (a killed server process loses nothing: the OS keeps its writes).
                        "-c",
                        "fsync=off",
                        "-c",
                        "full_page_writes=off",
                        "-c",
                        "max_connections=200",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **_as_user(),
                )
            self.process = process
            while process.poll() is None:
                with contextlib.suppress(psycopg.OperationalError):
                    with self.admin() as conn:
                        conn.execute("SELECT 1")
                    return
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"PostgreSQL did not accept connections within {START_WAIT} s."
                    )
                time.sleep(0.1)
            if time.monotonic() > deadline:
                text = log.read_text(errors="replace")
                raise RuntimeError(f"PostgreSQL exited on start:\n{text[-4000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        """``kill -9`` of the server process (its backends notice and exit)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=START_WAIT)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def admin(self, database: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(database), autocommit=True)

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        # SIGINT is PostgreSQL's fast shutdown: clients are disconnected, the cluster is
        # checkpointed and the postmaster exits.
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=START_WAIT)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=START_WAIT)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    bin_dir = postgres_bin()
    # Not under pytest's tmp_path: its parents are mode 0700 to root, and the server
    # runs as the postgres user.
    root = Path(tempfile.mkdtemp(prefix="sipsgate-pg-"))
    data = root / "data"
    user = _as_user()
    if user:
        os.chown(root, user["user"], user["group"])
    try:
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "--pgdata",
                str(data),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
            **user,
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
    server = PostgresServer(
        root=root, port=free_port(), process=None, version=bin_dir.parent.name, bin_dir=bin_dir
    )
    try:
        server.start()
    except RuntimeError:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the whole session (a database per test or state)."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
