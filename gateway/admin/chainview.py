"""What the chain picture shows, from the same checks the trust decision makes.

Pure: a chain, a peer, the time and a trust snapshot in, a :class:`ChainPicture` out.
The path is built and checked by :func:`certstore.pathvalidation.validate_path` and the
name by :func:`certstore.identity.identity_matches` (the decision's own steps), so the
link the picture marks is the one the decision failed on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from certstore.identity import identity_matches
from certstore.model import Certificate, Peer, Reason, Transport
from certstore.pathvalidation import validate_path
from certstore.snapshot import TrustSnapshot
from gateway.admin.drawing import ChainPicture, Link, Node, TimelineItem

# Reasons drawn on a link rather than on a certificate's box.
_LINK_REASONS = frozenset({Reason.UNKNOWN_ISSUER, Reason.NAME_MISMATCH, Reason.BAD_SIGNATURE})


def destination_uri(peer: Peer) -> str:
    """The peer as the URI an operator types: ``sips:host:port`` or ``https://host:port``."""
    host = f"[{peer.host}]" if ":" in peer.host else peer.host
    if peer.transport is Transport.SIPS:
        return f"sips:{host}:{peer.port}"
    return f"https://{host}:{peer.port}"


def _name(cert: Certificate) -> str:
    return cert.common_name or cert.subject or "(no name)"


def _validity(cert: Certificate, now: datetime) -> tuple[str, str | None]:
    if now > cert.not_after:
        return f"expired {cert.not_after:%Y-%m-%d}", "expired"
    if now < cert.not_before:
        return f"valid only from {cert.not_before:%Y-%m-%d}", "not yet valid"
    return f"valid until {cert.not_after:%Y-%m-%d}", None


def _title(index: int, size: int, cert: Certificate, anchored: bool) -> str:
    if anchored and index == size - 1:
        return "Trust anchor (on the trust list)"
    if index == 0:
        return "Server certificate"
    return "Root CA (sent by the server)" if cert.self_signed else "Intermediate CA"


def chain_picture(
    chain: Sequence[Certificate], peer: Peer | None, now: datetime, snapshot: TrustSnapshot
) -> ChainPicture:
    """Destination → server certificate → intermediates → trust anchor, each box and
    link marked with what the decision finds wrong with it (``peer`` None: no
    destination box, e.g. for a certificate on the trust list)."""
    nodes: list[Node] = []
    links: list[Link] = []
    if peer is not None:
        nodes.append(Node(kind="destination", title="Destination", name=destination_uri(peer)))
    if not chain:
        nodes.append(Node(kind="missing", title="No certificate", name="the server sent none"))
        links.append(Link(label="presents", problem=str(Reason.NO_CERTIFICATE)))
        return ChainPicture(nodes=tuple(nodes), links=tuple(links))
    result = validate_path(chain, now, snapshot)
    path = result.path
    anchored = result.anchor is not None
    by_depth: dict[int, list[Reason]] = {}
    for finding in result.findings:
        if finding.depth is not None:
            by_depth.setdefault(finding.depth, []).append(finding.reason)
    if peer is not None:
        leaf = path[0]
        named = identity_matches(
            leaf, peer.host, peer.transport, allow_wildcards=snapshot.settings.allow_wildcards
        )
        links.append(
            Link(
                label=f"is {peer.host} named in it?" if not named else f"names {peer.host}",
                problem=None if named else "name mismatch",
            )
        )
    sent = {c.fingerprint for c in chain}
    for index, cert in enumerate(path):
        detail, dated = _validity(cert, now)
        if anchored and index == len(path) - 1 and cert.fingerprint not in sent:
            detail += " · from the trust list"
        others = [
            str(r)
            for r in dict.fromkeys(by_depth.get(index, ()))
            if r not in _LINK_REASONS and r not in (Reason.EXPIRED, Reason.NOT_YET_VALID)
        ]
        problems = ([dated] if dated else []) + others
        nodes.append(
            Node(
                kind="anchor" if anchored and index == len(path) - 1 else "certificate",
                title=_title(index, len(path), cert, anchored),
                name=_name(cert),
                detail=detail,
                problem=", ".join(problems) or None,
                ref=cert.fingerprint,
            )
        )
        if index + 1 < len(path):
            bad = Reason.BAD_SIGNATURE in by_depth.get(index, ())
            links.append(Link(label="issued by", problem="bad signature" if bad else None))
    if not anchored:
        top = path[-1]
        if top.self_signed:
            # The server's own root is not on the trust list.
            label, problem = "is this root trusted?", "unknown issuer"
            missing = Node(
                kind="missing",
                title="Trust list: no match",
                name=_name(top),
                detail="this root is not on the trust list",
            )
        else:
            # The server sent no CA certificate at all: most often the intermediate it
            # should send is missing. A CA whose issuer is unknown: a CA to trust.
            problem = "unknown issuer" if top.is_ca else "missing intermediate"
            label = "issued by"
            issuer = dict(top.issuer_fields).get("CN") or top.issuer or "(no name)"
            missing = Node(
                kind="missing",
                title="Issuer not sent, not on the trust list",
                name=issuer,
                detail="add this CA, or have the server send it",
            )
        links.append(Link(label=label, problem=problem))
        nodes.append(missing)
    return ChainPicture(nodes=tuple(nodes), links=tuple(links))


def timeline_items(
    *,
    anchors: Sequence[Certificate],
    pins: Sequence[tuple[str, datetime]],
    device: Certificate | None,
    provider: tuple[str, datetime] | None,
) -> list[TimelineItem]:
    """The rows of the status page's expiry timeline."""
    items = [
        TimelineItem(
            role="Trust anchor", name=_name(c), not_after=c.not_after, not_before=c.not_before
        )
        for c in anchors
    ]
    items += [TimelineItem(role="Pin", name=name, not_after=until) for name, until in pins]
    if device is not None:
        items.append(
            TimelineItem(
                role="Device identity",
                name=_name(device),
                not_after=device.not_after,
                not_before=device.not_before,
            )
        )
    if provider is not None:
        items.append(
            TimelineItem(role="Provider certificate", name=provider[0], not_after=provider[1])
        )
    return items
