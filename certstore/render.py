"""Plain-data views of store values: the JSON shapes of DESIGN §7.

The admin API, the CLI's ``--json`` output and the probe all render through these
functions, so a field has one name everywhere. ``now`` is a parameter because a
certificate's ``status`` depends on it. Secrets never appear here: settings render
``http_auth_password_set``, never the password.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from certstore.model import (
    AddResult,
    AuditEvent,
    Certificate,
    Peer,
    Pin,
    RejectedChain,
    Settings,
    TrustEntry,
    Verdict,
)
from certstore.revocation import CachedSource

Json = dict[str, Any]


def visible(text: str, *, keep: str = "\n\t") -> str:
    """``text`` safe to show on a terminal or a page: nothing in it can move the cursor,
    change colours, reorder what follows or hide itself.

    Certificate names, host names and reasons come from peers. C0 controls become
    their Unicode control pictures (ESC → ␛, DEL → ␡); other characters that are
    not printable — C1 controls, bidi overrides and isolates, zero-width and other
    format characters, line and paragraph separators — are shown as ``\\uXXXX``. The
    characters in ``keep`` (newline and tab by default) pass unchanged.
    """
    if text.isprintable():
        return text
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch.isprintable() or ch in keep:
            out.append(ch)
        elif code < 0x20:
            out.append(chr(0x2400 + code))
        elif code == 0x7F:
            out.append("\u2421")
        elif unicodedata.category(ch) == "Zs":
            out.append(" ")  # a space of another width: harmless as a plain space
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def iso(value: datetime | None) -> str | None:
    """UTC ISO 8601 with a ``Z``: what every timestamp in the API looks like."""
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def certificate_summary(cert: Certificate, now: datetime) -> Json:
    return {
        "fingerprint": cert.fingerprint,
        "subject": cert.subject,
        "issuer": cert.issuer,
        "common_name": cert.common_name,
        "not_before": iso(cert.not_before),
        "not_after": iso(cert.not_after),
        "status": cert.status_at(now).value,
        "is_ca": cert.is_ca,
        "self_signed": cert.self_signed,
    }


def certificate_details(cert: Certificate, now: datetime) -> Json:
    out = certificate_summary(cert, now)
    out.update(
        {
            "version": cert.version,
            "subject_fields": [list(f) for f in cert.subject_fields],
            "issuer_fields": [list(f) for f in cert.issuer_fields],
            "serial": cert.serial,
            "fingerprint_sha1": cert.fingerprint_sha1,
            "public_key_fingerprint": cert.spki_fingerprint,
            "public_key": {
                "type": cert.public_key_type,
                "size": cert.public_key_size,
                "curve": cert.public_key_curve,
                "weak": cert.weak_key,
            },
            "signature_algorithm": cert.signature_algorithm,
            "signature_hash": cert.signature_hash,
            "weak_signature": cert.weak_signature,
            "subject_alt_names": {
                "dns": list(cert.san_dns),
                "ip": list(cert.san_ip),
                "uri": list(cert.san_uri),
                "email": list(cert.san_email),
            },
            "key_usage": None if cert.key_usage is None else list(cert.key_usage),
            "extended_key_usage": (
                None if cert.extended_key_usage is None else list(cert.extended_key_usage)
            ),
            "basic_constraints": (
                {"is_ca": cert.is_ca, "path_length": cert.path_length}
                if cert.basic_constraints_present
                else None
            ),
            "subject_key_id": cert.subject_key_id,
            "authority_key_id": cert.authority_key_id,
        }
    )
    return out


def trust_entry(entry: TrustEntry, now: datetime, *, details: bool = False) -> Json:
    render = certificate_details if details else certificate_summary
    out = render(entry.certificate, now)
    out.update(
        {"kind": entry.kind.value, "source": entry.source.value, "added_at": iso(entry.added_at)}
    )
    return out


def peer(value: Peer) -> Json:
    return {
        "host": value.host,
        "port": value.port,
        "transport": value.transport.value,
        "sni": value.sni,
    }


def rejected_entry(entry: RejectedChain, now: datetime, *, details: bool = False) -> Json:
    render = certificate_details if details else certificate_summary
    return {
        "id": entry.id,
        "chain": [render(c, now) for c in entry.chain],
        "reasons": [r.value for r in entry.reasons],
        "peer": peer(entry.peer),
        "first_seen": iso(entry.first_seen),
        "last_seen": iso(entry.last_seen),
        "count": entry.count,
        "overridden": entry.overridden,
        "previous": None if entry.previous is None else render(entry.previous, now),
        "address": entry.address,
        "seen_by": list(entry.seen_by),
    }


def pin(value: Pin, now: datetime) -> Json:
    return {
        "id": value.id,
        "decision": value.decision.value,
        "match": value.match.value,
        "fingerprint": value.fingerprint,
        "scope": value.scope,
        "expires_at": iso(value.expires_at),
        "active": value.is_active(now),
        "note": value.note,
        "created_at": iso(value.created_at),
        "created_by": value.created_by,
    }


def settings(value: Settings) -> Json:
    return {
        "accept_all_certificates": value.accept_all_certificates,
        "trust_on_first_use": value.trust_on_first_use,
        "allow_wildcards": value.allow_wildcards,
        "close_flows_on_revoke": value.close_flows_on_revoke,
        "revocation": value.revocation.value,
        "http_auth_username": value.http_auth_username,
        "http_auth_password_set": value.http_auth_password_set,
    }


def revocation_source(value: CachedSource) -> Json:
    """One cached revocation source (API, CLI ``--json``)."""
    return {
        "key": value.key,
        "kind": value.kind.value,
        "source": value.source.value,
        "url": value.url,
        "issuer": value.issuer,
        "this_update": iso(value.this_update),
        "next_update": iso(value.next_update),
        "fetched_at": iso(value.fetched_at),
        "size": value.size,
        "entries": value.entries,
        "fingerprint": value.fingerprint,
    }


def add_result(result: AddResult, now: datetime) -> Json:
    return {
        "added": [certificate_summary(c, now) for c in result.added],
        "already_present": [certificate_summary(c, now) for c in result.already_present],
    }


def audit_event(event: AuditEvent) -> Json:
    return {
        "id": event.id,
        "at": iso(event.at),
        "actor": event.actor,
        "interface": event.interface,
        "action": event.action,
        "target": event.target,
        "details": event.details,
        "gateway": event.gateway,
    }


def verdict(value: Verdict, chain: Iterable[Certificate], target: Peer, now: datetime) -> Json:
    return {
        "verdict": value.verdict.value,
        "rule": value.rule.value,
        "reasons": [r.value for r in value.reasons],
        "findings": [
            {"reason": f.reason.value, "message": f.message, "depth": f.depth}
            for f in value.findings
        ],
        "leaf_fingerprint": value.leaf_fingerprint,
        "matched_pin": None if value.matched_pin is None else pin(value.matched_pin, now),
        "anchor": None if value.anchor is None else certificate_summary(value.anchor, now),
        "peer": peer(target),
        "chain": [certificate_summary(c, now) for c in chain],
    }
