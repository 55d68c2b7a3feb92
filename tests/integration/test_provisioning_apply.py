"""Applying documents to a real SQLite store: all or nothing, idempotent, secrets redacted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from certstore.errors import ValidationError
from certstore.model import Actor, Settings, TrustSource
from certstore.sqlite import SqliteStore
from certstore.x509 import parse_der
from gateway.config import build_config
from gateway.provisioning.apply import ApplyStatus, apply_document, check_document
from gateway.provisioning.document import parse_document
from tests.pki import CertFactory, Issued

ACTOR = Actor(name="provisioning", interface="provisioning")
ACCEPT_ALL = "SystemSettings.global.Security_Certificates_AcceptAllCertificates"
USER = "Security.global.HTTPAuthUsername"
PASSWORD = "Security.global.HTTPAuthPassword"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "store.db") as s:
        yield s


@pytest.fixture(scope="module")
def ca() -> Issued:
    return CertFactory().ca("Provisioned Root CA")


def state(store: SqliteStore) -> tuple[Settings, list[tuple[str, str]], int, int]:
    trust = sorted((e.certificate.fingerprint, e.source.value) for e in store.list_trust())
    return store.get_settings(), trust, store.audit(limit=1)[0].id, store.generation()


def document(ca: Issued | None = None, **extra: str) -> bytes:
    lines = [
        f"{ACCEPT_ALL}=1",
        f"{USER}=7C2F80C6E5C2",
        f"{PASSWORD}=the-secret-pw",
        "Sipsgate.security.trust_on_first_use=1",
        *(f"{k}={v}" for k, v in extra.items()),
    ]
    body = "\n".join(lines) + "\n"
    return body.encode() + (ca.pem if ca is not None else b"")


class TestApply:
    def test_settings_and_certificates_land_together(self, store: SqliteStore, ca: Issued) -> None:
        result = apply_document(store, parse_document(document(ca)), actor=ACTOR)
        assert result.status is ApplyStatus.APPLIED
        settings = store.get_settings()
        assert settings.accept_all_certificates is True
        assert settings.trust_on_first_use is True
        assert settings.http_auth_username == "7C2F80C6E5C2"
        assert settings.http_auth_password == "the-secret-pw"
        assert store.get_trust(ca.fingerprint).source is TrustSource.PROVISIONED
        assert [c.fingerprint for c in result.certificates_added] == [ca.fingerprint]
        assert {c.setting for c in result.changes} == {
            "accept_all_certificates",
            "trust_on_first_use",
            "http_auth_username",
            "http_auth_password",
        }
        actions = [(e.action, e.interface) for e in store.audit(limit=2)]
        assert sorted(actions) == [
            ("settings.update", "provisioning"),
            ("trust.add", "provisioning"),
        ]

    def test_the_password_is_redacted_in_result_and_audit(
        self, store: SqliteStore, ca: Issued
    ) -> None:
        result = apply_document(store, parse_document(document(ca)), actor=ACTOR)
        change = next(c for c in result.changes if c.setting == "http_auth_password")
        assert (change.old, change.new) == ("[redacted]", "[redacted]")
        assert "the-secret-pw" not in repr(result.to_dict())
        assert "the-secret-pw" not in repr(store.audit(limit=10))

    def test_applying_twice_changes_nothing_the_second_time(
        self, store: SqliteStore, ca: Issued
    ) -> None:
        """No write, no audit event, no new generation of the handshake view."""
        doc = parse_document(document(ca))
        apply_document(store, doc, actor=ACTOR)
        before = state(store)
        again = apply_document(store, doc, actor=ACTOR)
        assert again.status is ApplyStatus.UNCHANGED
        assert again.changes == ()
        assert again.certificates_added == ()
        assert [c.fingerprint for c in again.certificates_present] == [ca.fingerprint]
        assert state(store) == before

    def test_an_already_trusted_certificate_keeps_its_source(
        self, store: SqliteStore, ca: Issued
    ) -> None:
        store.add_trust([parse_der(ca.der)], source=TrustSource.UPLOADED, actor=ACTOR)
        apply_document(store, parse_document(ca.pem), actor=ACTOR)
        assert store.get_trust(ca.fingerprint).source is TrustSource.UPLOADED


class TestAllOrNothing:
    @pytest.mark.parametrize(
        ("bad", "entry"),
        [
            ({ACCEPT_ALL: "yes please"}, f"param {ACCEPT_ALL}"),
            ({"Security.global.HTTPAuthUsername": "u" * 75}, f"param {USER}"),
            ({"Sipsgate.tls.min_version": "1.0"}, "param Sipsgate.tls.min_version"),
        ],
    )
    def test_one_bad_value_changes_nothing(
        self, store: SqliteStore, ca: Issued, bad: dict[str, str], entry: str
    ) -> None:
        """Every good entry of the document is refused with the bad one."""
        text = document(ca).decode()
        for name, value in bad.items():
            text = "\n".join(ln for ln in text.split("\n") if not ln.startswith(name + "="))
            text = f"{name}={value}\n" + text
        before = state(store)
        result = apply_document(store, parse_document(text.encode()), actor=ACTOR)
        assert result.status is ApplyStatus.INVALID
        assert result.problems[0].entry.startswith(entry)
        assert state(store) == before

    def test_a_certificate_that_does_not_parse_changes_nothing(
        self, store: SqliteStore, ca: Issued
    ) -> None:
        broken = ca.pem[:120] + b"\n-----END CERTIFICATE-----\n"
        before = state(store)
        result = apply_document(store, parse_document(document(ca) + broken), actor=ACTOR)
        assert result.status is ApplyStatus.INVALID
        assert result.problems[0].entry.startswith("certificate #2")
        assert state(store) == before

    def test_a_conflicting_duplicate_changes_nothing(self, store: SqliteStore) -> None:
        before = state(store)
        doc = parse_document(document(None) + f"{ACCEPT_ALL}=0\n".encode())
        result = apply_document(store, doc, actor=ACTOR)
        assert result.status is ApplyStatus.INVALID
        assert "given twice" in result.problems[0].message
        assert state(store) == before

    def test_the_store_refuses_bad_input_before_writing(
        self, store: SqliteStore, ca: Issued
    ) -> None:
        """provision(): a non-certificate or a bad setting raises, the store is unchanged."""
        before = state(store)
        with pytest.raises(ValidationError):
            store.provision({"accept_all_certificates": True}, ["not a cert"], actor=ACTOR)  # type: ignore[list-item]
        with pytest.raises(ValidationError):
            store.provision({"accept_all_certificates": "1"}, [parse_der(ca.der)], actor=ACTOR)
        assert state(store) == before


class TestReport:
    def test_unknown_and_config_level_names_are_reported(self, store: SqliteStore) -> None:
        running = build_config({"tls": {"min_version": "1.3"}}, env={})
        doc = parse_document(
            b"Foo.bar=1\nSipsgate.tls.min_version=1.3\nSipsgate.sip.upstream=sips:x.test\n"
        )
        before = state(store)
        result = apply_document(store, doc, actor=ACTOR, running=running)
        assert result.status is ApplyStatus.UNCHANGED
        assert [u.name for u in result.unknown] == ["Foo.bar"]
        assert [(n.config_key, n.running, n.matches) for n in result.not_applicable] == [
            ("tls.min_version", "1.3", True),
            ("sip.upstream", "", False),
        ]
        assert state(store) == before

    def test_a_dry_run_shows_the_changes_and_makes_none(
        self, store: SqliteStore, ca: Issued
    ) -> None:
        before = state(store)
        result = check_document(store, parse_document(document(ca)))
        assert result.dry_run
        assert result.status is ApplyStatus.APPLIED
        assert [c.fingerprint for c in result.certificates_added] == [ca.fingerprint]
        assert ("http_auth_password", "[redacted]") in [(c.setting, c.new) for c in result.changes]
        assert state(store) == before
