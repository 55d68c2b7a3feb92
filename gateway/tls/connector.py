"""The asyncio TLS connector: every outbound TLS connection of the gateway.

``TlsConnector.create_connection`` connects TCP, runs the handshake in
``gateway.tls.engine``, has the trust policy decide inside it, records what the store
wants recorded (a rejection, an overridden chain, a trust-on-first-use pin) from that
same handshake, registers the live connection, and only then hands the connection to
the caller's protocol. ``open_connection`` does the same for a stream pair.

Every failure is a ``gateway.errors.TlsError``: ``TrustRejected`` (the decision said
no; carries the verdict, peer, chain and the trust state it was made under),
``TlsHandshakeError`` (OpenSSL's reasons kept) and its ``ClientCertificateRefused``
(the server refused our certificate), ``TlsTimeout`` and ``TlsConnectError``. A
refusal that comes after a TLS 1.3 handshake reaches the application protocol's
``connection_lost`` and is logged here as ``tls.session.refused``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from certstore import notation
from gateway.errors import (
    ClientCertificateRefused,
    TlsConnectError,
    TlsError,
    TlsHandshakeError,
    TlsTimeout,
    TrustRejected,
)
from gateway.metrics import MetricsRegistry
from gateway.tls.engine import ClientContextFactory, TlsEngine, TlsSettings, TlsTransport, _Rejected
from gateway.tls.policy import TlsTarget, TrustCheck, TrustPolicy, VerdictView
from gateway.tls.registry import ConnectionRegistry, LiveConnection

if TYPE_CHECKING:
    from gateway.tls.revocation_fetch import RevocationFetcher

_P = TypeVar("_P", bound=asyncio.Protocol)

_STREAM_LIMIT = 2**16


def utcnow() -> datetime:
    return datetime.now(UTC)


class TlsMetrics:
    """The connector's counters (handshakes by rule and reason, failures by kind)."""

    def __init__(self, registry: MetricsRegistry) -> None:
        self.handshakes = registry.counter(
            "sipsgate_tls_handshakes_total",
            "TLS handshakes decided, by transport, verdict and rule.",
            ("transport", "verdict", "rule"),
        )
        self.reasons = registry.counter(
            "sipsgate_tls_handshake_reasons_total",
            "Reasons found by the trust decision, by transport, rule and reason.",
            ("transport", "rule", "reason"),
        )
        self.failures = registry.counter(
            "sipsgate_tls_failures_total",
            "Outbound TLS connections that failed, by transport and kind.",
            ("transport", "kind"),
        )
        self.open = registry.gauge(
            "sipsgate_tls_connections_open",
            "Outbound TLS connections open now, by transport.",
            ("transport",),
        )
        self.revoked = registry.counter(
            "sipsgate_tls_connections_revoked_total",
            "Live TLS connections closed because their peer would now be rejected.",
            ("transport",),
        )


def _conn_ids() -> Callable[[], str]:
    prefix = os.urandom(2).hex()
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter)}"


def rejection_message(target: TlsTarget, verdict: VerdictView) -> str:
    reasons = ", ".join(verdict.reasons) or "no reason given"
    return (
        f"The certificate of {target.uri} was rejected by rule {verdict.rule} "
        f"({reasons}); see the rejected certificates list, or run "
        f"`sipsgate probe {target.uri}` for the details and what to do."
    )


