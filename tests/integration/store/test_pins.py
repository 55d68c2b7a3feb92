"""Pins: validation of every field, duplicates, removal, the certificate kept beside a pin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from certstore.errors import NotFound, ValidationError
from certstore.facade import RepositoryStore
from certstore.model import PinDecision, PinMatch, TrustSource
from certstore.store import PinRequest
from tests.integration._store_support import ADMIN, PKI, FakeClock, audit_actions

FP = "0123456789abcdef" * 4


def request(**changes: object) -> PinRequest:
    fields: dict[str, object] = {
        "decision": PinDecision.ACCEPT,
        "match": PinMatch.CERTIFICATE,
        "fingerprint": FP,
    }
    fields.update(changes)
    return PinRequest(**fields)  # type: ignore[arg-type]


class TestAddPin:
    def test_add_and_read_back(self, store: RepositoryStore, clock: FakeClock) -> None:
        """A pin is stored with who and when, listed, audited and part of the snapshot."""
        expires = clock.now + timedelta(days=7)
        pin = store.add_pin(
            request(scope="SIP.Example.NET:5061", expires_at=expires, note="provider renewal"),
            actor=ADMIN,
        )
        assert pin.scope == "sip.example.net:5061"
        assert pin.expires_at == expires
        assert pin.created_by == "admin"
        assert pin.created_at == clock.now
        assert store.get_pin(pin.id) == pin
        assert store.list_pins() == (pin,)
        assert store.snapshot().pins_by_fingerprint[FP] == (pin,)
        assert audit_actions(store)[-1] == "pin.add"

    @pytest.mark.parametrize(
        ("scope", "normal"),
        [
            (None, None),
            ("", None),
            ("example.com", "example.com"),
            ("Example.COM.", "example.com"),
            ("example.com:5061", "example.com:5061"),
            ("192.0.2.1", "192.0.2.1"),
            ("192.0.2.1:443", "192.0.2.1:443"),
            ("[2001:DB8::1]", "[2001:db8::1]"),
            ("[2001:db8:0::1]:5061", "[2001:db8::1]:5061"),
            ("2001:db8::1", "[2001:db8::1]"),
            ("internal_host.lan", "internal_host.lan"),
        ],
    )
    def test_scope_normal_forms(
        self, store: RepositoryStore, scope: str | None, normal: str
    ) -> None:
        """Scopes are stored lowercased, IPv6 compressed in brackets, like Peer.destination."""
        assert store.add_pin(request(scope=scope), actor=ADMIN).scope == normal

    @pytest.mark.parametrize(
        "scope",
        [
            "exa mple.com",
            "example.com:0",
            "example.com:65536",
            "example.com:http",
            "-bad.example",
            "a" * 64 + ".example",
            "[2001:db8::1",
            "[not-v6]:5061",
            "[2001:db8::1]5061",
            "sips:example.com",
            "https://example.com",
            "1.2.3",
            "bücher.example",
            "x" * 301,
            "..",
        ],
    )
    def test_bad_scope_is_refused(self, store: RepositoryStore, scope: str) -> None:
        """A scope that is not host or host:port raises ValidationError naming scope."""
        with pytest.raises(ValidationError) as info:
            store.add_pin(request(scope=scope), actor=ADMIN)
        assert info.value.field == "scope"
        assert store.list_pins() == ()

    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"fingerprint": "abc"}, "fingerprint"),
            ({"fingerprint": "g" * 64}, "fingerprint"),
            ({"fingerprint": "a" * 40}, "fingerprint"),
            ({"fingerprint": 12}, "fingerprint"),
            ({"note": "x" * 1001}, "note"),
            ({"note": "bell\x07"}, "note"),
            ({"expires_at": datetime(2030, 1, 1)}, "expires_at"),
            ({"expires_at": datetime(2020, 1, 1, tzinfo=UTC)}, "expires_at"),
            ({"decision": "maybe"}, "decision"),
            ({"match": "subject"}, "match"),
        ],
    )
    def test_bad_fields_are_refused(
        self, store: RepositoryStore, changes: dict[str, object], field: str
    ) -> None:
        """Each invalid field raises ValidationError naming it, and nothing is stored."""
        with pytest.raises(ValidationError) as info:
            store.add_pin(request(**changes), actor=ADMIN)
        assert info.value.field == field
        assert store.list_pins() == ()
        assert audit_actions(store) == ["store.create"]

    def test_note_of_1000_characters_is_accepted(self, store: RepositoryStore) -> None:
        """The longest allowed note (1,000 characters, newlines allowed) is kept whole."""
        note = ("line\n" * 200)[:1000]
        assert store.add_pin(request(note=note), actor=ADMIN).note == note

    def test_expiry_in_other_zone_is_stored_in_utc(
        self, store: RepositoryStore, clock: FakeClock
    ) -> None:
        """An aware expiry in another time zone is stored as the same instant in UTC."""
        zone = timezone(timedelta(hours=2))
        expires = (clock.now + timedelta(days=1)).astimezone(zone)
        pin = store.add_pin(request(expires_at=expires), actor=ADMIN)
        assert pin.expires_at == expires
        assert pin.expires_at is not None
        assert pin.expires_at.utcoffset() == timedelta(0)

    def test_identical_pin_is_returned_not_duplicated(self, store: RepositoryStore) -> None:
        """Adding the same pin twice returns the first one: one row, one audit event."""
        first = store.add_pin(request(scope="example.com"), actor=ADMIN)
        second = store.add_pin(request(scope="EXAMPLE.com"), actor=ADMIN)
        assert second == first
        assert len(store.list_pins()) == 1
        assert audit_actions(store).count("pin.add") == 1

    def test_different_decision_is_a_second_pin(self, store: RepositoryStore) -> None:
        """An accept and a reject of the same certificate are two pins (reject wins later)."""
        store.add_pin(request(), actor=ADMIN)
        store.add_pin(request(decision=PinDecision.REJECT), actor=ADMIN)
        assert len(store.list_pins()) == 2

    def test_certificate_is_kept_beside_the_pin(self, store: RepositoryStore) -> None:
        """A pin made from a certificate (or of a trusted one) remembers the certificate."""
        cert = PKI.leaf(None, cn="pinned.example").model
        pin = store.add_pin(
            request(match=PinMatch.PUBLIC_KEY, fingerprint=cert.spki_fingerprint, certificate=cert),
            actor=ADMIN,
        )
        assert store.pin_certificate(pin.id) == cert
        trusted = PKI.leaf(None, cn="trusted.example").model
        store.add_trust([trusted], source=TrustSource.UPLOADED, actor=ADMIN)
        by_fp = store.add_pin(request(fingerprint=trusted.fingerprint), actor=ADMIN)
        assert store.pin_certificate(by_fp.id) == trusted
        unknown = store.add_pin(request(), actor=ADMIN)
        assert store.pin_certificate(unknown.id) is None

    def test_certificate_must_match_fingerprint(self, store: RepositoryStore) -> None:
        """A certificate whose fingerprint is not the pin's is refused."""
        cert = PKI.leaf(None, cn="mismatch.example").model
        with pytest.raises(ValidationError) as info:
            store.add_pin(request(certificate=cert), actor=ADMIN)
        assert info.value.field == "certificate"


class TestRemovePin:
    def test_remove(self, store: RepositoryStore) -> None:
        """remove_pin returns the pin, drops it from the snapshot and audits it."""
        pin = store.add_pin(request(), actor=ADMIN)
        assert store.remove_pin(pin.id, actor=ADMIN) == pin
        assert store.list_pins() == ()
        assert FP not in store.snapshot().pins_by_fingerprint
        assert audit_actions(store)[-1] == "pin.remove"

    @pytest.mark.parametrize("pin_id", [999, 0, -1, "1", True])
    def test_unknown_pin_is_not_found(self, store: RepositoryStore, pin_id: object) -> None:
        """get_pin and remove_pin of an unknown or malformed id raise NotFound."""
        with pytest.raises(NotFound):
            store.get_pin(pin_id)  # type: ignore[arg-type]
        with pytest.raises(NotFound):
            store.remove_pin(pin_id, actor=ADMIN)  # type: ignore[arg-type]
