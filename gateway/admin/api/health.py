"""``/healthz`` (liveness) and ``/readyz`` (readiness): public, for supervisors."""

from __future__ import annotations

import time

from aiohttp import web

from certstore.errors import CertStoreError
from gateway.admin.actions import readiness, store_note
from gateway.admin.state import state_of


async def healthz(request: web.Request) -> web.Response:
    state = state_of(request)
    try:
        snapshot = await state.call(state.store.snapshot)
    except CertStoreError as exc:
        return web.json_response({"status": "unavailable", "reason": str(exc)}, status=503)
    view: dict[str, object] = {
        "status": "ok",
        "uptime_seconds": round(time.monotonic() - state.started, 1),
        "generation": snapshot.generation,
    }
    note = store_note(state)
    if note is not None:
        # Alive and deciding, on the last snapshot: fail static, said in the detail.
        view["detail"] = note
    return web.json_response(view)


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 while the SIP relay runs (``ready``, or ``degraded`` with a
    ``reason`` when another part failed or the upstream cannot be reached or is
    rejected), else 503."""
    ready, view = readiness(state_of(request))
    return web.json_response(view, status=200 if ready else 503)


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
