"""Fetching revocation information: OCSP from a certificate's AIA, CRLs from its
distribution points, cached in the store and shared by every connection.

The decision is pure and only reads what the store holds (:mod:`certstore.revocation`);
this module is the I/O around it. After a handshake whose chain has a certificate of
unknown status, the connector asks :meth:`RevocationFetcher.fetch_for` to fetch what is
missing, bounded by a short timeout, and decides again with what arrived. One fetch per
URL runs at a time (later callers wait for it); a URL that failed is not asked again for
``retry_after`` seconds, so an unreachable responder costs one timeout, not one per call.
:meth:`RevocationFetcher.run` refreshes cached sources before their nextUpdate passes.

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
    CachedSource,
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
REFRESH_MARGIN = timedelta(minutes=30)  # refresh this long before nextUpdate
MAX_URLS_PER_CERT = 2


class RevocationFetchError(GatewayError):
    """A CRL or OCSP response could not be fetched or read (kept for logs and probe)."""


class RevocationStore(Protocol):
    def snapshot(self) -> TrustSnapshot: ...

    def put_revocation(
        self, der: bytes, *, kind: SourceKind, source: RevocationSource, url: str | None
    ) -> CachedSource: ...

    def list_revocation(self) -> tuple[CachedSource, ...]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchJob:
    """One fetch: an OCSP request about ``cert`` (issued by ``issuer``), or a CRL."""

    kind: SourceKind
    url: str
    cert: Certificate | None = None
    issuer: Certificate | None = None


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
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.http_get = http_get
        self.timeout = timeout
        self.retry_after = retry_after
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
        """Fetch one URL (shared with any caller already fetching it); True when stored."""
        if self._failed_until.get(job.url, 0.0) > self._monotonic():
            return False
        task = self._in_flight.get(job.url)
        if task is None:
            task = asyncio.ensure_future(self._fetch(job))
            self._in_flight[job.url] = task
            task.add_done_callback(lambda _: self._in_flight.pop(job.url, None))
        return await asyncio.shield(task)

    async def _fetch(self, job: FetchJob) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                if job.kind is SourceKind.OCSP:
                    assert job.cert is not None
                    assert job.issuer is not None
                    body = await self.http_get(
                        job.url,
                        ocsp_request(job.cert, job.issuer),
                        "application/ocsp-request",
                        MAX_OCSP_BYTES,
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
            self._failed_until[job.url] = self._monotonic() + self.retry_after
            self.last_errors[job.url] = why
            self.fetches.inc(kind=job.kind.value, outcome="failed")
            self._log.warning(
                "revocation.fetch.failed", url=job.url, kind=job.kind.value, error=why
            )
            return False
        except Exception as exc:  # an HTTP client error of any kind: no information
            self._failed_until[job.url] = self._monotonic() + self.retry_after
            self.last_errors[job.url] = f"{type(exc).__name__}: {exc}"
            self.fetches.inc(kind=job.kind.value, outcome="failed")
            self._log.warning(
                "revocation.fetch.failed", url=job.url, kind=job.kind.value, error=str(exc)
            )
            return False
        self._failed_until.pop(job.url, None)
        self.last_errors.pop(job.url, None)
        self.fetches.inc(kind=job.kind.value, outcome="stored")
        self._log.info("revocation.fetch.stored", url=job.url, kind=job.kind.value)
        return True

    async def refresh_due(self) -> int:
        """Fetch again every fetched CRL whose nextUpdate is near; returns how many.

        OCSP answers are refreshed by the next handshake that needs them (a request
        needs the certificate, which the cache does not keep).
        """
        now = self._clock()
        sources = await asyncio.to_thread(self.store.list_revocation)
        due = [
            s
            for s in sources
            if s.kind is SourceKind.CRL
            and s.source is RevocationSource.CRL_URL
            and s.url
            and (s.next_update is None or s.next_update - REFRESH_MARGIN <= now)
        ]
        for source in due:
            assert source.url is not None
            await self.fetch(FetchJob(kind=SourceKind.CRL, url=source.url))
        return len(due)

    async def run(self, interval: float = 60.0) -> None:
        """Refresh what is about to run out, every ``interval`` seconds, until cancelled."""
        while True:
            try:
                await self.refresh_due()
            except Exception as exc:  # the store may be briefly unreadable: retry next round
                self._log.error("revocation.refresh.failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(interval)


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
                data: bytes = await response.content.read(limit + 1)
                if len(data) > limit:
                    raise RevocationFetchError(f"{url} sent more than {limit} bytes")
                return data

    return get
