"""The trust list: add, list, get, remove, clear, restore defaults; statuses from the clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from certstore.builtin import builtin_certificates
from certstore.errors import NotFound, ValidationError
from certstore.facade import RepositoryStore
from certstore.model import CertStatus, TrustKind, TrustSource
from tests.integration._store_support import (
    ADMIN,
    BASE_TIME,
    PKI,
    FakeClock,
    audit_actions,
    last_details,
)


class TestAddTrust:
    def test_adds_with_kind_from_basic_constraints(self, store: RepositoryStore) -> None:
        """A CA certificate is added as kind ca, an end-entity one as server."""
        ca = PKI.ca("Provider CA").model
        server = PKI.leaf(None, cn="sip.provider.example").model
        result = store.add_trust([ca, server], source=TrustSource.UPLOADED, actor=ADMIN)
        assert result.added == (ca, server)
        assert result.already_present == ()
        assert store.get_trust(ca.fingerprint).kind is TrustKind.CA
        assert store.get_trust(server.fingerprint).kind is TrustKind.SERVER
        assert store.get_trust(server.fingerprint).source is TrustSource.UPLOADED

    def test_explicit_kind_wins(self, store: RepositoryStore) -> None:
        """An explicit kind is stored as given."""
        ca = PKI.ca("Self CA").model
        store.add_trust([ca], source=TrustSource.PROVISIONED, actor=ADMIN, kind=TrustKind.SERVER)
        entry = store.get_trust(ca.fingerprint)
        assert entry.kind is TrustKind.SERVER
        assert entry.source is TrustSource.PROVISIONED

    def test_already_present_is_reported_and_not_rewritten(
        self, store: RepositoryStore, clock: FakeClock
    ) -> None:
        """A second add reports already_present, keeps the first source, writes no audit."""
        cert = PKI.leaf(None, cn="twice.example").model
        store.add_trust([cert], source=TrustSource.UPLOADED, actor=ADMIN)
        generation = store.snapshot().generation
        clock.advance(hours=1)
        result = store.add_trust([cert, cert], source=TrustSource.PROVISIONED, actor=ADMIN)
        assert result.added == ()
        assert result.already_present == (cert,)
        entry = store.get_trust(cert.fingerprint)
        assert entry.source is TrustSource.UPLOADED
        assert entry.added_at == clock.now - timedelta(hours=1)
        assert store.snapshot().generation == generation
        assert audit_actions(store) == ["store.create", "trust.add"]

    def test_audit_event(self, store: RepositoryStore) -> None:
        """One trust.add event names the added fingerprints, the source and the actor."""
        a, b = PKI.leaf(None, cn="a.example").model, PKI.leaf(None, cn="b.example").model
        store.add_trust([a, b], source=TrustSource.UPLOADED, actor=ADMIN)
        event = store.audit(limit=1)[0]
        assert (event.action, event.actor, event.interface) == ("trust.add", "admin", "api")
        assert event.target == "2 certificates"
        assert last_details(store)["added"] == [a.fingerprint, b.fingerprint]

    def test_not_a_certificate_is_refused(self, store: RepositoryStore) -> None:
        """Anything but parsed certificates is refused and nothing is added."""
        before = store.list_trust()
        with pytest.raises(ValidationError):
            store.add_trust([b"raw bytes"], source=TrustSource.UPLOADED, actor=ADMIN)  # type: ignore[list-item]
        assert store.list_trust() == before

    def test_unknown_source_is_refused(self, store: RepositoryStore) -> None:
        """A source outside the contract's list is refused."""
        with pytest.raises(ValueError, match="nowhere"):
            store.add_trust(
                [PKI.leaf(None, cn="test.example").model], source="nowhere", actor=ADMIN
            )  # type: ignore[arg-type]


