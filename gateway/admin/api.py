"""The JSON API of DESIGN §7 under ``/api/v1``.

Every body is rendered by :mod:`certstore.render`, so a field has the same name here,
in the CLI and in the probe. Store calls run in worker threads. Store exceptions are
turned into the error shape by the application's error middleware.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from certstore import render, validation
from certstore.errors import InputTooLarge, ValidationError
from certstore.model import (
    AddResult,
    Certificate,
    CertStatus,
    PinDecision,
    PinMatch,
    RejectedChain,
    TrustEntry,
    TrustKind,
    TrustSource,
)
from certstore.revocation import MAX_CRL_BYTES, RevocationSource, SourceKind
from certstore.store import ExpiringItem, PinRequest, RestoreSummary
from certstore.validation import normalize_scope
from certstore.x509 import load_certificates, to_pem
from gateway.admin.app import (
    API_PREFIX,
    FORM_ERRORS,
    MAX_BACKUP_BYTES,
    STATE,
    AdminState,
    ApiError,
    bad_form,
    principal_of,
    readiness,
    state_of,
)
from gateway.admin.security import read_limited
from gateway.provisioning.apply import apply_document, check_document
from gateway.provisioning.client import without_credentials
from gateway.provisioning.document import parse_document
from gateway.provisioning.errors import DocumentError, DocumentTooLarge
from gateway.provisioning.result import FetchResult
from gateway.provisioning.service import ProvisioningService

PEM_TYPE = "application/x-pem-file"
DER_TYPE = "application/pkix-cert"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_NOTE_LENGTH = 1000
MAX_LIST_LIMIT = 100_000
MAX_AUDIT_LIMIT = 500
MAX_OFFSET = 10**9
MAX_ID = 2**62
# Route patterns: a fingerprint (hex, colons allowed) and a numeric id.
FP_RE = r"[0-9A-Fa-f:]{64,95}"
ID_RE = r"[0-9]{1,19}"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


# -- request parsing ---------------------------------------------------------------------------


def normalise_fingerprint(text: str, *, field: str = "fingerprint") -> str:
    value = text.strip().lower().replace(":", "")
    if not _HEX64.fullmatch(value):
        raise ValidationError(
            field,
            f"{text[:80]!r} is not a SHA-256 fingerprint; give 64 hex digits (colons allowed).",
        )
    return value


def query_choice(request: web.Request, name: str, choices: Sequence[str]) -> str | None:
    value = request.query.get(name)
    if value is None:
        return None
    if value not in choices:
        raise ValidationError(
            name, f'"{value[:40]}" is not a valid {name}; use {" or ".join(choices)}.'
        )
    return value


def query_int(
    request: web.Request, name: str, *, default: int | None, low: int, high: int
) -> int | None:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValidationError(name, f'{name} must be a whole number, not "{text[:40]}".') from None
    if not low <= value <= high:
        raise ValidationError(name, f"{name} must be between {low} and {high}, not {value}.")
    return value


def query_bool(request: web.Request, name: str) -> bool:
    text = request.query.get(name, "").strip().lower()
    if text in ("", "0", "false", "no"):
        return False
    if text in ("1", "true", "yes"):
        return True
    raise ValidationError(name, f'{name} must be true or false, not "{text[:40]}".')


def format_of(request: web.Request) -> str | None:
    return query_choice(request, "format", ("pem", "der"))


async def read_json_object(
    request: web.Request, *, limit: int, optional: bool = False
) -> dict[str, Any]:
    body = await read_limited(request, limit)
    if not body.strip():
        if optional:
            return {}
        raise ApiError(400, "invalid-json", "The request needs a JSON object as its body.")
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid-json", f"The body is not valid JSON: {exc}.") from exc
    except RecursionError as exc:  # nested deeper than the parser goes
        raise ApiError(400, "invalid-json", "The body is JSON nested too deeply.") from exc
    if not isinstance(value, dict):
        raise ApiError(400, "invalid-json", "The body must be a JSON object.")
    return value


def safe_filename(name: str | None) -> str:
    """A file name that cannot leave a directory or break a header (for display only)."""
    if not name:
        return ""
    base = unquote(name).replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _SAFE_NAME.sub("_", base)
    cleaned = re.sub(r"\.{2,}", ".", cleaned).strip("._")
    return cleaned[:100]


async def read_upload(request: web.Request, limit: int) -> list[tuple[str, bytes]]:
    """The uploaded files: a raw body (DER, PEM, p7b), or every file part of a multipart
    form. File names are only shown, never used as paths."""
    if request.content_type != "multipart/form-data":
        return [("", await read_limited(request, limit, what="upload"))]
    try:
        return await _read_multipart(request, limit)
    except FORM_ERRORS as exc:
        raise bad_form(exc) from exc


async def _read_multipart(request: web.Request, limit: int) -> list[tuple[str, bytes]]:
    reader = await request.multipart()
    files: list[tuple[str, bytes]] = []
    total = 0
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            continue
        if part.filename is None and part.name not in ("file", "certificate", "document"):
            await part.release()
            continue
        chunks: list[bytes] = []
        while chunk := await part.read_chunk(64 * 1024):
            total += len(chunk)
            if total > limit:
                raise InputTooLarge("upload", total, limit)
            chunks.append(chunk)
        files.append((safe_filename(part.filename), b"".join(chunks)))
    if not files:
        raise ApiError(400, "no-file", "The form holds no file; choose a file to upload.")
    return files


def parse_time(value: object, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(field, f"{field} must be an ISO 8601 time string or null.")
    return validation.parse_time(value, field=field, naive_is_utc=True)


def parse_scope(value: object) -> str | None:
    """None (any peer), ``host`` or ``host:port``, normalised as the store keeps it."""
    if value is None:
        return None
    if isinstance(value, str) and not value.strip():
        raise ValidationError("scope", "scope must be null (any peer) or host or host:port.")
    return normalize_scope(value)


def parse_enum(value: object, field: str, enum: type[PinDecision] | type[PinMatch]) -> Any:
    choices = [member.value for member in enum]
    if not isinstance(value, str) or value not in choices:
        raise ValidationError(field, f"{field} must be {' or '.join(choices)}, not {value!r}.")
    return enum(value)


def parse_note(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_NOTE_LENGTH:
        raise ValidationError("note", f"note must be text of at most {MAX_NOTE_LENGTH} characters.")
    return value


def check_fields(body: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValidationError(
            unknown[0],
            f"Unknown field {unknown[0]!r}; the fields are {', '.join(sorted(allowed))}.",
        )


def pin_options(body: Mapping[str, Any]) -> dict[str, Any]:
    """The optional pin fields of ``rejected/{id}/accept|reject``."""
    check_fields(body, {"scope", "match", "expires_at", "note"})
    return {
        "match": parse_enum(body.get("match", "certificate"), "match", PinMatch),
        "scope": parse_scope(body.get("scope")),
        "expires_at": parse_time(body.get("expires_at"), "expires_at"),
        "note": parse_note(body.get("note")),
    }


def pin_request(body: Mapping[str, Any], *, max_upload: int) -> PinRequest:
    check_fields(
        body, {"decision", "match", "fingerprint", "certificate", "scope", "expires_at", "note"}
    )
    decision = parse_enum(body.get("decision"), "decision", PinDecision)
    match = parse_enum(body.get("match", "certificate"), "match", PinMatch)
    if ("fingerprint" in body) == ("certificate" in body):
        raise ValidationError(
            "fingerprint", "Give either fingerprint (hex SHA-256) or certificate (PEM), not both."
        )
    fingerprint = body.get("fingerprint")
    pem = body.get("certificate")
    certificate: Certificate | None = None
    if "certificate" in body:
        if not isinstance(pem, str):
            raise ValidationError("certificate", "certificate must be PEM text.")
        loaded = load_certificates(pem.encode("utf-8"), max_bytes=max_upload, what="certificate")
        if len(loaded.certificates) != 1:
            raise ValidationError(
                "certificate",
                f"certificate must hold exactly one certificate, not {len(loaded.certificates)}.",
            )
        certificate = loaded.certificates[0]
        value = (
            certificate.fingerprint
            if match is PinMatch.CERTIFICATE
            else certificate.spki_fingerprint
        )
    else:
        if not isinstance(fingerprint, str):
            raise ValidationError("fingerprint", "fingerprint must be a hex string.")
        value = normalise_fingerprint(fingerprint)
    return PinRequest(
        decision=decision,
        match=match,
        fingerprint=value,
        scope=parse_scope(body.get("scope")),
        expires_at=parse_time(body.get("expires_at"), "expires_at"),
        note=parse_note(body.get("note")),
    )


def fingerprint_list(body: Mapping[str, Any]) -> list[str]:
    check_fields(body, {"fingerprints"})
    raw = body.get("fingerprints")
    if not isinstance(raw, list) or not raw or not all(isinstance(v, str) for v in raw):
        raise ValidationError(
            "fingerprints", "fingerprints must be a non-empty list of SHA-256 fingerprints."
        )
    return [normalise_fingerprint(v, field="fingerprints") for v in raw]


# -- responses --------------------------------------------------------------------------------


def download(data: bytes, *, content_type: str, filename: str) -> web.Response:
    return web.Response(
        body=data,
        content_type=content_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def certificate_filename(cert: Certificate, extension: str) -> str:
    base = safe_filename(cert.common_name or "") or "certificate"
    return f"{base}-{cert.fingerprint[:12]}.{extension}"


def certificate_download(cert: Certificate, fmt: str) -> web.Response:
    if fmt == "der":
        return download(cert.der, content_type=DER_TYPE, filename=certificate_filename(cert, "der"))
    return download(to_pem(cert), content_type=PEM_TYPE, filename=certificate_filename(cert, "pem"))


def add_result_body(result: AddResult, now: datetime, notes: Sequence[str] = ()) -> dict[str, Any]:
    return {**render.add_result(result, now), "notes": list(notes)}


def expiring_item(item: ExpiringItem, now: datetime) -> dict[str, Any]:
    return {
        "role": item.role,
        "ref": item.ref,
        "not_after": render.iso(item.not_after),
        "days_left": item.days_left,
        "certificate": render.certificate_summary(item.certificate, now),
    }


def restore_summary(summary: RestoreSummary) -> dict[str, Any]:
    return {
        "trust": summary.trust,
        "pins": summary.pins,
        "rejected": summary.rejected,
        "settings_restored": summary.settings_restored,
        "secrets_restored": summary.secrets_restored,
    }


def filter_trust(
    entries: Sequence[TrustEntry], *, kind: str | None, status: str | None, now: datetime
) -> list[TrustEntry]:
    out = list(entries)
    if kind is not None:
        out = [e for e in out if e.kind.value == kind]
    if status is not None:
        out = [e for e in out if e.certificate.status_at(now).value == status]
    return out


def paged(request: web.Request, items: Sequence[Any]) -> tuple[Sequence[Any], dict[str, str]]:
    limit = query_int(request, "limit", default=None, low=1, high=MAX_LIST_LIMIT)
    offset = query_int(request, "offset", default=0, low=0, high=MAX_OFFSET) or 0
    end = None if limit is None else offset + limit
    return items[offset:end], {"X-Total-Count": str(len(items))}


# -- trust list -------------------------------------------------------------------------------


async def trust_list(request: web.Request) -> web.Response:
    state = state_of(request)
    kind = query_choice(request, "kind", [k.value for k in TrustKind])
    status = query_choice(request, "status", [s.value for s in CertStatus])
    now = state.now()
    snapshot = await state.call(state.store.snapshot)
    entries = filter_trust(snapshot.trust, kind=kind, status=status, now=now)
    page, headers = paged(request, entries)
    rendered = rendered_trust(state, snapshot.generation, snapshot.trust, now)
    body = [
        {**rendered[e.certificate.fingerprint], "status": e.certificate.status_at(now).value}
        for e in page
    ]
    return web.json_response(body, headers=headers)


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


async def add_certificates(
    state: AdminState, files: Sequence[tuple[str, bytes]], actor: Any, kind: TrustKind | None
) -> tuple[AddResult, list[str]]:
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


async def trust_upload(request: web.Request) -> web.Response:
    state = state_of(request)
    kind_text = query_choice(request, "kind", [k.value for k in TrustKind])
    kind = TrustKind(kind_text) if kind_text else None
    files = await read_upload(request, state.max_upload)
    result, notes = await add_certificates(state, files, principal_of(request).actor, kind)
    status = 201 if result.added else 200
    return web.json_response(add_result_body(result, state.now(), notes), status=status)


def revocation_errors(state: AdminState) -> dict[str, str]:
    """URL -> why the gateway's last fetch from it failed (empty outside the gateway)."""
    return dict(state.revocation_errors()) if state.revocation_errors is not None else {}


