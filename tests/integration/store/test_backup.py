"""Backup and restore: a round trip into an empty data directory gives the same trust
state; a damaged or foreign document changes nothing."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certstore import backup
from certstore.errors import BackupError, CertStoreError
from certstore.facade import RepositoryStore
from certstore.model import Peer, PinDecision, PinMatch, Reason, Transport, TrustSource
from certstore.sqlite import SqliteStore
from certstore.store import PinRequest
from tests.integration._store_support import (
    ADMIN,
    BASE_TIME,
    PEER,
    PKI,
    FakeClock,
    accept_all,
    audit_actions,
    first_use,
    make_chain,
    trust_state,
    untrusted,
)
from tests.integration.store._backends import OpenStore

SECRET = "digest-secret"


def populate(store: RepositoryStore, clock: FakeClock) -> None:
    """Every kind of state a backup carries."""
    builtin = store.list_trust()[0].certificate
    store.remove_trust(builtin.fingerprint, actor=ADMIN)
    ca = PKI.ca("Backup CA")
    store.add_trust([ca.model], source=TrustSource.PROVISIONED, actor=ADMIN)
    store.add_pin(
        PinRequest(
            decision=PinDecision.ACCEPT,
            match=PinMatch.CERTIFICATE,
            fingerprint="12" * 32,
            scope="[2001:db8::7]:5061",
            expires_at=clock.now + timedelta(days=7),
            note="Temporäre Ausnahme\nbis Montag",
        ),
        actor=ADMIN,
    )
    original = PKI.leaf(None, cn="tofu.example").model
    tofu_peer = Peer(host="tofu.example", port=5061, transport=Transport.SIPS)
    store.record_handshake(first_use(), (original,), tofu_peer, BASE_TIME)
    changed = PKI.leaf(ca, cn="tofu.example").model
    store.record_handshake(untrusted(Reason.KEY_CHANGED), (changed,), tofu_peer, BASE_TIME)
    chain = make_chain()
    store.record_handshake(untrusted(Reason.EXPIRED, Reason.UNKNOWN_ISSUER), chain, PEER, BASE_TIME)
    store.record_handshake(
        untrusted(Reason.EXPIRED),
        chain,
        PEER,
        BASE_TIME + timedelta(hours=1),
        address="[2001:db8::5]:5061",
    )
    store.record_handshake(
        accept_all(Reason.SELF_SIGNED),
        (PKI.leaf(None, cn="lab.example").model,),
        Peer(host="192.0.2.9", port=443, transport=Transport.HTTPS, sni=None),
        BASE_TIME,
    )
    store.update_settings(
        {
            "accept_all_certificates": True,
            "allow_wildcards": True,
            "http_auth_username": "dect-base",
            "http_auth_password": SECRET,
        },
        actor=ADMIN,
    )


@pytest.fixture
def full(store: RepositoryStore, clock: FakeClock) -> RepositoryStore:
    populate(store, clock)
    return store


@pytest.fixture
def empty(open_store: OpenStore) -> RepositoryStore:
    return open_store("other")


class TestRoundTrip:
    def test_with_secrets_gives_identical_state(
        self, full: RepositoryStore, empty: RepositoryStore, clock: FakeClock
    ) -> None:
        """Export, then import into a new data directory: trust, pins, rejected, settings equal."""
        document = full.export_backup(now=clock.now, include_secrets=True)
        summary = empty.import_backup(document, actor=ADMIN)
        assert trust_state(empty) == trust_state(full)
        assert empty.get_settings().http_auth_password == SECRET
        assert summary.trust == len(full.list_trust())
        assert (summary.pins, summary.rejected) == (2, 3)
        assert summary.secrets_restored
        for pin in full.list_pins():
            assert empty.pin_certificate(pin.id) == full.pin_certificate(pin.id)
        assert audit_actions(empty)[-1] == "backup.restore"
        assert SECRET not in empty.audit(limit=1)[0].details
        # The restored store exports the same document.
        again = empty.export_backup(now=clock.now, include_secrets=True)
        assert again == document

    def test_without_secrets_keeps_the_target_password(
        self, full: RepositoryStore, empty: RepositoryStore, clock: FakeClock
    ) -> None:
        """A backup without secrets restores everything but the password, which stays."""
        empty.update_settings({"http_auth_password": "target-own"}, actor=ADMIN)
        document = full.export_backup(now=clock.now)
        assert SECRET.encode() not in document
        summary = empty.import_backup(document, actor=ADMIN)
        assert not summary.secrets_restored
        restored = empty.get_settings()
        assert restored.http_auth_password == "target-own"
        assert restored.http_auth_username == "dect-base"
        assert restored.accept_all_certificates

    def test_the_address_dialled_survives_and_older_backups_lack_it(
        self, full: RepositoryStore, empty: RepositoryStore, clock: FakeClock
    ) -> None:
        """The address a rejected chain was dialled at is restored; a document from
        before it was kept (no ``address`` member) restores with none."""
        document = full.export_backup(now=clock.now)
        empty.import_backup(document, actor=ADMIN)
        dialled = {r.address for r in empty.list_rejected()}
        assert "[2001:db8::5]:5061" in dialled
        body = json.loads(document)
        for item in body["rejected"]:
            del item["address"]
        empty.import_backup(_resign(body), actor=ADMIN)
        assert {r.address for r in empty.list_rejected()} == {None}

    def test_restore_replaces_not_merges(
        self, full: RepositoryStore, empty: RepositoryStore, clock: FakeClock
    ) -> None:
        """State of the target that is not in the backup is gone after the restore."""
        document = full.export_backup(now=clock.now)
        extra = PKI.leaf(None, cn="only-in-target.example").model
        empty.add_trust([extra], source=TrustSource.UPLOADED, actor=ADMIN)
        empty.import_backup(document, actor=ADMIN)
        assert extra.fingerprint not in empty.snapshot().trust_by_fingerprint

    def test_restore_changes_the_snapshot_of_another_store_object(
        self,
        full: RepositoryStore,
        empty: RepositoryStore,
        open_store: OpenStore,
        clock: FakeClock,
    ) -> None:
        """A gateway reading the restored store sees the restored state at its next snapshot."""
        document = full.export_backup(now=clock.now)
        with open_store("other") as gateway:
            gateway.snapshot()
            empty.import_backup(document, actor=ADMIN)
            assert gateway.snapshot().trust == full.snapshot().trust

    def test_device_identity_is_not_part_of_it(
        self, full: RepositoryStore, empty: RepositoryStore, clock: FakeClock
    ) -> None:
        """The document has exactly the documented members, no device key anywhere."""
        body = json.loads(full.export_backup(now=clock.now, include_secrets=True))
        assert set(body) == {
            "format",
            "version",
            "created_at",
            "trust",
            "pins",
            "rejected",
            "settings",
            "checksum",
        }
        assert body["format"] == "sipsgate-backup"
        assert body["version"] == 1
        assert body["checksum"].startswith("sha256:")

    def test_too_many_rejected_for_target_limit(
        self, full: RepositoryStore, open_store: OpenStore, clock: FakeClock
    ) -> None:
        """A target with a smaller rejected limit keeps the most recently seen entries."""
        document = full.export_backup(now=clock.now)
        with open_store("small", rejected_limit=1) as small:
            assert small.import_backup(document, actor=ADMIN).rejected == 1
            assert small.list_rejected()[0] == full.list_rejected()[0]


def reads_back(store: RepositoryStore) -> None:
    """Every part of the state reads back through the store's interface."""
    trust_state(store)
    for pin in store.list_pins():
        store.pin_certificate(pin.id)
    store.audit(limit=1000)
    store.export_backup(now=BASE_TIME, include_secrets=True)


