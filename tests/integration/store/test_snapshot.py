"""The handshake view: cached while nothing changes, rebuilt after a change made here, in
another store object, or from another thread."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certstore.facade import RepositoryStore
from certstore.model import PinDecision, PinMatch, TrustSource
from certstore.snapshot import TrustSnapshot
from certstore.store import PinRequest
from tests.integration._store_support import ADMIN, PKI, FakeClock
from tests.integration.store._backends import OpenStore


class TestCache:
    def test_unchanged_state_returns_the_same_object(self, store: RepositoryStore) -> None:
        """With nothing changed, snapshot() returns the cached object without rebuilding."""
        first = store.snapshot()
        with mock.patch.object(store, "_build_snapshot", side_effect=AssertionError("rebuilt")):
            for _ in range(100):
                assert store.snapshot() is first

    def test_change_rebuilds_and_reuses_parsed_certificates(self, store: RepositoryStore) -> None:
        """After one change the snapshot is new, but unchanged entries are the same objects."""
        first = store.snapshot()
        cert = PKI.leaf(None, cn="new.example").model
        with mock.patch("certstore.certcache.parse_der", side_effect=AssertionError("re-parsed")):
            store.add_trust([cert], source=TrustSource.UPLOADED, actor=ADMIN)
            second = store.snapshot()
        assert second is not first
        assert second.generation == first.generation + 1
        assert cert.fingerprint in second.trust_by_fingerprint
        for entry in first.trust:
            assert second.trust_by_fingerprint[entry.certificate.fingerprint] is entry

    def test_changes_outside_the_view_keep_the_snapshot(self, store: RepositoryStore) -> None:
        """Audit events and the rejected list do not invalidate the snapshot."""
        first = store.snapshot()
        store.log_event(actor=ADMIN, action="device.export", target="device", details={})
        assert store.snapshot() is first


class TestOtherWriters:
    def test_change_through_another_store_object(self, open_store: OpenStore) -> None:
        """A change made through a second store object on the same state shows at once."""
        with open_store() as gateway, open_store() as cli:
            before = gateway.snapshot()
            cert = PKI.leaf(None, cn="cli-added.example").model
            cli.add_trust([cert], source=TrustSource.UPLOADED, actor=ADMIN)
            after = gateway.snapshot()
            assert cert.fingerprint in after.trust_by_fingerprint
            assert after.generation > before.generation
            cli.update_settings({"accept_all_certificates": True}, actor=ADMIN)
            assert gateway.snapshot().settings.accept_all_certificates
            pin = cli.add_pin(
                PinRequest(
                    decision=PinDecision.REJECT, match=PinMatch.CERTIFICATE, fingerprint="aa" * 32
                ),
                actor=ADMIN,
            )
            assert gateway.snapshot().pins == (pin,)
            cli.remove_trust(cert.fingerprint, actor=ADMIN)
            assert cert.fingerprint not in gateway.snapshot().trust_by_fingerprint


class TestThreads:
    def test_writers_and_readers_on_many_threads(self, store: RepositoryStore) -> None:
        """Threads writing and reading through one store lose nothing and see whole states."""
        certs = [PKI.leaf(None, cn=f"thread-{n}.example").model for n in range(40)]
        stop = threading.Event()
        seen: list[int] = []

        def read() -> None:
            while not stop.is_set():
                snap = store.snapshot()
                assert len(snap.trust) == len(snap.trust_by_fingerprint)
                seen.append(snap.generation)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            with ThreadPoolExecutor(max_workers=4) as pool:
                results = list(
                    pool.map(
                        lambda c: store.add_trust([c], source=TrustSource.UPLOADED, actor=ADMIN),
                        certs,
                    )
                )
        finally:
            stop.set()
            reader.join(timeout=30)
        assert all(r.added for r in results)
        trusted = store.snapshot().trust_by_fingerprint
        assert all(c.fingerprint in trusted for c in certs)
        assert seen == sorted(seen)


POOL = [PKI.ca("Shared CA").model for _ in range(3)] + [
    PKI.leaf(None, cn=f"pool-{n}.example").model for n in range(5)
]
_ops = st.lists(
    st.tuples(
        st.sampled_from(
            ["add", "add-elsewhere", "remove", "readd", "clear", "restore", "pin", "setting"]
        ),
        st.integers(0, len(POOL) - 1),
    ),
    max_size=10,
)


def _assert_same_view(patched: TrustSnapshot, full: TrustSnapshot) -> None:
    assert patched.generation == full.generation
    assert patched.settings == full.settings
    assert patched.trust == full.trust
    assert list(patched.trust_by_fingerprint.items()) == list(full.trust_by_fingerprint.items())
    assert dict(patched.anchors_by_subject) == dict(full.anchors_by_subject)
    assert patched.pins == full.pins
    assert dict(patched.pins_by_fingerprint) == dict(full.pins_by_fingerprint)
    assert patched.first_use_scopes == full.first_use_scopes


class TestIncrementalRebuild:
    @settings(
        max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(ops=_ops)
    def test_patched_snapshot_equals_a_full_build(
        self,
        store: RepositoryStore,
        open_store: OpenStore,
        clock: FakeClock,
        ops: list[tuple[str, int]],
    ) -> None:
        """After any sequence of changes (here and through another store object), the
        snapshot patched from the previous one equals one built from scratch."""
        with open_store() as elsewhere:
            for op, n in ops:
                cert = POOL[n]
                present = cert.fingerprint in store.snapshot().trust_by_fingerprint
                clock.advance(seconds=1)
                if op == "add":
                    store.add_trust([cert], source=TrustSource.UPLOADED, actor=ADMIN)
                elif op == "add-elsewhere":
                    elsewhere.add_trust([cert], source=TrustSource.PROVISIONED, actor=ADMIN)
                elif op == "remove" and present:
                    elsewhere.remove_trust(cert.fingerprint, actor=ADMIN)
                elif op == "readd" and present:
                    elsewhere.remove_trust(cert.fingerprint, actor=ADMIN)
                    elsewhere.add_trust([cert], source=TrustSource.UPLOADED, actor=ADMIN)
                elif op == "clear":
                    store.clear_trust(actor=ADMIN)
                elif op == "restore":
                    store.restore_defaults(actor=ADMIN)
                elif op == "pin":
                    store.add_pin(
                        PinRequest(
                            decision=PinDecision.ACCEPT,
                            match=PinMatch.CERTIFICATE,
                            fingerprint=cert.fingerprint,
                        ),
                        actor=ADMIN,
                    )
                elif op == "setting":
                    current = store.get_settings().accept_all_certificates
                    elsewhere.update_settings({"accept_all_certificates": not current}, actor=ADMIN)
                store.snapshot()
        with open_store() as fresh:
            _assert_same_view(store.snapshot(), fresh.snapshot())