async def revocation_list(request: web.Request) -> web.Response:
    state = state_of(request)
    sources = await state.call(state.store.list_revocation)
    errors = revocation_errors(state)
    return web.json_response(
        [{**render.revocation_source(s), "last_error": errors.get(s.url or "")} for s in sources]
    )


async def revocation_crl_remove(request: web.Request) -> web.Response:
    """Remove an uploaded CRL (by its SHA-256 fingerprint); audited."""
    state = state_of(request)
    fp = normalise_fingerprint(request.match_info["fingerprint"])
    removed = await state.call(
        state.store.remove_uploaded_crl, fp, actor=principal_of(request).actor
    )
    return web.json_response(render.revocation_source(removed))


async def revocation_crl_upload(request: web.Request) -> web.Response:
    """An administrator's CRL (DER or PEM), for sites whose CA cannot be reached."""
    state = state_of(request)
    files = await read_upload(request, MAX_CRL_BYTES)
    if len(files) != 1:
        raise ApiError(400, "one-file", "Upload one CRL file at a time.")
    source = await state.call(
        state.store.put_revocation,
        files[0][1],
        kind=SourceKind.CRL,
        source=RevocationSource.UPLOADED,
        url=None,
        actor=principal_of(request).actor,
    )
    return web.json_response(render.revocation_source(source), status=201)