def _resign(body: dict[str, object]) -> bytes:
    body["checksum"] = backup.checksum(body)
    return json.dumps(body).encode()


class TestCorrupted:
    def _assert_refused(self, store: RepositoryStore, document: bytes, match: str) -> None:
        before = trust_state(store)
        generation = store.snapshot().generation
        events = store.audit(limit=1)
        with pytest.raises(BackupError, match=match):
            store.import_backup(document, actor=ADMIN)
        assert trust_state(store) == before
        assert store.snapshot().generation == generation
        assert store.audit(limit=1) == events

    def test_bad_checksum(
        self, full: RepositoryStore, empty: RepositoryStore, clock: FakeClock
    ) -> None:
        """One changed value without a new checksum is refused; nothing changes."""
        body = json.loads(full.export_backup(now=clock.now))
        body["settings"]["accept_all_certificates"] = False
        self._assert_refused(empty, json.dumps(body).encode(), "checksum")

    def test_truncated(
        self, full: RepositoryStore, empty: RepositoryStore, clock: FakeClock
    ) -> None:
        """A document cut short is refused as not JSON."""
        document = full.export_backup(now=clock.now)
        self._assert_refused(empty, document[: len(document) // 2], "not a JSON document")

    def test_newer_version(
        self, full: RepositoryStore, empty: RepositoryStore, clock: FakeClock
    ) -> None:
        """A backup from a newer sipsgate is refused with a message that says so."""
        body = json.loads(full.export_backup(now=clock.now))
        body["version"] = 2
        self._assert_refused(empty, _resign(body), "newer sipsgate")

    def test_wrong_format(self, empty: RepositoryStore) -> None:
        """JSON that is not a sipsgate backup is refused."""
        self._assert_refused(empty, b'{"format": "other"}', "not a sipsgate backup")
        self._assert_refused(empty, b"[1, 2]", "not an object")
        self._assert_refused(empty, b"\xff\xfe", "not a JSON document")
        self._assert_refused(empty, b"[" * 100_000, "not a JSON document")

    def test_damaged_certificate_with_valid_checksum(
        self, full: RepositoryStore, empty: RepositoryStore, clock: FakeClock
    ) -> None:
        """A certificate that does not parse is refused even when the checksum matches."""
        body = json.loads(full.export_backup(now=clock.now))
        der = base64.b64decode(body["trust"][-1]["der"])
        body["trust"][-1]["der"] = base64.b64encode(der[:-10]).decode()
        self._assert_refused(empty, _resign(body), r"trust\[\d+\]")

    @pytest.mark.parametrize(
        ("path", "value", "match"),
        [
            (("pins", 0, "scope"), "not a scope!", "scope"),
            (("pins", 0, "fingerprint"), "zz", "fingerprint"),
            (("pins", 0, "decision"), "perhaps", "decision"),
            (("pins", 0, "id"), True, "id"),
            (("pins", 0, "note"), "n" * 1001, "note"),
            (("rejected", 0, "count"), 0, "count"),
            (("rejected", 0, "reasons"), ["bored"], "reason"),
            (("rejected", 0, "peer"), {"host": "x"}, "peer"),
            (("rejected", 0, "chain"), [], "chain"),
            (("rejected", 0, "first_seen"), "2026-01-01T00:00:00", "time zone"),
            (("trust", 0, "kind"), "root", "kind"),
            (("trust", 0, "extra"), 1, "members"),
            (("settings", "http_auth_password"), "p" * 75, "http_auth_password"),
            (("settings", "accept_all_certificates"), "yes", "accept_all_certificates"),
            (("settings", "unknown_setting"), True, "unknown_setting"),
            (("created_at",), 5, "created_at"),
        ],
    )
    def test_invalid_value_with_valid_checksum(
        self,
        full: RepositoryStore,
        empty: RepositoryStore,
        clock: FakeClock,
        path: tuple[object, ...],
        value: object,
        match: str,
    ) -> None:
        """Each invalid value is refused with the place named; nothing changes."""
        body = json.loads(full.export_backup(now=clock.now))
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        self._assert_refused(empty, _resign(body), match)

    def test_duplicate_certificate(
        self, full: RepositoryStore, empty: RepositoryStore, clock: FakeClock
    ) -> None:
        """The same certificate twice in the trust list is refused."""
        body = json.loads(full.export_backup(now=clock.now))
        body["trust"].append(body["trust"][0])
        self._assert_refused(empty, _resign(body), "twice")


# One exported document shared by the fuzz test (building a store per example is slow).
def _sample_document(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    # The document is the same whichever backend wrote it: SQLite writes it once.
    clock = FakeClock()
    with SqliteStore(tmp_path_factory.mktemp("fuzz") / "s.db", clock=clock) as source:
        populate(source, clock)
        source.clear_trust(actor=ADMIN)
        source.add_trust(
            [PKI.leaf(None, cn="fuzz.example").model], source=TrustSource.UPLOADED, actor=ADMIN
        )
        return source.export_backup(now=clock.now, include_secrets=True)


@pytest.fixture(scope="module")
def sample_document(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _sample_document(tmp_path_factory)


def _mutate_json(body: object, data: st.DataObject) -> object:
    """Replace one randomly chosen value somewhere in the document."""
    if isinstance(body, dict) and body:
        key = data.draw(st.sampled_from(sorted(body)))
        if data.draw(st.booleans()):
            body[key] = _mutate_json(body[key], data)
        else:
            body[key] = data.draw(_json_values)
        return body
    if isinstance(body, list) and body:
        index = data.draw(st.integers(0, len(body) - 1))
        body[index] = _mutate_json(body[index], data)
        return body
    return data.draw(_json_values)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=80),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=8,
)


class TestFuzz:
    @settings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(data=st.data())
    def test_mutated_documents(
        self, store: RepositoryStore, sample_document: bytes, data: st.DataObject
    ) -> None:
        """A document with any value replaced (checksum redone or not) either restores a
        valid state or raises a CertStoreError; the store never ends half-restored."""
        before = trust_state(store)
        body = _mutate_json(json.loads(sample_document), data)
        if isinstance(body, dict) and data.draw(st.booleans()):
            body["checksum"] = backup.checksum(body)
        document = json.dumps(body).encode()
        try:
            store.import_backup(document, actor=ADMIN)
        except CertStoreError:
            assert trust_state(store) == before
        else:
            reads_back(store)

    @settings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(cut=st.integers(min_value=0), junk=st.binary(max_size=64))
    def test_byte_damage(
        self, store: RepositoryStore, sample_document: bytes, cut: int, junk: bytes
    ) -> None:
        """Bytes overwritten anywhere in the document are refused with a BackupError,
        unless the damage only touched the layout (white space) of the JSON."""
        position = cut % len(sample_document)
        damaged = sample_document[:position] + junk + sample_document[position + len(junk) + 1 :]
        before = trust_state(store)
        try:
            layout_only = json.loads(damaged) == json.loads(sample_document)
        except ValueError:
            layout_only = False
        if layout_only:
            store.import_backup(damaged, actor=ADMIN)
            return
        with pytest.raises(BackupError):
            store.import_backup(damaged, actor=ADMIN)
        assert trust_state(store) == before