class TestReadTrust:
    def test_get_unknown_is_not_found(self, store: RepositoryStore) -> None:
        """get_trust of a fingerprint not in the list raises NotFound."""
        with pytest.raises(NotFound) as info:
            store.get_trust("ab" * 32)
        assert info.value.key == "ab" * 32

    def test_get_bad_fingerprint_is_validation_error(self, store: RepositoryStore) -> None:
        """A malformed fingerprint names the field."""
        with pytest.raises(ValidationError) as info:
            store.get_trust("not-hex")
        assert info.value.field == "fingerprint"

    def test_fingerprint_with_colons_and_upper_case(self, store: RepositoryStore) -> None:
        """OpenSSL-style colon separated upper-case fingerprints are accepted."""
        cert = PKI.leaf(None, cn="colons.example").model
        store.add_trust([cert], source=TrustSource.UPLOADED, actor=ADMIN)
        fp = cert.fingerprint.upper()
        colons = ":".join(fp[i : i + 2] for i in range(0, 64, 2))
        assert store.get_trust(colons).certificate == cert

    def test_statuses_follow_the_clock(self, store: RepositoryStore, clock: FakeClock) -> None:
        """Expired and not-yet-valid certificates stay listed; their status is computed at read."""
        store.clear_trust(actor=ADMIN)
        valid = PKI.leaf(None, cn="valid.example").model
        expired = PKI.leaf(
            None,
            cn="expired.example",
            not_before=BASE_TIME - timedelta(days=60),
            not_after=BASE_TIME - timedelta(days=1),
        ).model
        future = PKI.leaf(
            None,
            cn="future.example",
            not_before=BASE_TIME + timedelta(days=10),
            not_after=BASE_TIME + timedelta(days=100),
        ).model
        store.add_trust([valid, expired, future], source=TrustSource.UPLOADED, actor=ADMIN)
        assert len(store.list_trust()) == 3
        assert store.list_trust(status=CertStatus.EXPIRED)[0].certificate == expired
        assert store.list_trust(status=CertStatus.NOT_YET_VALID)[0].certificate == future
        assert store.list_trust(status=CertStatus.VALID)[0].certificate == valid
        clock.advance(days=20)
        assert {e.certificate for e in store.list_trust(status=CertStatus.VALID)} == {
            valid,
            future,
        }
        clock.advance(days=400)
        assert len(store.list_trust(status=CertStatus.EXPIRED)) == 3
        assert len(store.list_trust()) == 3
        assert store.status_of(valid) is CertStatus.EXPIRED

    def test_filter_by_kind(self, store: RepositoryStore) -> None:
        """list_trust(kind=server) shows only end-entity entries."""
        server = PKI.leaf(None, cn="only-server.example").model
        store.add_trust([server], source=TrustSource.UPLOADED, actor=ADMIN)
        assert [e.certificate for e in store.list_trust(kind=TrustKind.SERVER)] == [server]


class TestRemoveAndClear:
    def test_remove_returns_the_entry(self, store: RepositoryStore) -> None:
        """remove_trust returns what was removed, audits it and changes the snapshot."""
        cert = PKI.leaf(None, cn="remove.example").model
        store.add_trust([cert], source=TrustSource.UPLOADED, actor=ADMIN)
        generation = store.snapshot().generation
        entry = store.remove_trust(cert.fingerprint, actor=ADMIN)
        assert entry.certificate == cert
        assert cert.fingerprint not in store.snapshot().trust_by_fingerprint
        assert store.snapshot().generation == generation + 1
        assert audit_actions(store)[-1] == "trust.remove"
        assert store.audit(limit=1)[0].target == cert.fingerprint

    def test_remove_unknown_is_not_found_and_not_audited(self, store: RepositoryStore) -> None:
        """Removing a fingerprint that is not trusted raises NotFound and writes nothing."""
        with pytest.raises(NotFound):
            store.remove_trust("cd" * 32, actor=ADMIN)
        assert audit_actions(store) == ["store.create"]

    def test_builtin_can_be_removed_and_restored(self, store: RepositoryStore) -> None:
        """A builtin CA can be removed; restore_defaults adds back only what is missing."""
        builtin = builtin_certificates()[0]
        store.remove_trust(builtin.fingerprint, actor=ADMIN)
        result = store.restore_defaults(actor=ADMIN)
        assert result.added == (builtin,)
        assert len(result.already_present) == len(builtin_certificates()) - 1
        assert store.get_trust(builtin.fingerprint).source is TrustSource.BUILTIN
        assert audit_actions(store)[-1] == "trust.restore-defaults"

    def test_restore_defaults_when_complete_changes_nothing(self, store: RepositoryStore) -> None:
        """With every builtin present, restore_defaults adds nothing and writes no event."""
        result = store.restore_defaults(actor=ADMIN)
        assert result.added == ()
        assert audit_actions(store) == ["store.create"]

    def test_clear_removes_everything(self, store: RepositoryStore) -> None:
        """clear_trust empties the list, returns the count, and is audited once."""
        count = len(store.list_trust())
        assert store.clear_trust(actor=ADMIN) == count
        assert store.list_trust() == ()
        assert store.clear_trust(actor=ADMIN) == 0
        assert audit_actions(store) == ["store.create", "trust.clear"]
        assert last_details(store) == {"removed": count}
