"""The Test connection page: the probe from the browser, its verdict explained."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from certstore import render
from gateway.admin import pictures
from gateway.admin.errors import ApiError
from gateway.admin.html import page
from gateway.admin.parsing import form_text, read_form
from gateway.admin.probing import parse_request, test_connection
from gateway.admin.state import principal_of, state_of
from gateway.tls.advice import advise, rule_sentence


async def probe_page(request: web.Request) -> web.Response:
    return await page(request, "probe.html", {"form": {"uri": "", "connect": ""}}, active="probe")


async def probe_form(request: web.Request) -> web.Response:
    state = state_of(request)
    form = await read_form(request)
    fields = {"uri": form_text(form, "uri"), "connect": form_text(form, "connect")}
    try:
        target = parse_request(fields["uri"], fields["connect"])
    except ApiError as exc:
        return await page(
            request,
            "probe.html",
            {"form": fields, "error": exc.message},
            active="probe",
            status=422,
        )
    test = await test_connection(state, target, principal_of(request).actor)
    result, now = test.result, state.now()
    context: dict[str, Any] = {"form": fields, "target": test.result.target, "test": test}
    if result.verdict is not None and result.peer is not None:
        verdict = result.verdict
        pin_id = verdict.matched_pin.id if verdict.matched_pin is not None else None
        context["rule"] = rule_sentence(verdict.rule, matched_pin_id=pin_id)
        context["advice"] = [
            advise(r, chain=result.chain, peer=result.peer, now=now, rejected_id=test.rejected_id)
            for r in verdict.reasons
        ]
        context["picture"] = await pictures.chain_drawing(
            state.store, result.chain, result.peer, now, title=f"Chain of {target.uri}"
        )
    if test.rejected_id is not None:
        entry = await state.call(state.store.get_rejected, test.rejected_id)
        context["entry"] = render.rejected_entry(entry, now, details=True)
    return await page(request, "probe.html", context, active="probe")


def setup(app: web.Application) -> None:
    app.router.add_get("/probe", probe_page)
    app.router.add_post("/probe", probe_form)
