"""The store itself, over any backend: :class:`RepositoryStore` implements
:class:`certstore.store.CertStore` on the repositories of :mod:`certstore.repositories`.

Everything a backend must not decide twice lives here: checking requests
(:mod:`certstore.checks`), what a handshake records (:mod:`certstore.recording`), which
changes are audited and which bump the generation, seeding a new store, and the
handshake view with its caches.

Every mutation is one backend write transaction that also writes its audit event and,
when the change affects the handshake view, bumps the generation; a call that raises
changes nothing.

The handshake view
    :meth:`RepositoryStore.snapshot` reads the generation (the backend's cheapest
    read) and returns the cached :class:`TrustSnapshot` when it is unchanged.
    Otherwise it rebuilds inside one read transaction, so the generation and the rows
    it caches match. Certificates are reused from the previous snapshot and from a
    bounded cache keyed by fingerprint; only new DER is fetched and parsed. The trust
    list, which may hold 10,000 entries, is only read whole the first time: afterwards
    new rows are read by id, removals found by fingerprint, and the indexes of the
    previous snapshot are copied and patched instead of rebuilt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self, TypeVar

from certstore import backup, checks, recording
from certstore.builtin import builtin_certificates
from certstore.certcache import CertificateCache
from certstore.errors import Conflict, InputError, NotFound, ValidationError
from certstore.expiry import check_window, expiring_items
from certstore.model import (
    FIRST_USE_ACTOR,
    Actor,
    AddResult,
    AuditEvent,
    Certificate,
    CertStatus,
    Peer,
    Pin,
    PinDecision,
    PinMatch,
    RejectedChain,
    Rule,
    Settings,
    TrustEntry,
    TrustKind,
    TrustSource,
    Verdict,
)
from certstore.repositories import Backend, Repositories, RevocationRow
from certstore.revocation import (
    EMPTY_FACTS,
    CachedSource,
    Crl,
    OcspResponse,
    RevocationFacts,
    RevocationSource,
    SourceKind,
    describe_source,
    read_source,
)
from certstore.snapshot import TrustSnapshot, patch_trust
from certstore.store import (
    CertStore,
    DeviceIdentity,
    ExpiringItem,
    PendingCsr,
    PinOrigin,
    PinRequest,
    ProvisionOutcome,
    RestoreSummary,
)
from certstore.validation import (
    SETTING_NAMES,
    apply_settings_changes,
    normalize_fingerprint,
    normalize_scope,
    validate_aware,
)

T = TypeVar("T")

DEFAULT_REJECTED_LIMIT = 1000
DEFAULT_AUDIT_LIMIT = 100_000
SYSTEM_ACTOR = Actor(name="sipsgate", interface="store")
FIRST_USE_AUDIT_ACTOR = Actor(name=FIRST_USE_ACTOR, interface="gateway")
# Who records a handshake when the caller does not say (the running gateway).
GATEWAY_AUDIT_ACTOR = Actor(name="gateway", interface="gateway")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Cached:
    """The cached snapshot and the trust marks (row count, highest id) it was built from."""

    snapshot: TrustSnapshot
    trust_count: int
    trust_max_id: int


class RepositoryStore:
    """The trust state over a :class:`Backend`; implements :class:`CertStore`.

    ``rejected_limit`` bounds the rejected list (oldest ``last_seen`` evicted first),
    ``audit_limit`` the audit log (oldest events dropped). ``clock`` stamps changes
    (``added_at``, ``created_at``, audit times) and computes statuses. ``certificates``
    is the cache the backend's row codecs parse through. ``gateway`` is the name of the
    gateway using the store (``gateway.name``): it is kept on the audit events written
    and in the ``seen_by`` list of the rejected chains recorded. The backend is opened (schema
    created or upgraded) here; on failure it is closed again.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        certificates: CertificateCache,
        rejected_limit: int = DEFAULT_REJECTED_LIMIT,
        clock: Callable[[], datetime] = utc_now,
        audit_limit: int = DEFAULT_AUDIT_LIMIT,
        gateway: str | None = None,
    ) -> None:
        check_limits(rejected_limit=rejected_limit, audit_limit=audit_limit)
        self._backend = backend
        self._gateway = gateway
        self._certs = certificates
        self._rejected_limit = rejected_limit
        self._audit_limit = audit_limit
        self._clock = clock
        self._cached: _Cached | None = None
        self._rebuild_lock = threading.Lock()
        # Parsed revocation sources by fingerprint: a snapshot rebuild re-reads only new ones.
        self._revocation_cache: dict[str, Crl | OcspResponse] = {}
        try:
            backend.open(_Seeder(self), self._now)
        except BaseException:
            backend.close()
            raise

    def close(self) -> None:
        """Close the backend. Later calls raise :class:`StorageError`."""
        self._backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- shared helpers -----------------------------------------------------------------

    def _now(self) -> datetime:
        return validate_aware(self._clock(), field="clock")

    def _audit(
        self,
        repos: Repositories,
        actor: Actor,
        action: str,
        target: str,
        details: Mapping[str, object],
        at: datetime | None = None,
    ) -> None:
        last = repos.audit.append(
            at=at or self._now(),
            actor=actor,
            action=action,
            target=target,
            details=checks.audit_text(details),
            gateway=self._gateway,
        )
        if last > self._audit_limit:
            repos.audit.drop_through(last - self._audit_limit)

    def _write(self, what: str, body: Callable[[Repositories], T]) -> T:
        return self._backend.write(what, body)

    # -- the handshake view ---------------------------------------------------------------

    def generation(self) -> int:
        """The change counter of the handshake view (trust list, pins, settings)."""
        return self._backend.generation()

    def snapshot(self) -> TrustSnapshot:
        cached = self._cached
        if cached is not None and cached.snapshot.generation == self.generation():
            return cached.snapshot
        with self._rebuild_lock:
            fresh = self._backend.read("reading the trust state", self._build_snapshot)
            if (
                self._cached is None
                or fresh.snapshot.generation >= self._cached.snapshot.generation
            ):
                self._cached = fresh
            return fresh.snapshot

    def _known_certificate(
        self, previous: TrustSnapshot | None
    ) -> Callable[[str], Certificate | None]:
        known: Mapping[str, TrustEntry] = previous.trust_by_fingerprint if previous else {}

        def lookup(fingerprint: str) -> Certificate | None:
            old = known.get(fingerprint)
            return old.certificate if old is not None else self._certs.get(fingerprint)

        return lookup

    def _build_snapshot(self, repos: Repositories) -> _Cached:
        generation = repos.meta.generation()
        cached = self._cached
        if cached is not None and cached.snapshot.generation == generation:
            return cached
        count, max_id = repos.trust.marks()
        settings = repos.settings.get()
        pins = repos.pins.all()
        revocation = self._revocation_facts(repos)
        if cached is None or max_id < cached.trust_max_id:
            previous = cached.snapshot if cached is not None else None
            snap = TrustSnapshot.build(
                generation=generation,
                settings=settings,
                trust=repos.trust.entries(self._known_certificate(previous)),
                pins=pins,
                revocation=revocation,
            )
            return _Cached(snapshot=snap, trust_count=count, trust_max_id=max_id)
        # Pins and their indexes, built the one way TrustSnapshot builds them.
        pin_part = TrustSnapshot.build(
            generation=generation, settings=settings, trust=(), pins=pins
        )
        trust_fields: dict[str, Any] = {}
        if (count, max_id) != (cached.trust_count, cached.trust_max_id):
            trust_fields = patch_trust(
                cached.snapshot,
                added=repos.trust.entries_after(cached.trust_max_id),
                count_before=cached.trust_count,
                count=count,
                present=repos.trust.fingerprints,
            )
        snap = replace(
            cached.snapshot,
            generation=generation,
            settings=settings,
            pins=pin_part.pins,
            pins_by_fingerprint=pin_part.pins_by_fingerprint,
            first_use_scopes=pin_part.first_use_scopes,
            revocation=revocation,
            **trust_fields,
        )
        return _Cached(snapshot=snap, trust_count=count, trust_max_id=max_id)

    def _revocation_facts(self, repos: Repositories) -> RevocationFacts:
        rows = repos.revocation.rows()
        if not rows:
            self._revocation_cache.clear()
            return EMPTY_FACTS
        cache = self._revocation_cache
        parsed: list[Crl | OcspResponse] = []
        for row in rows:
            item = cache.get(row.fingerprint)
            if item is None:
                der = repos.revocation.der(row.key)
                if der is None:
                    continue
                try:
                    item = read_source(der, kind=row.kind, source=row.source, url=row.url)
                except (InputError, ValueError):
                    continue  # checked when stored; unreadable now means no information
            parsed.append(item)
        self._revocation_cache = {p.fingerprint: p for p in parsed}
        return RevocationFacts.build(
            crls=[p for p in parsed if isinstance(p, Crl)],
            ocsp=[p for p in parsed if isinstance(p, OcspResponse)],
        )

    def record_handshake(
        self,
        verdict: Verdict,
        chain: Sequence[Certificate],
        peer: Peer,
        now: datetime,
        *,
        actor: Actor | None = None,
        address: str | None = None,
    ) -> RejectedChain | Pin | None:
        """Record an untrusted or overridden chain, or create the first-use pin.

        A repeat of a recorded chain (same certificates, :func:`recording.chain_key`)
        is merged into its entry (:func:`recording.repeat_entry`); only a new entry is
        audited. When the list grows beyond ``rejected_limit`` the entries seen longest
        ago are evicted in the same transaction. At most ``MAX_RECORDED_CHAIN_CERTS``
        certificates (``MAX_RECORDED_CHAIN_BYTES``) of a chain are kept, the leaf
        always. A first-use verdict for a destination that already has a first-use pin
        (two handshakes raced) returns that pin.
        """
        now = validate_aware(now, field="now")
        actor = actor or GATEWAY_AUDIT_ACTOR
        if not chain:
            return None
        if verdict.rule is Rule.FIRST_USE:
            leaf = chain[0]
            destination = normalize_scope(peer.destination)
            # The pin's name marks it as a first-use pin; the interface says who connected.
            pin_actor = Actor(name=FIRST_USE_ACTOR, interface=actor.interface)
            return self._write(
                "recording a first-use pin",
                lambda repos: self._first_use_pin(repos, leaf, destination, now, pin_actor),
            )
        if not verdict.should_record:
            return None
        seen = recording.sighting(
            verdict,
            chain,
            peer,
            now,
            address=address,
            previous=verdict.previous,
            gateway=self._gateway,
        )
        self._certs.remember(*seen.chain)

        def body(repos: Repositories) -> RejectedChain:
            current = seen
            if recording.needs_first_use_certificate(verdict):
                der = repos.pins.newest_certificate(
                    scope=seen.destination, created_by=FIRST_USE_ACTOR
                )
                if der is not None:
                    current = replace(seen, previous=self._certs.stored(der))
            existing = repos.rejected.find(current.key)
            if existing is not None:
                entry = recording.repeat_entry(existing, current)
                repos.rejected.update(entry)
                return entry
            entry_id = repos.rejected.insert(current.key, recording.first_entry(0, current))
            evicted = recording.excess(repos.rejected.count(), self._rejected_limit)
            if evicted:
                repos.rejected.evict_oldest(evicted)
            self._audit(
                repos,
                actor,
                "rejected.record",
                str(entry_id),
                {
                    "leaf": current.chain[0].fingerprint,
                    "subject": current.chain[0].subject,
                    "peer": current.destination,
                    "reasons": [r.value for r in current.reasons],
                    "overridden": current.overridden,
                    "evicted": evicted,
                    "address": current.address,
                },
                now,
            )
            return recording.first_entry(entry_id, current)

        return self._write("recording a rejected certificate chain", body)

    def _first_use_pin(
        self,
        repos: Repositories,
        leaf: Certificate,
        destination: str | None,
        now: datetime,
        actor: Actor = FIRST_USE_AUDIT_ACTOR,
    ) -> Pin:
        existing = repos.pins.oldest(scope=destination, created_by=FIRST_USE_ACTOR)
        if existing is not None:
            return existing
        request = recording.first_use_pin(leaf, destination)
        return self._insert_pin(repos, request, actor, now, action="pin.add")

    # -- trust list -----------------------------------------------------------------------

    def list_trust(
        self, *, kind: TrustKind | None = None, status: CertStatus | None = None
    ) -> tuple[TrustEntry, ...]:
        """The trust list, oldest first; expired certificates stay until removed.

        ``status`` filters by the status at the store's clock (``expired`` and
        ``not-yet-valid`` entries make the "invalid" view).
        """
        entries = self.snapshot().trust
        if kind is not None:
            entries = tuple(e for e in entries if e.kind is TrustKind(kind))
        if status is not None:
            now = self._now()
            entries = tuple(
                e for e in entries if e.certificate.status_at(now) is CertStatus(status)
            )
        return entries

    def status_of(self, certificate: Certificate) -> CertStatus:
        """A certificate's status at the store's clock."""
        return certificate.status_at(self._now())

    def get_trust(self, fingerprint: str) -> TrustEntry:
        fp = normalize_fingerprint(fingerprint)
        entry = self._backend.read("reading the trust list", lambda repos: repos.trust.get(fp))
        if entry is None:
            raise NotFound("trusted certificate", fp)
        return entry

    def _insert_trust(
        self,
        repos: Repositories,
        certificates: Sequence[Certificate],
        source: TrustSource,
        kind: TrustKind | None,
        now: datetime,
    ) -> AddResult:
        added: list[Certificate] = []
        present: list[Certificate] = []
        for cert in dict.fromkeys(certificates):
            entry_kind = kind or (TrustKind.CA if cert.is_ca else TrustKind.SERVER)
            new = repos.trust.insert(cert, kind=entry_kind, source=source, at=now)
            (added if new else present).append(cert)
        self._certs.remember(*added)
        return AddResult(added=tuple(added), already_present=tuple(present))

    def _audit_trust_added(
        self,
        repos: Repositories,
        actor: Actor,
        action: str,
        source: TrustSource,
        result: AddResult,
        now: datetime,
    ) -> None:
        self._audit(
            repos,
            actor,
            action,
            result.added[0].fingerprint
            if len(result.added) == 1
            else f"{len(result.added)} certificates",
            {
                "source": source.value,
                "added": [c.fingerprint for c in result.added],
                "already_present": len(result.already_present),
            },
            now,
        )

    def _add_trust(
        self,
        certificates: Sequence[Certificate],
        source: TrustSource,
        actor: Actor,
        kind: TrustKind | None,
        action: str,
    ) -> AddResult:
        checks.certificates_only(certificates)
        source = TrustSource(source)
        kind = None if kind is None else TrustKind(kind)

        def body(repos: Repositories) -> AddResult:
            now = self._now()
            result = self._insert_trust(repos, certificates, source, kind, now)
            if result.added:
                repos.meta.bump()
                self._audit_trust_added(repos, actor, action, source, result, now)
            return result

        return self._write("adding certificates to the trust list", body)

    def add_trust(
        self,
        certificates: Sequence[Certificate],
        *,
        source: TrustSource,
        actor: Actor,
        kind: TrustKind | None = None,
    ) -> AddResult:
        """Add certificates; ``kind`` defaults to ``ca`` for CA certificates, else ``server``.

        Certificates already trusted keep their kind and source and are reported in
        ``already_present``; when nothing is new, nothing is written or audited.
        """
        return self._add_trust(certificates, source, checks.check_actor(actor), kind, "trust.add")

    def restore_defaults(self, *, actor: Actor) -> AddResult:
        """Re-add every builtin CA certificate that is missing from the trust list."""
        return self._add_trust(
            builtin_certificates(),
            TrustSource.BUILTIN,
            checks.check_actor(actor),
            None,
            "trust.restore-defaults",
        )

    def remove_trust(self, fingerprint: str, *, actor: Actor) -> TrustEntry:
        fp = normalize_fingerprint(fingerprint)
        checks.check_actor(actor)

        def body(repos: Repositories) -> TrustEntry:
            entry = repos.trust.delete(fp)
            if entry is None:
                raise NotFound("trusted certificate", fp)
            repos.meta.bump()
            self._audit(
                repos,
                actor,
                "trust.remove",
                fp,
                {"subject": entry.certificate.subject, "source": entry.source.value},
            )
            return entry

        return self._write("removing a certificate from the trust list", body)

    def clear_trust(self, *, actor: Actor) -> int:
        checks.check_actor(actor)

        def body(repos: Repositories) -> int:
            removed = repos.trust.clear()
            if removed:
                repos.meta.bump()
                self._audit(repos, actor, "trust.clear", "trust", {"removed": removed})
            return removed

        return self._write("clearing the trust list", body)

    # -- pins -------------------------------------------------------------------------------

    def list_pins(self) -> tuple[Pin, ...]:
        return self.snapshot().pins

    def get_pin(self, pin_id: int) -> Pin:
        checked = checks.check_id(pin_id, "pin")
        pin = self._backend.read("reading a pin", lambda repos: repos.pins.get(checked))
        if pin is None:
            raise NotFound("pin", pin_id)
        return pin

    def pin_certificate(self, pin_id: int) -> Certificate | None:
        """The certificate a pin was made from, when the store knows it."""
        pin = self.get_pin(pin_id)
        return self._backend.read(
            "reading a pin", lambda repos: self._known_pin_certificate(repos, pin)
        )

    def pin_origins(self) -> dict[int, PinOrigin]:
        """Every pin's certificate (when known) and the interface it was made through."""

        def body(repos: Repositories) -> dict[int, PinOrigin]:
            interfaces = repos.audit.pin_interfaces()
            return {
                pin.id: PinOrigin(
                    certificate=self._known_pin_certificate(repos, pin),
                    interface=interfaces.get(pin.id),
                )
                for pin in repos.pins.all()
            }

        return self._backend.read("reading where the pins came from", body)

    def _insert_pin(
        self,
        repos: Repositories,
        request: PinRequest,
        actor: Actor,
        now: datetime,
        *,
        action: str | None,
    ) -> Pin:
        """Insert a validated pin, or return the identical one that exists (no audit)."""
        existing = repos.pins.identical(request)
        if existing is not None:
            return existing
        der = request.certificate.der if request.certificate else None
        if der is None:
            der = self._lookup_der(repos, request.match, request.fingerprint)
        pin = repos.pins.insert(request, created_by=actor.name, at=now, der=der)
        repos.meta.bump()
        if action is not None:
            self._audit(repos, actor, action, str(pin.id), checks.pin_details(pin), now)
        return pin

    @staticmethod
    def _lookup_der(repos: Repositories, match: PinMatch, fingerprint: str) -> bytes | None:
        """DER of a certificate with this fingerprint (or public key) the store knows:
        a trusted one first, else the leaf of a rejected chain."""
        return repos.trust.der_of(match, fingerprint) or repos.rejected.leaf_der(match, fingerprint)

    def _known_pin_certificate(self, repos: Repositories, pin: Pin) -> Certificate | None:
        der = repos.pins.certificate_der(pin.id)
        if der is None:
            der = self._lookup_der(repos, pin.match, pin.fingerprint)
        return None if der is None else self._certs.stored(der)

    def add_pin(self, request: PinRequest, *, actor: Actor) -> Pin:
        """Create a pin. An identical pin (same decision, match, fingerprint, scope and
        expiry) is returned as it is, without a second row or audit event."""
        checks.check_actor(actor)
        valid = checks.validated_pin(request, now=self._now())
        return self._write(
            "adding a pin",
            lambda repos: self._insert_pin(repos, valid, actor, self._now(), action="pin.add"),
        )

    def remove_pin(self, pin_id: int, *, actor: Actor) -> Pin:
        checks.check_actor(actor)

        def body(repos: Repositories) -> Pin:
            pin = repos.pins.delete(checks.check_id(pin_id, "pin"))
            if pin is None:
                raise NotFound("pin", pin_id)
            repos.meta.bump()
            self._audit(repos, actor, "pin.remove", str(pin.id), checks.pin_details(pin))
            return pin

        return self._write("removing a pin", body)

    # -- rejected chains ----------------------------------------------------------------------

    def list_rejected(self) -> tuple[RejectedChain, ...]:
        """Newest ``last_seen`` first."""
        return tuple(
            self._backend.read(
                "reading the rejected list", lambda repos: repos.rejected.newest_first()
            )
        )

    @staticmethod
    def _load_rejected(repos: Repositories, rejected_id: int) -> RejectedChain:
        entry = repos.rejected.get(checks.check_id(rejected_id, "rejected chain"))
        if entry is None:
            raise NotFound("rejected chain", rejected_id)
        return entry

    def get_rejected(self, rejected_id: int) -> RejectedChain:
        return self._backend.read(
            "reading the rejected list", lambda repos: self._load_rejected(repos, rejected_id)
        )

    def trust_rejected(
        self, rejected_id: int, fingerprints: Sequence[str], *, actor: Actor
    ) -> AddResult:
        """Trust the chosen certificates of the chain (source ``trusted-from-rejected``)
        and drop the chain from the list (innovaphone's "Trust")."""
        checks.check_actor(actor)
        if isinstance(fingerprints, str) or not fingerprints:
            raise ValidationError(
                "fingerprints", "Choose at least one certificate of the chain to trust."
            )
        chosen = [normalize_fingerprint(f, field="fingerprints") for f in fingerprints]

        def body(repos: Repositories) -> AddResult:
            entry = self._load_rejected(repos, rejected_id)
            in_chain = {c.fingerprint: c for c in entry.chain}
            strangers = [fp for fp in chosen if fp not in in_chain]
            if strangers:
                raise ValidationError(
                    "fingerprints",
                    f"The certificate {strangers[0]} is not part of rejected chain "
                    f"{entry.id}; choose certificates of that chain.",
                )
            certs = [c for c in entry.chain if c.fingerprint in set(chosen)]
            now = self._now()
            result = self._insert_trust(repos, certs, TrustSource.TRUSTED_FROM_REJECTED, None, now)
            repos.rejected.delete(entry.id)
            repos.meta.bump()
            self._audit(
                repos,
                actor,
                "rejected.trust",
                str(entry.id),
                {
                    "leaf": entry.leaf.fingerprint,
                    "added": [c.fingerprint for c in result.added],
                    "already_present": [c.fingerprint for c in result.already_present],
                },
                now,
            )
            return result

        return self._write("trusting certificates of a rejected chain", body)

    def pin_rejected(
        self,
        rejected_id: int,
        decision: PinDecision,
        *,
        actor: Actor,
        match: PinMatch = PinMatch.CERTIFICATE,
        scope: str | None = None,
        expires_at: datetime | None = None,
        note: str = "",
    ) -> Pin:
        """Pin the chain's leaf ``accept`` or ``reject`` (Gigaset) and drop the entry.

        Both decisions take the chain off the rejected list: from then on the pin
        decides for this certificate, so the chain is not recorded again. An accepted
        certificate shows with its pin (the server/CA view); a rejected one is refused
        at the handshake without being recorded.
        """
        checks.check_actor(actor)
        try:
            decision = PinDecision(decision)
            match = PinMatch(match)
        except ValueError as exc:
            raise ValidationError("decision", f"{exc}.") from exc
        # Check everything but the fingerprint before opening the transaction.
        template = checks.validated_pin(
            PinRequest(
                decision=decision,
                match=match,
                fingerprint="0" * 64,
                scope=scope,
                expires_at=expires_at,
                note=note,
            ),
            now=self._now(),
        )

        def body(repos: Repositories) -> Pin:
            entry = self._load_rejected(repos, rejected_id)
            leaf = entry.leaf
            request = replace(
                template,
                fingerprint=leaf.fingerprint
                if template.match is PinMatch.CERTIFICATE
                else leaf.spki_fingerprint,
                certificate=leaf,
            )
            now = self._now()
            pin = self._insert_pin(repos, request, actor, now, action=None)
            repos.rejected.delete(entry.id)
            repos.meta.bump()
            self._audit(
                repos,
                actor,
                f"rejected.{decision.value}",
                str(entry.id),
                {"leaf": leaf.fingerprint, "pin": pin.id, **checks.pin_details(pin)},
                now,
            )
            return pin

        return self._write(f"pinning a rejected certificate ({decision.value})", body)

    def remove_rejected(self, rejected_id: int, *, actor: Actor) -> None:
        checks.check_actor(actor)

        def body(repos: Repositories) -> None:
            leaf = repos.rejected.delete(checks.check_id(rejected_id, "rejected chain"))
            if leaf is None:
                raise NotFound("rejected chain", rejected_id)
            self._audit(repos, actor, "rejected.remove", str(rejected_id), {"leaf": leaf})

        self._write("removing a rejected chain", body)

    def clear_rejected(self, *, actor: Actor) -> int:
        checks.check_actor(actor)

        def body(repos: Repositories) -> int:
            removed = repos.rejected.clear()
            if removed:
                self._audit(repos, actor, "rejected.clear", "rejected", {"removed": removed})
            return removed

        return self._write("clearing the rejected list", body)

    # -- revocation information ---------------------------------------------------------

    def put_revocation(
        self,
        der: bytes,
        *,
        kind: SourceKind,
        source: RevocationSource,
        url: str | None,
        actor: Actor | None = None,
    ) -> CachedSource:
        """Store (or replace) one piece of revocation information; the next snapshot uses it.

        A fetched CRL is keyed by its URL, a fetched OCSP answer by its URL and the
        serial it answers for; an uploaded CRL by its issuer, so a newer upload replaces
        the older one (:func:`checks.revocation_key`). Unreadable or oversized data
        raises (:class:`ParseError`, :class:`InputTooLarge`) and changes nothing.
        Uploads (``actor`` given) are audited; the gateway's own fetches are not.
        """
        parsed = read_source(der, kind=kind, source=source, url=url)
        key = checks.revocation_key(parsed, source=source, url=url)
        now = self._now()

        def body(repos: Repositories) -> CachedSource:
            existing = repos.revocation.get(key)
            if existing is None or existing.fingerprint != parsed.fingerprint:
                repos.revocation.put(
                    RevocationRow(
                        key=key,
                        kind=kind,
                        source=source,
                        url=url,
                        fingerprint=parsed.fingerprint,
                        fetched_at=now,
                    ),
                    parsed.der,
                )
                repos.meta.bump()
            else:  # the same bytes again: only the time they were last fetched changes
                repos.revocation.touch(key, now)
            evicted = checks.revocation_evictions(
                [(r.key, r.source, r.fetched_at) for r in repos.revocation.rows()],
                checks.MAX_REVOCATION_SOURCES,
            )
            if evicted:
                repos.revocation.delete(evicted)
            if actor is not None:
                self._audit(
                    repos,
                    actor,
                    "revocation.add",
                    key,
                    {"kind": kind.value, "fingerprint": parsed.fingerprint},
                    now,
                )
            return describe_source(parsed, key=key, fetched_at=now)

        return self._write("storing revocation information", body)

    def list_revocation(self) -> tuple[CachedSource, ...]:
        """Every cached revocation source, soonest next update first."""

        def body(repos: Repositories) -> tuple[CachedSource, ...]:
            out: list[CachedSource] = []
            for row in repos.revocation.rows():
                der = repos.revocation.der(row.key)
                if der is None:
                    continue
                try:
                    parsed = read_source(der, kind=row.kind, source=row.source, url=row.url)
                except (InputError, ValueError):
                    continue
                out.append(describe_source(parsed, key=row.key, fetched_at=row.fetched_at))
            far = datetime.max.replace(tzinfo=UTC)
            return tuple(sorted(out, key=lambda s: (s.next_update or far, s.key)))

        return self._backend.read("listing revocation information", body)

    def remove_uploaded_crl(self, fingerprint: str, *, actor: Actor) -> CachedSource:
        """Remove the uploaded CRL with this SHA-256 fingerprint; audited. Its issuer's
        certificates are then judged without it (fetched information still counts)."""
        checks.check_actor(actor)
        fp = normalize_fingerprint(fingerprint)

        def body(repos: Repositories) -> CachedSource:
            row = repos.revocation.uploaded(fp)
            der = None if row is None else repos.revocation.der(row.key)
            if row is None or der is None:
                raise NotFound("uploaded CRL", fp)
            removed = describe_source(
                read_source(der, kind=row.kind, source=row.source, url=row.url),
                key=row.key,
                fetched_at=row.fetched_at,
            )
            repos.revocation.delete([row.key])
            repos.meta.bump()
            self._audit(
                repos,
                actor,
                "revocation.remove",
                row.key,
                {"kind": row.kind.value, "fingerprint": fp},
                self._now(),
            )
            return removed

        return self._write("removing an uploaded CRL", body)

    def remove_revocation(self, key: str, *, actor: Actor) -> None:
        """Remove one cached or uploaded source; audited."""

        def body(repos: Repositories) -> None:
            if repos.revocation.delete([key]) == 0:
                raise NotFound("revocation source", key)
            repos.meta.bump()
            self._audit(repos, actor, "revocation.remove", key, {}, self._now())

        self._write("removing revocation information", body)

    # -- settings ---------------------------------------------------------------------------

    def get_settings(self) -> Settings:
        return self._backend.read("reading the settings", lambda repos: repos.settings.get())

    def update_settings(self, changes: Mapping[str, object], *, actor: Actor) -> Settings:
        """Change some settings. Unknown names, wrong types, credentials longer than 74
        characters or with control characters raise ValidationError naming the field,
        and nothing changes. A change to what is already set writes nothing. The audit
        event names the changed settings and, for the password, says only "changed"."""
        checks.check_actor(actor)
        changes = checks.settings_changes(changes)
        apply_settings_changes(Settings(), changes)  # refuse bad input before locking

        def body(repos: Repositories) -> Settings:
            current = repos.settings.get()
            updated, diff = apply_settings_changes(current, changes)
            if not diff:
                return current
            repos.settings.put(updated, diff)
            repos.meta.bump()
            self._audit(repos, actor, "settings.update", ",".join(sorted(diff)), {"changed": diff})
            return updated

        return self._write("changing the settings", body)

    def provision(
        self,
        changes: Mapping[str, object],
        certificates: Sequence[Certificate],
        *,
        actor: Actor,
        source: TrustSource = TrustSource.PROVISIONED,
    ) -> ProvisionOutcome:
        """Change settings and trust certificates in one transaction.

        Everything is checked before the write lock is taken; a crash or an error
        leaves the store as it was. Settings already at the asked value and
        certificates already trusted write nothing; when nothing changes, nothing is
        audited and the handshake view's generation stays put. The audit events are the
        usual ``settings.update`` (the password only as "changed") and ``trust.add``.
        """
        checks.check_actor(actor)
        changes = checks.settings_changes(changes)
        apply_settings_changes(Settings(), changes)
        checks.certificates_only(certificates)
        source = TrustSource(source)

        def body(repos: Repositories) -> ProvisionOutcome:
            now = self._now()
            current = repos.settings.get()
            updated, diff = apply_settings_changes(current, changes)
            if diff:
                repos.settings.put(updated, diff)
                self._audit(
                    repos, actor, "settings.update", ",".join(sorted(diff)), {"changed": diff}, now
                )
            added = self._insert_trust(repos, certificates, source, None, now)
            if added.added:
                self._audit_trust_added(repos, actor, "trust.add", source, added, now)
            if diff or added.added:
                repos.meta.bump()
            return ProvisionOutcome(
                settings_before=current,
                settings=updated,
                changed=tuple(sorted(diff)),
                trust=added,
            )

        return self._write("applying a provisioning document", body)

    # -- device identity ----------------------------------------------------------------------

    def device_identity(self) -> DeviceIdentity | None:
        return self._backend.read(
            "reading the device identity", lambda repos: repos.device.identity()
        )

    def set_device_identity(self, identity: DeviceIdentity, *, actor: Actor, action: str) -> None:
        """Replace the identity (chain and key together, in one transaction).

        ``action`` names what happened for the audit log (``create``, ``renew``,
        ``install``, ``clear``...; written as ``device.<action>``). The key must belong
        to the chain's first certificate.
        """
        checks.check_actor(actor)
        identity, audit_action = checks.checked_identity(identity, action)
        self._certs.remember(*identity.chain)

        def body(repos: Repositories) -> None:
            replaced = repos.device.put_identity(identity)
            self._audit(
                repos,
                actor,
                audit_action,
                identity.certificate.fingerprint,
                {
                    "kind": identity.kind,
                    "subject": identity.certificate.subject,
                    "chain": [c.fingerprint for c in identity.chain],
                    "replaced": replaced,
                },
            )

        self._write("saving the device identity", body)

    def pending_csr(self) -> PendingCsr | None:
        return self._backend.read("reading the signing request", lambda repos: repos.device.csr())

    def set_pending_csr(self, csr: PendingCsr | None, *, actor: Actor) -> None:
        """Store the pending signing request (replacing one that exists) or, with
        ``None``, discard it and its key; discarding when none is pending raises
        :class:`Conflict`."""
        checks.check_actor(actor)
        if csr is None:

            def remove(repos: Repositories) -> None:
                if not repos.device.delete_csr():
                    raise Conflict("There is no pending signing request to remove.")
                self._audit(repos, actor, "csr.remove", "csr", {})

            self._write("removing the signing request", remove)
            return
        request, subject = checks.checked_csr(csr)

        def store(repos: Repositories) -> None:
            replaced = repos.device.put_csr(request)
            self._audit(
                repos,
                actor,
                "csr.create",
                "csr",
                {"subject": subject, "key_spec": request.key_spec, "replaced": replaced},
            )

        self._write("saving the signing request", store)

    # -- audit, expiry ------------------------------------------------------------------------

    def audit(self, *, limit: int = 50, before_id: int | None = None) -> tuple[AuditEvent, ...]:
        """Newest first; page with ``before_id`` = the last id of the previous page."""
        if type(limit) is not int or not 1 <= limit <= 1000:
            raise ValidationError("limit", "The page size must be from 1 to 1000.")
        if before_id is not None and type(before_id) is not int:
            raise ValidationError("before_id", "before_id must be an event id.")
        before = before_id if before_id is not None else 2**63 - 1
        return tuple(
            self._backend.read(
                "reading the audit log",
                lambda repos: repos.audit.page(before_id=before, limit=limit),
            )
        )

    def log_event(
        self, *, actor: Actor, action: str, target: str, details: Mapping[str, object]
    ) -> None:
        """Audit something that is not a store change (e.g. a private key export).

        ``details`` must be JSON-serialisable and must not hold secrets."""
        checks.check_actor(actor)
        checks.audit_action(action)
        stored = checks.logged_event(target, details)
        self._write(
            "writing the audit log",
            lambda repos: self._audit(repos, actor, action, target, stored),
        )

    def expiring(self, *, now: datetime, days: int) -> tuple[ExpiringItem, ...]:
        """Trust anchors, pinned certificates (of active pins, where the certificate is
        known) and the device certificate whose ``not_after`` falls within ``days`` of
        ``now`` and is not yet past. Already-expired trusted certificates are not
        listed here: ``list_trust(status=expired)`` is the invalid view. Soonest first."""
        now = validate_aware(now, field="now")
        days = check_window(days)
        snap = self.snapshot()
        active = [p for p in snap.pins if p.is_active(now)]
        pinned = self._backend.read(
            "reading the pins",
            lambda repos: [(p, self._known_pin_certificate(repos, p)) for p in active],
        )
        identity = self.device_identity()
        candidates = [
            *(("trust-anchor", e.certificate, e.certificate.fingerprint) for e in snap.trust),
            *(("pin", cert, str(pin.id)) for pin, cert in pinned if cert is not None),
            *([("device", identity.certificate, "device")] if identity is not None else []),
        ]
        return expiring_items(candidates, now=now, days=days)

    # -- backup and restore ---------------------------------------------------------------------

    def export_backup(self, *, now: datetime, include_secrets: bool = False) -> bytes:
        """The whole trust state (trust list, pins, rejected list, settings) as one
        versioned JSON document with a checksum. The HTTP password is included only
        with ``include_secrets``. The device identity and the pending signing request
        are not part of a backup."""
        now = validate_aware(now, field="now")

        def body(repos: Repositories) -> backup.BackupContents:
            cached = self._cached
            trust = repos.trust.entries(
                self._known_certificate(cached.snapshot if cached else None)
            )
            pins = repos.pins.all()
            certs = {
                pin_id: self._certs.stored(der) for pin_id, der in repos.pins.certificates().items()
            }
            return backup.BackupContents(
                created_at=now,
                trust=tuple(trust),
                pins=tuple(pins),
                pin_certificates=certs,
                rejected=tuple(repos.rejected.all_by_id()),
                settings=repos.settings.get(),
                includes_secrets=include_secrets,
            )

        contents = self._backend.read("exporting a backup", body)
        return backup.export_document(contents)

    def import_backup(self, document: bytes, *, actor: Actor) -> RestoreSummary:
        """Replace the trust list, the pins, the rejected list and the settings with a
        backup's, all or nothing.

        The whole document is checked first (format, version, checksum, every
        certificate and value); a document that fails any check raises
        :class:`BackupError` and changes nothing. The replacement is one transaction.
        A backup without secrets keeps this store's HTTP password. The device identity
        and the pending signing request are not touched. Rejected entries beyond
        ``rejected_limit`` are dropped, oldest ``last_seen`` first.
        """
        checks.check_actor(actor)
        contents = backup.parse_document(document, parse=self._certs.untrusted)
        rejected = recording.kept_on_restore(contents.rejected, self._rejected_limit)

        def body(repos: Repositories) -> RestoreSummary:
            settings = contents.settings
            if not contents.includes_secrets:
                current = repos.settings.get()
                settings, _ = apply_settings_changes(
                    settings, {"http_auth_password": current.http_auth_password}
                )
            repos.backup.replace(
                trust=contents.trust,
                pins=contents.pins,
                pin_certificates=contents.pin_certificates,
                rejected=rejected,
            )
            repos.settings.put(settings, SETTING_NAMES)
            repos.meta.bump()
            summary = RestoreSummary(
                trust=len(contents.trust),
                pins=len(contents.pins),
                rejected=len(rejected),
                settings_restored=True,
                secrets_restored=contents.includes_secrets,
            )
            self._audit(
                repos,
                actor,
                "backup.restore",
                "backup",
                {
                    "created_at": contents.created_at.isoformat(),
                    "trust": summary.trust,
                    "pins": summary.pins,
                    "rejected": summary.rejected,
                    "secrets_restored": summary.secrets_restored,
                },
            )
            return summary

        return self._write("restoring a backup", body)


