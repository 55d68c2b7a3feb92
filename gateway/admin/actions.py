"""What the admin endpoint does, once, for both the JSON API and the HTML pages.

Each write is one function here: it runs the store or service call (in a worker
thread), which records it in the audit log, and whatever must follow it (the HTTPS
certificate reloaded after the device identity changed). The API and page modules
only parse the request, call one of these, and render the outcome. The views both of
them show (the status view, readiness, the provisioning state) are here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from certstore import render
from certstore.decision import decide
from certstore.device import ExportFormat, IdentitySpec
from certstore.device_service import AsyncDeviceService, InstallOutcome
from certstore.model import (
    Actor,
    AddResult,
    Certificate,
    Pin,
    PinDecision,
    PinMatch,
    RejectedChain,
    Rule,
    Settings,
    TrustEntry,
    TrustKind,
    TrustSource,
)
from certstore.revocation import CachedSource, RevocationSource, SourceKind
from certstore.snapshot import TrustSnapshot
from certstore.store import PinRequest, RestoreSummary
from certstore.x509 import load_certificates
from gateway.admin.errors import ApiError
from gateway.admin.state import AdminState
from gateway.provisioning.apply import ApplyResult, apply_document, check_document
from gateway.provisioning.client import without_credentials
from gateway.provisioning.document import parse_document
from gateway.provisioning.errors import DocumentError, DocumentTooLarge
from gateway.provisioning.result import FetchResult
from gateway.provisioning.service import ProvisioningService

# The device identity counts as a problem this long before it expires.
IDENTITY_WARN_DAYS = 30


# -- trust list -------------------------------------------------------------------------------


async def add_certificates(
    state: AdminState, files: Sequence[tuple[str, bytes]], actor: Actor, kind: TrustKind | None
) -> tuple[AddResult, list[str]]:
    """Add every certificate of the uploaded files (DER, PEM, p7b) to the trust list."""
    certificates: list[Certificate] = []
    notes: list[str] = []
    for name, data in files:
        loaded = load_certificates(data, max_bytes=state.max_upload, what=name or "upload")
        certificates.extend(loaded.certificates)
        notes.extend(loaded.notes)
    unique = list(dict.fromkeys(certificates))
    result = await state.call(
        state.store.add_trust, unique, source=TrustSource.UPLOADED, actor=actor, kind=kind
    )
    return result, notes


async def remove_trust(state: AdminState, fingerprint: str, actor: Actor) -> TrustEntry:
    return await state.call(state.store.remove_trust, fingerprint, actor=actor)


async def clear_trust(state: AdminState, actor: Actor) -> int:
    return await state.call(state.store.clear_trust, actor=actor)


async def restore_defaults(state: AdminState, actor: Actor) -> AddResult:
    return await state.call(state.store.restore_defaults, actor=actor)


async def accept_trusted(state: AdminState, fingerprint: str, actor: Actor) -> TrustEntry:
    """Pin an (expired) trusted certificate ``accept``, as the invalid view offers."""
    entry = await state.call(state.store.get_trust, fingerprint)
    pin_req = PinRequest(
        decision=PinDecision.ACCEPT,
        match=PinMatch.CERTIFICATE,
        fingerprint=fingerprint,
        note="accepted from the invalid certificates view",
    )
    await add_pin(state, pin_req, actor)
    return entry


def filter_trust(
    entries: Sequence[TrustEntry], *, kind: str | None, status: str | None, now: datetime
) -> list[TrustEntry]:
    out = list(entries)
    if kind is not None:
        out = [e for e in out if e.kind.value == kind]
    if status is not None:
        out = [e for e in out if e.certificate.status_at(now).value == status]
    return out


def rendered_trust(
    state: AdminState, generation: int, entries: Sequence[TrustEntry], now: datetime
) -> dict[str, dict[str, Any]]:
    """Trust entry summaries by fingerprint, rendered once per store generation (the
    ``status`` field, which depends on the time, is set per request)."""
    cached = state.cache.get("trust-rendered")
    if cached is not None and cached[0] == generation:
        return cached[1]  # type: ignore[no-any-return]
    value = {e.certificate.fingerprint: render.trust_entry(e, now) for e in entries}
    state.cache["trust-rendered"] = (generation, value)
    return value


# -- rejected chains ----------------------------------------------------------------------------


def refuse_out_of_date(entry: RejectedChain, fingerprints: Sequence[str], now: datetime) -> None:
    """Trusting an expired or not-yet-valid certificate fixes nothing (the decision still
    rejects it for its dates): refuse, and say what does help."""
    for cert in entry.chain:
        if cert.fingerprint not in fingerprints:
            continue
        name = cert.common_name or cert.subject
        if now > cert.not_after:
            problem = f"expired on {cert.not_after:%Y-%m-%d %H:%M:%S} UTC"
        elif now < cert.not_before:
            problem = f"is valid only from {cert.not_before:%Y-%m-%d %H:%M:%S} UTC"
        else:
            continue
        raise ApiError(
            422,
            "certificate-out-of-date",
            f"The certificate {name} {problem}: trusting it would not let the connection "
            "through, because the decision still rejects it for its dates. Have it renewed, "
            f"or accept it for this destination for a limited time (an accept pin that "
            f"expires: POST /api/v1/rejected/{entry.id}/accept with expires_at). Nothing "
            "was changed.",
        )


async def trust_rejected(
    state: AdminState, chain_id: int, fingerprints: Sequence[str], actor: Actor
) -> AddResult:
    """Trust the chosen certificates of a rejected chain; an out-of-date one is refused."""
    entry = await state.call(state.store.get_rejected, chain_id)
    refuse_out_of_date(entry, fingerprints, state.now())
    return await state.call(state.store.trust_rejected, chain_id, fingerprints, actor=actor)


async def pin_rejected(
    state: AdminState,
    chain_id: int,
    decision: PinDecision,
    actor: Actor,
    *,
    match: PinMatch = PinMatch.CERTIFICATE,
    scope: str | None = None,
    expires_at: datetime | None = None,
    note: str = "",
) -> Pin:
    return await state.call(
        state.store.pin_rejected,
        chain_id,
        decision,
        actor=actor,
        match=match,
        scope=scope,
        expires_at=expires_at,
        note=note,
    )


async def remove_rejected(state: AdminState, chain_id: int, actor: Actor) -> None:
    await state.call(state.store.remove_rejected, chain_id, actor=actor)


async def clear_rejected(state: AdminState, actor: Actor) -> int:
    return await state.call(state.store.clear_rejected, actor=actor)


# Verdicts that mean a recorded chain's peer is now trusted on its own merits.
_RESOLVING_RULES = frozenset({Rule.CHAIN_VALID, Rule.PINNED_ACCEPT})
_REJECTED_CACHE_SECONDS = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectedView:
    """The rejected list as it stands now: each entry with the rule the decision gives
    its chain and peer today *without* accept-all, so that an entry whose CA was
    trusted (or whose peer was accepted) since it was recorded shows as resolved, and
    the count of chains accepted only because of accept-all is live, not recorded."""

    entries: tuple[RejectedChain, ...]
    rules: Mapping[int, Rule]
    accept_all: bool

    def resolved(self, entry: RejectedChain) -> bool:
        return self.rules.get(entry.id) in _RESOLVING_RULES

    @property
    def open(self) -> list[RejectedChain]:
        return [e for e in self.entries if not self.resolved(e)]

    @property
    def closed(self) -> list[RejectedChain]:
        return [e for e in self.entries if self.resolved(e)]

    @property
    def overridden(self) -> int:
        """Chains accept-all lets through now that the decision would otherwise refuse."""
        if not self.accept_all:
            return 0
        return sum(1 for e in self.entries if self.rules.get(e.id) is Rule.UNTRUSTED)


def judge_rejected(
    entries: Sequence[RejectedChain], snapshot: TrustSnapshot, now: datetime
) -> dict[int, Rule]:
    """The rule each recorded chain gets now from its peer, accept-all left out (pure)."""
    strict = replace(snapshot, settings=replace(snapshot.settings, accept_all_certificates=False))
    return {e.id: decide(e.chain, e.peer, now, strict).rule for e in entries}


async def rejected_view(state: AdminState) -> RejectedView:
    """The rejected list judged against the current trust state (cached per store
    generation and list content for a minute: expiry moves with the clock)."""
    snapshot = await state.call(state.store.snapshot)
    entries = await state.call(state.store.list_rejected)
    now = state.now()
    key = (
        snapshot.generation,
        tuple((e.id, e.last_seen, e.count) for e in entries),
        int(now.timestamp() // _REJECTED_CACHE_SECONDS),
    )
    cached = state.cache.get("rejected-view")
    if cached is not None and cached[0] == key:
        return cached[1]  # type: ignore[no-any-return]
    rules = await state.call(judge_rejected, entries, snapshot, now)
    view = RejectedView(
        entries=entries,
        rules=rules,
        accept_all=snapshot.settings.accept_all_certificates,
    )
    state.cache["rejected-view"] = (key, view)
    return view


async def rejected_resolved(state: AdminState, entry: RejectedChain) -> bool:
    snapshot = await state.call(state.store.snapshot)
    rules = judge_rejected([entry], snapshot, state.now())
    return rules[entry.id] in _RESOLVING_RULES


# -- pins -----------------------------------------------------------------------------------------


async def add_pin(state: AdminState, request: PinRequest, actor: Actor) -> Pin:
    return await state.call(state.store.add_pin, request, actor=actor)


async def remove_pin(state: AdminState, pin_id: int, actor: Actor) -> Pin:
    return await state.call(state.store.remove_pin, pin_id, actor=actor)


def pin_origin(pin: Pin, interface: str | None) -> str:
    """Where a pin came from: ``admin`` (the pages or the API), ``cli``,
    ``provisioning``, ``first-use`` or ``gateway``. From the audit log's interface
    while it holds the pin's creation, else from the name the pin keeps (the CLI
    records the system user's name)."""
    if pin.first_use:
        return "first-use"
    if interface in ("web", "api"):
        return "admin"
    if interface in ("cli", "provisioning", "gateway"):
        return interface
    if pin.created_by in ("admin", "provisioning", "gateway"):
        return pin.created_by
    return "cli"


