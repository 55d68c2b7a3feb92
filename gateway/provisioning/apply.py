"""Apply a checked provisioning document to the store: all or nothing.

A document with any problem changes nothing; its result names every wrong entry.
A valid document's settings and certificates are written in one store transaction
(:meth:`certstore.store.CertStore.provision`), so a crash half-way leaves the previous
state. What is already so is not written again: applying the same document twice
changes nothing the second time and leaves no audit event.

Config-level parameters (``Sipsgate.<section>.<key>``) are checked and reported as
*not applicable at run time*, beside whether the running configuration already has
that value; they never change the store. The HTTP digest password appears in a result
only as ``[redacted]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from certstore.model import Actor, Certificate, Settings, TrustEntry, TrustSource
from certstore.store import ProvisionOutcome
from gateway.config import Config, config_as_dict
from gateway.provisioning.document import (
    REDACTED,
    ConfigValue,
    EntryProblem,
    ProvisioningDocument,
    UnknownParameter,
)


class ProvisioningStore(Protocol):
    """The part of the certificate store a provisioning document touches."""

    def get_settings(self) -> Settings: ...
    def list_trust(self) -> tuple[TrustEntry, ...]: ...
    def provision(
        self,
        changes: Mapping[str, object],
        certificates: Sequence[Certificate],
        *,
        actor: Actor,
        source: TrustSource = TrustSource.PROVISIONED,
    ) -> ProvisionOutcome: ...


class ApplyStatus(StrEnum):
    APPLIED = "applied"  # something changed
    UNCHANGED = "unchanged"  # valid, and the store already said all of it
    INVALID = "invalid"  # at least one entry is wrong: nothing changed


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingChange:
    parameter: str
    setting: str
    old: str  # as shown: 0/1, text, or [redacted]
    new: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateRef:
    fingerprint: str
    subject: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NotApplicable:
    """A config-level parameter: reported, not applied at run time."""

    parameter: str
    config_key: str
    value: str
    running: str | None  # the running configuration's value, when known
    matches: bool | None  # whether the running configuration already has it


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyResult:
    status: ApplyStatus
    document_sha256: str
    format: str
    dry_run: bool = False
    changes: tuple[SettingChange, ...] = ()
    certificates_added: tuple[CertificateRef, ...] = ()
    certificates_present: tuple[CertificateRef, ...] = ()
    unknown: tuple[UnknownParameter, ...] = ()
    not_applicable: tuple[NotApplicable, ...] = ()
    problems: tuple[EntryProblem, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status is not ApplyStatus.INVALID

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "dry_run": self.dry_run,
            "document_sha256": self.document_sha256,
            "format": self.format,
            "changes": [
                {"parameter": c.parameter, "setting": c.setting, "old": c.old, "new": c.new}
                for c in self.changes
            ],
            "certificates_added": [
                {"fingerprint": c.fingerprint, "subject": c.subject}
                for c in self.certificates_added
            ],
            "certificates_present": [
                {"fingerprint": c.fingerprint, "subject": c.subject}
                for c in self.certificates_present
            ],
            "unknown": [{"name": u.name, "line": u.line, "hint": u.hint} for u in self.unknown],
            "not_applicable": [
                {
                    "parameter": n.parameter,
                    "config_key": n.config_key,
                    "value": n.value,
                    "running": n.running,
                    "matches": n.matches,
                }
                for n in self.not_applicable
            ],
            "problems": [
                {"entry": p.entry, "message": p.message, "line": p.line} for p in self.problems
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApplyResult:
        """The inverse of :meth:`to_dict` (for the persisted last result)."""
        return cls(
            status=ApplyStatus(data["status"]),
            dry_run=bool(data.get("dry_run", False)),
            document_sha256=str(data["document_sha256"]),
            format=str(data["format"]),
            changes=tuple(
                SettingChange(
                    parameter=str(c["parameter"]),
                    setting=str(c["setting"]),
                    old=str(c["old"]),
                    new=str(c["new"]),
                )
                for c in data.get("changes", ())
            ),
            certificates_added=tuple(
                CertificateRef(fingerprint=str(c["fingerprint"]), subject=str(c["subject"]))
                for c in data.get("certificates_added", ())
            ),
            certificates_present=tuple(
                CertificateRef(fingerprint=str(c["fingerprint"]), subject=str(c["subject"]))
                for c in data.get("certificates_present", ())
            ),
            unknown=tuple(
                UnknownParameter(name=str(u["name"]), line=u.get("line"), hint=u.get("hint"))
                for u in data.get("unknown", ())
            ),
            not_applicable=tuple(
                NotApplicable(
                    parameter=str(n["parameter"]),
                    config_key=str(n["config_key"]),
                    value=str(n["value"]),
                    running=n.get("running"),
                    matches=n.get("matches"),
                )
                for n in data.get("not_applicable", ())
            ),
            problems=tuple(
                EntryProblem(entry=str(p["entry"]), message=str(p["message"]), line=p.get("line"))
                for p in data.get("problems", ())
            ),
        )


def _shown(setting: str, value: object, secret: bool) -> str:
    if secret:
        return REDACTED
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _ref(cert: Certificate) -> CertificateRef:
    return CertificateRef(fingerprint=cert.fingerprint, subject=cert.subject)


def _running_text(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}s"
    return str(value)


def _not_applicable(
    values: Sequence[ConfigValue], running: Config | None
) -> tuple[NotApplicable, ...]:
    current = config_as_dict(running) if running is not None else None
    out: list[NotApplicable] = []
    for item in values:
        section, _, key = item.config_key.partition(".")
        have: object = current[section][key] if current is not None else None
        out.append(
            NotApplicable(
                parameter=item.parameter,
                config_key=item.config_key,
                value=item.text,
                running=_running_text(have) if current is not None else None,
                matches=(_normal(have) == _normal(item.value)) if current is not None else None,
            )
        )
    return tuple(out)


def _normal(value: object) -> object:
    return tuple(value) if isinstance(value, list | tuple) else value


def _invalid(document: ProvisioningDocument, running: Config | None, dry_run: bool) -> ApplyResult:
    return ApplyResult(
        status=ApplyStatus.INVALID,
        dry_run=dry_run,
        document_sha256=document.sha256,
        format=document.format.value,
        unknown=document.unknown,
        not_applicable=_not_applicable(document.config, running),
        problems=document.problems,
    )


def _secret_names(document: ProvisioningDocument) -> dict[str, tuple[str, bool]]:
    return {s.setting: (s.parameter, s.secret) for s in document.settings}


def apply_document(
    store: ProvisioningStore,
    document: ProvisioningDocument,
    *,
    actor: Actor,
    running: Config | None = None,
) -> ApplyResult:
    """Apply ``document`` to ``store``, all or nothing (see the module docstring)."""
    if not document.valid:
        return _invalid(document, running, dry_run=False)
    outcome = store.provision(
        document.settings_changes(),
        document.all_certificates(),
        actor=actor,
        source=TrustSource.PROVISIONED,
    )
    names = _secret_names(document)
    changes = tuple(
        SettingChange(
            parameter=names[setting][0],
            setting=setting,
            old=_shown(setting, getattr(outcome.settings_before, setting), names[setting][1]),
            new=_shown(setting, getattr(outcome.settings, setting), names[setting][1]),
        )
        for setting in outcome.changed
    )
    return ApplyResult(
        status=ApplyStatus.APPLIED if outcome.changed_anything else ApplyStatus.UNCHANGED,
        document_sha256=document.sha256,
        format=document.format.value,
        changes=changes,
        certificates_added=tuple(_ref(c) for c in outcome.trust.added),
        certificates_present=tuple(_ref(c) for c in outcome.trust.already_present),
        unknown=document.unknown,
        not_applicable=_not_applicable(document.config, running),
    )


def check_document(
    store: ProvisioningStore, document: ProvisioningDocument, *, running: Config | None = None
) -> ApplyResult:
    """What :func:`apply_document` would do, without changing anything (a dry run)."""
    if not document.valid:
        return _invalid(document, running, dry_run=True)
    current = store.get_settings()
    names = _secret_names(document)
    changes = []
    for setting, value in document.settings_changes().items():
        old = getattr(current, setting)
        if old != value:
            parameter, secret = names[setting]
            changes.append(
                SettingChange(
                    parameter=parameter,
                    setting=setting,
                    old=_shown(setting, old, secret),
                    new=_shown(setting, value, secret),
                )
            )
    trusted = {entry.certificate.fingerprint for entry in store.list_trust()}
    certs = document.all_certificates()
    added = tuple(_ref(c) for c in certs if c.fingerprint not in trusted)
    present = tuple(_ref(c) for c in certs if c.fingerprint in trusted)
    return ApplyResult(
        status=ApplyStatus.APPLIED if changes or added else ApplyStatus.UNCHANGED,
        dry_run=True,
        document_sha256=document.sha256,
        format=document.format.value,
        changes=tuple(sorted(changes, key=lambda c: c.setting)),
        certificates_added=added,
        certificates_present=present,
        unknown=document.unknown,
        not_applicable=_not_applicable(document.config, running),
    )
