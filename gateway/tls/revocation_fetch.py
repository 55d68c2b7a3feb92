"""Fetching revocation information: OCSP from a certificate's AIA, CRLs from its
distribution points, cached in the store and shared by every connection.

The decision is pure and only reads what the store holds (:mod:`certstore.revocation`);
this module is the I/O around it. After a handshake whose chain has a certificate of
unknown status, the connector asks :meth:`RevocationFetcher.fetch_for` to fetch what is
missing, bounded by a short timeout, and decides again with what arrived. One fetch per
URL (and certificate, for OCSP) runs at a time (later callers wait for it); a URL that
failed is not asked again for ``retry_after`` seconds, so an unreachable responder costs
one timeout, not one per call. :meth:`RevocationFetcher.run` refreshes fetched CRLs and
OCSP answers before their nextUpdate passes (an OCSP answer by its certID, so no
certificate is needed); what it stores reaches open flows through the connector's
revocation watch.

HTTP and HTTPS go through ``http_get`` (in the gateway: aiohttp over the verifying TLS
connector, so an HTTPS responder is verified like any peer).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

from certstore.errors import CertStoreError
from certstore.model import Certificate, RevocationMode
from certstore.revocation import (
    MAX_CRL_BYTES,
    MAX_OCSP_BYTES,
    OCSP_MAX_AGE_WITHOUT_NEXT_UPDATE,
    CachedSource,
    OcspSingle,
    RevocationSource,
    RevocationStatus,
    SourceKind,
    revocation_status,
)
from certstore.snapshot import TrustSnapshot
from gateway.errors import GatewayError
from gateway.metrics import MetricsRegistry

# POST body (None: GET), content type, byte limit -> body. Raises on any failure.
HttpGet = Callable[[str, bytes | None, str, int], Awaitable[bytes]]

DEFAULT_TIMEOUT = 3.0  # seconds one fetch may take; a handshake waits at most this
DEFAULT_RETRY_AFTER = 60.0  # seconds before a failed URL is asked again
REFRESH_MARGIN = timedelta(minutes=30)  # refresh this long before nextUpdate (at most)
DEFAULT_REFRESH_INTERVAL = 60.0  # seconds between two looks for sources about to run out
MAX_URLS_PER_CERT = 2
MAX_REMEMBERED_FAILURES = 1024  # URLs whose last failure is kept (oldest forgotten first)
_CERT_ID_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class RevocationFetchError(GatewayError):
    """A CRL or OCSP response could not be fetched or read (kept for logs and probe)."""


class RevocationStore(Protocol):
    def snapshot(self) -> TrustSnapshot: ...

    def put_revocation(
        self, der: bytes, *, kind: SourceKind, source: RevocationSource, url: str | None
    ) -> CachedSource: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchJob:
    """One fetch: an OCSP request about ``cert`` (issued by ``issuer``) or about the
    certID of a cached answer (``cert_id``, when refreshing), or a CRL."""

    kind: SourceKind
    url: str
    cert: Certificate | None = None
    issuer: Certificate | None = None
    cert_id: OcspSingle | None = None


def _http_urls(names: Sequence[x509.GeneralName]) -> list[str]:
    return [
        n.value
        for n in names
        if isinstance(n, x509.UniformResourceIdentifier)
        and n.value.lower().startswith(("http://", "https://"))
    ]


def ocsp_urls(cert: Certificate) -> list[str]:
    try:
        aia = cert.x509.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    except (x509.ExtensionNotFound, ValueError):
        return []
    names = [
        d.access_location
        for d in aia.value
        if d.access_method == AuthorityInformationAccessOID.OCSP
    ]
    return _http_urls(names)[:MAX_URLS_PER_CERT]


def crl_urls(cert: Certificate) -> list[str]:
    try:
        cdp = cert.x509.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    except (x509.ExtensionNotFound, ValueError):
        return []
    names: list[x509.GeneralName] = []
    for point in cdp.value:
        names.extend(point.full_name or ())
    return _http_urls(names)[:MAX_URLS_PER_CERT]


def _issuer_of(
    chain: Sequence[Certificate], index: int, snapshot: TrustSnapshot
) -> Certificate | None:
    cert = chain[index]
    for candidate in chain[index + 1 : index + 2]:
        if candidate.subject_der == cert.issuer_der:
            return candidate
    anchors = snapshot.anchors_by_subject.get(cert.issuer_der, ())
    return anchors[0].certificate if anchors else None


def missing_status(
    chain: Sequence[Certificate], snapshot: TrustSnapshot, now: datetime
) -> list[list[FetchJob]]:
    """For each certificate of ``chain`` whose status the snapshot cannot establish, the
    fetches that could (OCSP first, then CRLs); certificates the store trusts are
    anchors and need none."""
    wanted: list[list[FetchJob]] = []
    for index, cert in enumerate(chain):
        if cert.fingerprint in snapshot.trust_by_fingerprint or cert.self_signed:
            break  # an anchor: nothing above it is checked
        issuer = _issuer_of(chain, index, snapshot)
        if issuer is None:
            break
        status = revocation_status(cert, issuer, index, now, snapshot.revocation)
        if status.status is not RevocationStatus.UNKNOWN:
            continue
        jobs = [
            FetchJob(kind=SourceKind.OCSP, url=u, cert=cert, issuer=issuer) for u in ocsp_urls(cert)
        ]
        jobs += [FetchJob(kind=SourceKind.CRL, url=u) for u in crl_urls(cert)]
        if jobs:
            wanted.append(jobs)
    return wanted


def ocsp_request(cert: Certificate, issuer: Certificate) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        cert.x509,
        issuer.x509,
        hashes.SHA1(),  # noqa: S303 (RFC 5019: the certID hash responders expect)
    )
    return builder.build().public_bytes(serialization.Encoding.DER)


def ocsp_request_for(cert_id: OcspSingle) -> bytes:
    """The same request again, from the certID of a cached answer (no certificate needed)."""
    algorithm = _CERT_ID_HASHES.get(cert_id.hash_algorithm)
    if algorithm is None:
        raise RevocationFetchError(f"certID hash {cert_id.hash_algorithm} is not supported")
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        cert_id.issuer_name_hash, cert_id.issuer_key_hash, cert_id.serial, algorithm()
    )
    return builder.build().public_bytes(serialization.Encoding.DER)


def refresh_due_at(
    this_update: datetime, next_update: datetime | None, *, ocsp_answer: bool
) -> datetime:
    """When cached information should be fetched again: before its nextUpdate by
    REFRESH_MARGIN, or by a quarter of its validity when that is shorter. A CRL without
    nextUpdate is due at once; an OCSP answer without one is used for
    OCSP_MAX_AGE_WITHOUT_NEXT_UPDATE (see certstore.revocation)."""
    if next_update is None:
        if not ocsp_answer:
            return this_update
        next_update = this_update + OCSP_MAX_AGE_WITHOUT_NEXT_UPDATE
    margin = min(REFRESH_MARGIN, max(next_update - this_update, timedelta(0)) / 4)
    return next_update - margin


def due_for_refresh(snapshot: TrustSnapshot, now: datetime) -> list[FetchJob]:
    """The fetches that renew what the cache holds from URLs before it runs out: each
    fetched CRL, and each certificate status of each fetched OCSP answer."""
    jobs: list[FetchJob] = []
    for crl in snapshot.revocation.crls:
        if (
            crl.source is RevocationSource.CRL_URL
            and crl.url
            and refresh_due_at(crl.this_update, crl.next_update, ocsp_answer=False) <= now
        ):
            jobs.append(FetchJob(kind=SourceKind.CRL, url=crl.url))
    for response in snapshot.revocation.ocsp:
        if response.source is not RevocationSource.OCSP_URL or not response.url:
            continue
        for single in response.singles:
            if refresh_due_at(single.this_update, single.next_update, ocsp_answer=True) <= now:
                jobs.append(FetchJob(kind=SourceKind.OCSP, url=response.url, cert_id=single))
                break  # one request renews the answer (the responder answers for it all)
    return jobs


class RevocationFetcher:
    """Fetches, stores and refreshes revocation information for the whole gateway."""

    def __init__(
        self,
        store: RevocationStore,
        http_get: HttpGet,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry_after: float = DEFAULT_RETRY_AFTER,
        metrics: MetricsRegistry | None = None,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.http_get = http_get
        self.timeout = timeout
        self.retry_after = retry_after
        self.refresh_interval = refresh_interval
        self._clock = clock
        self._monotonic = monotonic
        self._in_flight: dict[str, asyncio.Task[bool]] = {}
        self._failed_until: dict[str, float] = {}
        self.last_errors: dict[str, str] = {}  # URL -> why its last fetch failed
        self._log = structlog.get_logger("gateway.tls")
        registry = metrics or MetricsRegistry()
        self.fetches = registry.counter(
            "sipsgate_revocation_fetches_total",
            "Fetches of CRLs and OCSP responses, by kind and outcome.",
            ("kind", "outcome"),
        )
        self.unknown_total = registry.counter(
            "sipsgate_revocation_unknown_total",
            "Handshakes accepted by soft-fail although a certificate's revocation status "
            "could not be established.",
            (),
        )
        self.refreshes = registry.counter(
            "sipsgate_revocation_refreshes_total",
            "Background refreshes of cached CRLs and OCSP answers before their nextUpdate, "
            "by kind and outcome.",
            ("kind", "outcome"),
        )

    def wants(self, chain: Sequence[Certificate], snapshot: TrustSnapshot) -> bool:
        """Whether fetching could still tell something about ``chain`` (cheap; no I/O)."""
        if snapshot.settings.revocation is RevocationMode.OFF:
            return False
        now_mono = self._monotonic()
        for jobs in missing_status(chain, snapshot, self._clock()):
            if any(self._failed_until.get(j.url, 0.0) <= now_mono for j in jobs):
                return True
        return False

    def unknown(self, chain: Sequence[Certificate], snapshot: TrustSnapshot) -> list[str]:
        """Why the status of each certificate of ``chain`` that has none is unknown
        (empty when every status is known, or revocation is off)."""
        if snapshot.settings.revocation is RevocationMode.OFF:
            return []
        now = self._clock()
        notes: list[str] = []
        for index, cert in enumerate(chain):
            if cert.fingerprint in snapshot.trust_by_fingerprint or cert.self_signed:
                break
            issuer = _issuer_of(chain, index, snapshot)
            if issuer is None:
                break
            status = revocation_status(cert, issuer, index, now, snapshot.revocation)
            if status.status is RevocationStatus.UNKNOWN:
                urls = [*ocsp_urls(cert), *crl_urls(cert)]
                failed = [f"{u}: {self.last_errors[u]}" for u in urls if u in self.last_errors]
                notes.append(f"{cert.display_name}: " + "; ".join(failed or list(status.notes)))
        return notes

    async def fetch_for(self, chain: Sequence[Certificate], snapshot: TrustSnapshot) -> bool:
        """Fetch what is missing for ``chain``; True when something new was stored.

        Bounded by ``timeout`` as a whole; failures are logged and remembered, never
        raised.
        """
        groups = missing_status(chain, snapshot, self._clock())
        if not groups:
            return False
        tasks = [asyncio.ensure_future(self._first_usable(jobs)) for jobs in groups]
        done, pending = await asyncio.wait(tasks, timeout=self.timeout)
        for task in pending:
            task.cancel()
        return any(t.result() for t in done if not t.cancelled() and t.exception() is None)

    async def _first_usable(self, jobs: Sequence[FetchJob]) -> bool:
        for job in jobs:
            if await self.fetch(job):
                return True
        return False

    async def fetch(self, job: FetchJob) -> bool:
        """Fetch one URL (shared with any caller already fetching the same); True when
        stored."""
        if self._failed_until.get(job.url, 0.0) > self._monotonic():
            return False
        serial = (
            job.cert.x509.serial_number if job.cert else job.cert_id.serial if job.cert_id else None
        )
        key = job.url if serial is None else f"{job.url}#{serial:x}"
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(job))
            self._in_flight[key] = task
            task.add_done_callback(lambda _: self._in_flight.pop(key, None))
        return await asyncio.shield(task)

    def _failed(self, job: FetchJob, why: str) -> None:
        # Bounded: a stream of distinct failing URLs cannot grow these maps without end.
        for remembered in (self._failed_until, self.last_errors):
            remembered.pop(job.url, None)
            while len(remembered) >= MAX_REMEMBERED_FAILURES:
                del remembered[next(iter(remembered))]
        self._failed_until[job.url] = self._monotonic() + self.retry_after
        self.last_errors[job.url] = why
        self.fetches.inc(kind=job.kind.value, outcome="failed")
        self._log.warning("revocation.fetch.failed", url=job.url, kind=job.kind.value, error=why)

    async def _fetch(self, job: FetchJob) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                if job.kind is SourceKind.OCSP:
                    if job.cert_id is not None:
                        request = ocsp_request_for(job.cert_id)
                    else:
                        assert job.cert is not None
                        assert job.issuer is not None
                        request = ocsp_request(job.cert, job.issuer)
                    body = await self.http_get(
                        job.url, request, "application/ocsp-request", MAX_OCSP_BYTES
                    )
                    source = RevocationSource.OCSP_URL
                else:
                    body = await self.http_get(job.url, None, "", MAX_CRL_BYTES)
                    source = RevocationSource.CRL_URL
            await asyncio.to_thread(
                self.store.put_revocation, body, kind=job.kind, source=source, url=job.url
            )
        except (TimeoutError, OSError, GatewayError, CertStoreError, ValueError) as exc:
            why = "no answer within the timeout" if isinstance(exc, TimeoutError) else str(exc)
            self._failed(job, why)
            return False
        except Exception as exc:  # an HTTP client error of any kind: no information
            self._failed(job, f"{type(exc).__name__}: {exc}")
            return False
        self._failed_until.pop(job.url, None)
        self.last_errors.pop(job.url, None)
        self.fetches.inc(kind=job.kind.value, outcome="stored")
        self._log.info("revocation.fetch.stored", url=job.url, kind=job.kind.value)
        return True

    async def refresh_due(self) -> int:
        """Fetch again every cached CRL and OCSP answer from a URL whose nextUpdate is
        near (:func:`refresh_due_at`); returns how many were fetched and stored.

        What a refresh stores changes the trust state, so the connector's revocation
        watch revalidates open flows with it (a revoked peer's flow is closed).
        A failed refresh keeps the old information until it runs out; the failure is
        logged and counted, and the URL is not asked again for ``retry_after``.
        """
        snapshot = await asyncio.to_thread(self.store.snapshot)
        if snapshot.settings.revocation is RevocationMode.OFF:
            return 0
        jobs = due_for_refresh(snapshot, self._clock())
        if not jobs:
            return 0
        self._log.debug("revocation.refresh.started", due=len(jobs))
        stored = 0
        for job in jobs:
            ok = await self.fetch(job)
            self.refreshes.inc(kind=job.kind.value, outcome="stored" if ok else "failed")
            stored += ok
        return stored

    async def run(self, interval: float | None = None) -> None:
        """Refresh what is about to run out, every ``interval`` seconds (default
        ``refresh_interval``), until cancelled."""
        while True:
            try:
                await self.refresh_due()
            except Exception as exc:  # the store may be briefly unreadable: retry next round
                self._log.error("revocation.refresh.failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.refresh_interval if interval is None else interval)


def aiohttp_get(session_factory: Callable[[], Any]) -> HttpGet:
    """An ``HttpGet`` over aiohttp sessions made by ``session_factory`` (in the gateway:
    over the verifying TLS connector)."""

    async def get(url: str, body: bytes | None, content_type: str, limit: int) -> bytes:
        async with session_factory() as session:
            if body is None:
                request = session.get(url)
            else:
                request = session.post(url, data=body, headers={"Content-Type": content_type})
            async with request as response:
                if response.status != 200:
                    raise RevocationFetchError(f"{url} answered HTTP {response.status}")
                too_much = RevocationFetchError(f"{url} sent more than {limit} bytes")
                if response.content_length is not None and response.content_length > limit:
                    raise too_much
                # read() gives what has arrived, not all of it: read to the end, bounded.
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > limit:
                        raise too_much
                    chunks.append(chunk)
                return b"".join(chunks)

    return get