# -- revocation --------------------------------------------------------------------------------


def revocation_errors(state: AdminState) -> dict[str, str]:
    """URL -> why the gateway's last fetch from it failed (empty outside the gateway)."""
    return dict(state.revocation_errors()) if state.revocation_errors is not None else {}


async def upload_crl(state: AdminState, data: bytes, actor: Actor) -> CachedSource:
    """An administrator's CRL (DER or PEM), for sites whose CA cannot be reached."""
    return await state.call(
        state.store.put_revocation,
        data,
        kind=SourceKind.CRL,
        source=RevocationSource.UPLOADED,
        url=None,
        actor=actor,
    )


async def remove_uploaded_crl(state: AdminState, fingerprint: str, actor: Actor) -> CachedSource:
    return await state.call(state.store.remove_uploaded_crl, fingerprint, actor=actor)


# -- settings, backup --------------------------------------------------------------------------


async def update_settings(state: AdminState, changes: dict[str, object], actor: Actor) -> Settings:
    return await state.call(state.store.update_settings, changes, actor=actor)


async def export_backup(state: AdminState, actor: Actor, *, include_secrets: bool) -> bytes:
    """The backup document; the export itself is recorded in the audit log."""
    document = await state.call(
        state.store.export_backup, now=state.now(), include_secrets=include_secrets
    )
    await state.call(
        state.store.log_event,
        actor=actor,
        action="backup.export",
        target="trust-state",
        details={"include_secrets": include_secrets, "bytes": len(document)},
    )
    return document


