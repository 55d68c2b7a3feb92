"""The rejected / invalid pages: the list, one chain with its reasons explained, and
what to do about it (trust the CA, accept for this destination, reject, remove)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from aiohttp import web

from certstore import render
from certstore.errors import InputError, ValidationError
from certstore.model import CertStatus, PinDecision, PinMatch
from gateway.admin import actions, pictures
from gateway.admin.errors import ApiError
from gateway.admin.html import PAGE_SIZE, back, needs_confirmation, page, plural
from gateway.admin.parsing import (
    ID_RE,
    form_text,
    normalise_fingerprint,
    page_number,
    parse_scope,
    read_form,
    rejected_id,
)
from gateway.admin.state import principal_of, state_of
from gateway.tls.advice import advise


async def rejected_page(request: web.Request) -> web.Response:
    state = state_of(request)
    now = state.now()
    view = await actions.rejected_view(state)
    entries = view.open
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
            # Kept for the record, shown apart: the peer is trusted or accepted now.
            "resolved": [render.rejected_entry(e, now) for e in view.closed[:PAGE_SIZE]],
            "resolved_total": len(view.closed),
            "overridden": view.overridden,
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
    entry = await state.call(state.store.get_rejected, rejected_id(request))
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
            "resolved": await actions.rejected_resolved(state, entry),
            "picture": picture,
        },
        active="rejected",
    )


async def rejected_trust_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    chain_id = rejected_id(request)
    form = await read_form(request)
    chosen = [v for v in form.getall("fingerprint", []) if isinstance(v, str)]
    if not chosen:
        raise back(
            request, f"/rejected/{chain_id}", "error", "Select the certificates to trust first."
        )
    fingerprints = [normalise_fingerprint(v) for v in chosen]
    try:
        result = await actions.trust_rejected(
            state, chain_id, fingerprints, principal_of(request).actor
        )
    except ApiError as exc:
        raise back(request, f"/rejected/{chain_id}", "error", exc.message) from None
    except InputError as exc:
        raise back(request, f"/rejected/{chain_id}", "error", str(exc)) from None
    raise back(
        request,
        "/rejected",
        "ok",
        f"{plural(len(result.added), 'certificate')} added to the trust list; the chain was "
        "removed from the rejected list.",
    )


async def _rejected_pin_form(request: web.Request, decision: PinDecision) -> web.StreamResponse:
    state = state_of(request)
    chain_id = rejected_id(request)
    form = await read_form(request)
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
        scope = parse_scope(None if any_peer else scope_text or None)
    except ValidationError as exc:
        raise back(request, f"/rejected/{chain_id}", "error", str(exc)) from None
    match = (
        PinMatch.PUBLIC_KEY if form_text(form, "match") == "public-key" else PinMatch.CERTIFICATE
    )
    await actions.pin_rejected(
        state,
        chain_id,
        decision,
        principal_of(request).actor,
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
    chain_id = rejected_id(request)
    form = await read_form(request)
    confirm = await needs_confirmation(
        request, form, "Remove this chain from the rejected list?", button="Remove"
    )
    if confirm is not None:
        return confirm
    await actions.remove_rejected(state, chain_id, principal_of(request).actor)
    raise back(request, "/rejected", "ok", "The chain was removed from the rejected list.")


async def rejected_clear_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await read_form(request)
    confirm = await needs_confirmation(
        request, form, "Discard every rejected certificate chain?", button="Clear"
    )
    if confirm is not None:
        return confirm
    count = await actions.clear_rejected(state, principal_of(request).actor)
    raise back(request, "/rejected", "ok", f"{plural(count, 'rejected chain')} discarded.")


def setup(app: web.Application) -> None:
    r = app.router
    ID = f"{{id:{ID_RE}}}"
    r.add_get("/rejected", rejected_page)
    r.add_post("/rejected/clear", rejected_clear_form)
    r.add_get(f"/rejected/{ID}", rejected_detail_page)
    r.add_post(f"/rejected/{ID}/trust", rejected_trust_form)
    r.add_post(f"/rejected/{ID}/accept", rejected_accept_form)
    r.add_post(f"/rejected/{ID}/reject", rejected_reject_form)
    r.add_post(f"/rejected/{ID}/remove", rejected_remove_form)
