"""An in-memory CertStore for tests of code above the store (kept in tests only)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from certstore.errors import BackupError, NotFound, ValidationError
from certstore.model import (
    Actor,
    AddResult,
    AuditEvent,
    Certificate,
    Peer,
    Pin,
    PinDecision,
    PinMatch,
    RejectedChain,
    Settings,
    TrustEntry,
    TrustKind,
    TrustSource,
    Verdict,
)
from certstore.snapshot import TrustSnapshot
from certstore.store import DeviceIdentity, ExpiringItem, PendingCsr, PinRequest, RestoreSummary
from certstore.x509 import load_certificates, to_pem


def _now() -> datetime:
    return datetime.now(UTC)


class MemoryStore:
    def __init__(self, builtin: Sequence[Certificate] = ()) -> None:
        self._lock = threading.RLock()
        self._builtin = tuple(builtin)
        self._trust: dict[str, TrustEntry] = {}
        self._pins: dict[int, Pin] = {}
        self._rejected: dict[int, RejectedChain] = {}
        self._settings = Settings()
        self._identity: DeviceIdentity | None = None
        self._csr: PendingCsr | None = None
        self._audit: list[AuditEvent] = []
        self._next = 1
        self._generation = 0
        self._snapshot: TrustSnapshot | None = None
        self.closed = False

    def _id(self) -> int:
        self._next += 1
        return self._next

    def _changed(self, actor: Actor, action: str, target: str, details: Mapping[str, object]) -> None:
        self._generation += 1
        self._snapshot = None
        self.log_event(actor=actor, action=action, target=target, details=details)

    def snapshot(self) -> TrustSnapshot:
        with self._lock:
            if self._snapshot is None:
                self._snapshot = TrustSnapshot.build(
                    generation=self._generation,
                    settings=self._settings,
                    trust=self._trust.values(),
                    pins=self._pins.values(),
                )
            return self._snapshot

    def record_handshake(
        self, verdict: Verdict, chain: Sequence[Certificate], peer: Peer, now: datetime
    ) -> RejectedChain | Pin | None:
        with self._lock:
            if not verdict.should_record:
                return None
            key = tuple(c.fingerprint for c in chain)
            for entry in self._rejected.values():
                if tuple(c.fingerprint for c in entry.chain) == key:
                    updated = replace(entry, count=entry.count + 1, last_seen=now)
                    self._rejected[entry.id] = updated
                    return updated
            entry = RejectedChain(
                id=self._id(),
                chain=tuple(chain),
                reasons=verdict.reasons,
                peer=peer,
                first_seen=now,
                last_seen=now,
                count=1,
                overridden=verdict.overridden,
            )
            self._rejected[entry.id] = entry
            return entry

    def list_trust(self) -> tuple[TrustEntry, ...]:
        with self._lock:
            return tuple(self._trust.values())

    def get_trust(self, fingerprint: str) -> TrustEntry:
        with self._lock:
            try:
                return self._trust[fingerprint]
            except KeyError:
                raise NotFound("trusted certificate", fingerprint) from None

    def add_trust(
        self,
        certificates: Sequence[Certificate],
        *,
        source: TrustSource,
        actor: Actor,
        kind: TrustKind | None = None,
    ) -> AddResult:
        with self._lock:
            added, present = [], []
            for cert in certificates:
                if cert.fingerprint in self._trust:
                    present.append(cert)
                    continue
                k = kind or (TrustKind.CA if cert.is_ca else TrustKind.SERVER)
                self._trust[cert.fingerprint] = TrustEntry(
                    certificate=cert, kind=k, source=source, added_at=_now()
                )
                added.append(cert)
            if added:
                self._changed(actor, "trust.add", ",".join(c.fingerprint for c in added), {})
            return AddResult(added=tuple(added), already_present=tuple(present))

    def remove_trust(self, fingerprint: str, *, actor: Actor) -> TrustEntry:
        with self._lock:
            entry = self.get_trust(fingerprint)
            del self._trust[fingerprint]
            self._changed(actor, "trust.remove", fingerprint, {})
            return entry

    def clear_trust(self, *, actor: Actor) -> int:
        with self._lock:
            count = len(self._trust)
            self._trust.clear()
            self._changed(actor, "trust.clear", "*", {"removed": count})
            return count

    def restore_defaults(self, *, actor: Actor) -> AddResult:
        return self.add_trust(self._builtin, source=TrustSource.BUILTIN, actor=actor)

    def list_pins(self) -> tuple[Pin, ...]:
        with self._lock:
            return tuple(self._pins.values())

    def get_pin(self, pin_id: int) -> Pin:
        with self._lock:
            try:
                return self._pins[pin_id]
            except KeyError:
                raise NotFound("pin", pin_id) from None

    def add_pin(self, request: PinRequest, *, actor: Actor) -> Pin:
        with self._lock:
            pin = Pin(
                id=self._id(),
                decision=request.decision,
                match=request.match,
                fingerprint=request.fingerprint,
                scope=request.scope,
                expires_at=request.expires_at,
                note=request.note,
                created_at=_now(),
                created_by=actor.name,
            )
            self._pins[pin.id] = pin
            self._changed(actor, "pin.add", str(pin.id), {})
            return pin

    def remove_pin(self, pin_id: int, *, actor: Actor) -> Pin:
        with self._lock:
            pin = self.get_pin(pin_id)
            del self._pins[pin_id]
            self._changed(actor, "pin.remove", str(pin_id), {})
            return pin

    def list_rejected(self) -> tuple[RejectedChain, ...]:
        with self._lock:
            return tuple(sorted(self._rejected.values(), key=lambda r: r.last_seen, reverse=True))

    def get_rejected(self, rejected_id: int) -> RejectedChain:
        with self._lock:
            try:
                return self._rejected[rejected_id]
            except KeyError:
                raise NotFound("rejected chain", rejected_id) from None

    def trust_rejected(
        self, rejected_id: int, fingerprints: Sequence[str], *, actor: Actor
    ) -> AddResult:
        with self._lock:
            entry = self.get_rejected(rejected_id)
            chosen = [c for c in entry.chain if c.fingerprint in set(fingerprints)]
            if len(chosen) != len(set(fingerprints)):
                raise ValidationError("fingerprints", "A fingerprint is not part of the chain.")
            result = self.add_trust(chosen, source=TrustSource.TRUSTED_FROM_REJECTED, actor=actor)
            del self._rejected[rejected_id]
            return result

    def pin_rejected(
        self,
        rejected_id: int,
        decision: PinDecision,
        *,
        actor: Actor,
        match: PinMatch = PinMatch.CERTIFICATE,
        scope: str | None = None,
        expires_at: datetime | None = None,
        note: str = "",
    ) -> Pin:
        with self._lock:
            entry = self.get_rejected(rejected_id)
            fp = entry.leaf.fingerprint if match is PinMatch.CERTIFICATE else entry.leaf.spki_fingerprint
            pin = self.add_pin(
                PinRequest(
                    decision=decision,
                    match=match,
                    fingerprint=fp,
                    scope=scope,
                    expires_at=expires_at,
                    note=note,
                ),
                actor=actor,
            )
            if decision is PinDecision.ACCEPT:
                del self._rejected[rejected_id]
            return pin

    def remove_rejected(self, rejected_id: int, *, actor: Actor) -> None:
        with self._lock:
            self.get_rejected(rejected_id)
            del self._rejected[rejected_id]
            self._changed(actor, "rejected.remove", str(rejected_id), {})

    def clear_rejected(self, *, actor: Actor) -> int:
        with self._lock:
            count = len(self._rejected)
            self._rejected.clear()
            self._changed(actor, "rejected.clear", "*", {})
            return count

    def get_settings(self) -> Settings:
        with self._lock:
            return self._settings

    def update_settings(self, changes: Mapping[str, object], *, actor: Actor) -> Settings:
        with self._lock:
            fields = {
                "accept_all_certificates": bool,
                "trust_on_first_use": bool,
                "allow_wildcards": bool,
                "close_flows_on_revoke": bool,
                "http_auth_username": str,
                "http_auth_password": str,
            }
            for name, value in changes.items():
                if name not in fields:
                    raise ValidationError(name, f"Unknown setting {name!r}.")
                if not isinstance(value, fields[name]):
                    raise ValidationError(name, f"Setting {name} has the wrong type.")
                if isinstance(value, str) and len(value) > 74:
                    raise ValidationError(name, f"Setting {name} is longer than 74 characters.")
            self._settings = replace(self._settings, **changes)  # type: ignore[arg-type]
            self._changed(actor, "settings.update", ",".join(changes), {})
            return self._settings

    def device_identity(self) -> DeviceIdentity | None:
        with self._lock:
            return self._identity

    def set_device_identity(self, identity: DeviceIdentity, *, actor: Actor, action: str) -> None:
        with self._lock:
            self._identity = identity
            self._changed(actor, action, "device", {})

    def pending_csr(self) -> PendingCsr | None:
        with self._lock:
            return self._csr

    def set_pending_csr(self, csr: PendingCsr | None, *, actor: Actor) -> None:
        with self._lock:
            self._csr = csr
            self._changed(actor, "csr.set", "csr", {})

    def audit(self, *, limit: int = 50, before_id: int | None = None) -> tuple[AuditEvent, ...]:
        with self._lock:
            events = [e for e in reversed(self._audit) if before_id is None or e.id < before_id]
            return tuple(events[:limit])

    def log_event(
        self, *, actor: Actor, action: str, target: str, details: Mapping[str, object]
    ) -> None:
        with self._lock:
            self._audit.append(
                AuditEvent(
                    id=len(self._audit) + 1,
                    at=_now(),
                    actor=actor.name,
                    interface=actor.interface,
                    action=action,
                    target=target,
                    details=json.dumps(dict(details)),
                )
            )

    def expiring(self, *, now: datetime, days: int) -> tuple[ExpiringItem, ...]:
        with self._lock:
            limit = now + timedelta(days=days)
            out = []
            for entry in self._trust.values():
                cert = entry.certificate
                if now <= cert.not_after <= limit:
                    out.append(
                        ExpiringItem(
                            role="trust-anchor",
                            certificate=cert,
                            not_after=cert.not_after,
                            days_left=(cert.not_after - now).days,
                            ref=cert.fingerprint,
                        )
                    )
            return tuple(out)

    def export_backup(self, *, now: datetime, include_secrets: bool = False) -> bytes:
        with self._lock:
            body = {
                "trust": [
                    {"pem": to_pem(e.certificate).decode(), "kind": e.kind.value}
                    for e in self._trust.values()
                ],
                "settings": {
                    "accept_all_certificates": self._settings.accept_all_certificates,
                },
            }
            text = json.dumps(body, sort_keys=True)
            return json.dumps(
                {
                    "version": 1,
                    "body": body,
                    "sha256": hashlib.sha256(text.encode()).hexdigest(),
                }
            ).encode()

    def import_backup(self, document: bytes, *, actor: Actor) -> RestoreSummary:
        try:
            doc = json.loads(document)
            body = doc["body"]
            ok = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest() == doc["sha256"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupError("The backup is not a sipsgate backup document.") from exc
        if not ok:
            raise BackupError("The backup fails its checksum.")
        with self._lock:
            entries = []
            for item in body["trust"]:
                cert = load_certificates(item["pem"].encode()).certificates[0]
                entries.append(
                    TrustEntry(
                        certificate=cert,
                        kind=TrustKind(item["kind"]),
                        source=TrustSource.UPLOADED,
                        added_at=_now(),
                    )
                )
            self._trust = {e.certificate.fingerprint: e for e in entries}
            self._settings = replace(self._settings, **body["settings"])
            self._changed(actor, "backup.restore", "*", {})
            return RestoreSummary(
                trust=len(entries), pins=0, rejected=0, settings_restored=True, secrets_restored=False
            )

    def close(self) -> None:
        self.closed = True

