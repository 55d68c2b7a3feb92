"""Pure pieces of the store: value checks, the backup checksum, chain keys and framing."""

from __future__ import annotations

import json

import pytest

from certstore import backup
from certstore.errors import ValidationError
from certstore.model import Peer, Settings, Transport
from certstore.sqlite import pack_chain, unpack_chain
from certstore.validation import (
    apply_settings_changes,
    normalize_fingerprint,
    normalize_scope,
)


class TestNormalizeScope:
    def test_matches_peer_destination(self) -> None:
        """A scope written like a peer's destination normalises to exactly that text."""
        for host in ("SIP.Example.net", "192.0.2.1", "2001:DB8::1", "[2001:db8::1]"):
            peer = Peer(host=host, port=5061, transport=Transport.SIPS)
            assert normalize_scope(f"{host}:5061" if ":" not in host else peer.destination) == (
                peer.destination
            )

    def test_idempotent(self) -> None:
        """Normalising a normal form changes nothing."""
        for scope in ("example.com", "example.com:5061", "[2001:db8::1]", "[::1]:443", "10.0.0.1"):
            assert normalize_scope(normalize_scope(scope)) == normalize_scope(scope)

    def test_not_text(self) -> None:
        """A scope that is not text is refused."""
        with pytest.raises(ValidationError):
            normalize_scope(5061)


class TestNormalizeFingerprint:
    def test_forms(self) -> None:
        """Lowercase hex passes; upper case and colons are normalised; SHA-1 is refused."""
        fp = "ab" * 32
        assert normalize_fingerprint(fp.upper()) == fp
        assert normalize_fingerprint(":".join(["AB"] * 32)) == fp
        with pytest.raises(ValidationError, match="SHA-1"):
            normalize_fingerprint("ab" * 20)


class TestSettingsChanges:
    def test_diff_hides_the_password(self) -> None:
        """The diff shows from/to for plain settings and only "changed" for the password."""
        updated, diff = apply_settings_changes(
            Settings(), {"allow_wildcards": True, "http_auth_password": "pw"}
        )
        assert updated.allow_wildcards
        assert updated.http_auth_password == "pw"
        assert diff == {
            "allow_wildcards": {"from": False, "to": True},
            "http_auth_password": "changed",
        }

    def test_no_change_returns_the_same_object(self) -> None:
        """Changing nothing returns the current settings and an empty diff."""
        current = Settings()
        assert apply_settings_changes(current, {"allow_wildcards": False}) == (current, {})


class TestChecksum:
    def test_layout_independent(self) -> None:
        """The checksum covers the values, not the JSON layout or key order."""
        body = {"b": [1, 2], "a": {"y": "ä", "x": None}, "checksum": "ignored"}
        shuffled = json.loads(json.dumps({"a": {"x": None, "y": "ä"}, "b": [1, 2]}, indent=4))
        assert backup.checksum(body) == backup.checksum(shuffled)
        assert backup.checksum(body) != backup.checksum({**body, "b": [2, 1]})

    def test_chain_key_depends_on_order(self) -> None:
        """The same certificates in another order are another chain."""
        assert backup.chain_key(["a" * 64, "b" * 64]) != backup.chain_key(["b" * 64, "a" * 64])


class TestChainFraming:
    def test_round_trip(self) -> None:
        """Packed DER blobs unpack to the same list."""
        ders = [b"\x30\x03abc", b"\x30" * 300, b"x"]
        assert unpack_chain(pack_chain(ders)) == ders

    @pytest.mark.parametrize(
        "blob", [b"", b"\x00\x00", b"\x00\x00\x00\x05abc", b"\x00\x00\x00\x00"]
    )
    def test_damaged(self, blob: bytes) -> None:
        """Empty, truncated or zero-length framing is reported as damaged."""
        with pytest.raises(ValueError, match=r"truncated|empty"):
            unpack_chain(blob)
