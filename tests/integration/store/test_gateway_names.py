"""Which gateway: a rejected chain names every gateway that saw it (``seen_by``, merged
by the dedup rule), an audit event the gateway whose store wrote it; both carried by
backups, and backups from before they were kept still restore."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from certstore.errors import BackupError
from certstore.facade import RepositoryStore
from certstore.model import RejectedChain, TrustSource
from certstore.recording import MAX_SEEN_BY
from tests.integration._store_support import (
    ADMIN,
    BASE_TIME,
    PEER,
    PKI,
    FakeClock,
    make_chain,
    untrusted,
)
from tests.integration.store._backends import OpenStore
from tests.integration.store.test_backup import _resign


def seen(store: RepositoryStore, chain: tuple[object, ...], minutes: int = 0) -> RejectedChain:
    entry = store.record_handshake(
        untrusted(),
        chain,  # type: ignore[arg-type]
        PEER,
        BASE_TIME + timedelta(minutes=minutes),
    )
    assert isinstance(entry, RejectedChain)
    return entry


def test_a_chain_seen_by_two_gateways_is_one_entry_naming_both(open_store: OpenStore) -> None:
    """Two gateways sharing one state: the repeat merges into the first entry, and each
    gateway is named once, in the order of its first sighting."""
    a = open_store(gateway="site-a")
    b = open_store(gateway="site-b")
    chain = make_chain()
    first = seen(a, chain)
    assert first.seen_by == ("site-a",)
    second = seen(b, chain, minutes=1)
    third = seen(a, chain, minutes=2)
    assert second.id == third.id == first.id
    assert second.seen_by == third.seen_by == ("site-a", "site-b")
    assert third.count == 3
    assert a.list_rejected() == b.list_rejected() == (third,)
    assert b.get_rejected(first.id).seen_by == ("site-a", "site-b")
    # Another chain seen by b alone names b alone.
    other = seen(b, make_chain("sip.other.example"))
    assert other.id != first.id and other.seen_by == ("site-b",)


def test_seen_by_is_bounded(open_store: OpenStore) -> None:
    """A chain seen by more gateways than are named keeps the first ones and counts on."""
    chain = make_chain()
    for n in range(MAX_SEEN_BY + 2):
        store = open_store(gateway=f"gw-{n:03d}")
        entry = seen(store, chain, minutes=n)
        store.close()
    assert entry.count == MAX_SEEN_BY + 2
    assert entry.seen_by == tuple(f"gw-{n:03d}" for n in range(MAX_SEEN_BY))


def test_audit_events_name_the_gateway(open_store: OpenStore) -> None:
    """Each event says which gateway's store wrote it, beside actor and interface."""
    a = open_store(gateway="site-a")
    b = open_store(gateway="site-b")
    a.add_trust([PKI.ca("Site A CA").model], source=TrustSource.UPLOADED, actor=ADMIN)
    b.update_settings({"allow_wildcards": True}, actor=ADMIN)
    seen(b, make_chain())
    newest = a.audit(limit=3)
    assert [(e.action, e.actor, e.gateway) for e in newest] == [
        ("rejected.record", "gateway", "site-b"),
        ("settings.update", ADMIN.name, "site-b"),
        ("trust.add", ADMIN.name, "site-a"),
    ]


def test_backup_carries_seen_by_and_older_backups_restore(
    open_store: OpenStore, clock: FakeClock
) -> None:
    """``seen_by`` survives export and restore; a document from before it was kept (no
    ``seen_by`` member) restores its entries naming no gateway; a malformed one is
    refused and changes nothing."""
    a = open_store(gateway="site-a")
    b = open_store(gateway="site-b")
    chain = make_chain()
    seen(a, chain)
    seen(b, chain, minutes=1)
    document = a.export_backup(now=clock.now)
    target = open_store("other", gateway="site-c")
    target.import_backup(document, actor=ADMIN)
    assert [r.seen_by for r in target.list_rejected()] == [("site-a", "site-b")]
    assert target.export_backup(now=clock.now) == document

    body = json.loads(document)
    for item in body["rejected"]:
        del item["seen_by"]
    target.import_backup(_resign(body), actor=ADMIN)
    assert [r.seen_by for r in target.list_rejected()] == [()]

    for bad in (["site-a", "site-a"], "site-a", [7], ["x"] * (MAX_SEEN_BY + 1)):
        body["rejected"][0]["seen_by"] = bad
        before = target.list_rejected()
        with pytest.raises(BackupError, match="seen_by"):
            target.import_backup(_resign(body), actor=ADMIN)
        assert target.list_rejected() == before
