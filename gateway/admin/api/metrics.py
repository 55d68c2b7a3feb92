"""``/metrics``: Prometheus text, with gauges of the trust state set when read."""

from __future__ import annotations

from aiohttp import web

from gateway.admin import actions
from gateway.admin.responses import METRICS_CONTENT_TYPE
from gateway.admin.state import STATE, state_of

# Gauges of the trust state, set when /metrics is read.
STATE_GAUGES = {
    "sipsgate_trust_entries": "Certificates in the trust list.",
    "sipsgate_pins": "Accept and reject pins.",
    "sipsgate_rejected_chains": "Chains in the rejected list.",
    "sipsgate_rejected_chains_overridden": (
        "Rejected chains accept-all lets through now that would otherwise be refused."
    ),
}


async def metrics(request: web.Request) -> web.Response:
    state = state_of(request)
    snapshot = await state.call(state.store.snapshot)
    rejected = await actions.rejected_view(state)
    for name, value in (
        ("sipsgate_trust_entries", len(snapshot.trust)),
        ("sipsgate_pins", len(snapshot.pins)),
        ("sipsgate_rejected_chains", len(rejected.entries)),
        ("sipsgate_rejected_chains_overridden", rejected.overridden),
    ):
        state.registry.gauge(name, STATE_GAUGES[name]).set(value)
    return web.Response(
        text=state.registry.render(),
        headers={"Content-Type": METRICS_CONTENT_TYPE},
    )


def register_gauges(app: web.Application) -> None:
    state = app[STATE]
    for name, help_text in STATE_GAUGES.items():
        state.registry.gauge(name, help_text)


def setup(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