class TlsConnector:
    """Opens verified outbound TLS connections; one per gateway, shared by all users."""

    def __init__(
        self,
        policy: TrustPolicy,
        *,
        settings: TlsSettings | None = None,
        metrics: MetricsRegistry | None = None,
        registry: ConnectionRegistry | None = None,
        record: bool = True,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        # Set by the gateway (it needs this connector for HTTPS): fetches revocation
        # status a handshake could not establish, before any data flows.
        self.fetcher: RevocationFetcher | None = None
        self.policy = policy
        self.settings = settings or TlsSettings()
        self.metrics_registry = metrics or MetricsRegistry()
        self.metrics = TlsMetrics(self.metrics_registry)
        self.registry = registry or ConnectionRegistry()
        self.record = record
        self._clock = clock
        self._contexts = ClientContextFactory(self.settings)
        self._next_id = _conn_ids()
        self._log = structlog.get_logger("gateway.tls")

    # --- public API -------------------------------------------------------------------

    async def create_connection(
        self,
        protocol_factory: Callable[[], _P],
        target: TlsTarget,
        *,
        sock: socket.socket | None = None,
    ) -> tuple[TlsTransport, _P]:
        """Connect to ``target`` (or over the connected ``sock``) and verify it.

        Returns the plaintext transport and the protocol ``protocol_factory`` made,
        already connected. Raises a ``TlsError`` subclass on any failure.
        """
        loop = asyncio.get_running_loop()
        conn_id = self._next_id()
        log = self._log.bind(
            conn_id=conn_id, peer=target.destination, sni=target.sni, transport=target.scheme
        )
        identity = self.policy.client_identity()
        context = self._contexts.context_for(identity)
        decided_at: list[datetime] = []
        decided_under: list[Any] = []  # the trust state each decision was made under

        def decide(chain_der: tuple[bytes, ...], stapled: bytes | None) -> TrustCheck:
            # The state is read when the chain is in hand, not when the connection
            # began: a change committed during the TCP connect or the handshake applies.
            snapshot = self.policy.snapshot()
            now = self._clock()
            decided_at.append(now)
            decided_under.append(snapshot)
            if stapled is None:
                return self.policy.decide(chain_der, target, now, snapshot)
            return self.policy.decide(chain_der, target, now, snapshot, stapled=stapled)

        fetcher = self.fetcher
        engine = TlsEngine(context, target, decide, loop=loop, defer_unknown=fetcher is not None)
        started = time.perf_counter()
        await self._connect_tcp(loop, engine, target, sock, log)
        log.debug("tls.handshake.started", address=_fmt_addr(target.address))
        try:
            try:
                async with asyncio.timeout(self.settings.handshake_timeout):
                    await engine.handshake_done
            except TimeoutError:
                raise TlsTimeout(
                    f"The TLS handshake with {target.uri} did not finish within "
                    f"{self.settings.handshake_timeout:g} s; check that the server speaks "
                    "TLS on that port, or raise tls.handshake_timeout.",
                    peer=target,
                    timeout=self.settings.handshake_timeout,
                ) from None
        except BaseException as exc:
            engine.abort_pending()
            mapped = self._map_failure(engine, target, exc, decided_under)
            await self._after_failed_handshake(engine, target, mapped, decided_at, log)
            if mapped is exc:
                raise
            raise mapped from (None if isinstance(exc, _Rejected) else exc)

        check = engine.check
        assert check is not None  # the engine refuses a handshake without a decision
        if fetcher is not None:
            try:
                check = await self._fetch_and_decide(
                    engine, fetcher, target, started, log, decided_under
                )
            except _Rejected as exc:
                engine.abort()
                mapped = self._map_failure(engine, target, exc, decided_under)
                await self._after_failed_handshake(engine, target, mapped, decided_at, log)
                raise mapped from None
        self._log_decision(log, target, check)
        await self._record(check, decided_at[0], log)
        try:
            protocol = protocol_factory()
            engine.attach(protocol)
        except TlsError as exc:
            self._failed(log, target, "closed", exc)
            raise
        except BaseException:
            engine.abort()  # the protocol failed to start: drop the connection
            raise
        transport = engine.transport
        transport.set_protocol(protocol)
        live = LiveConnection(
            conn_id=conn_id,
            target=target,
            chain_der=engine.chain_der,
            check=check,
            opened_at=decided_at[0],
            transport=transport,
        )
        self.registry.add(live)
        self.metrics.open.inc(transport=target.scheme)
        engine.closed.add_done_callback(lambda _: self._closed(live, engine.close_error))
        info = engine.session_info()
        log.info(
            "tls.handshake.complete",
            rule=str(check.verdict.rule),
            leaf_fingerprint=check.verdict.leaf_fingerprint,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            **info,
        )
        return transport, protocol

    async def open_connection(
        self, target: TlsTarget, *, limit: int = _STREAM_LIMIT
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Like ``asyncio.open_connection``, through the verifying connector."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        transport, protocol = await self.create_connection(
            lambda: asyncio.StreamReaderProtocol(reader, loop=loop), target
        )
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        return reader, writer

    def revalidate(self, snapshot: Any | None = None) -> list[LiveConnection]:
        """Close live connections whose peer the current trust state would reject.

        Does nothing when the state says ``close_flows_on_revoke`` is off. Returns the
        connections it closed (each with the new check as its ``revoked_by``).
        """
        snapshot = self.policy.snapshot() if snapshot is None else snapshot
        if not self.policy.close_flows_on_revoke(snapshot):
            return []
        now = self._clock()
        closed = self.registry.revalidate(self.policy, snapshot, now)
        for live in closed:
            assert live.revoked_by is not None
            verdict = live.revoked_by.verdict
            self.metrics.revoked.inc(transport=live.target.scheme)
            self._log.warning(
                "tls.connection.revoked",
                conn_id=live.conn_id,
                peer=live.target.destination,
                sni=live.target.sni,
                transport=live.target.scheme,
                rule=str(verdict.rule),
                reasons=[str(r) for r in verdict.reasons],
                leaf_fingerprint=verdict.leaf_fingerprint,
            )
        return closed

    async def revalidate_and_record(self, snapshot: Any | None = None) -> list[LiveConnection]:
        """``revalidate``, then record each closed flow's chain in the rejected list (a
        revoked certificate lands there with reason ``revoked``, like at a handshake)."""
        closed = self.revalidate(snapshot)
        for live in closed:
            check = live.revoked_by
            if check is not None and self.record and check.record:
                await self._record(check, self._clock(), self._log)
        return closed

    async def watch_revocations(self, interval: float = 1.0) -> None:
        """Revalidate live connections whenever the trust state changes; runs until cancelled.

        The store hands out the same snapshot object until something changes, so a new
        object means new state. Run it as an owned task (a ``TaskGroup`` member) and
        cancel it on shutdown.
        """
        if self.fetcher is not None:
            refresh = asyncio.create_task(self.fetcher.run(), name="revocation-refresh")
            try:
                await self._watch(interval)
            finally:
                refresh.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresh
        else:
            await self._watch(interval)

    async def _watch(self, interval: float) -> None:
        last = self.policy.snapshot()
        while True:
            await asyncio.sleep(interval)
            try:
                current = self.policy.snapshot()
                if current is not last:
                    last = current
                    if len(self.registry):
                        await self.revalidate_and_record(current)
            except Exception as exc:  # the store may be briefly unreadable: retry next round
                self._log.error("tls.revalidate.failed", error=f"{type(exc).__name__}: {exc}")

    # --- steps ------------------------------------------------------------------------

    async def _connect_tcp(
        self,
        loop: asyncio.AbstractEventLoop,
        engine: TlsEngine,
        target: TlsTarget,
        sock: socket.socket | None,
        log: Any,
    ) -> None:
        host, port = target.address
        timeout = self.settings.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                if sock is not None:
                    await loop.create_connection(lambda: engine, sock=sock)
                else:
                    await loop.create_connection(lambda: engine, host, port)
        except TimeoutError:
            exc: TlsError = TlsTimeout(
                f"Connecting to {_fmt_addr(target.address)} for {target.uri} took longer "
                f"than {timeout:g} s; check the address and any firewall in between.",
                peer=target,
                timeout=timeout,
            )
            self._failed(log, target, "timeout", exc)
            raise exc from None
        except OSError as err:
            exc = TlsConnectError(
                f"Could not connect to {_fmt_addr(target.address)} for {target.uri}: "
                f"{connect_failure(err, target.address)}; check the address and that the "
                "server listens there.",
                peer=target,
            )
            self._failed(log, target, "connect", exc)
            raise exc from err

    async def _fetch_and_decide(
        self,
        engine: TlsEngine,
        fetcher: RevocationFetcher,
        target: TlsTarget,
        started: float,
        log: Any,
        decided_under: list[Any],
    ) -> TrustCheck:
        """Fetch revocation status the handshake could not establish, within what is
        left of the handshake timeout, and decide again (the state it decided under is
        appended to ``decided_under``); raises ``_Rejected``."""
        check = engine.check
        assert check is not None
        snapshot = self.policy.snapshot()
        if fetcher.wants(check.chain, snapshot):
            left = self.settings.handshake_timeout - (time.perf_counter() - started)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(left, 0.0)):
                    await fetcher.fetch_for(check.chain, snapshot)
            now = self._clock()
            snapshot = self.policy.snapshot()
            stapled = engine.stapled
            if stapled is None:
                check = self.policy.decide(engine.chain_der, target, now, snapshot)
            else:
                check = self.policy.decide(engine.chain_der, target, now, snapshot, stapled=stapled)
            decided_under.append(snapshot)
            engine.replace_check(check)
        if not check.verdict.accepted:
            raise _Rejected(check, ())
        unknown = fetcher.unknown(check.chain, snapshot)
        if unknown:
            fetcher.unknown_total.inc()
            log.warning(
                "revocation.status.unknown",
                peer=target.destination,
                leaf_fingerprint=check.verdict.leaf_fingerprint,
                notes=unknown,
            )
        return check

    async def _after_failed_handshake(
        self,
        engine: TlsEngine,
        target: TlsTarget,
        exc: BaseException,
        decided_at: list[datetime],
        log: Any,
    ) -> None:
        check = engine.check
        if check is not None and not check.verdict.accepted:
            self._log_decision(log, target, check)
            await self._record(check, decided_at[0], log)
            self._failed(log, target, "rejected", exc)
        elif isinstance(exc, TlsTimeout):
            self._failed(log, target, "timeout", exc)
        elif isinstance(exc, asyncio.CancelledError):
            pass
        elif isinstance(exc, ClientCertificateRefused):
            self._failed(log, target, "refused", exc)
        else:
            self._failed(log, target, "handshake", exc)

    def _map_failure(
        self, engine: TlsEngine, target: TlsTarget, exc: BaseException, decided_under: list[Any]
    ) -> BaseException:
        if isinstance(exc, _Rejected):
            return TrustRejected(
                rejection_message(target, exc.check.verdict),
                peer=target,
                verdict=exc.check.verdict,
                chain=exc.check.chain,
                snapshot=decided_under[-1] if decided_under else None,
            )
        if isinstance(exc, TlsError | asyncio.CancelledError):
            return exc
        if engine.policy_error is exc:
            return TlsHandshakeError(
                f"The trust policy failed while checking the certificate of {target.uri} "
                f"({type(exc).__name__}: {exc}); the connection was refused. Report this "
                "with the log.",
                peer=target,
            )
        return exc

    async def _record(self, check: TrustCheck, now: datetime, log: Any) -> None:
        if not (self.record and check.record):
            return
        try:
            async with asyncio.timeout(self.settings.handshake_timeout):
                await asyncio.to_thread(self.policy.record, check, now)
        except TimeoutError:
            log.error(
                "trust.record.failed",
                error=f"recording took longer than {self.settings.handshake_timeout:g} s",
            )
        except Exception as exc:
            log.error("trust.record.failed", error=f"{type(exc).__name__}: {exc}")

    def _log_decision(self, log: Any, target: TlsTarget, check: TrustCheck) -> None:
        verdict = check.verdict
        reasons = [str(r) for r in verdict.reasons]
        rule = str(verdict.rule)
        kind = "accept" if verdict.accepted else "reject"
        self.metrics.handshakes.inc(transport=target.scheme, verdict=kind, rule=rule)
        for reason in reasons:
            self.metrics.reasons.inc(transport=target.scheme, rule=rule, reason=reason)
        (log.info if verdict.accepted else log.warning)(
            "trust.decision",
            verdict=kind,
            rule=rule,
            reasons=reasons,
            leaf_fingerprint=verdict.leaf_fingerprint,
        )

    def _failed(self, log: Any, target: TlsTarget, kind: str, exc: BaseException) -> None:
        self.metrics.failures.inc(transport=target.scheme, kind=kind)
        fields: dict[str, Any] = {"kind": kind, "error": str(exc)}
        if isinstance(exc, TlsHandshakeError) and exc.openssl_reasons:
            fields["openssl_reasons"] = list(exc.openssl_reasons)
        log.warning("tls.handshake.failed", **fields)

    def _closed(self, live: LiveConnection, error: Exception | None) -> None:
        self.registry.discard(live)
        self.metrics.open.dec(transport=live.target.scheme)
        if isinstance(error, ClientCertificateRefused):
            # TLS 1.3: the handshake had completed, the server's refusal came after it.
            target = live.target
            self.metrics.failures.inc(transport=target.scheme, kind="refused")
            self._log.warning(
                "tls.session.refused",
                conn_id=live.conn_id,
                peer=target.destination,
                sni=target.sni,
                transport=target.scheme,
                alert=error.alert,
                error=str(error),
            )


def _fmt_addr(address: tuple[str, int]) -> str:
    return notation.host_port(*address)


def connect_failure(err: OSError, address: tuple[str, int]) -> str:
    """Why a TCP connection failed, as a sentence (asyncio's own text is
    ``Connect call failed ('127.0.0.1', 5061)``, which says neither)."""
    where = _fmt_addr(address)
    if isinstance(err, socket.gaierror):
        return f"the name {address[0]} cannot be resolved ({err.strerror or err})"
    match err.errno:
        case errno.ECONNREFUSED:
            return f"nothing is listening on {where} (connection refused)"
        case errno.EHOSTUNREACH | errno.ENETUNREACH:
            return f"there is no route to {where} ({os.strerror(err.errno)})"
        case errno.ETIMEDOUT:
            return f"{where} did not answer (connection timed out)"
        case errno.ECONNRESET:
            return f"{where} reset the connection"
        case None | 0:
            return str(err)
        case code:
            return f"{os.strerror(code)} ({where})"
