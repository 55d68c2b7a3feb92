""" "Test this connection": ``sipsgate probe`` from the browser and the API.

The admin names a ``sips:`` or ``https://`` URI (and optionally the address to dial);
the gateway runs the probe's own code (:func:`gateway.tls.probe.run_probe`) through the
gateway's TLS connector, so the verdict is the one a real connection gets and a
rejection lands in the rejected list with the same actions. The probe may reach any
host the admin names (that is its purpose): it is an authenticated action, bounded in
time, and audited.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from certstore import render
from certstore.model import Actor
from certstore.sqlite import SqliteStore
from gateway.admin import api, pictures
from gateway.admin.app import API_PREFIX, AdminState, ApiError, principal_of, state_of
from gateway.admin.pages import form_of, form_text, page
from gateway.errors import TlsTimeout
from gateway.log import get_logger
from gateway.tls.advice import advise, rule_sentence
from gateway.tls.connector import TlsConnector
from gateway.tls.factory import build_connector
from gateway.tls.policy import TlsTarget, target_from_uri
from gateway.tls.probe import (
    CLIENT_VERDICT_WAIT,
    ProbeResult,
    as_json,
    follow_config,
    rejected_id,
    run_probe,
)

_log = get_logger(area="admin")

# Longest text accepted in either field (a URI or host:port is far shorter).
MAX_FIELD = 300


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionTest:
    """One probe run for an admin: the probe's result, and its rejected-list entry."""

    result: ProbeResult
    recorded: bool
    rejected_id: int | None
    source: str  # where the dialled address came from, as probe --json names it


def parse_request(uri: str, connect: str) -> TlsTarget:
    """The target of the form or JSON fields; a clear 422 when they are not usable."""
    uri, connect = uri.strip(), connect.strip()
    if not uri:
        raise ApiError(422, "invalid-uri", "Enter the URI to test, e.g. sips:sip.example.net:5061.")
    if len(uri) > MAX_FIELD or len(connect) > MAX_FIELD:
        raise ApiError(
            422, "invalid-uri", f"Keep the URI and the address under {MAX_FIELD} characters."
        )
    try:
        return target_from_uri(uri, connect or None)
    except ValueError as exc:
        message = str(exc).replace("--connect", "The address to dial")
        raise ApiError(422, "invalid-uri", message) from None


def _connector(state: AdminState) -> TlsConnector:
    if state.connector is not None:
        return state.connector
    if not isinstance(state.store, SqliteStore):  # pragma: no cover - the product's store
        raise ApiError(503, "no-connector", "This admin endpoint has no TLS connector.")
    return build_connector(state.config, state.store)


async def test_connection(state: AdminState, target: TlsTarget, actor: Actor) -> ConnectionTest:
    """Probe ``target`` once, bounded in time; audit who tested what and the outcome.

    Like ``sipsgate probe``, the configured upstream is dialled at
    ``sip.upstream_address``, so the test sees what the relay sees."""
    target, source = follow_config(target, state.config.sip)
    connector = await asyncio.to_thread(_connector, state)
    settings = connector.settings
    limit = settings.connect_timeout + settings.handshake_timeout + CLIENT_VERDICT_WAIT + 1.0
    try:
        async with asyncio.timeout(limit):
            result = await run_probe(connector, target)
    except TimeoutError:
        error = TlsTimeout(
            f"No answer from {target.destination} within {limit:g} s.", peer=target, timeout=limit
        )
        result = ProbeResult(target=target, error=error)
    verdict = result.verdict
    recorded = bool(connector.record and verdict is not None and verdict.should_record)
    entry_id = await state.call(rejected_id, state.store, result) if recorded else None
    host, port = target.address
    outcome = verdict.verdict.value if verdict is not None else "no-connection"
    await state.call(
        state.store.log_event,
        actor=actor,
        action="connection.test",
        target=target.uri,
        details={
            "dialled": f"{host}:{port}",
            "outcome": outcome,
            "reasons": [r.value for r in verdict.reasons] if verdict is not None else [],
            "error": str(result.error) if result.error is not None else None,
            "rejected_id": entry_id,
        },
    )
    _log.info("admin.connection.tested", uri=target.uri, outcome=outcome, actor=actor)
    return ConnectionTest(result=result, recorded=recorded, rejected_id=entry_id, source=source)


# -- API ---------------------------------------------------------------------------------------


async def probe_post(request: web.Request) -> web.Response:
    """``POST /api/v1/probe``: ``{"uri": ..., "connect": ...}`` → the ``probe --json`` view."""
    state = state_of(request)
    body = await api.read_json_object(request, limit=4096)
    unknown = sorted(set(body) - {"uri", "connect"})
    if unknown:
        noun = "field" if len(unknown) == 1 else "fields"
        raise ApiError(422, "invalid-field", f"Unknown {noun}: {', '.join(unknown)}.")
    uri, connect = body.get("uri", ""), body.get("connect")
    if not isinstance(uri, str):
        raise ApiError(422, "invalid-uri", "uri must be a string, e.g. sips:sip.example.net.")
    if connect is not None and not isinstance(connect, str):
        raise ApiError(422, "invalid-uri", "connect must be a string HOST:PORT, or null.")
    target = parse_request(uri, connect or "")
    test = await test_connection(state, target, principal_of(request).actor)
    doc: dict[str, Any] = as_json(
        test.result,
        state.now(),
        recorded=test.recorded,
        rejected_id=test.rejected_id,
        source=test.source,
    )
    doc["uri"] = target.uri
    return web.json_response(doc)


# -- page --------------------------------------------------------------------------------------


async def probe_page(request: web.Request) -> web.Response:
    return await page(request, "probe.html", {"form": {"uri": "", "connect": ""}}, active="probe")


async def probe_form(request: web.Request) -> web.Response:
    state = state_of(request)
    form = await form_of(request)
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
    r = app.router
    r.add_post(f"{API_PREFIX}/probe", probe_post)
    r.add_get("/probe", probe_page)
    r.add_post("/probe", probe_form)
