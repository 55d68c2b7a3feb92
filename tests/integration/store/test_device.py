"""Device identity, pending signing request, audit log and the expiry watch."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from certstore.errors import Conflict, NotFound, ValidationError
from certstore.facade import RepositoryStore
from certstore.model import Actor, PinDecision, PinMatch, TrustSource
from certstore.store import DeviceIdentity, PendingCsr, PinRequest
from tests.integration._store_support import (
    ADMIN,
    BASE_TIME,
    PEER,
    PKI,
    FakeClock,
    audit_actions,
    csr,
    first_use,
    identity,
    last_details,
)
from tests.integration.store._backends import OpenStore


class TestDeviceIdentity:
    def test_none_until_set(self, store: RepositoryStore) -> None:
        """A new store has no device identity (the identity module creates it)."""
        assert store.device_identity() is None

    def test_set_and_replace(self, store: RepositoryStore) -> None:
        """The identity reads back whole; a replacement is audited with its action."""
        first = identity()
        store.set_device_identity(first, actor=ADMIN, action="create")
        assert store.device_identity() == first
        second = identity(kind="installed")
        store.set_device_identity(second, actor=ADMIN, action="device.install")
        assert store.device_identity() == second
        assert audit_actions(store)[-2:] == ["device.create", "device.install"]
        details = last_details(store)
        assert details["replaced"] is True
        for event in store.audit():
            assert b"PRIVATE KEY" not in event.details.encode()

    def test_key_of_another_certificate_is_refused(self, store: RepositoryStore) -> None:
        """A key that does not belong to the leaf is refused; the current identity stays."""
        current = identity()
        store.set_device_identity(current, actor=ADMIN, action="create")
        other = identity()
        mixed = DeviceIdentity(
            kind="installed",
            chain=other.chain,
            private_key_pem=current.private_key_pem,
            created_at=BASE_TIME,
        )
        with pytest.raises(ValidationError) as info:
            store.set_device_identity(mixed, actor=ADMIN, action="install")
        assert info.value.field == "private_key"
        assert store.device_identity() == current

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"kind": "borrowed"}, "kind"),
            ({"chain": ()}, "chain"),
            ({"private_key_pem": b"not a key"}, "private_key"),
        ],
    )
    def test_invalid_identity_is_refused(
        self, store: RepositoryStore, change: dict[str, object], field: str
    ) -> None:
        """A bad kind, an empty chain or an unreadable key name the field."""
        good = identity()
        fields = {
            "kind": good.kind,
            "chain": good.chain,
            "private_key_pem": good.private_key_pem,
            "created_at": good.created_at,
            **change,
        }
        with pytest.raises(ValidationError) as info:
            store.set_device_identity(DeviceIdentity(**fields), actor=ADMIN, action="create")  # type: ignore[arg-type]
        assert info.value.field == field
        assert store.device_identity() is None

    def test_bad_action_name(self, store: RepositoryStore) -> None:
        """The audit action must look like area.verb."""
        with pytest.raises(ValidationError):
            store.set_device_identity(identity(), actor=ADMIN, action="Make It So!")


class TestPendingCsr:
    def test_set_replace_remove(self, store: RepositoryStore) -> None:
        """A signing request is stored with its key, replaced, and removed with its key."""
        assert store.pending_csr() is None
        first = csr()
        store.set_pending_csr(first, actor=ADMIN)
        assert store.pending_csr() == first
        second = csr("other")
        store.set_pending_csr(second, actor=ADMIN)
        assert store.pending_csr() == second
        store.set_pending_csr(None, actor=ADMIN)
        assert store.pending_csr() is None
        assert audit_actions(store)[-3:] == ["csr.create", "csr.create", "csr.remove"]

    def test_remove_when_none_is_conflict(self, store: RepositoryStore) -> None:
        """Removing a signing request that does not exist is a Conflict."""
        with pytest.raises(Conflict):
            store.set_pending_csr(None, actor=ADMIN)

    def test_mismatched_key_is_refused(self, store: RepositoryStore) -> None:
        """A key that did not make the request is refused."""
        a, b = csr(), csr()
        mixed = PendingCsr(
            csr_pem=a.csr_pem,
            private_key_pem=b.private_key_pem,
            key_spec="ec-p256",
            created_at=BASE_TIME,
        )
        with pytest.raises(ValidationError):
            store.set_pending_csr(mixed, actor=ADMIN)
        assert store.pending_csr() is None

    def test_not_a_csr_is_refused(self, store: RepositoryStore) -> None:
        """Bytes that are not a PEM CSR are refused."""
        good = csr()
        bad = PendingCsr(
            csr_pem=b"junk",
            private_key_pem=good.private_key_pem,
            key_spec="ec-p256",
            created_at=BASE_TIME,
        )
        with pytest.raises(ValidationError) as info:
            store.set_pending_csr(bad, actor=ADMIN)
        assert info.value.field == "csr_pem"


class TestAudit:
    def test_newest_first_and_paging(self, store: RepositoryStore) -> None:
        """audit() pages newest first with before_id."""
        for n in range(5):
            store.log_event(actor=ADMIN, action="device.export", target=str(n), details={"n": n})
        first = store.audit(limit=2)
        assert [e.target for e in first] == ["4", "3"]
        second = store.audit(limit=2, before_id=first[-1].id)
        assert [e.target for e in second] == ["2", "1"]
        third = store.audit(limit=10, before_id=second[-1].id)
        assert [e.action for e in third] == ["device.export", "store.create"]

    def test_log_event(self, store: RepositoryStore, clock: FakeClock) -> None:
        """log_event records a non-store action with actor, interface and JSON details."""
        store.log_event(
            actor=Actor(name="alice", interface="web"),
            action="device.export",
            target="device",
            details={"format": "pem", "with_key": True},
        )
        event = store.audit(limit=1)[0]
        assert (event.actor, event.interface, event.at) == ("alice", "web", clock.now)
        assert json.loads(event.details) == {"format": "pem", "with_key": True}

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"action": "export"}, "action"),
            ({"target": "x" * 501}, "target"),
            ({"details": {"x": object()}}, "details"),
            ({"details": {"x": "y" * 20000}}, "details"),
        ],
    )
    def test_log_event_refuses_bad_input(
        self, store: RepositoryStore, kwargs: dict[str, object], field: str
    ) -> None:
        """Malformed actions, targets or details are refused and nothing is logged."""
        args: dict[str, object] = {"action": "device.export", "target": "device", "details": {}}
        args.update(kwargs)
        with pytest.raises(ValidationError) as info:
            store.log_event(actor=ADMIN, **args)  # type: ignore[arg-type]
        assert info.value.field == field
        assert audit_actions(store) == ["store.create"]

    @pytest.mark.parametrize(("limit", "before_id"), [(0, None), (1001, None), (5, "x")])
    def test_bad_page(self, store: RepositoryStore, limit: int, before_id: object) -> None:
        """Page sizes outside 1..1000 and non-integer cursors are refused."""
        with pytest.raises(ValidationError):
            store.audit(limit=limit, before_id=before_id)  # type: ignore[arg-type]

    def test_log_is_bounded(self, open_store: OpenStore) -> None:
        """Beyond audit_limit the oldest events are dropped."""
        with open_store("small", audit_limit=5) as small:
            for n in range(12):
                small.log_event(actor=ADMIN, action="device.export", target=str(n), details={})
            events = small.audit(limit=100)
            assert [e.target for e in events] == ["11", "10", "9", "8", "7"]


class TestExpiring:
    def test_window(self, store: RepositoryStore, clock: FakeClock) -> None:
        """Trust anchors, pinned certificates and the device identity inside the window,
        not yet expired, soonest first."""
        store.clear_trust(actor=ADMIN)
        soon = PKI.leaf(None, cn="soon.example", not_after=BASE_TIME + timedelta(days=5)).model
        later = PKI.leaf(None, cn="later.example", not_after=BASE_TIME + timedelta(days=60)).model
        gone = PKI.leaf(None, cn="gone.example", not_after=BASE_TIME - timedelta(days=1)).model
        store.add_trust([soon, later, gone], source=TrustSource.UPLOADED, actor=ADMIN)
        pinned = PKI.leaf(None, cn="pinned.example", not_after=BASE_TIME + timedelta(days=10)).model
        pin = store.add_pin(
            PinRequest(
                decision=PinDecision.ACCEPT,
                match=PinMatch.CERTIFICATE,
                fingerprint=pinned.fingerprint,
                certificate=pinned,
            ),
            actor=ADMIN,
        )
        tofu_leaf = PKI.leaf(
            None, cn="sip.example.net", not_after=BASE_TIME + timedelta(days=20)
        ).model
        tofu = store.record_handshake(first_use(), (tofu_leaf,), PEER, BASE_TIME)
        assert tofu is not None
        store.set_device_identity(identity(days=25), actor=ADMIN, action="create")

        items = store.expiring(now=clock.now, days=30)
        assert [(i.role, i.ref) for i in items] == [
            ("trust-anchor", soon.fingerprint),
            ("pin", str(pin.id)),
            ("pin", str(tofu.id)),
            ("device", "device"),
        ]
        assert [i.days_left for i in items] == [5, 10, 20, 25]
        assert [i.role for i in store.expiring(now=clock.now, days=7)] == ["trust-anchor"]
        assert store.expiring(now=clock.now + timedelta(days=100), days=30) == ()

    def test_pin_of_unknown_certificate_is_skipped(
        self, store: RepositoryStore, clock: FakeClock
    ) -> None:
        """A pin by fingerprint alone, whose certificate the store never saw, is not listed."""
        store.clear_trust(actor=ADMIN)
        store.add_pin(
            PinRequest(
                decision=PinDecision.ACCEPT, match=PinMatch.CERTIFICATE, fingerprint="ef" * 32
            ),
            actor=ADMIN,
        )
        assert store.expiring(now=clock.now, days=3650) == ()

    @pytest.mark.parametrize("days", [-1, 36501, 1.5])
    def test_bad_window(self, store: RepositoryStore, clock: FakeClock, days: object) -> None:
        """A negative, huge or fractional window is refused."""
        with pytest.raises(ValidationError):
            store.expiring(now=clock.now, days=days)  # type: ignore[arg-type]


class TestActor:
    def test_missing_actor_is_refused(self, store: RepositoryStore) -> None:
        """Every change needs an Actor."""
        with pytest.raises(ValidationError):
            store.clear_trust(actor="admin")  # type: ignore[arg-type]

    def test_not_found_message(self, store: RepositoryStore) -> None:
        """NotFound says what was looked for."""
        with pytest.raises(NotFound, match="No rejected chain 5"):
            store.get_rejected(5)
