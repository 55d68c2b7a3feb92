"""One probe: dial a TLS target through the connector, note its decision, and describe
it as ``sipsgate probe --json`` and the admin's "Test this connection" show it.

Shared by the CLI (:mod:`gateway.cli.probe`, which adds the human output and the exit
codes) and the admin endpoint (:mod:`gateway.admin.probing`), so both say the
same thing about the same connection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from certstore import render
from certstore.model import Certificate, Peer, Verdict
from certstore.store import CertStore
from gateway.config import SipSection
from gateway.errors import (
    ClientCertificateRefused,
    TlsConnectError,
    TlsError,
    TlsHandshakeError,
    TlsTimeout,
    TrustRejected,
)
from gateway.tls.advice import advise
from gateway.tls.connector import TlsConnector
from gateway.tls.policy import TlsTarget, target_from_uri
from gateway.tls.trust import peer_for

# How long the probe waits for a TLS 1.3 server's verdict on the client certificate.
CLIENT_VERDICT_WAIT = 2.0


# Where the dialled address came from, as ``--json`` names it (``address_source``).
SOURCE_URI = "uri"
SOURCE_CONNECT = "--connect"
SOURCE_UPSTREAM_ADDRESS = "sip.upstream_address"


def follow_config(target: TlsTarget, sip: SipSection) -> tuple[TlsTarget, str]:
    """Dial ``sip.upstream_address`` when ``target`` is the configured upstream, as the
    relay does, so that the command its log and 503 Warning name reproduces what it saw.
    """
    if target.connect_host is not None or not sip.upstream or not sip.upstream_address:
        return target, SOURCE_URI if target.connect_host is None else SOURCE_CONNECT
    try:
        upstream = target_from_uri(sip.upstream, sip.upstream_address)
    except ValueError:  # the config check refuses it at load; nothing to follow
        return target, SOURCE_URI
    same = (
        target.scheme == upstream.scheme
        and target.host.rstrip(".").lower() == upstream.host.rstrip(".").lower()
        and target.port == upstream.port
    )
    if not same:
        return target, SOURCE_URI
    return (
        replace(target, connect_host=upstream.connect_host, connect_port=upstream.connect_port),
        SOURCE_UPSTREAM_ADDRESS,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    """What one probe found: a decision (with chain), or the connection error."""

    target: TlsTarget
    verdict: Verdict | None = None
    chain: tuple[Certificate, ...] = ()
    peer: Peer | None = None
    error: TlsError | None = None
    tls_version: str | None = None
    cipher: str | None = None
    decided_at: datetime | None = None


async def run_probe(connector: TlsConnector, target: TlsTarget) -> ProbeResult:
    """Open one connection through ``connector``, note the decision, close it cleanly."""
    try:
        transport, _ = await connector.create_connection(asyncio.Protocol, target)
    except TrustRejected as exc:
        verdict = exc.verdict
        if not isinstance(verdict, Verdict):  # pragma: no cover - the store policy's own
            raise
        return ProbeResult(
            target=target,
            verdict=verdict,
            chain=tuple(c for c in exc.chain if isinstance(c, Certificate)),
            peer=peer_for(target),
        )
    except TlsError as exc:
        return ProbeResult(target=target, error=exc)
    try:
        # TLS 1.3: the server judges our client certificate after the handshake.
        await transport.confirm(min(CLIENT_VERDICT_WAIT, connector.settings.handshake_timeout))
    except TlsError as exc:
        await transport.wait_closed()
        return ProbeResult(target=target, error=exc)
    check = transport.get_extra_info("tls_check")
    info = transport.get_extra_info("ssl_object")
    version, cipher = info.version(), info.cipher()[0]
    transport.close()
    await transport.wait_closed()
    verdict = check.verdict
    assert isinstance(verdict, Verdict)
    return ProbeResult(
        target=target,
        verdict=verdict,
        chain=tuple(check.chain),
        peer=check.peer,
        tls_version=version,
        cipher=cipher,
    )


def rejected_id(store: CertStore, result: ProbeResult) -> int | None:
    if result.verdict is None or not result.chain:
        return None
    leaf = result.chain[0].fingerprint
    for entry in store.list_rejected():
        if entry.chain and entry.chain[0].fingerprint == leaf and entry.peer == result.peer:
            return entry.id
    return None


def error_code(error: TlsError) -> str:
    if isinstance(error, ClientCertificateRefused):
        return "client-certificate-refused"
    if isinstance(error, TlsTimeout):
        return "timeout"
    if isinstance(error, TlsConnectError):
        return "connect"
    if isinstance(error, TlsHandshakeError):
        return "handshake"
    return "tls"


def as_json(
    result: ProbeResult,
    now: datetime,
    *,
    recorded: bool,
    rejected_id: int | None,
    source: str = SOURCE_URI,
) -> dict[str, Any]:
    target = result.target
    address = {"host": target.address[0], "port": target.address[1], "source": source}
    if result.error is not None or result.verdict is None or result.peer is None:
        error = result.error
        return {
            "verdict": None,
            "error": {
                "code": error_code(error) if error else "tls",
                "message": str(error),
                "openssl_reasons": list(getattr(error, "openssl_reasons", ())),
            },
            "peer": render.peer(peer_for(target)),
            "address": address,
        }
    out = render.verdict(result.verdict, result.chain, result.peer, now)
    out["address"] = address
    out["advice"] = [
        {
            "reason": a.reason,
            "message": a.sentence,
        }
        for a in (
            advise(r, chain=result.chain, peer=result.peer, now=now, rejected_id=rejected_id)
            for r in result.verdict.reasons
        )
    ]
    out["revocation"] = [revocation_line(result.verdict, d) for d in range(len(result.chain))]
    out["recorded"] = recorded
    out["rejected_id"] = rejected_id
    out["tls"] = {"version": result.tls_version, "cipher": result.cipher}
    return out


def revocation_line(verdict: Verdict, depth: int) -> str:
    """The revocation status of the chain's certificate at ``depth`` and where it came
    from, as the decision learned it."""
    status = next((r for r in verdict.revocation if r.depth == depth), None)
    if status is None:
        return "not checked (a trust anchor, revocation off, or not on the validated path)"
    if status.status.value == "unknown":
        return "unknown: " + "; ".join(status.notes)
    source = status.source.value if status.source is not None else "?"
    where = f" {status.url}" if status.url else ""
    dated = f", thisUpdate {render.iso(status.this_update)}" if status.this_update else ""
    nxt = f", nextUpdate {render.iso(status.next_update)}" if status.next_update else ""
    text = f"{status.status.value} (from {source}{where}{dated}{nxt})"
    if status.revoked is not None:
        reason = f", reason {status.revoked.reason}" if status.revoked.reason else ""
        text += f", revoked at {render.iso(status.revoked.revoked_at)}{reason}"
    return text
