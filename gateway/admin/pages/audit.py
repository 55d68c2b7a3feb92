"""The Audit log page, newest first."""

from __future__ import annotations

from aiohttp import web

from certstore import render
from gateway.admin.audit_text import event_view
from gateway.admin.html import PAGE_SIZE, page
from gateway.admin.parsing import MAX_ID, query_int
from gateway.admin.state import state_of


async def audit_page(request: web.Request) -> web.Response:
    state = state_of(request)
    before = query_int(request, "before_id", default=None, low=1, high=MAX_ID)
    events = await state.call(state.store.audit, limit=PAGE_SIZE, before_id=before)
    return await page(
        request,
        "audit.html",
        {
            "events": [event_view(render.audit_event(e)) for e in events],
            "next_link": f"/audit?before_id={events[-1].id}" if len(events) == PAGE_SIZE else "",
            "first_link": "/audit" if before is not None else "",
        },
        active="audit",
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/audit", audit_page)