async def restore_backup(state: AdminState, document: bytes, actor: Actor) -> RestoreSummary:
    return await state.call(state.store.import_backup, document, actor=actor)


# -- provisioning ---------------------------------------------------------------------------------


def running_provisioning(state: AdminState) -> ProvisioningService:
    """The provisioning service of this process; 409 when there is none (a tool, a test)."""
    if state.provisioning is None:
        raise ApiError(
            409,
            "provisioning-not-running",
            "Provisioning is not running in this process; use the gateway's admin endpoint "
            "or `sipsgate provision`.",
        )
    return state.provisioning


async def fetch_provisioning(state: AdminState, *, force: bool) -> FetchResult:
    """One fetch now. 409 when ``provisioning.url`` is empty; a run that fails (401,
    a rejected certificate, an unreachable server) is a result, not an error. The run
    is shielded so that a client going away does not cut it short."""
    service = running_provisioning(state)
    if not service.client.configured:
        raise ApiError(
            409,
            "provisioning-not-configured",
            "provisioning.url is not set: set it in the [provisioning] section of the "
            "config to fetch a document.",
        )
    return await asyncio.shield(service.fetch_now(force=force))


async def apply_provisioning(
    state: AdminState, data: bytes, actor: Actor, *, dry_run: bool
) -> ApplyResult:
    """Apply a provisioning document, all or nothing (or only check it). Applied through
    the running provisioning service when there is one, so it becomes the last result."""
    try:
        document = parse_document(data)
    except DocumentTooLarge as exc:
        raise ApiError(413, "too-large", str(exc)) from exc
    except DocumentError as exc:
        raise ApiError(400, "invalid-document", str(exc)) from exc
    if dry_run:
        return await state.call(check_document, state.store, document, running=state.config)
    if state.provisioning is not None:
        recorded = await state.provisioning.apply(data, actor=actor)
        if recorded.apply is None:  # not expected: the same bytes were read above
            raise ApiError(400, "invalid-document", "; ".join(recorded.errors))
        return recorded.apply
    return await state.call(
        apply_document, state.store, document, actor=actor, running=state.config
    )


