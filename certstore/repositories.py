"""What a storage backend provides: one repository per part of the trust state, all
bound to one transaction, and the backend that opens, migrates and runs transactions.

:class:`certstore.facade.RepositoryStore` implements the whole
:class:`certstore.store.CertStore` protocol over these interfaces: validation, audit
events, the rules of :mod:`certstore.recording` and :mod:`certstore.checks`, the
snapshot and its caches live there once. A backend (SQLite today) implements only
storage: schema and migrations, connections and transactions, row codecs, queries.

Repositories never commit, never audit, never bump the generation on their own and
never read a clock: the facade decides, inside the transaction it was given. A
repository raises :class:`StorageError` for a damaged row; every other failure of the
database is mapped to :class:`StorageError` by the backend's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from certstore.model import (
    Actor,
    AuditEvent,
    Certificate,
    Pin,
    PinMatch,
    RejectedChain,
    Settings,
    TrustEntry,
    TrustKind,
    TrustSource,
)
from certstore.recording import Recorded
from certstore.revocation import RevocationSource, SourceKind
from certstore.store import DeviceIdentity, PendingCsr, PinRequest

T = TypeVar("T")


class MetaRepository(Protocol):
    def generation(self) -> int:
        """The change counter of the handshake view (trust list, pins, settings,
        revocation information)."""
        ...

    def bump(self) -> None: ...


class SettingsRepository(Protocol):
    def get(self) -> Settings:
        """The stored settings over the defaults; StorageError when they are damaged."""
        ...

    def put(self, settings: Settings, names: Iterable[str]) -> None:
        """Store the values of ``names`` taken from ``settings``."""
        ...


class TrustRepository(Protocol):
    def marks(self) -> tuple[int, int]:
        """(row count, highest row id). Rows are never updated in place and ids never
        reused, so the marks change whenever the trust list does."""
        ...

    def entries(self, known: Callable[[str], Certificate | None]) -> list[TrustEntry]:
        """The whole list in insertion order; ``known`` gives certificates already
        parsed, so only the DER of the others is read."""
        ...

    def entries_after(self, row_id: int) -> list[TrustEntry]:
        """Entries added after the row ``row_id``, in insertion order."""
        ...

    def fingerprints(self) -> set[str]: ...
    def get(self, fingerprint: str) -> TrustEntry | None: ...
    def insert(
        self, cert: Certificate, *, kind: TrustKind, source: TrustSource, at: datetime
    ) -> bool:
        """Add the certificate; False (nothing written) when it is already trusted."""
        ...

    def delete(self, fingerprint: str) -> TrustEntry | None: ...
    def clear(self) -> int: ...
    def der_of(self, match: PinMatch, fingerprint: str) -> bytes | None:
        """DER of a trusted certificate with this certificate or public key fingerprint."""
        ...


class PinRepository(Protocol):
    def all(self) -> list[Pin]:
        """Every pin, in creation order."""
        ...

    def get(self, pin_id: int) -> Pin | None: ...
    def identical(self, request: PinRequest) -> Pin | None:
        """The oldest pin with the same decision, match, fingerprint, scope and expiry."""
        ...

    def insert(
        self, request: PinRequest, *, created_by: str, at: datetime, der: bytes | None
    ) -> Pin: ...
    def delete(self, pin_id: int) -> Pin | None: ...
    def oldest(self, *, scope: str | None, created_by: str) -> Pin | None: ...
    def newest_certificate(self, *, scope: str, created_by: str) -> bytes | None:
        """DER of the certificate kept with the newest such pin that has one."""
        ...

    def certificate_der(self, pin_id: int) -> bytes | None: ...
    def certificates(self) -> dict[int, bytes]:
        """The certificates kept beside pins, by pin id."""
        ...


class RejectedRepository(Protocol):
    def find(self, chain_key: str) -> Recorded | None: ...
    def insert(self, chain_key: str, entry: RejectedChain) -> int:
        """Store a new entry (its ``id`` is ignored) and return its id."""
        ...

    def update(self, entry: RejectedChain) -> None:
        """Write what a repeat changes (count, times, reasons, peer, ``overridden``,
        previous certificate, address) to the entry with ``entry.id``."""
        ...

    def count(self) -> int: ...
    def evict_oldest(self, count: int) -> None:
        """Remove ``count`` entries, seen longest ago (then lowest id) first."""
        ...

    def newest_first(self) -> list[RejectedChain]:
        """Newest ``last_seen`` first (ties: highest id first)."""
        ...

    def all_by_id(self) -> list[RejectedChain]: ...
    def get(self, rejected_id: int) -> RejectedChain | None: ...
    def delete(self, rejected_id: int) -> str | None:
        """Remove the entry; its leaf fingerprint, or None when there was none."""
        ...

    def clear(self) -> int: ...
    def leaf_der(self, match: PinMatch, fingerprint: str) -> bytes | None:
        """DER of a recorded leaf with this certificate or public key fingerprint."""
        ...


class DeviceRepository(Protocol):
    def identity(self) -> DeviceIdentity | None: ...
    def put_identity(self, identity: DeviceIdentity) -> bool:
        """Store the identity; True when it replaced one."""
        ...

    def csr(self) -> PendingCsr | None: ...
    def put_csr(self, csr: PendingCsr) -> bool:
        """Store the request; True when it replaced one."""
        ...

    def delete_csr(self) -> bool: ...


class AuditRepository(Protocol):
    def append(
        self,
        *,
        at: datetime,
        actor: Actor,
        action: str,
        target: str,
        details: str,
        gateway: str | None = None,
    ) -> int:
        """Append one event (written by the gateway ``gateway``); its id (ids only grow)."""
        ...

    def drop_through(self, event_id: int) -> None:
        """Remove the events with ids up to ``event_id`` (the log's bound)."""
        ...

    def page(self, *, before_id: int, limit: int) -> list[AuditEvent]:
        """At most ``limit`` events with ids below ``before_id``, newest first."""
        ...

    def pin_interfaces(self) -> dict[int, str]:
        """Pin id -> the interface of the event that made it (``pin.add``, or an accept
        or reject of a rejected chain); a later event for an id wins."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RevocationRow:
    """One cached revocation source as stored (the DER is read separately)."""

    key: str
    kind: SourceKind
    source: RevocationSource
    url: str | None
    fingerprint: str
    fetched_at: datetime


class RevocationRepository(Protocol):
    def rows(self) -> list[RevocationRow]: ...
    def der(self, key: str) -> bytes | None: ...
    def get(self, key: str) -> RevocationRow | None: ...
    def uploaded(self, fingerprint: str) -> RevocationRow | None:
        """The uploaded source with this fingerprint."""
        ...

    def put(self, row: RevocationRow, der: bytes) -> None:
        """Insert or replace the source with ``row.key``."""
        ...

    def touch(self, key: str, at: datetime) -> None:
        """Record that the same information was fetched again at ``at``."""
        ...

    def delete(self, keys: Sequence[str]) -> int: ...


class BackupRepository(Protocol):
    def replace(
        self,
        *,
        trust: Sequence[TrustEntry],
        pins: Sequence[Pin],
        pin_certificates: Mapping[int, Certificate],
        rejected: Sequence[RejectedChain],
    ) -> None:
        """Replace the trust list, the pins (with their ids) and the rejected list (with
        their ids) by a restored backup's."""
        ...


class Repositories(Protocol):
    """The repositories of one transaction."""

    @property
    def meta(self) -> MetaRepository: ...
    @property
    def settings(self) -> SettingsRepository: ...
    @property
    def trust(self) -> TrustRepository: ...
    @property
    def pins(self) -> PinRepository: ...
    @property
    def rejected(self) -> RejectedRepository: ...
    @property
    def device(self) -> DeviceRepository: ...
    @property
    def audit(self) -> AuditRepository: ...
    @property
    def revocation(self) -> RevocationRepository: ...
    @property
    def backup(self) -> BackupRepository: ...


class SchemaHooks(Protocol):
    """What the facade adds when a backend creates or upgrades its schema, inside the
    same transaction."""

    def created(
        self, repos: Repositories, *, schema_version: int, target: str, at: datetime
    ) -> None:
        """Seed a new store (its generation, 1, is already there)."""
        ...

    def upgraded(
        self,
        repos: Repositories,
        *,
        from_version: int,
        to_version: int,
        target: str,
        at: datetime,
    ) -> None: ...


class Backend(Protocol):
    """Storage for one store: opened once, then transactions until closed."""

    @property
    def where(self) -> str:
        """The store as error messages name it ("The certificate store ...")."""
        ...

    def open(self, hooks: SchemaHooks, now: Callable[[], datetime]) -> None:
        """Create or upgrade the schema (calling ``hooks`` in that transaction)."""
        ...

    def generation(self) -> int:
        """The current generation, as cheaply as the backend can read it."""
        ...

    def read(self, what: str, body: Callable[[Repositories], T]) -> T:
        """Run ``body`` in one read transaction; ``what`` says what for error messages."""
        ...

    def write(self, what: str, body: Callable[[Repositories], T]) -> T:
        """Run ``body`` in one write transaction: all of it is committed or nothing."""
        ...

    def close(self) -> None: ...