async def trust_get(request: web.Request) -> web.Response:
    state = state_of(request)
    fmt = format_of(request)
    fp = normalise_fingerprint(request.match_info["fingerprint"])
    entry = await state.call(state.store.get_trust, fp)
    if fmt is not None:
        return certificate_download(entry.certificate, fmt)
    return web.json_response(render.trust_entry(entry, state.now(), details=True))


async def trust_remove(request: web.Request) -> web.Response:
    state = state_of(request)
    fp = normalise_fingerprint(request.match_info["fingerprint"])
    entry = await state.call(state.store.remove_trust, fp, actor=principal_of(request).actor)
    return web.json_response(render.trust_entry(entry, state.now()))


async def trust_clear(request: web.Request) -> web.Response:
    state = state_of(request)
    count = await state.call(state.store.clear_trust, actor=principal_of(request).actor)
    return web.json_response({"removed": count})


async def trust_bundle(request: web.Request) -> web.Response:
    state = state_of(request)
    snapshot = await state.call(state.store.snapshot)
    data = to_pem(e.certificate for e in snapshot.trust)
    return download(data, content_type=PEM_TYPE, filename="sipsgate-trust-list.pem")


async def trust_restore_defaults(request: web.Request) -> web.Response:
    state = state_of(request)
    result = await state.call(state.store.restore_defaults, actor=principal_of(request).actor)
    return web.json_response(add_result_body(result, state.now()))


