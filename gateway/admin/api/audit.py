"""``/api/v1/audit`` (the audit log, newest first) and ``/api/v1/expiring``."""

from __future__ import annotations

from aiohttp import web

from certstore import render
from gateway.admin.parsing import MAX_AUDIT_LIMIT, MAX_ID, query_int
from gateway.admin.responses import expiring_item
from gateway.admin.state import API_PREFIX, state_of


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


def setup(app: web.Application) -> None:
    app.router.add_get(f"{API_PREFIX}/audit", audit)
    app.router.add_get(f"{API_PREFIX}/expiring", expiring)
