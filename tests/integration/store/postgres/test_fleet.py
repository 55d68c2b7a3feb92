"""One database, several gateways: the trust state is shared, each gateway's device
identity and signing request are its own; the database is checked before use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from certstore.errors import StorageError
from certstore.model import (
    Finding,
    Reason,
    RejectedChain,
    Rule,
    TrustSource,
    Verdict,
    VerdictKind,
)
from certstore.postgres import SCHEMA_VERSION, PostgresStore
from tests.integration._store_support import (
    ADMIN,
    PEER,
    PKI,
    FakeClock,
    csr,
    identity,
    make_chain,
)
from tests.integration.store._backends import open_postgres
from tests.postgres_server import PostgresServer


@pytest.fixture
def url(postgres_server: PostgresServer, tmp_path: Path) -> str:
    open_postgres.server = postgres_server
    return open_postgres.url(tmp_path)


def gateway(url: str, name: str, clock: FakeClock) -> PostgresStore:
    return PostgresStore(url, gateway=name, clock=clock)


def test_trust_shared_identity_per_gateway(url: str, clock: FakeClock) -> None:
    """A certificate trusted through one gateway is trusted by the other; each keeps
    its own identity and signing request, and removing one's request leaves the other's."""
    with gateway(url, "site-a", clock) as a, gateway(url, "site-b", clock) as b:
        ca = PKI.ca("Fleet CA").model
        a.add_trust([ca], source=TrustSource.UPLOADED, actor=ADMIN)
        assert ca.fingerprint in b.snapshot().trust_by_fingerprint

        ident_a, ident_b = identity("site-a"), identity("site-b")
        a.set_device_identity(ident_a, actor=ADMIN, action="create")
        assert b.device_identity() is None
        b.set_device_identity(ident_b, actor=ADMIN, action="create")
        assert a.device_identity() == ident_a
        assert b.device_identity() == ident_b

        csr_a, csr_b = csr("site-a"), csr("site-b")
        a.set_pending_csr(csr_a, actor=ADMIN)
        b.set_pending_csr(csr_b, actor=ADMIN)
        a.set_pending_csr(None, actor=ADMIN)
        assert a.pending_csr() is None
        assert b.pending_csr() == csr_b


def test_schema_version_recorded(url: str, clock: FakeClock) -> None:
    with gateway(url, "site-a", clock) as store:
        conn = store.backend.pool().getconn()
        try:
            row = conn.execute("SELECT version FROM schema_version").fetchone()
        finally:
            store.backend.pool().putconn(conn)
    assert row == (SCHEMA_VERSION,)


def test_newer_schema_refused(url: str, clock: FakeClock) -> None:
    """A database upgraded by a newer sipsgate is refused, not written to."""
    with gateway(url, "site-a", clock) as store:
        store.backend.transaction(
            "test",
            lambda conn: conn.execute("UPDATE schema_version SET version = 99"),
            write=True,
        )
    with pytest.raises(StorageError, match="schema version 99, written by a newer sipsgate"):
        gateway(url, "site-a", clock)


def test_foreign_tables_refused(postgres_server: PostgresServer, clock: FakeClock) -> None:
    """A database that holds someone else's ``meta`` table is not taken over."""
    target = postgres_server.create_database("foreign_app")
    with postgres_server.admin("foreign_app") as conn:
        conn.execute("CREATE TABLE meta (id INTEGER)")
    with pytest.raises(StorageError, match="not a sipsgate store"):
        gateway(target, "site-a", clock)


def test_unreachable_server_is_a_sentence(clock: FakeClock) -> None:
    """Nothing listens on the port: the error names the store and what to check."""
    from tests.tls_servers import free_port

    url = f"postgresql://sipsgate@127.0.0.1:{free_port()}/nothing?connect_timeout=1"
    with pytest.raises(StorageError, match="could not be reached") as caught:
        gateway(url, "site-a", clock)
    assert "PostgreSQL is running" in str(caught.value)


def test_bad_url_is_a_sentence(clock: FakeClock) -> None:
    with pytest.raises(StorageError, match="not a valid PostgreSQL connection string"):
        gateway("postgresql://[bad", "site-a", clock)


def test_upgrade_from_version_3_names_no_gateway(url: str, clock: FakeClock) -> None:
    """A database of schema version 3 (no ``seen_by``, no audit ``gateway``) upgrades
    to the current version: its rejected chains name no gateway, its events none, and
    a later sighting adds the gateway that saw it."""
    verdict = Verdict(
        verdict=VerdictKind.REJECT,
        rule=Rule.UNTRUSTED,
        findings=(Finding(reason=Reason.UNKNOWN_ISSUER, message=""),),
        leaf_fingerprint="",
    )
    chain = make_chain()
    with gateway(url, "site-a", clock) as store:
        entry = store.record_handshake(verdict, chain, PEER, clock.now)
        assert isinstance(entry, RejectedChain)

        def back_to_version_3(conn: psycopg.Connection[Any]) -> None:
            conn.execute("ALTER TABLE rejected DROP COLUMN seen_by")
            conn.execute("ALTER TABLE audit DROP COLUMN gateway")
            conn.execute("UPDATE schema_version SET version = 3")

        store.backend.transaction("test", back_to_version_3, write=True)
    with gateway(url, "site-b", clock) as store:
        assert store.get_rejected(entry.id).seen_by == ()
        events = store.audit(limit=500)
        assert events[0].action == "store.migrate" and events[0].gateway == "site-b"
        assert {e.gateway for e in events[1:]} == {None}
        again = store.record_handshake(verdict, chain, PEER, clock.now)
        assert isinstance(again, RejectedChain)
        assert (again.id, again.count, again.seen_by) == (entry.id, 2, ("site-b",))
