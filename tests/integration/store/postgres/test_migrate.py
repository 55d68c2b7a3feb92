"""``sipsgate store migrate --to postgresql://...``: a populated SQLite store copied into
an empty PostgreSQL database lists the same through the CLI and the store; a target
that is not empty, or a copy that fails, writes nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certstore.facade import RepositoryStore
from certstore.model import (
    Certificate,
    Peer,
    PinDecision,
    PinMatch,
    Reason,
    RejectedChain,
    Transport,
    TrustKind,
    TrustSource,
)
from certstore.postgres import PostgresStore
from certstore.recording import chain_key
from certstore.repositories import Repositories
from certstore.sqlite import SqliteStore
from certstore.store import PinRequest
from certstore.x509 import parse_der
from tests.integration._store_support import ADMIN, BASE_TIME, csr, identity
from tests.postgres_server import PostgresServer

ROOT = Path(__file__).resolve().parents[4]
TRUST, PINS, REJECTED = 10_000, 1_000, 1_000
GATEWAY = "site-a"


def many_certificates(count: int) -> list[Certificate]:
    """``count`` distinct self-signed certificates, fast: one key signs them all."""
    key = ec.generate_private_key(ec.SECP256R1())
    certs = []
    for n in range(count):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"host-{n}.example.test")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(n + 1)
            .not_valid_before(BASE_TIME - timedelta(days=1))
            .not_valid_after(BASE_TIME + timedelta(days=365 + n % 400))
            .sign(key, hashes.SHA256())
        )
        certs.append(parse_der(cert.public_bytes(serialization.Encoding.DER)))
    return certs


def populate(store: SqliteStore) -> None:
    """10,000 trust entries, 1,000 pins (half with their certificate), 1,000 rejected
    chains, changed settings, a device identity, a signing request and audit events."""
    certs = many_certificates(TRUST + REJECTED)
    trusted, rejected = certs[:TRUST], certs[TRUST:]

    def body(repos: Repositories) -> None:
        for n, cert in enumerate(trusted):
            repos.trust.insert(
                cert,
                kind=TrustKind.SERVER if n % 3 else TrustKind.CA,
                source=TrustSource.UPLOADED,
                at=BASE_TIME + timedelta(seconds=n),
            )
        for n, cert in enumerate(trusted[:PINS]):
            repos.pins.insert(
                PinRequest(
                    decision=PinDecision.ACCEPT if n % 2 else PinDecision.REJECT,
                    match=PinMatch.CERTIFICATE if n % 4 else PinMatch.PUBLIC_KEY,
                    fingerprint=cert.fingerprint if n % 4 else cert.spki_fingerprint,
                    scope=None if n % 5 else f"host-{n}.example.test:5061",
                    expires_at=None if n % 7 else BASE_TIME + timedelta(days=n),
                    note=f"pin {n}",
                ),
                created_by="admin",
                at=BASE_TIME + timedelta(minutes=n),
                der=cert.der if n % 2 else None,
            )
        for n, cert in enumerate(rejected):
            seen = BASE_TIME + timedelta(hours=n)
            repos.rejected.insert(
                chain_key([cert.fingerprint]),
                RejectedChain(
                    id=0,
                    chain=(cert,),
                    reasons=(Reason.UNKNOWN_ISSUER,),
                    peer=Peer(host=f"host-{n}.example.test", port=5061, transport=Transport.SIPS),
                    first_seen=seen,
                    last_seen=seen + timedelta(minutes=n % 60),
                    count=1 + n % 9,
                    overridden=n % 10 == 0,
                    address=f"127.0.0.1:{5061 + n}",
                ),
            )
        repos.meta.bump()

    store.backend.write("populating", body)
    store.update_settings({"allow_wildcards": True, "http_auth_username": "fleet"}, actor=ADMIN)
    store.remove_pin(1, actor=ADMIN)  # ids are not reused afterwards
    store.set_device_identity(identity(GATEWAY), actor=ADMIN, action="create")
    store.set_pending_csr(csr(GATEWAY), actor=ADMIN)


def sipsgate(config: Path, *args: str, url: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPSGATE_")}
    env["PYTHONPATH"] = str(ROOT)
    if url:
        env["SIPSGATE_STORE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def listings(config: Path, url: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for command in (
        ("certs", "list"),
        ("certs", "pins", "list"),
        ("certs", "rejected", "list"),
        ("certs", "settings"),
    ):
        run = sipsgate(config, *command, "--json", url=url)
        assert run.returncode == 0, run.stderr
        out[" ".join(command)] = json.loads(run.stdout)
    return out


def state(store: RepositoryStore) -> tuple[object, ...]:
    return (
        store.list_trust(),
        store.list_pins(),
        store.pin_origins(),
        store.list_rejected(),
        store.get_settings(),
        store.audit(limit=1000),
        store.device_identity(),
        store.pending_csr(),
        store.generation(),
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "sipsgate.toml"
    path.write_text(f'[gateway]\nname = "{GATEWAY}"\ndata_dir = "{tmp_path / "var"}"\n')
    return path


def test_migrated_store_lists_the_same(
    config: Path, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    with SqliteStore(tmp_path / "var" / "sipsgate.db") as sqlite_store:
        populate(sqlite_store)
        before = state(sqlite_store)
    cli_before = listings(config)
    url = postgres_server.create_database("migrated")

    run = sipsgate(config, "store", "migrate", "--to", url, "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["rows"]["trust"] >= TRUST
    assert report["rows"]["pins"] == PINS - 1
    assert report["rows"]["rejected"] == REJECTED

    assert listings(config, url) == cli_before
    with PostgresStore(url, gateway=GATEWAY) as migrated:
        assert state(migrated) == before
        # New rows continue after the copied ids (pin 1 was removed before: not reused).
        pin = migrated.add_pin(
            PinRequest(
                decision=PinDecision.ACCEPT, match=PinMatch.CERTIFICATE, fingerprint="a" * 64
            ),
            actor=ADMIN,
        )
        assert pin.id == PINS + 1
    with PostgresStore(url, gateway="site-b") as other:
        assert other.device_identity() is None  # the identity is site-a's alone


def test_non_empty_target_is_refused(
    config: Path, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    SqliteStore(tmp_path / "var" / "sipsgate.db").close()
    url = postgres_server.create_database("busy")
    with PostgresStore(url, gateway="other") as existing:
        before = state(existing)
    run = sipsgate(config, "store", "migrate", "--to", url)
    assert run.returncode == 1
    assert "is not empty" in run.stderr
    assert "nothing was written" in run.stderr
    with PostgresStore(url, gateway="other") as existing:
        assert state(existing) == before


def test_failed_copy_writes_nothing(
    config: Path, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """A row PostgreSQL refuses (text with a NUL byte) half-way: the target stays empty."""
    db = tmp_path / "var" / "sipsgate.db"
    SqliteStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO audit (at, actor, interface, action, target, details) "
            "VALUES ('2026-01-01T00:00:00.000000Z', 'x', 'cli', 'a.b.c', 't', ?)",
            ("bad\x00",),
        )
    url = postgres_server.create_database("half")
    run = sipsgate(config, "store", "migrate", "--to", url)
    assert run.returncode == 1
    assert "copying the store" in run.stderr
    with postgres_server.admin("half") as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)


def test_missing_source_and_bad_url(config: Path) -> None:
    run = sipsgate(config, "store", "migrate", "--to", "postgresql://x@127.0.0.1/none")
    assert run.returncode != 0
    assert "There is no SQLite store" in run.stderr
    run = sipsgate(config, "store", "migrate", "--to", "mysql://db/x")
    assert run.returncode != 0
    assert "--to must be a PostgreSQL URL" in run.stderr
