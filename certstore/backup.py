"""The backup document: the whole trust state as one versioned, checksummed JSON text.

Pure functions: :func:`export_document` renders :class:`BackupContents`, and
:func:`parse_document` checks a document completely (format, version, checksum,
every certificate, every value) and returns the contents or raises
:class:`~certstore.errors.BackupError`. The store applies the result in one
transaction, so a document that fails any check changes nothing.

Layout (version 1)::

    {"format": "sipsgate-backup", "version": 1, "created_at": "...",
     "trust": [{"der": base64, "kind", "source", "added_at"}, ...],
     "pins": [{"id", "decision", "match", "fingerprint", "scope", "expires_at",
               "note", "created_at", "created_by", "certificate": base64|null}, ...],
     "rejected": [{"id", "chain": [base64, ...], "reasons", "peer": {"host", "port",
                   "transport", "sni"}, "first_seen", "last_seen", "count",
                   "overridden", "previous": base64|null,
                   "address": "host:port"|null,          # optional, added later
                   "seen_by": ["gateway name", ...]}, ...],  # optional, added later
     "settings": {...},          # http_auth_password only when secrets were asked for
     "checksum": "sha256:<hex>"}

The checksum is the SHA-256 of the canonical JSON (sorted keys, no spaces, ASCII)
of every member but ``checksum`` itself. The device identity and the pending
signing request are not part of a backup: they belong to one box.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from certstore.errors import BackupError, CertStoreError, ValidationError
from certstore.model import (
    Certificate,
    Peer,
    Pin,
    PinDecision,
    PinMatch,
    Reason,
    RejectedChain,
    Settings,
    Transport,
    TrustEntry,
    TrustKind,
    TrustSource,
)
from certstore.recording import MAX_PEER_TEXT, MAX_SEEN_BY, chain_key
from certstore.validation import (
    MAX_RECORDED_CHAIN_BYTES,
    MAX_RECORDED_CHAIN_CERTS,
    MAX_REJECTED_COUNT,
    SECRET_SETTINGS,
    SETTING_NAMES,
    apply_settings_changes,
    normalize_fingerprint,
    normalize_scope,
    recordable_chain,
    validate_aware,
    validate_note,
)
from certstore.x509 import parse_der

BACKUP_FORMAT = "sipsgate-backup"
BACKUP_VERSION = 1
# A full trust list of 10,000 certificates is about 20 MB of base64.
MAX_BACKUP_BYTES = 64 * 1024 * 1024
MAX_ACTOR_LENGTH = 200

E = TypeVar("E", bound=StrEnum)

_TOP_KEYS = frozenset(
    {"format", "version", "created_at", "trust", "pins", "rejected", "settings", "checksum"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupContents:
    """Everything a backup holds, as values."""

    created_at: datetime
    trust: tuple[TrustEntry, ...]
    pins: tuple[Pin, ...]
    # Certificates the pins were made from, by pin id (where known).
    pin_certificates: Mapping[int, Certificate] = field(default_factory=dict)
    rejected: tuple[RejectedChain, ...]
    settings: Settings
    # Whether ``settings.http_auth_password`` is part of the backup; when it is not,
    # a restore keeps the password the target store already has.
    includes_secrets: bool


def timestamp(value: datetime) -> str:
    """The one text form of a time in documents and in the database (UTC, microseconds)."""
    return validate_aware(value, field="time").isoformat(timespec="microseconds")


def checksum(body: Mapping[str, object]) -> str:
    """``sha256:<hex>`` over the canonical JSON of ``body`` (without its checksum)."""
    payload = {k: v for k, v in body.items() if k != "checksum"}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


def export_document(contents: BackupContents) -> bytes:
    """Render ``contents`` as a backup document (UTF-8 JSON, indented for people)."""
    settings: dict[str, object] = {
        "accept_all_certificates": contents.settings.accept_all_certificates,
        "trust_on_first_use": contents.settings.trust_on_first_use,
        "allow_wildcards": contents.settings.allow_wildcards,
        "close_flows_on_revoke": contents.settings.close_flows_on_revoke,
        "revocation": contents.settings.revocation.value,
        "http_auth_username": contents.settings.http_auth_username,
    }
    if contents.includes_secrets:
        settings["http_auth_password"] = contents.settings.http_auth_password
    body: dict[str, object] = {
        "format": BACKUP_FORMAT,
        "version": BACKUP_VERSION,
        "created_at": timestamp(contents.created_at),
        "trust": [
            {
                "der": _b64(e.certificate.der),
                "kind": e.kind.value,
                "source": e.source.value,
                "added_at": timestamp(e.added_at),
            }
            for e in contents.trust
        ],
        "pins": [
            {
                "id": p.id,
                "decision": p.decision.value,
                "match": p.match.value,
                "fingerprint": p.fingerprint,
                "scope": p.scope,
                "expires_at": timestamp(p.expires_at) if p.expires_at else None,
                "note": p.note,
                "created_at": timestamp(p.created_at),
                "created_by": p.created_by,
                "certificate": _b64(contents.pin_certificates[p.id].der)
                if p.id in contents.pin_certificates
                else None,
            }
            for p in contents.pins
        ],
        "rejected": [
            {
                "id": r.id,
                "chain": [_b64(c.der) for c in r.chain],
                "reasons": [reason.value for reason in r.reasons],
                "peer": {
                    "host": r.peer.host,
                    "port": r.peer.port,
                    "transport": r.peer.transport.value,
                    "sni": r.peer.sni,
                },
                "first_seen": timestamp(r.first_seen),
                "last_seen": timestamp(r.last_seen),
                "count": r.count,
                "overridden": r.overridden,
                "previous": _b64(r.previous.der) if r.previous else None,
                "address": r.address,
                "seen_by": list(r.seen_by),
            }
            for r in contents.rejected
        ],
        "settings": settings,
    }
    body["checksum"] = checksum(body)
    return (json.dumps(body, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")


def parse_document(
    document: bytes, *, parse: Callable[[bytes], Certificate] = parse_der
) -> BackupContents:
    """Check ``document`` completely and return its contents.

    Raises :class:`BackupError` (naming the member at fault) for anything short of a
    well-formed, current-version document whose checksum matches and whose every
    certificate and value is valid. ``parse`` turns DER into a certificate (the store
    passes its cached parser).
    """
    if not isinstance(document, bytes | bytearray | memoryview):
        raise BackupError("The backup must be given as bytes of a JSON document.")
    if len(document) > MAX_BACKUP_BYTES:
        raise BackupError(
            f"The backup is {len(document)} bytes, more than the limit of {MAX_BACKUP_BYTES} bytes."
        )
    try:
        body = json.loads(bytes(document).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BackupError(
            "The backup is not a JSON document (it may be truncated or not a "
            f"sipsgate backup at all): {_short(exc)}."
        ) from exc
    if not isinstance(body, dict):
        raise BackupError("The backup is JSON but not an object; it is not a sipsgate backup.")
    if body.get("format") != BACKUP_FORMAT:
        raise BackupError(
            f'The document is not a sipsgate backup: "format" is not "{BACKUP_FORMAT}".'
        )
    version = body.get("version")
    if type(version) is not int:
        raise BackupError('The backup has no valid "version" number.')
    if version > BACKUP_VERSION:
        raise BackupError(
            f"The backup has version {version}, made by a newer sipsgate; this one "
            f"reads version {BACKUP_VERSION}. Upgrade sipsgate first."
        )
    if version != BACKUP_VERSION:
        raise BackupError(f"The backup version {version} is not supported.")
    stated = body.get("checksum")
    if not isinstance(stated, str) or not hmac.compare_digest(
        stated.encode("utf-8", "replace"), checksum(body).encode("ascii")
    ):
        raise BackupError(
            "The backup's checksum does not match its contents; the file was changed "
            "or damaged after export. Nothing was restored."
        )
    unknown = set(body) - _TOP_KEYS
    missing = _TOP_KEYS - set(body)
    if unknown or missing:
        raise BackupError(
            "The backup does not have the members of version 1"
            + (f"; unknown: {', '.join(sorted(unknown))}" if unknown else "")
            + (f"; missing: {', '.join(sorted(missing))}" if missing else "")
            + "."
        )
    reader = _Reader(parse)
    try:
        created_at = reader.time(body["created_at"], "created_at")
        trust = reader.trust(reader.list_of(body["trust"], "trust"))
        pins, pin_certs = reader.pins(reader.list_of(body["pins"], "pins"))
        rejected = reader.rejected(reader.list_of(body["rejected"], "rejected"))
        settings, secrets = reader.settings(body["settings"])
    except BackupError:
        raise
    except CertStoreError as exc:
        raise BackupError(f"The backup holds an invalid value at {reader.where}: {exc}") from exc
    return BackupContents(
        created_at=created_at,
        trust=trust,
        pins=pins,
        pin_certificates=pin_certs,
        rejected=rejected,
        settings=settings,
        includes_secrets=secrets,
    )


def _b64(der: bytes) -> str:
    return base64.b64encode(der).decode("ascii")


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


class _Reader:
    """Walks the members of a document, remembering where it is for error messages."""

    def __init__(self, parse: Callable[[bytes], Certificate]) -> None:
        self._parse = parse
        self.where = "the top level"

    def fail(self, message: str) -> BackupError:
        return BackupError(f"The backup is invalid at {self.where}: {message}")

    def list_of(self, value: object, name: str) -> list[dict[str, object]]:
        self.where = name
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail("expected a list of objects.")
        return value

    def keys(self, item: dict[str, object], expected: frozenset[str]) -> None:
        if set(item) != expected:
            raise self.fail(f"expected exactly the members {', '.join(sorted(expected))}.")

    def time(self, value: object, name: str) -> datetime:
        if not isinstance(value, str):
            raise self.fail(f"{name} must be an ISO 8601 time.")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise self.fail(f"{name} {value[:60]!r} is not an ISO 8601 time.") from exc
        if parsed.tzinfo is None:
            raise self.fail(f"{name} {value[:60]!r} has no time zone.")
        try:
            return validate_aware(parsed, field=name)
        except ValidationError as exc:
            raise self.fail(
                f"{name} {value[:60]!r} is outside the years 1 to 9999 in UTC."
            ) from exc

    def optional_time(self, value: object, name: str) -> datetime | None:
        return None if value is None else self.time(value, name)

    def text(self, value: object, name: str, limit: int) -> str:
        if not isinstance(value, str) or len(value) > limit:
            raise self.fail(f"{name} must be text of at most {limit} characters.")
        return value

    def integer(self, value: object, name: str, low: int, high: int) -> int:
        if type(value) is not int or not low <= value <= high:
            raise self.fail(f"{name} must be a whole number from {low} to {high}.")
        return value

    def enum(self, cls: type[E], value: object, name: str) -> E:
        allowed = ", ".join(m.value for m in cls)
        if not isinstance(value, str):
            raise self.fail(f"{name} must be one of {allowed}.")
        try:
            return cls(value)
        except ValueError as exc:
            raise self.fail(f"{name} {value[:60]!r} is not one of {allowed}.") from exc

    def certificate(self, value: object, name: str) -> Certificate:
        if not isinstance(value, str):
            raise self.fail(f"{name} must be a base64 DER certificate.")
        try:
            der = base64.b64decode(value.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
            raise self.fail(f"{name} is not valid base64.") from exc
        try:
            return self._parse(der)
        except CertStoreError as exc:
            raise self.fail(f"{name} is not a valid certificate: {exc}") from exc

    def trust(self, items: list[dict[str, object]]) -> tuple[TrustEntry, ...]:
        out: dict[str, TrustEntry] = {}
        expected = frozenset({"der", "kind", "source", "added_at"})
        for index, item in enumerate(items):
            self.where = f"trust[{index}]"
            self.keys(item, expected)
            cert = self.certificate(item["der"], "der")
            if cert.fingerprint in out:
                raise self.fail(f"certificate {cert.fingerprint} appears twice.")
            out[cert.fingerprint] = TrustEntry(
                certificate=cert,
                kind=self.enum(TrustKind, item["kind"], "kind"),
                source=self.enum(TrustSource, item["source"], "source"),
                added_at=self.time(item["added_at"], "added_at"),
            )
        return tuple(out.values())

    def pins(
        self, items: list[dict[str, object]]
    ) -> tuple[tuple[Pin, ...], dict[int, Certificate]]:
        pins: dict[int, Pin] = {}
        certs: dict[int, Certificate] = {}
        expected = frozenset(
            {
                "id",
                "decision",
                "match",
                "fingerprint",
                "scope",
                "expires_at",
                "note",
                "created_at",
                "created_by",
                "certificate",
            }
        )
        for index, item in enumerate(items):
            self.where = f"pins[{index}]"
            self.keys(item, expected)
            pin_id = self.integer(item["id"], "id", 1, 2**62)
            if pin_id in pins:
                raise self.fail(f"pin id {pin_id} appears twice.")
            pin = Pin(
                id=pin_id,
                decision=self.enum(PinDecision, item["decision"], "decision"),
                match=self.enum(PinMatch, item["match"], "match"),
                fingerprint=normalize_fingerprint(item["fingerprint"]),
                scope=normalize_scope(item["scope"]),
                expires_at=self.optional_time(item["expires_at"], "expires_at"),
                note=validate_note(item["note"]),
                created_at=self.time(item["created_at"], "created_at"),
                created_by=self.text(item["created_by"], "created_by", MAX_ACTOR_LENGTH),
            )
            if item["certificate"] is not None:
                cert = self.certificate(item["certificate"], "certificate")
                known = (
                    cert.fingerprint if pin.match is PinMatch.CERTIFICATE else cert.spki_fingerprint
                )
                if known != pin.fingerprint:
                    raise self.fail("the certificate does not match the pin's fingerprint.")
                certs[pin_id] = cert
            pins[pin_id] = pin
        return tuple(pins.values()), certs

    def rejected(self, items: list[dict[str, object]]) -> tuple[RejectedChain, ...]:
        out: dict[int, RejectedChain] = {}
        keys: set[str] = set()
        expected = frozenset(
            {
                "id",
                "chain",
                "reasons",
                "peer",
                "first_seen",
                "last_seen",
                "count",
                "overridden",
                "previous",
            }
        )
        for index, item in enumerate(items):
            self.where = f"rejected[{index}]"
            # ``address`` (the host:port dialled) came later: older backups lack it.
            item = dict(item)
            address = item.pop("address", None)
            # So did ``seen_by`` (the gateways of a fleet that saw the chain).
            seen_by = self.seen_by(item.pop("seen_by", []))
            self.keys(item, expected)
            entry_id = self.integer(item["id"], "id", 1, 2**62)
            if entry_id in out:
                raise self.fail(f"rejected id {entry_id} appears twice.")
            raw_chain = item["chain"]
            if not isinstance(raw_chain, list) or not raw_chain:
                raise self.fail("chain must be a non-empty list of certificates.")
            if len(raw_chain) > MAX_RECORDED_CHAIN_CERTS:
                raise self.fail(
                    f"chain has {len(raw_chain)} certificates; sipsgate records at most "
                    f"{MAX_RECORDED_CHAIN_CERTS}."
                )
            chain = tuple(self.certificate(c, f"chain[{n}]") for n, c in enumerate(raw_chain))
            if not recordable_chain([len(c.der) for c in chain]):
                raise self.fail(
                    f"chain is {sum(len(c.der) for c in chain)} bytes; sipsgate records at "
                    f"most {MAX_RECORDED_CHAIN_BYTES} bytes beyond the leaf."
                )
            key = chain_key([c.fingerprint for c in chain])
            if key in keys:
                raise self.fail("the same chain appears twice.")
            keys.add(key)
            raw_reasons = item["reasons"]
            if not isinstance(raw_reasons, list):
                raise self.fail("reasons must be a list.")
            reasons = tuple(self.enum(Reason, r, "reason") for r in raw_reasons)
            raw_peer = item["peer"]
            if not isinstance(raw_peer, dict) or set(raw_peer) != {
                "host",
                "port",
                "transport",
                "sni",
            }:
                raise self.fail("peer must have exactly host, port, transport and sni.")
            host = self.text(raw_peer["host"], "peer.host", 255)
            sni = raw_peer["sni"]
            peer = Peer(
                host=host,
                port=self.integer(raw_peer["port"], "peer.port", 1, 65535),
                transport=self.enum(Transport, raw_peer["transport"], "peer.transport"),
                sni=None if sni is None else self.text(sni, "peer.sni", 255),
            )
            first_seen = self.time(item["first_seen"], "first_seen")
            last_seen = self.time(item["last_seen"], "last_seen")
            if last_seen < first_seen:
                raise self.fail("last_seen is before first_seen.")
            overridden = item["overridden"]
            if not isinstance(overridden, bool):
                raise self.fail("overridden must be true or false.")
            previous = item["previous"]
            out[entry_id] = RejectedChain(
                id=entry_id,
                chain=chain,
                reasons=reasons,
                peer=peer,
                first_seen=first_seen,
                last_seen=last_seen,
                count=self.integer(item["count"], "count", 1, MAX_REJECTED_COUNT),
                overridden=overridden,
                previous=None if previous is None else self.certificate(previous, "previous"),
                address=None if address is None else self.text(address, "address", 300),
                seen_by=seen_by,
            )
        return tuple(out.values())

    def seen_by(self, value: object) -> tuple[str, ...]:
        if not isinstance(value, list) or len(value) > MAX_SEEN_BY:
            raise self.fail(f"seen_by must be a list of at most {MAX_SEEN_BY} gateway names.")
        names = tuple(self.text(n, "seen_by[]", MAX_PEER_TEXT) for n in value)
        if len(set(names)) != len(names):
            raise self.fail("seen_by names a gateway twice.")
        return names

    def settings(self, value: object) -> tuple[Settings, bool]:
        self.where = "settings"
        if not isinstance(value, dict):
            raise self.fail("expected an object of settings.")
        # ``revocation`` came later: a backup without it restores the default.
        required = set(SETTING_NAMES) - SECRET_SETTINGS - {"revocation"}
        if not required <= set(value):
            raise self.fail(f"missing settings: {', '.join(sorted(required - set(value)))}.")
        settings, _ = apply_settings_changes(Settings(), value)
        return settings, any(name in value for name in SECRET_SETTINGS)