def check_limits(*, rejected_limit: int, audit_limit: int) -> None:
    """Refuse list bounds that cannot work, before anything is opened or created."""
    if rejected_limit < 1:
        raise ValidationError("rejected_limit", "The rejected list limit must be at least 1.")
    if audit_limit < 1:
        raise ValidationError("audit_limit", "The audit log limit must be at least 1.")


class _Seeder:
    """The facade's part of creating and upgrading a schema (:class:`SchemaHooks`)."""

    def __init__(self, store: RepositoryStore) -> None:
        self._store = store

    def created(
        self, repos: Repositories, *, schema_version: int, target: str, at: datetime
    ) -> None:
        """A new store: the default settings, the builtin CA certificates, one event."""
        store = self._store
        now = at
        repos.settings.put(Settings(), SETTING_NAMES)
        builtins = builtin_certificates()
        store._insert_trust(repos, builtins, TrustSource.BUILTIN, None, now)
        store._audit(
            repos,
            SYSTEM_ACTOR,
            "store.create",
            target,
            {"schema_version": schema_version, "builtin_certificates": len(builtins)},
            now,
        )

    def upgraded(
        self,
        repos: Repositories,
        *,
        from_version: int,
        to_version: int,
        target: str,
        at: datetime,
    ) -> None:
        self._store._audit(
            repos,
            SYSTEM_ACTOR,
            "store.migrate",
            target,
            {"from_version": from_version, "to_version": to_version},
            at,
        )


if TYPE_CHECKING:
    # The type checker holds the facade to the public interface, method for method.
    _IMPLEMENTS: type[CertStore] = RepositoryStore