def shown_url(template: str) -> str | None:
    """``provisioning.url`` as shown: ``None`` when empty, and never with credentials
    (the client refuses a URL holding them, but the text is still in the config)."""
    text = template.strip()
    return without_credentials(text) if text else None


async def provisioning_status(service: ProvisioningService) -> dict[str, Any]:
    """What ``GET /api/v1/provisioning`` answers and the Settings page shows."""
    last: FetchResult | None = await service.last_result()
    return {
        "configured": service.client.configured,
        "url": shown_url(service.client.url_template),
        "interval_seconds": service.interval,
        "last_result": last.to_dict() if last is not None else None,
    }


# -- the device identity --------------------------------------------------------------------------


def device_service(state: AdminState) -> AsyncDeviceService:
    service = state.device
    if not isinstance(service, AsyncDeviceService):
        raise ApiError(503, "unavailable", "The device identity service is not running.")
    return service


async def _identity_changed(state: AdminState) -> None:
    """Serve the new device certificate from the next HTTPS connection on."""
    if state.device_tls is not None:
        await state.call(state.device_tls.reload)


async def device_self_signed(state: AdminState, spec: IdentitySpec, actor: Actor) -> None:
    await device_service(state).self_signed(spec, actor=actor)
    await _identity_changed(state)


async def device_renew(state: AdminState, actor: Actor, *, reuse_key: bool) -> None:
    await device_service(state).renew(actor=actor, reuse_key=reuse_key)
    await _identity_changed(state)


async def device_install(
    state: AdminState,
    data: bytes,
    actor: Actor,
    *,
    key_pem: bytes | None,
    passphrase: bytes | None,
) -> InstallOutcome:
    outcome = await device_service(state).install(
        data, actor=actor, key_pem=key_pem, passphrase=passphrase
    )
    await _identity_changed(state)
    return outcome


async def device_clear(state: AdminState, actor: Actor) -> None:
    await device_service(state).clear(actor=actor)
    await _identity_changed(state)


