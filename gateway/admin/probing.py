""" "Test this connection": ``sipsgate probe`` run by the admin, for the page and the API.

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

from certstore.facade import RepositoryStore
from certstore.model import Actor
from gateway.admin.errors import ApiError
from gateway.admin.state import AdminState
from gateway.errors import TlsTimeout
from gateway.log import get_logger
from gateway.tls.connector import TlsConnector
from gateway.tls.factory import build_connector
from gateway.tls.policy import TlsTarget, target_from_uri
from gateway.tls.probe import (
    CLIENT_VERDICT_WAIT,
    ProbeResult,
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
    if not isinstance(state.store, RepositoryStore):  # pragma: no cover - the product's store
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