# -- rejected chains ----------------------------------------------------------------------------


def rejected_id(request: web.Request) -> int:
    text = request.match_info["id"]
    try:
        value = int(text)
    except ValueError:
        raise ValidationError("id", f'"{text[:40]}" is not a rejected-chain id.') from None
    if not 1 <= value <= MAX_ID:
        raise ValidationError("id", f"{value} is not a rejected-chain id.")
    return value


async def rejected_list(request: web.Request) -> web.Response:
    state = state_of(request)
    now = state.now()
    entries = await state.call(state.store.list_rejected)
    page, headers = paged(request, entries)
    return web.json_response([render.rejected_entry(e, now) for e in page], headers=headers)


async def rejected_get(request: web.Request) -> web.Response:
    state = state_of(request)
    entry = await state.call(state.store.get_rejected, rejected_id(request))
    return web.json_response(render.rejected_entry(entry, state.now(), details=True))


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


async def rejected_trust(request: web.Request) -> web.Response:
    state = state_of(request)
    chain_id = rejected_id(request)
    body = await read_json_object(request, limit=state.max_upload)
    fingerprints = fingerprint_list(body)
    entry = await state.call(state.store.get_rejected, chain_id)
    refuse_out_of_date(entry, fingerprints, state.now())
    result = await state.call(
        state.store.trust_rejected, chain_id, fingerprints, actor=principal_of(request).actor
    )
    return web.json_response(add_result_body(result, state.now()))


