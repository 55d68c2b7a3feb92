"""The HTML admin pages: server-rendered, one form per action, no script needed.

Every form carries the session's CSRF token (checked by the access middleware).
Destructive actions need confirmation: the page's small script asks in a
``<dialog>`` and marks the form confirmed; without the script the server answers with
a confirmation page that re-posts the same form. After an action the browser is
redirected (303) to the page it came from, with a message shown once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDictProxy

from certstore import render
from certstore.errors import CertStoreError, InputError, ValidationError
from certstore.model import (
    CertStatus,
    PinDecision,
    PinMatch,
    TrustKind,
)
from certstore.revocation import MAX_CRL_BYTES, RevocationSource, SourceKind
from certstore.store import PinRequest
from gateway.admin import api, pictures
from gateway.admin.app import (
    CSRF_FIELD,
    MAX_BACKUP_BYTES,
    AdminState,
    ApiError,
    attempt_login,
    client_address,
    principal_of,
    read_form,
    session_of,
    state_of,
    throttled,
)
from gateway.admin.auth import SESSION_COOKIE, SESSION_MAX_SECONDS, Session
from gateway.log import get_logger
from gateway.provisioning.result import FetchResult
from gateway.tls.advice import advise

PAGE_SIZE = 50
BANNER_DAYS = 30
BANNER_CACHE_SECONDS = 60.0
NAV = (
    ("status", "/", "Status"),
    ("trust", "/trust", "Trust list"),
    ("rejected", "/rejected", "Rejected / invalid"),
    ("pins", "/pins", "Pins"),
    ("revocation", "/revocation", "Revocation"),
    ("probe", "/probe", "Test connection"),
    ("device", "/device", "Device certificate"),
    ("settings", "/settings", "Settings"),
    ("audit", "/audit", "Audit log"),
)

_log = get_logger(area="admin")

FormData = MultiDictProxy[Any]


# -- rendering helpers --------------------------------------------------------------------------


async def expiring_banner(state: AdminState) -> list[dict[str, Any]]:
    """What expires within 30 days (cached per store generation for a minute)."""
    snapshot = await state.call(state.store.snapshot)
    key = (snapshot.generation, int(time.monotonic() // BANNER_CACHE_SECONDS))
    cached = state.cache.get("banner")
    if cached is not None and cached[0] == key:
        return list(cached[1])
    now = state.now()
    items = await state.call(state.store.expiring, now=now, days=BANNER_DAYS)
    value = [
        {
            "role": item.role,
            "name": item.certificate.display_name,
            "days_left": item.days_left,
            "not_after": render.iso(item.not_after),
            "ref": item.ref,
        }
        for item in items
    ]
    state.cache["banner"] = (key, value)
    return value


async def page(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    active: str = "",
    status: int = 200,
) -> web.Response:
    state = state_of(request)
    session = principal_of(request).session
    snapshot = await state.call(state.store.snapshot)
    full = {
        "nav": NAV,
        "active": active,
        "csrf_token": session.csrf_token if session else "",
        "csrf_field": CSRF_FIELD,
        "messages": session.take_messages() if session else [],
        "expiring": await expiring_banner(state),
        "accept_all": snapshot.settings.accept_all_certificates,
        "principal": principal_of(request),
        **context,
    }
    # Rendered in a worker thread: a long page (1,000 base stations, 50 certificates
    # with their details) must not hold up the event loop the SIP relay shares.
    text = await asyncio.to_thread(aiohttp_jinja2.render_string, template, request, full)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def back(
    request: web.Request, default: str, level: str = "", message: str = ""
) -> web.HTTPSeeOther:
    session = principal_of(request).session
    if session is not None and message:
        session.flash(level or "info", message)
    return web.HTTPSeeOther(default)


def local_target(value: str | None, default: str = "/") -> str:
    """A redirect target inside this site only (no open redirect).

    Browsers drop tabs and line breaks from a URL and read a backslash as a slash, so
    ``/\t/evil.example`` would leave the site: any control character, whitespace or
    backslash, or a target a URL parser sees a host or scheme in, gives the default.
    """
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    if value.startswith(("/login", "/logout")):
        return default
    return value


async def form_of(request: web.Request) -> FormData:
    return await read_form(request)


def form_text(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name, default)
    return value if isinstance(value, str) else default


async def needs_confirmation(
    request: web.Request, form: FormData, message: str, *, button: str
) -> web.Response | None:
    """The confirmation page, unless the form was confirmed (by the dialog or by it)."""
    if form_text(form, "confirmed") == "1":
        return None
    fields = [
        (k, v) for k, v in form.items() if isinstance(v, str) and k not in (CSRF_FIELD, "confirmed")
    ]
    return await page(
        request,
        "confirm.html",
        {
            "message": message,
            "action": request.path,
            "fields": fields,
            "button": button,
            "cancel": "/" + request.path.strip("/").split("/", 1)[0],
        },
    )


def flash_error(request: web.Request, exc: CertStoreError | ApiError) -> None:
    session = principal_of(request).session
    if session is not None:
        session.flash("error", exc.message if isinstance(exc, ApiError) else str(exc))


# -- login ---------------------------------------------------------------------------------------


def set_session_cookie(response: web.StreamResponse, session: Session) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session.id,
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
        max_age=SESSION_MAX_SECONDS,
    )


async def login_form(request: web.Request) -> web.Response:
    state = state_of(request)
    current = session_of(request)
    target = local_target(request.query.get("next"))
    if current is not None and current.authenticated:
        raise web.HTTPSeeOther(target)
    session = current or state.auth.sessions.anonymous()
    response = aiohttp_jinja2.render_template(
        "login.html",
        request,
        {
            "csrf_token": session.csrf_token,
            "csrf_field": CSRF_FIELD,
            "next": target,
            "error": "",
        },
    )
    if current is None:
        set_session_cookie(response, session)
    return response


async def login_submit(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    client = client_address(request)
    wait = state.auth.throttle.retry_after(client)
    if wait is not None:
        raise throttled(wait)
    form = await read_form(request)
    pre = session_of(request)
    if pre is None or not pre.csrf_ok(form_text(form, CSRF_FIELD) or None):
        _log.warning("admin.csrf.rejected", client=client, path=request.path)
        raise ApiError(
            403,
            "csrf-failed",
            "The login form has expired or did not come from this site; reload it and try again.",
        )
    target = local_target(form_text(form, "next"))
    password = form_text(form, "password")
    if not await attempt_login(request, password, user_ok=True, via="form"):
        response = aiohttp_jinja2.render_template(
            "login.html",
            request,
            {
                "csrf_token": pre.csrf_token,
                "csrf_field": CSRF_FIELD,
                "next": target,
                "error": "The password is wrong.",
            },
            status=401,
        )
        return response
    session = state.auth.login(request.cookies.get(SESSION_COOKIE))
    _log.info("admin.login.succeeded", client=client)
    redirect = web.HTTPSeeOther(target)
    set_session_cookie(redirect, session)
    raise redirect


async def logout(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    state.auth.sessions.drop(request.cookies.get(SESSION_COOKIE))
    redirect = web.HTTPSeeOther("/login")
    redirect.del_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    raise redirect


async def index(request: web.Request) -> web.StreamResponse:
    """The landing page: what the gateway is doing now, problems first."""
    state = state_of(request)
    view = await api.status_view(state)
    timeline = await pictures.timeline_drawing(state.store, view, state.now())
    return await page(request, "status.html", {"s": view, "timeline": timeline}, active="status")


# -- trust list ----------------------------------------------------------------------------------


def page_number(request: web.Request) -> int:
    try:
        return max(1, int(request.query.get("page", "1")))
    except ValueError:
        return 1


async def trust_page(request: web.Request) -> web.Response:
    state = state_of(request)
    now = state.now()
    kind = request.query.get("kind", "")
    if kind not in ("", "ca", "server"):
        kind = ""
    query = request.query.get("q", "").strip()[:200]
    snapshot = await state.call(state.store.snapshot)
    entries = api.filter_trust(snapshot.trust, kind=kind or None, status=None, now=now)
    if query:
        needle = query.lower()
        entries = [
            e
            for e in entries
            if needle in e.certificate.subject.lower()
            or needle in e.certificate.issuer.lower()
            or e.certificate.fingerprint.startswith(needle.replace(":", ""))
        ]
    entries.sort(key=lambda e: (e.kind.value, e.certificate.display_name.lower()))
    pages = max(1, math.ceil(len(entries) / PAGE_SIZE))
    number = min(page_number(request), pages)
    shown = entries[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    counts = {
        "all": len(snapshot.trust),
        "ca": sum(1 for e in snapshot.trust if e.kind is TrustKind.CA),
        "server": sum(1 for e in snapshot.trust if e.kind is TrustKind.SERVER),
    }
    rows = [
        {
            "fingerprint": e.certificate.fingerprint,
            "name": e.certificate.display_name,
            "issuer": e.certificate.issuer,
            "kind": e.kind.value,
            "source": e.source.value,
            "status": e.certificate.status_at(now).value,
            "not_after": render.iso(e.certificate.not_after),
        }
        for e in shown
    ]

    def link(n: int) -> str:
        params = {"page": str(n)}
        if kind:
            params["kind"] = kind
        if query:
            params["q"] = query
        return f"/trust?{urlencode(params)}"

    return await page(
        request,
        "trust.html",
        {
            "rows": rows,
            "kind": kind,
            "query": query,
            "matches": len(entries),
            "counts": counts,
            "page_number": number,
            "pages": pages,
            "prev_link": link(number - 1) if number > 1 else "",
            "next_link": link(number + 1) if number < pages else "",
            "max_upload": state.max_upload,
        },
        active="trust",
    )


async def trust_detail_page(request: web.Request) -> web.Response:
    state = state_of(request)
    fp = api.normalise_fingerprint(request.match_info["fingerprint"])
    entry = await state.call(state.store.get_trust, fp)
    details = render.trust_entry(entry, state.now(), details=True)
    picture = await pictures.chain_drawing(state.store, (entry.certificate,), None, state.now())
    return await page(
        request,
        "certificate.html",
        {
            "title": entry.certificate.display_name,
            "cert": details,
            "trust": True,
            "picture": picture,
        },
        active="trust",
    )


async def trust_upload_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await form_of(request)
    kind_text = form_text(form, "kind")
    kind = TrustKind(kind_text) if kind_text in ("ca", "server") else None
    files: list[tuple[str, bytes]] = []
    for value in form.getall("file", []):
        if hasattr(value, "file"):
            data = value.file.read(state.max_upload + 1)
            files.append((api.safe_filename(value.filename), data))
    if not files or not any(data for _, data in files):
        raise back(request, "/trust", "error", "Choose a certificate file to upload.")
    try:
        result, notes = await api.add_certificates(
            files=files, state=state, actor=principal_of(request).actor, kind=kind
        )
    except InputError as exc:
        raise back(request, "/trust", "error", f"Nothing was added: {exc}") from None
    parts = [f"{len(result.added)} certificate(s) added"]
    if result.already_present:
        parts.append(f"{len(result.already_present)} already in the trust list")
    message = "; ".join(parts) + "."
    if notes:
        message += " " + " ".join(notes)
    raise back(request, "/trust", "ok", message)


async def trust_remove_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await form_of(request)
    fp = api.normalise_fingerprint(request.match_info["fingerprint"])
    entry = await state.call(state.store.get_trust, fp)
    name = entry.certificate.display_name
    confirm = await needs_confirmation(
        request, form, f"Remove “{name}” from the trust list?", button="Remove"
    )
    if confirm is not None:
        return confirm
    await state.call(state.store.remove_trust, fp, actor=principal_of(request).actor)
    target = local_target(form_text(form, "back"), "/trust")
    raise back(request, target, "ok", f"“{name}” was removed from the trust list.")


async def trust_clear_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await form_of(request)
    confirm = await needs_confirmation(
        request,
        form,
        "Remove every certificate from the trust list? Connections to peers that are "
        "trusted only through them will fail until you trust them again.",
        button="Clear the trust list",
    )
    if confirm is not None:
        return confirm
    count = await state.call(state.store.clear_trust, actor=principal_of(request).actor)
    raise back(request, "/trust", "ok", f"{count} certificate(s) removed from the trust list.")


async def trust_restore_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    result = await state.call(state.store.restore_defaults, actor=principal_of(request).actor)
    raise back(
        request,
        "/trust",
        "ok",
        f"{len(result.added)} default CA certificate(s) restored; "
        f"{len(result.already_present)} were already there.",
    )


async def trust_accept_form(request: web.Request) -> web.StreamResponse:
    """Pin an (expired) trusted certificate ``accept``, as the invalid view offers."""
    state = state_of(request)
    fp = api.normalise_fingerprint(request.match_info["fingerprint"])
    entry = await state.call(state.store.get_trust, fp)
    pin_req = PinRequest(
        decision=PinDecision.ACCEPT,
        match=PinMatch.CERTIFICATE,
        fingerprint=fp,
        note="accepted from the invalid certificates view",
    )
    await state.call(state.store.add_pin, pin_req, actor=principal_of(request).actor)
    raise back(
        request,
        "/rejected",
        "ok",
        f"“{entry.certificate.display_name}” is accepted (pinned) even though it is "
        f"{entry.certificate.status_at(state.now()).value}.",
    )


# -- rejected / invalid ----------------------------------------------------------------------------


async def rejected_page(request: web.Request) -> web.Response:
    state = state_of(request)
    now = state.now()
    entries = await state.call(state.store.list_rejected)
    snapshot = await state.call(state.store.snapshot)
    pinned = {p.fingerprint for p in snapshot.pins if p.decision is PinDecision.ACCEPT}
    invalid = [
        {
            "fingerprint": e.certificate.fingerprint,
            "name": e.certificate.display_name,
            "kind": e.kind.value,
            "status": e.certificate.status_at(now).value,
            "not_after": render.iso(e.certificate.not_after),
        }
        for e in snapshot.trust
        if e.certificate.status_at(now) is not CertStatus.VALID
        and e.certificate.fingerprint not in pinned
    ]
    total = len(entries)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    number = min(page_number(request), pages)
    shown = entries[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    return await page(
        request,
        "rejected.html",
        {
            "chains": [render.rejected_entry(e, now) for e in shown],
            "total": total,
            "overridden": sum(1 for e in entries if e.overridden),
            "invalid": invalid,
            "page_number": number,
            "pages": pages,
            "prev_link": f"/rejected?page={number - 1}" if number > 1 else "",
            "next_link": f"/rejected?page={number + 1}" if number < pages else "",
        },
        active="rejected",
    )


async def rejected_detail_page(request: web.Request) -> web.Response:
    state = state_of(request)
    entry = await state.call(state.store.get_rejected, api.rejected_id(request))
    now = state.now()
    # The same sentence and fix `sipsgate probe` prints for each reason (one source).
    advice = [
        advise(str(r), chain=entry.chain, peer=entry.peer, now=now, rejected_id=entry.id)
        for r in entry.reasons
    ]
    picture = await pictures.chain_drawing(state.store, entry.chain, entry.peer, now)
    return await page(
        request,
        "rejected_detail.html",
        {
            "chain": render.rejected_entry(entry, now, details=True),
            "advice": advice,
            "picture": picture,
        },
        active="rejected",
    )


async def rejected_trust_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    chain_id = api.rejected_id(request)
    form = await form_of(request)
    chosen = [v for v in form.getall("fingerprint", []) if isinstance(v, str)]
    if not chosen:
        raise back(
            request, f"/rejected/{chain_id}", "error", "Select the certificates to trust first."
        )
    fingerprints = [api.normalise_fingerprint(v) for v in chosen]
    entry = await state.call(state.store.get_rejected, chain_id)
    try:
        api.refuse_out_of_date(entry, fingerprints, state.now())
    except ApiError as exc:
        raise back(request, f"/rejected/{chain_id}", "error", exc.message) from None
    try:
        result = await state.call(
            state.store.trust_rejected, chain_id, fingerprints, actor=principal_of(request).actor
        )
    except InputError as exc:
        raise back(request, f"/rejected/{chain_id}", "error", str(exc)) from None
    raise back(
        request,
        "/rejected",
        "ok",
        f"{len(result.added)} certificate(s) added to the trust list; the chain was removed "
        "from the rejected list.",
    )


async def _rejected_pin_form(request: web.Request, decision: PinDecision) -> web.StreamResponse:
    state = state_of(request)
    chain_id = api.rejected_id(request)
    form = await form_of(request)
    days_text = form_text(form, "days")
    expires_at: datetime | None = None
    if days_text:
        try:
            days = int(days_text)
        except ValueError:
            days = -1
        if not 1 <= days <= 3650:
            raise back(request, f"/rejected/{chain_id}", "error", "Days must be 1 to 3650.")
        expires_at = state.now() + timedelta(days=days)
    scope_text = form_text(form, "scope").strip()
    any_peer = form_text(form, "any_peer") == "on"
    if decision is PinDecision.ACCEPT and not scope_text and not any_peer:
        # An empty field used to mean "any peer": now that is an explicit choice.
        raise back(
            request,
            f"/rejected/{chain_id}",
            "error",
            "Enter the destination (host:port) this certificate is accepted for, or tick "
            "'any peer instead'. Nothing was changed.",
        )
    try:
        scope = api.parse_scope(None if any_peer else scope_text or None)
    except ValidationError as exc:
        raise back(request, f"/rejected/{chain_id}", "error", str(exc)) from None
    match = (
        PinMatch.PUBLIC_KEY if form_text(form, "match") == "public-key" else PinMatch.CERTIFICATE
    )
    await state.call(
        state.store.pin_rejected,
        chain_id,
        decision,
        actor=principal_of(request).actor,
        match=match,
        scope=scope,
        expires_at=expires_at,
    )
    verb = "accepted" if decision is PinDecision.ACCEPT else "rejected"
    raise back(
        request, "/rejected", "ok", f"The certificate is now {verb} (see Pins to undo this)."
    )


async def rejected_accept_form(request: web.Request) -> web.StreamResponse:
    return await _rejected_pin_form(request, PinDecision.ACCEPT)


async def rejected_reject_form(request: web.Request) -> web.StreamResponse:
    return await _rejected_pin_form(request, PinDecision.REJECT)


async def rejected_remove_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    chain_id = api.rejected_id(request)
    form = await form_of(request)
    confirm = await needs_confirmation(
        request, form, "Remove this chain from the rejected list?", button="Remove"
    )
    if confirm is not None:
        return confirm
    await state.call(state.store.remove_rejected, chain_id, actor=principal_of(request).actor)
    raise back(request, "/rejected", "ok", "The chain was removed from the rejected list.")


async def rejected_clear_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await form_of(request)
    confirm = await needs_confirmation(
        request, form, "Discard every rejected certificate chain?", button="Clear"
    )
    if confirm is not None:
        return confirm
    count = await state.call(state.store.clear_rejected, actor=principal_of(request).actor)
    raise back(request, "/rejected", "ok", f"{count} rejected chain(s) discarded.")


# -- pins -----------------------------------------------------------------------------------------


async def pins_page(request: web.Request) -> web.Response:
    state = state_of(request)
    now = state.now()
    snapshot = await state.call(state.store.snapshot)
    pins = sorted(snapshot.pins, key=lambda p: p.created_at, reverse=True)
    return await page(
        request,
        "pins.html",
        {"pins": [render.pin(p, now) for p in pins]},
        active="pins",
    )


async def pins_add_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await form_of(request)
    body: dict[str, Any] = {
        "decision": form_text(form, "decision"),
        "match": form_text(form, "match", "certificate") or "certificate",
        "note": form_text(form, "note"),
    }
    if form_text(form, "fingerprint"):
        body["fingerprint"] = form_text(form, "fingerprint")
    if form_text(form, "certificate"):
        body["certificate"] = form_text(form, "certificate")
    if form_text(form, "scope"):
        body["scope"] = form_text(form, "scope")
    if form_text(form, "expires_at"):
        body["expires_at"] = form_text(form, "expires_at")
    try:
        pin_req = api.pin_request(body, max_upload=state.max_upload)
        pin = await state.call(state.store.add_pin, pin_req, actor=principal_of(request).actor)
    except InputError as exc:
        raise back(request, "/pins", "error", f"The pin was not added: {exc}") from None
    raise back(request, "/pins", "ok", f"Pin {pin.id} ({pin.decision.value}) added.")


async def pins_remove_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await form_of(request)
    pid = api.pin_id(request)
    confirm = await needs_confirmation(
        request,
        form,
        f"Remove pin {pid}? The certificate is then judged normally again.",
        button="Remove pin",
    )
    if confirm is not None:
        return confirm
    await state.call(state.store.remove_pin, pid, actor=principal_of(request).actor)
    raise back(request, "/pins", "ok", f"Pin {pid} removed.")


# -- revocation ----------------------------------------------------------------------------------


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else ""


async def revocation_page(request: web.Request) -> web.Response:
    """Cached revocation sources (fetched or uploaded) with their dates and last fetch
    error, URLs that failed with nothing cached, and the CRL upload form."""
    state = state_of(request)
    sources = await state.call(state.store.list_revocation)
    settings = await state.call(state.store.get_settings)
    errors = api.revocation_errors(state)
    rows = [
        {
            "kind": s.kind.value,
            "source": s.source.value,
            "where": s.url or "uploaded",
            "issuer": s.issuer,
            "this_update": _when(s.this_update),
            "next_update": _when(s.next_update) or "none",
            "stale": s.next_update is not None and s.next_update < state.now(),
            "entries": s.entries,
            "error": errors.get(s.url or "", ""),
            "fingerprint": s.fingerprint,
            "uploaded": s.source is RevocationSource.UPLOADED,
        }
        for s in sources
    ]
    cached_urls = {s.url for s in sources if s.url}
    failing = sorted((url, why) for url, why in errors.items() if url not in cached_urls)
    return await page(
        request,
        "revocation.html",
        {
            "rows": rows,
            "failing": failing,
            "mode": settings.revocation.value,
            "max_crl": MAX_CRL_BYTES,
        },
        active="revocation",
    )


async def revocation_upload_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await form_of(request)
    upload: Any = form.get("file")
    data: bytes = upload.file.read(MAX_CRL_BYTES + 1) if hasattr(upload, "file") else b""
    if not data:
        raise back(request, "/revocation", "error", "Choose a CRL file to upload.")
    try:
        source = await state.call(
            state.store.put_revocation,
            data,
            kind=SourceKind.CRL,
            source=RevocationSource.UPLOADED,
            url=None,
            actor=principal_of(request).actor,
        )
    except InputError as exc:
        raise back(request, "/revocation", "error", f"The CRL was not stored: {exc}") from None
    raise back(
        request,
        "/revocation",
        "ok",
        f"The CRL of {source.issuer} was stored ({source.entries} revoked, next update "
        f"{_when(source.next_update) or 'none'}).",
    )


async def revocation_remove_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await form_of(request)
    fp = api.normalise_fingerprint(request.match_info["fingerprint"])
    confirm = await needs_confirmation(
        request,
        form,
        "Remove this uploaded CRL? Its issuer's certificates are then judged without it.",
        button="Remove CRL",
    )
    if confirm is not None:
        return confirm
    removed = await state.call(
        state.store.remove_uploaded_crl, fp, actor=principal_of(request).actor
    )
    raise back(request, "/revocation", "ok", f"The uploaded CRL of {removed.issuer} was removed.")


# -- settings --------------------------------------------------------------------------------------

_FLAGS = (
    "accept_all_certificates",
    "trust_on_first_use",
    "allow_wildcards",
    "close_flows_on_revoke",
)


async def settings_page(request: web.Request) -> web.Response:
    state = state_of(request)
    value = await state.call(state.store.get_settings)
    rejected = await state.call(state.store.list_rejected)
    provisioning = None
    last_at = ""
    if state.provisioning is not None:
        provisioning = await api.provisioning_status(state.provisioning)
        last = provisioning["last_result"]
        if last is not None:
            at = datetime.fromisoformat(last["at"]).astimezone(UTC)
            last_at = at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return await page(
        request,
        "settings.html",
        {
            "settings": render.settings(value),
            "overridden": sum(1 for r in rejected if r.overridden),
            "rejected_total": len(rejected),
            "provisioning": provisioning,
            "provisioning_last_at": last_at,
        },
        active="settings",
    )


async def settings_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await form_of(request)
    changes: dict[str, object] = {name: form_text(form, name) == "on" for name in _FLAGS}
    revocation = form_text(form, "revocation")
    if revocation:
        changes["revocation"] = revocation
    changes["http_auth_username"] = form_text(form, "http_auth_username")
    password = form_text(form, "http_auth_password")
    if form_text(form, "clear_password") == "on":
        changes["http_auth_password"] = ""
    elif password:
        changes["http_auth_password"] = password
    try:
        await state.call(state.store.update_settings, changes, actor=principal_of(request).actor)
    except InputError as exc:
        raise back(request, "/settings", "error", f"Nothing was changed: {exc}") from None
    raise back(request, "/settings", "ok", "Settings saved.")


def fetch_message(result: FetchResult) -> tuple[str, str]:
    """The flash message after *Fetch now*: its level and text."""
    if not result.ok:
        detail = result.errors[-1] if result.errors else "see the last result below"
        return "error", f"Provisioning fetch: {result.status.value}. {detail}"
    text = f"Provisioning fetch: {result.status.value}."
    if result.apply is not None:
        changed = len(result.apply.changes)
        added = len(result.apply.certificates_added)
        text += f" {changed} setting(s) changed, {added} certificate(s) added."
        if result.apply.unknown:
            text += f" {len(result.apply.unknown)} unknown name(s) ignored."
    return "ok", text


async def provisioning_fetch_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await form_of(request)
    force = form_text(form, "force") == "on"
    try:
        service = api.running_provisioning(state)
        result = await api.run_fetch(service, force=force)
    except ApiError as exc:
        raise back(request, "/settings", "error", exc.message) from None
    level, text = fetch_message(result)
    raise back(request, "/settings", level, text)


async def restore_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await form_of(request)
    if form_text(form, "understood") != "on":
        raise back(
            request,
            "/settings",
            "error",
            "Tick the box to confirm that the restore replaces the trust state.",
        )
    upload = form.get("file")
    if upload is None or not hasattr(upload, "file"):
        raise back(request, "/settings", "error", "Choose a backup file to restore.")
    data = upload.file.read(MAX_BACKUP_BYTES + 1)
    try:
        summary = await state.call(
            state.store.import_backup, data, actor=principal_of(request).actor
        )
    except InputError as exc:
        raise back(request, "/settings", "error", f"Nothing was restored: {exc}") from None
    raise back(
        request,
        "/settings",
        "ok",
        f"Restored {summary.trust} trusted certificate(s), {summary.pins} pin(s) and "
        f"{summary.rejected} rejected chain(s).",
    )


# -- audit ----------------------------------------------------------------------------------------


async def audit_page(request: web.Request) -> web.Response:
    state = state_of(request)
    before = api.query_int(request, "before_id", default=None, low=1, high=api.MAX_ID)
    events = await state.call(state.store.audit, limit=PAGE_SIZE, before_id=before)
    return await page(
        request,
        "audit.html",
        {
            "events": [render.audit_event(e) for e in events],
            "next_link": f"/audit?before_id={events[-1].id}" if len(events) == PAGE_SIZE else "",
            "first_link": "/audit" if before is not None else "",
        },
        active="audit",
    )


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def setup(app: web.Application) -> None:
    r = app.router
    ID = f"{{id:{api.ID_RE}}}"
    r.add_get("/", index)
    r.add_get("/login", login_form)
    r.add_post("/login", login_submit)
    r.add_post("/logout", logout)
    r.add_get("/trust", trust_page)
    r.add_post("/trust/upload", trust_upload_form)
    r.add_post("/trust/clear", trust_clear_form)
    r.add_post("/trust/restore-defaults", trust_restore_form)
    fp = f"{{fingerprint:{api.FP_RE}}}"
    r.add_get(f"/trust/{fp}", trust_detail_page)
    r.add_post(f"/trust/{fp}/remove", trust_remove_form)
    r.add_post(f"/trust/{fp}/accept", trust_accept_form)
    r.add_get("/rejected", rejected_page)
    r.add_post("/rejected/clear", rejected_clear_form)
    r.add_get(f"/rejected/{ID}", rejected_detail_page)
    r.add_post(f"/rejected/{ID}/trust", rejected_trust_form)
    r.add_post(f"/rejected/{ID}/accept", rejected_accept_form)
    r.add_post(f"/rejected/{ID}/reject", rejected_reject_form)
    r.add_post(f"/rejected/{ID}/remove", rejected_remove_form)
    r.add_get("/pins", pins_page)
    r.add_post("/pins", pins_add_form)
    r.add_post(f"/pins/{ID}/remove", pins_remove_form)
    r.add_get("/revocation", revocation_page)
    r.add_post("/revocation/upload", revocation_upload_form)
    r.add_post(f"/revocation/{fp}/remove", revocation_remove_form)
    r.add_get("/settings", settings_page)
    r.add_post("/settings", settings_form)
    r.add_post("/settings/restore", restore_form)
    r.add_post("/settings/provisioning/fetch", provisioning_fetch_form)
    r.add_get("/audit", audit_page)


__all__ = ["PAGE_SIZE", "setup"]
_ = (Sequence, _utc, flash_error)
