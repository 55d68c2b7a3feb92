"""Settings: names, types, the 74-character credentials, and a password that never shows."""

from __future__ import annotations

import json

import pytest

from certstore.errors import ValidationError
from certstore.facade import RepositoryStore
from certstore.model import HTTP_AUTH_MAX_LENGTH, Settings
from tests.integration._store_support import ADMIN, audit_actions, last_details

SECRET = "s3cret-Passw0rd"


class TestUpdateSettings:
    def test_update_and_read_back(self, store: RepositoryStore) -> None:
        """Changed settings are stored, returned, and part of the next snapshot."""
        generation = store.snapshot().generation
        updated = store.update_settings(
            {"accept_all_certificates": True, "http_auth_username": "dect-01"}, actor=ADMIN
        )
        assert updated.accept_all_certificates
        assert updated.http_auth_username == "dect-01"
        assert store.get_settings() == updated
        snap = store.snapshot()
        assert snap.settings == updated
        assert snap.generation == generation + 1

    def test_audit_names_changes_with_old_and_new(self, store: RepositoryStore) -> None:
        """The audit event lists each changed setting with from/to values."""
        store.update_settings({"trust_on_first_use": True, "allow_wildcards": False}, actor=ADMIN)
        event = store.audit(limit=1)[0]
        assert event.action == "settings.update"
        assert event.target == "trust_on_first_use"
        assert last_details(store) == {
            "changed": {"trust_on_first_use": {"from": False, "to": True}}
        }

    def test_no_op_writes_nothing(self, store: RepositoryStore) -> None:
        """Setting what is already set writes no audit event and keeps the generation."""
        generation = store.snapshot().generation
        assert store.update_settings({"close_flows_on_revoke": True}, actor=ADMIN) == Settings()
        assert store.update_settings({}, actor=ADMIN) == Settings()
        assert audit_actions(store) == ["store.create"]
        assert store.snapshot().generation == generation

    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"accept_all": True}, "accept_all"),
            ({"accept_all_certificates": 1}, "accept_all_certificates"),
            ({"accept_all_certificates": "true"}, "accept_all_certificates"),
            ({"close_flows_on_revoke": None}, "close_flows_on_revoke"),
            ({"http_auth_username": 5}, "http_auth_username"),
            ({"http_auth_username": "a" * 75}, "http_auth_username"),
            ({"http_auth_username": "tab\there"}, "http_auth_username"),
            ({"http_auth_password": "p" * (HTTP_AUTH_MAX_LENGTH + 1)}, "http_auth_password"),
            ({"http_auth_password": "line\nbreak"}, "http_auth_password"),
            ({"http_auth_password": "nul\x00"}, "http_auth_password"),
        ],
    )
    def test_invalid_change_is_refused_whole(
        self, store: RepositoryStore, changes: dict[str, object], field: str
    ) -> None:
        """A bad name or value raises ValidationError naming it; no part of the change applies."""
        with pytest.raises(ValidationError) as info:
            store.update_settings({"trust_on_first_use": True, **changes}, actor=ADMIN)
        assert info.value.field == field
        assert store.get_settings() == Settings()
        assert audit_actions(store) == ["store.create"]

    def test_74_characters_are_accepted(self, store: RepositoryStore) -> None:
        """Credentials of exactly 74 printable characters (spaces included) are accepted."""
        name = "u " * 37
        password = "P" * HTTP_AUTH_MAX_LENGTH
        updated = store.update_settings(
            {"http_auth_username": name, "http_auth_password": password}, actor=ADMIN
        )
        assert updated.http_auth_username == name
        assert updated.http_auth_password == password

    def test_75_character_password_refused_store_unchanged(self, store: RepositoryStore) -> None:
        """A 75-character password is refused and the stored one stays."""
        store.update_settings({"http_auth_password": SECRET}, actor=ADMIN)
        with pytest.raises(ValidationError) as info:
            store.update_settings({"http_auth_password": "x" * 75}, actor=ADMIN)
        assert info.value.field == "http_auth_password"
        assert "x" * 75 not in str(info.value)
        assert store.get_settings().http_auth_password == SECRET


class TestPasswordNeverShows:
    def test_not_in_audit_details(self, store: RepositoryStore) -> None:
        """The audit event of a password change says only "changed"."""
        store.update_settings({"http_auth_password": SECRET}, actor=ADMIN)
        store.update_settings({"http_auth_password": SECRET + "2"}, actor=ADMIN)
        for event in store.audit():
            assert SECRET not in event.details
            assert SECRET not in repr(event)
        assert last_details(store) == {"changed": {"http_auth_password": "changed"}}

    def test_not_in_repr(self, store: RepositoryStore) -> None:
        """Neither the settings nor the snapshot nor the store show it in their repr."""
        settings = store.update_settings({"http_auth_password": SECRET}, actor=ADMIN)
        assert settings.http_auth_password_set
        assert SECRET not in repr(settings)
        assert SECRET not in repr(store.snapshot())
        assert SECRET not in repr(store)

    def test_not_in_error_messages(self, store: RepositoryStore) -> None:
        """A refused password is not echoed back in the error."""
        bad = SECRET + "\x01"
        with pytest.raises(ValidationError) as info:
            store.update_settings({"http_auth_password": bad}, actor=ADMIN)
        assert SECRET not in str(info.value)

    def test_not_in_backup_without_secrets(self, store: RepositoryStore) -> None:
        """A backup holds the password only when secrets are asked for."""
        store.update_settings({"http_auth_password": SECRET}, actor=ADMIN)
        now = store.audit(limit=1)[0].at
        plain = json.loads(store.export_backup(now=now))
        assert "http_auth_password" not in plain["settings"]
        assert SECRET.encode() not in store.export_backup(now=now)
        with_secrets = json.loads(store.export_backup(now=now, include_secrets=True))
        assert with_secrets["settings"]["http_auth_password"] == SECRET
