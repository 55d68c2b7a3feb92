"""How values are written in SQLite columns, and read back.

Times are text in one form (UTC, microseconds: lexical order is time order, so SQL can
compare them); certificate chains are one blob; enums are their values; reasons and
settings are JSON. A row that does not read back is a damaged store
(:class:`StorageError`); certificates are parsed through the store's
:class:`CertificateCache`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from certstore.backup import timestamp
from certstore.certcache import CertificateCache
from certstore.errors import StorageError
from certstore.model import (
    Certificate,
    Peer,
    Pin,
    PinDecision,
    PinMatch,
    Reason,
    RejectedChain,
    Transport,
    TrustEntry,
    TrustKind,
    TrustSource,
)

PIN_COLUMNS = "id, decision, match, fingerprint, scope, expires_at, note, created_at, created_by"
TRUST_COLUMNS = "fingerprint, der, kind, source, added_at"
REJECTED_COLUMNS = (
    "id, chain, reasons, peer_host, peer_port, peer_transport, peer_sni, "
    "first_seen, last_seen, count, overridden, previous_der, address, seen_by"
)


def ts(value: datetime) -> str:
    return timestamp(value)


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def pack_chain(ders: Iterable[bytes]) -> bytes:
    """Several DER certificates in one blob: each as a 4-byte big-endian length + DER."""
    return b"".join(struct.pack(">I", len(der)) + der for der in ders)


def unpack_chain(blob: bytes) -> list[bytes]:
    """The inverse of :func:`pack_chain`; raises ValueError on a damaged blob."""
    out: list[bytes] = []
    pos = 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            raise ValueError("truncated length")
        (length,) = struct.unpack_from(">I", blob, pos)
        pos += 4
        if length == 0 or pos + length > len(blob):
            raise ValueError("truncated certificate")
        out.append(bytes(blob[pos : pos + length]))
        pos += length
    if not out:
        raise ValueError("empty chain")
    return out


def reasons_text(reasons: Sequence[Reason]) -> str:
    return json.dumps([r.value for r in reasons])


def seen_by_text(seen_by: Sequence[str]) -> str:
    return json.dumps(list(seen_by))


def seen_by_of(text: object) -> tuple[str, ...]:
    """The gateway names of a ``seen_by`` column (a JSON list of strings)."""
    names = json.loads(str(text))
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"seen_by is not a list of names: {text!r}")
    return tuple(names)


class RowCodec:
    """Rows to values for one store; ``where`` names it in error messages."""

    def __init__(self, certificates: CertificateCache, where: str) -> None:
        self.certs = certificates
        self.where = where

    def chain(self, blob: bytes) -> tuple[Certificate, ...]:
        try:
            ders = unpack_chain(blob)
        except ValueError as exc:
            raise StorageError(
                f"{self.where} holds a damaged certificate chain "
                f"({exc}); restore the data directory from a backup."
            ) from exc
        return tuple(self.certs.stored(der) for der in ders)

    def certificate(self, der: bytes | None) -> Certificate | None:
        return None if der is None else self.certs.stored(der)

    def trust_entry(self, row: Sequence[Any]) -> TrustEntry:
        """A row of :data:`TRUST_COLUMNS`."""
        fingerprint, der, kind, source, added_at = row
        return TrustEntry(
            certificate=self.certs.stored(der, str(fingerprint)),
            kind=TrustKind(kind),
            source=TrustSource(source),
            added_at=dt(str(added_at)),
        )

    @staticmethod
    def pin(row: Sequence[Any]) -> Pin:
        """A row of :data:`PIN_COLUMNS`."""
        pin_id, decision, match, fingerprint, scope, expires_at, note, created_at, created_by = row
        return Pin(
            id=int(pin_id),
            decision=PinDecision(decision),
            match=PinMatch(match),
            fingerprint=str(fingerprint),
            scope=None if scope is None else str(scope),
            expires_at=None if expires_at is None else dt(str(expires_at)),
            note=str(note),
            created_at=dt(str(created_at)),
            created_by=str(created_by),
        )

    def rejected(self, row: Sequence[Any]) -> RejectedChain:
        """A row of :data:`REJECTED_COLUMNS`."""
        (
            entry_id,
            chain,
            reasons,
            host,
            port,
            transport,
            sni,
            first_seen,
            last_seen,
            count,
            overridden,
            previous_der,
            address,
            seen_by,
        ) = row
        return RejectedChain(
            id=int(entry_id),
            chain=self.chain(chain),
            reasons=tuple(Reason(r) for r in json.loads(str(reasons))),
            peer=Peer(
                host=str(host),
                port=int(port),
                transport=Transport(transport),
                sni=None if sni is None else str(sni),
            ),
            first_seen=dt(str(first_seen)),
            last_seen=dt(str(last_seen)),
            count=int(count),
            overridden=bool(overridden),
            previous=self.certificate(previous_der),
            address=None if address is None else str(address),
            seen_by=seen_by_of(seen_by),
        )