async def _rejected_pin(request: web.Request, decision: PinDecision) -> web.Response:
    state = state_of(request)
    chain_id = rejected_id(request)
    body = await read_json_object(request, limit=state.max_upload, optional=True)
    options = pin_options(body)
    pin = await state.call(
        state.store.pin_rejected,
        chain_id,
        decision,
        actor=principal_of(request).actor,
        **options,
    )
    return web.json_response(render.pin(pin, state.now()), status=201)


async def rejected_accept(request: web.Request) -> web.Response:
    return await _rejected_pin(request, PinDecision.ACCEPT)


async def rejected_reject(request: web.Request) -> web.Response:
    return await _rejected_pin(request, PinDecision.REJECT)


async def rejected_remove(request: web.Request) -> web.Response:
    state = state_of(request)
    chain_id = rejected_id(request)
    await state.call(state.store.remove_rejected, chain_id, actor=principal_of(request).actor)
    return web.json_response({"removed": chain_id})


async def rejected_clear(request: web.Request) -> web.Response:
    state = state_of(request)
    count = await state.call(state.store.clear_rejected, actor=principal_of(request).actor)
    return web.json_response({"removed": count})


# -- pins -----------------------------------------------------------------------------------------


def pin_id(request: web.Request) -> int:
    text = request.match_info["id"]
    try:
        value = int(text)
    except ValueError:
        raise ValidationError("id", f'"{text[:40]}" is not a pin id.') from None
    if not 1 <= value <= MAX_ID:
        raise ValidationError("id", f"{value} is not a pin id.")
    return value


async def decisions_list(request: web.Request) -> web.Response:
    state = state_of(request)
    now = state.now()
    snapshot = await state.call(state.store.snapshot)
    return web.json_response([render.pin(p, now) for p in snapshot.pins])