async def device_trust_chain(
    state: AdminState, actor: Actor, fingerprints: Sequence[str] | None
) -> AddResult:
    return await device_service(state).trust_device_chain(actor=actor, fingerprints=fingerprints)


async def device_export(
    state: AdminState,
    actor: Actor,
    *,
    fmt: ExportFormat | str = ExportFormat.PEM,
    include_private_key: bool = False,
    passphrase: bytes | None = None,
) -> bytes:
    """The device chain (and, only if asked, its private key); the export is audited."""
    return await device_service(state).export(
        actor=actor, fmt=fmt, include_private_key=include_private_key, passphrase=passphrase
    )


async def create_csr(state: AdminState, spec: IdentitySpec, actor: Actor) -> None:
    await device_service(state).create_csr(spec, actor=actor)


async def remove_csr(state: AdminState, actor: Actor) -> None:
    await device_service(state).remove_csr(actor=actor)


# -- status and readiness -----------------------------------------------------------------------


def readiness(state: AdminState) -> tuple[bool, dict[str, object]]:
    """The ``/readyz`` view: the supervised parts, then the upstream flow."""
    view: dict[str, object]
    if state.health is None:
        ready, view = True, {"status": "ready", "services": {}}
    else:
        ready, view = state.health.readiness()
    if view["status"] == "degraded":
        failed = [
            name
            for name, service in view["services"].items()  # type: ignore[attr-defined]
            if service["state"] != "running"
        ]
        view["reason"] = f"Not running: {', '.join(failed)}."
    problem = state.relay_status.readiness_problem() if state.relay_status else None
    if ready and problem is not None:
        view["status"] = "degraded"
        view["reason"] = problem
    note = store_note(state)
    if ready and note is not None:
        view["status"] = "degraded"
        view["reason"] = f"{view['reason']} {note}" if view.get("reason") else note
    return ready, view


def store_note(state: AdminState) -> str | None:
    """The fleet store's fail-static sentence while its database cannot be reached (only
    a PostgreSQL store has one)."""
    note = getattr(state.store, "unreachable_note", None)
    if not callable(note):
        return None
    text = note()
    return text if isinstance(text, str) else None


async def status_view(state: AdminState) -> dict[str, Any]:
    """What ``GET /api/v1/status`` answers and the status page shows: readiness,
    problems first, then the upstream flow, the base stations seen, the counters,
    provisioning and the device identity. Read from the relay's live state and the
    store; nothing here waits on the relay."""
    now = state.now()
    _ready, readiness_view = readiness(state)
    relay = state.relay_status
    problems: list[str] = list(relay.problems()) if relay is not None else []
    note = store_note(state)
    if note is not None:
        problems.insert(0, note)
    view: dict[str, Any] = {
        "generated_at": now.replace(microsecond=0).isoformat(),
        "status": readiness_view["status"],
        "reason": readiness_view.get("reason"),
        "problems": problems,
    }
    if relay is not None:
        view.update(relay.view(now.timestamp()))
    else:
        view.update(upstream=None, base_stations=[], counters=None)
    provisioning: dict[str, Any] | None = None
    if state.provisioning is not None:
        provisioning = await provisioning_status(state.provisioning)
        last: FetchResult | None = await state.provisioning.last_result()
        if last is not None and not last.ok:
            problems.append(f"The last provisioning run did not succeed ({last.status.value}).")
    view["provisioning"] = provisioning
    identity: dict[str, Any] | None = None
    if state.device is not None:
        cert = (await state.device.identity()).certificate
        days_left = (cert.not_after - now).total_seconds() / 86400
        identity = {
            "subject": cert.subject,
            "fingerprint": cert.fingerprint,
            "not_after": cert.not_after.isoformat(),
            "days_left": int(days_left // 1),
        }
        if days_left < 0:
            problems.append("The device identity certificate has expired: renew it.")
        elif days_left < IDENTITY_WARN_DAYS:
            problems.append(
                f"The device identity certificate expires in {int(days_left)} days: renew it."
            )
    view["device_identity"] = identity
    return view
