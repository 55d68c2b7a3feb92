"""The Pins page: accept and reject pins, added and removed."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from certstore import render
from certstore.errors import InputError
from gateway.admin import actions
from gateway.admin.html import back, needs_confirmation, page
from gateway.admin.parsing import ID_RE, form_text, pin_id, pin_request, read_form
from gateway.admin.state import principal_of, state_of


async def pins_page(request: web.Request) -> web.Response:
    state = state_of(request)
    now = state.now()
    snapshot = await state.call(state.store.snapshot)
    origins = await state.call(state.store.pin_origins)
    pins = sorted(snapshot.pins, key=lambda p: p.created_at, reverse=True)
    rows = []
    for pin in pins:
        origin = origins.get(pin.id)
        cert = origin.certificate if origin is not None else None
        rows.append(
            {
                **render.pin(pin, now),
                "subject": cert.subject if cert is not None else "",
                "name": cert.display_name if cert is not None else "",
                "origin": actions.pin_origin(pin, origin.interface if origin else None),
            }
        )
    return await page(request, "pins.html", {"pins": rows}, active="pins")


async def pins_add_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await read_form(request)
    body: dict[str, Any] = {
        "decision": form_text(form, "decision"),
        "match": form_text(form, "match", "certificate") or "certificate",
        "note": form_text(form, "note"),
    }
    for name in ("fingerprint", "certificate", "scope", "expires_at"):
        if form_text(form, name):
            body[name] = form_text(form, name)
    try:
        pin_req = pin_request(body, max_upload=state.max_upload)
        pin = await actions.add_pin(state, pin_req, principal_of(request).actor)
    except InputError as exc:
        raise back(request, "/pins", "error", f"The pin was not added: {exc}") from None
    raise back(request, "/pins", "ok", f"Pin {pin.id} ({pin.decision.value}) added.")


async def pins_remove_form(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    form = await read_form(request)
    pid = pin_id(request)
    confirm = await needs_confirmation(
        request,
        form,
        f"Remove pin {pid}? The certificate is then judged normally again.",
        button="Remove pin",
    )
    if confirm is not None:
        return confirm
    await actions.remove_pin(state, pid, principal_of(request).actor)
    raise back(request, "/pins", "ok", f"Pin {pid} removed.")


def setup(app: web.Application) -> None:
    app.router.add_get("/pins", pins_page)
    app.router.add_post("/pins", pins_add_form)
    app.router.add_post(f"/pins/{{id:{ID_RE}}}/remove", pins_remove_form)