async def decisions_add(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json_object(request, limit=state.max_upload)
    pin_req = pin_request(body, max_upload=state.max_upload)
    pin = await state.call(state.store.add_pin, pin_req, actor=principal_of(request).actor)
    return web.json_response(render.pin(pin, state.now()), status=201)


async def decisions_remove(request: web.Request) -> web.Response:
    state = state_of(request)
    pin = await state.call(
        state.store.remove_pin, pin_id(request), actor=principal_of(request).actor
    )
    return web.json_response(render.pin(pin, state.now()))


# -- settings ----------------------------------------------------------------------------------


async def settings_get(request: web.Request) -> web.Response:
    state = state_of(request)
    value = await state.call(state.store.get_settings)
    return web.json_response(render.settings(value))


async def settings_patch(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json_object(request, limit=state.max_upload)
    if not body:
        raise ValidationError("settings", "The body names no setting to change.")
    value = await state.call(state.store.update_settings, body, actor=principal_of(request).actor)
    return web.json_response(render.settings(value))


# -- audit, expiry, backup, metrics -----------------------------------------------------------


async def audit(request: web.Request) -> web.Response:
    state = state_of(request)
    limit = query_int(request, "limit", default=50, low=1, high=MAX_AUDIT_LIMIT) or 50
    before = query_int(request, "before_id", default=None, low=1, high=MAX_ID)
    events = await state.call(state.store.audit, limit=limit, before_id=before)
    headers: dict[str, str] = {}
    if len(events) == limit:
        headers["Link"] = (
            f'<{API_PREFIX}/audit?limit={limit}&before_id={events[-1].id}>; rel="next"'
        )
    return web.json_response([render.audit_event(e) for e in events], headers=headers)


async def expiring(request: web.Request) -> web.Response:
    state = state_of(request)
    days = query_int(request, "days", default=30, low=0, high=3650) or 0
    now = state.now()
    items = await state.call(state.store.expiring, now=now, days=days)
    return web.json_response([expiring_item(i, now) for i in items])


async def backup(request: web.Request) -> web.Response:
    state = state_of(request)
    secrets = query_bool(request, "include_secrets")
    if secrets and not request.secure:
        raise ApiError(403, "https-required", "A backup with secrets is only given over HTTPS.")
    now = state.now()
    actor = principal_of(request).actor
    document = await state.call(state.store.export_backup, now=now, include_secrets=secrets)
    await state.call(
        state.store.log_event,
        actor=actor,
        action="backup.export",
        target="trust-state",
        details={"include_secrets": secrets, "bytes": len(document)},
    )
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    return download(
        document, content_type="application/json", filename=f"sipsgate-backup-{stamp}.json"
    )


async def restore(request: web.Request) -> web.Response:
    state = state_of(request)
    files = await read_upload(request, MAX_BACKUP_BYTES)
    if len(files) != 1:
        raise ApiError(400, "one-file", "Upload exactly one backup document.")
    summary = await state.call(
        state.store.import_backup, files[0][1], actor=principal_of(request).actor
    )
    return web.json_response(restore_summary(summary))


async def provisioning_apply(request: web.Request) -> web.Response:
    """Apply a provisioning document (the format the provisioning client fetches), all or
    nothing; ``?dry_run=true`` only reports what it would change. Applied through the
    running provisioning service (when there is one), so it becomes the last result."""
    state = state_of(request)
    dry_run = query_bool(request, "dry_run")
    files = await read_upload(request, state.max_upload)
    if len(files) != 1:
        raise ApiError(400, "one-file", "Send exactly one provisioning document.")
    data = files[0][1]
    try:
        document = parse_document(data)
    except DocumentTooLarge as exc:
        raise ApiError(413, "too-large", str(exc)) from exc
    except DocumentError as exc:
        raise ApiError(400, "invalid-document", str(exc)) from exc
    actor = principal_of(request).actor
    if dry_run:
        result = await state.call(check_document, state.store, document, running=state.config)
    elif state.provisioning is not None:
        recorded = await state.provisioning.apply(data, actor=actor)
        if recorded.apply is None:  # not expected: the same bytes were read above
            raise ApiError(400, "invalid-document", "; ".join(recorded.errors))
        result = recorded.apply
    else:
        result = await state.call(
            apply_document, state.store, document, actor=actor, running=state.config
        )
    return web.json_response(result.to_dict(), status=200 if result.ok else 422)


# -- provisioning: the last result and a fetch on demand ------------------------------------


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


# The device identity counts as a problem this long before it expires.
IDENTITY_WARN_DAYS = 30


async def status_view(state: AdminState) -> dict[str, Any]:
    """What ``GET /api/v1/status`` answers: readiness, problems first, then the upstream
    flow, the base stations seen, the counters, provisioning and the device identity.
    Read from the relay's live state and the store; nothing here waits on the relay."""
    now = state.now()
    _ready, readiness_view = readiness(state)
    relay = state.relay_status
    problems: list[str] = list(relay.problems()) if relay is not None else []
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


async def status_get(request: web.Request) -> web.Response:
    return web.json_response(await status_view(state_of(request)))


async def provisioning_get(request: web.Request) -> web.Response:
    service = running_provisioning(state_of(request))
    return web.json_response(await provisioning_status(service))


def fetch_options(body: Mapping[str, Any]) -> bool:
    """``force`` from the body of ``POST /api/v1/provisioning/fetch``."""
    unknown = sorted(set(body) - {"force"})
    if unknown:
        raise ValidationError(
            unknown[0], f'"{unknown[0][:40]}" is not an option of a fetch; only "force" is.'
        )
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise ValidationError("force", "force must be true or false.")
    return force


async def run_fetch(service: ProvisioningService, *, force: bool) -> FetchResult:
    """One fetch now. 409 when ``provisioning.url`` is empty; a run that fails (401,
    a rejected certificate, an unreachable server) is a result, not an error. The run
    is shielded so that a client going away does not cut it short."""
    if not service.client.configured:
        raise ApiError(
            409,
            "provisioning-not-configured",
            "provisioning.url is not set: set it in the [provisioning] section of the "
            "config to fetch a document.",
        )
    return await asyncio.shield(service.fetch_now(force=force))


async def provisioning_fetch(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json_object(request, limit=state.max_upload, optional=True)
    force = fetch_options(body)
    result = await run_fetch(running_provisioning(state), force=force)
    return web.json_response(result.to_dict())


async def metrics(request: web.Request) -> web.Response:
    state = state_of(request)
    snapshot = await state.call(state.store.snapshot)
    rejected = await state.call(state.store.list_rejected)
    for name, value in (
        ("sipsgate_trust_entries", len(snapshot.trust)),
        ("sipsgate_pins", len(snapshot.pins)),
        ("sipsgate_rejected_chains", len(rejected)),
        ("sipsgate_rejected_chains_overridden", sum(1 for r in rejected if r.overridden)),
    ):
        state.registry.gauge(name, STATE_GAUGES[name]).set(value)
    return web.Response(
        text=state.registry.render(),
        headers={"Content-Type": METRICS_CONTENT_TYPE},
    )


# Gauges of the trust state, set when /metrics is read.
STATE_GAUGES = {
    "sipsgate_trust_entries": "Certificates in the trust list.",
    "sipsgate_pins": "Accept and reject pins.",
    "sipsgate_rejected_chains": "Chains in the rejected list.",
    "sipsgate_rejected_chains_overridden": "Rejected chains accepted anyway by accept-all.",
}


def setup(app: web.Application) -> None:
    state = app[STATE]
    for name, help_text in STATE_GAUGES.items():
        state.registry.gauge(name, help_text)
    r = app.router
    v1 = API_PREFIX
    r.add_get(f"{v1}/status", status_get)
    r.add_get(f"{v1}/trust", trust_list)
    r.add_post(f"{v1}/trust", trust_upload)
    r.add_delete(f"{v1}/trust", trust_clear)
    r.add_get(f"{v1}/trust/bundle.pem", trust_bundle)
    r.add_post(f"{v1}/trust/restore-defaults", trust_restore_defaults)
    r.add_get(f"{v1}/trust/{{fingerprint:{FP_RE}}}", trust_get)
    r.add_delete(f"{v1}/trust/{{fingerprint:{FP_RE}}}", trust_remove)
    r.add_get(f"{v1}/rejected", rejected_list)
    r.add_delete(f"{v1}/rejected", rejected_clear)
    r.add_get(f"{v1}/rejected/{{id:{ID_RE}}}", rejected_get)
    r.add_delete(f"{v1}/rejected/{{id:{ID_RE}}}", rejected_remove)
    r.add_post(f"{v1}/rejected/{{id:{ID_RE}}}/trust", rejected_trust)
    r.add_post(f"{v1}/rejected/{{id:{ID_RE}}}/accept", rejected_accept)
    r.add_post(f"{v1}/rejected/{{id:{ID_RE}}}/reject", rejected_reject)
    r.add_get(f"{v1}/decisions", decisions_list)
    r.add_post(f"{v1}/decisions", decisions_add)
    r.add_delete(f"{v1}/decisions/{{id:{ID_RE}}}", decisions_remove)
    r.add_get(f"{v1}/revocation", revocation_list)
    r.add_post(f"{v1}/revocation/crl", revocation_crl_upload)
    r.add_delete(f"{v1}/revocation/crl/{{fingerprint:{FP_RE}}}", revocation_crl_remove)
    r.add_get(f"{v1}/settings", settings_get)
    r.add_patch(f"{v1}/settings", settings_patch)
    r.add_get(f"{v1}/audit", audit)
    r.add_get(f"{v1}/expiring", expiring)
    r.add_get(f"{v1}/backup", backup)
    r.add_post(f"{v1}/restore", restore)
    r.add_get(f"{v1}/provisioning", provisioning_get)
    r.add_post(f"{v1}/provisioning/fetch", provisioning_fetch)
    r.add_post(f"{v1}/provisioning/apply", provisioning_apply)
    r.add_get("/metrics", metrics)
