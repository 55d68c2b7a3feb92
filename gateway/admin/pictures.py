"""The pictures the pages show, drawn from the store's current state.

Thin glue between the store and the pure :mod:`gateway.admin.chainview` and
:mod:`gateway.admin.drawing`: the checks behind a chain picture verify signatures, so
they run in a worker thread, off the event loop the SIP relay shares.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from markupsafe import Markup

from certstore.model import Certificate, Peer, TrustSource
from certstore.store import CertStore
from gateway.admin.chainview import chain_picture, timeline_items
from gateway.admin.drawing import chain_svg, timeline_svg

# The timeline shows at most this many trust anchors (soonest expiry first).
TIMELINE_ANCHORS = 12


def _chain(
    store: CertStore, chain: Sequence[Certificate], peer: Peer | None, now: datetime, title: str
) -> Markup:
    picture = chain_picture(chain, peer, now, store.snapshot())
    # chain_svg escapes every text it writes: the markup is safe to embed as is.
    return Markup(chain_svg(picture, title=title))  # noqa: S704


async def chain_drawing(
    store: CertStore,
    chain: Sequence[Certificate],
    peer: Peer | None,
    now: datetime,
    *,
    title: str = "Certificate chain",
) -> Markup:
    """The chain as the trust decision sees it now, as inline SVG for a page."""
    return await asyncio.to_thread(_chain, store, chain, peer, now, title)


def _timeline(store: CertStore, status: Mapping[str, Any], now: datetime) -> Markup:
    snapshot = store.snapshot()
    # Anchors in use: the ones someone added (the builtin set is long and rarely expires).
    anchors = sorted(
        (e.certificate for e in snapshot.trust if e.source is not TrustSource.BUILTIN),
        key=lambda c: c.not_after,
    )[:TIMELINE_ANCHORS]
    pins = [
        (f"#{p.id} {p.decision.value} {p.scope or 'any peer'}", p.expires_at)
        for p in snapshot.pins
        if p.expires_at is not None
    ]
    identity = store.device_identity()
    upstream = status.get("upstream") or {}
    cert = upstream.get("certificate")
    provider = (
        (str(cert["subject"]), datetime.fromisoformat(str(cert["not_after"]))) if cert else None
    )
    items = timeline_items(
        anchors=anchors,
        pins=pins,
        device=identity.certificate if identity is not None else None,
        provider=provider,
    )
    return Markup(timeline_svg(items, now))  # noqa: S704


async def timeline_drawing(store: CertStore, status: Mapping[str, Any], now: datetime) -> Markup:
    """The status page's expiry timeline: trust anchors added by an admin or by
    provisioning, pins that expire, the device identity and the provider's certificate."""
    return await asyncio.to_thread(_timeline, store, status, now)
