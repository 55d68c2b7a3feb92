"""The SIP relay service: the asyncio adapter around :class:`ProxyCore`.

``SipRelay.serve()`` listens for base stations on UDP and TCP (``sip.listen_udp``,
``sip.listen_tcp``), keeps one persistent TLS flow to the upstream through the TLS
connector (RFC 3263 resolution or ``sip.upstream_address``; reconnect with
exponential backoff and jitter; RFC 5626 CRLF keep-alive), and runs until it is
cancelled. Every message goes through the sans-I/O core; this module only moves
bytes, reads the clock, arms the core's one timer, and turns the core's notes into
logs and metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import itertools
import logging
import math
import os
import random
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog
from cryptography import x509

from certstore import notation
from gateway.config import Config, SipSection
from gateway.errors import ClientCertificateRefused, TlsError, TlsTimeout, TrustRejected
from gateway.metrics import MetricsRegistry
from gateway.relay.flows import LanFlow
from gateway.relay.handoff import HandOffLink
from gateway.relay.limits import Admission, SourceLimiter, datagram_method
from gateway.relay.outputs import (
    CloseUpstream,
    ConnectUpstream,
    Dropped,
    HandOff,
    Output,
    PathSupport,
    PongSupport,
    Refused,
    Registered,
    SendLan,
    SendUpstream,
    TransactionDone,
)
from gateway.relay.proxy import ProxyCore
from gateway.relay.resolve import Lookup, ResolveError, resolve_upstream
from gateway.relay.settings import Listener, ProxySettings
from gateway.relay.status import RelayStatus, UpstreamCertificate, UpstreamError
from gateway.relay.transaction import DEFAULT_TIMERS, TimerSettings
from gateway.sip import (
    KeepAlivePing,
    KeepAlivePong,
    RemoteProtocolError,
    Request,
    Response,
    StreamFramer,
)
from gateway.sip.framing import NEED_DATA
from gateway.sip.parser import parse_datagram
from gateway.sip.wire import Wire, scan_datagram
from gateway.tls.connector import TlsConnector
from gateway.tls.engine import TlsTransport
from gateway.tls.policy import TlsTarget, same_state

#: Methods counted under their own name in metrics; the rest are "other".
KNOWN_METHODS = frozenset(
    [
        "ACK",
        "BYE",
        "CANCEL",
        "INFO",
        "INVITE",
        "MESSAGE",
        "NOTIFY",
        "OPTIONS",
        "PRACK",
        "PUBLISH",
        "REFER",
        "REGISTER",
        "SUBSCRIBE",
        "UPDATE",
    ]
)
_CLOSE_WAIT = 5.0
#: Rejections decided under a trust state that changed before they were applied, retried
#: at once in a row; past this, the next one is applied (a state that changes during
#: every attempt must not make the relay dial the upstream without pause).
_STALE_RETRIES = 3
#: How often LAN TCP connections are checked against sip.idle_timeout and
#: sip.header_timeout (a connection is closed at most this late).
_TCP_SWEEP_SECONDS = 1.0
#: How often the kernel's drops on the LAN UDP sockets are counted.
_QUEUE_DROPS_SECONDS = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RelaySettings:
    """Tuning that is not in the configuration file (tests and benchmarks change it)."""

    reconnect_min: float = 0.5  # first retry delay after a failed connection (s)
    reconnect_max: float = 30.0  # the backoff's ceiling (s)
    # A flow lost sooner than this after its handshake, before the upstream sent a
    # byte, did not work (e.g. a TLS 1.3 server refused the client certificate): it
    # counts as a failed connection for the backoff.
    flow_settle: float = 5.0
    udp_receive_buffer: int = 4 * 1024 * 1024  # SO_RCVBUF of the LAN UDP sockets
    timers: TimerSettings = DEFAULT_TIMERS
    pong_timeout: float = 10.0
    max_pending: int = 2000
    # Retry-After of a 503 when only a person can fix the upstream (its certificate was
    # rejected, or it refused ours): base stations need not ask every second. The relay
    # itself retries at once when the trust state changes.
    person_retry_after: int = 300
    # One of several relay workers (sip.workers): its index, how many there are, the
    # flow token key they share, and LAN sockets bound with SO_REUSEPORT.
    worker: int = 0
    workers: int = 1
    token_key: bytes | None = field(default=None, repr=False)
    reuse_port: bool = False


def _sip_text(text: str) -> str:
    """A Warning text for base stations, which show it as it is: ASCII only."""
    return text.replace("\u2014", "-").encode("ascii", "replace").decode("ascii")


def _peer_text(peername: Any) -> str:
    """``host:port`` of a socket address (IPv6 in brackets), not a Python tuple."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = str(peername[0]), peername[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(peername)


def _tls_version(transport: Any) -> str | None:
    info = transport.get_extra_info("ssl_object")
    version = getattr(info, "version", None)
    return str(version()) if callable(version) else None


def _leaf_certificate(transport: Any) -> UpstreamCertificate | None:
    """Subject, fingerprint and expiry of the certificate the upstream presented."""
    chain = transport.get_extra_info("peercert_chain_der") or ()
    if not chain:
        return None
    try:
        cert = x509.load_der_x509_certificate(chain[0])
    except ValueError:
        return None
    return UpstreamCertificate(
        subject=cert.subject.rfc4514_string(),
        fingerprint=hashlib.sha256(chain[0]).hexdigest(),
        not_after=cert.not_valid_after_utc,
    )


class RelayMetrics:
    def __init__(self, registry: MetricsRegistry) -> None:
        self.transactions = registry.counter(
            "sipsgate_sip_transactions_total",
            "SIP transactions completed, by direction, method and final status.",
            ("direction", "method", "status"),
        )
        self.dropped = registry.counter(
            "sipsgate_sip_messages_dropped_total",
            "SIP messages dropped, by reason.",
            ("reason",),
        )
        self.refused = registry.counter(
            "sipsgate_sip_requests_refused_total",
            "SIP requests answered 503 by sipsgate before any work (over a limit), by reason.",
            ("reason",),
        )
        self.flows = registry.gauge(
            "sipsgate_sip_upstream_flows",
            "Upstream TLS flows open now.",
        )
        self.reconnects = registry.counter(
            "sipsgate_sip_upstream_connects_total",
            "Upstream TLS flows opened (the first and every reconnect).",
        )
        self.connect_failures = registry.counter(
            "sipsgate_sip_upstream_connect_failures_total",
            "Attempts to open the upstream flow that failed, by kind.",
            ("kind",),
        )
        self.lan_connections = registry.gauge(
            "sipsgate_sip_lan_connections",
            "TCP connections from base stations open now.",
        )


def udp_drops(table: str, inodes: set[int]) -> int:
    """The datagrams dropped on the sockets ``inodes`` (their receive queue was full),
    summed from a ``/proc/net/udp`` table: its ``inode`` and ``drops`` columns."""
    total = 0
    lines = table.splitlines()
    if not lines:
        return 0
    names = lines[0].split()
    # The header names "tx_queue rx_queue" and "tr tm->when" as one column each.
    try:
        inode_at = names.index("inode") - 2
        drops_at = names.index("drops") - 2
    except ValueError:
        return 0
    for line in lines[1:]:
        fields = line.split()
        if (
            len(fields) > drops_at
            and fields[inode_at].isdigit()
            and int(fields[inode_at]) in inodes
        ):
            total += int(fields[drops_at])
    return total


def parse_listen(address: str, what: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); port 0 asks the OS for one."""
    text = address.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = text.rpartition(":")
    try:
        ipaddress.ip_address(host)
        port = int(port_text)
        if not 0 <= port < 65536:
            raise ValueError(port_text)
    except ValueError as exc:
        raise ValueError(
            f"{what} entry {address!r} is not an IP address and port such as "
            "'192.168.1.2:5060' or '[2001:db8::1]:5060'."
        ) from exc
    return host, port


def _advertised(host: str) -> str:
    """The address to name in Via and Record-Route for a socket bound to ``host``."""
    if not ipaddress.ip_address(host).is_unspecified:
        return host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = "2001:db8::1" if family == socket.AF_INET6 else "192.0.2.1"
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((probe, 9))  # no packet is sent: this only picks the source address
            return str(s.getsockname()[0])
        except OSError:
            return "::1" if family == socket.AF_INET6 else "127.0.0.1"


#: Datagrams read from a LAN socket in one go (after the one asyncio hands over);
#: what they send upstream leaves in one TLS write.
_UDP_BATCH = 64

#: Deadlines of the core within one tick share one firing of the loop's timer: at
#: thousands of transactions a second each one's Timer J would otherwise wake the loop
#: on its own. RFC 3261's timers count in half seconds; a tick late is nothing to them.
_TIMER_TICK = 0.01


#: UDP sources whose LanFlow is kept for reuse. A finished server transaction waits
#: out Timer J (32 s) with its LanFlow; sharing one per source keeps tens of thousands
#: of identical objects away from the cyclic garbage collector, whose full collections
#: pause the event loop in proportion to the objects it tracks.
_UDP_FLOWS_KEPT = 4096


class _UdpLan(asyncio.DatagramProtocol):
    def __init__(self, relay: SipRelay, index: int, sock: socket.socket) -> None:
        self.relay = relay
        self.index = index
        self.sock = sock

    def datagram_received(self, data: bytes, addr: Any) -> None:
        relay = self.relay
        relay._batch = []
        try:
            relay._on_datagram(data, addr, self.index)
            recvfrom = self.sock.recvfrom
            for _ in range(_UDP_BATCH):
                try:
                    data, addr = recvfrom(65536)
                except OSError:  # BlockingIOError: drained; others: asyncio reports them
                    break
                relay._on_datagram(data, addr, self.index)
        finally:
            relay._flush_batch()

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a base station that went away: nothing to do.
        self.relay._log.debug("sip.lan.udp_error", error=str(exc))


class _TcpLan(asyncio.Protocol):
    """One TCP connection from a base station."""

    def __init__(self, relay: SipRelay, index: int) -> None:
        self.relay = relay
        self.index = index
        self.framer = StreamFramer(wire=True)
        self.transport: asyncio.Transport | None = None
        self.flow: LanFlow | None = None
        self.last_seen = relay._loop.time()  # when bytes last arrived (sip.idle_timeout)
        self.partial_since: float | None = None  # when the unfinished message began

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        host, port = transport.get_extra_info("peername")[:2]
        self.relay._tcp_opened(self, host, port)

    def data_received(self, data: bytes) -> None:
        flow = self.flow
        if flow is None:
            return
        relay = self.relay
        now = self.last_seen = relay._loop.time()
        if self.partial_since is None:
            self.partial_since = now
        self.framer.receive_data(data)
        while True:
            try:
                event = self.framer.next_event()
            except RemoteProtocolError as exc:
                relay._tcp_malformed(self, exc)
                return
            if event is NEED_DATA:
                # A message that has begun must be complete within sip.header_timeout.
                if not self.framer.partial:
                    self.partial_since = None
                return
            self.partial_since = now  # one message complete: the clock restarts
            if isinstance(event, Wire | Request | Response):
                method = event.method if isinstance(event, Request) else None
                if isinstance(event, Wire):
                    method = None if event.status else event.method
                relay._receive(event, flow, method)
            elif isinstance(event, KeepAlivePing):
                assert self.transport is not None
                self.transport.write(b"\r\n")
            elif not isinstance(event, KeepAlivePong):
                return

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay._tcp_closed(self)


class _UpstreamFlow(asyncio.Protocol):
    """The protocol on the TLS flow to the upstream."""

    def __init__(self, relay: SipRelay) -> None:
        self.relay = relay
        self.framer = StreamFramer(wire=True)
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[Exception | None] = relay._loop.create_future()
        self.opened_at = relay._loop.time()
        self.heard = False  # the upstream sent something: the flow works

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        relay = self.relay
        core = relay.core
        self.heard = True
        self.framer.receive_data(data)
        while True:
            try:
                event = self.framer.next_event()
            except RemoteProtocolError as exc:
                relay._log.warning("sip.upstream.malformed", error=str(exc))
                relay.metrics.dropped.inc(reason="malformed-upstream")
                assert self.transport is not None
                self.transport.close()
                return
            if event is NEED_DATA:
                return
            if isinstance(event, Wire | Request | Response):
                relay._execute(core.receive_upstream(event, relay._loop.time()))
            elif isinstance(event, KeepAlivePong):
                relay._execute(core.receive_pong())
            elif isinstance(event, KeepAlivePing):
                assert self.transport is not None
                self.transport.write(b"\r\n")
            else:
                return

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class SipRelay:
    """The SIP relay as a service: ``await relay.serve()`` runs it until cancelled."""

    def __init__(
        self,
        sip: SipSection,
        connector: TlsConnector,
        *,
        metrics: MetricsRegistry | None = None,
        lookup: Lookup | None = None,
        settings: RelaySettings | None = None,
        agent: str = "sipsgate",
        host_names: tuple[str, ...] = (),
        status: RelayStatus | None = None,
        handoff: HandOffLink | None = None,
    ) -> None:
        self.sip = sip
        self.handoff = handoff
        self.host_names = host_names
        self.connector = connector
        self.metrics = RelayMetrics(metrics or MetricsRegistry())
        self.lookup = lookup
        self.settings = settings or RelaySettings()
        self.agent = agent
        self.ready = asyncio.Event()
        self.udp_addresses: list[tuple[str, int]] = []
        self.tcp_addresses: list[tuple[str, int]] = []
        self.upstream_connected = asyncio.Event()  # set while a flow is open
        self._log = structlog.get_logger("gateway.relay")
        self._level_wrapper: object = None  # the wrapper class _info_on was read from
        self._info_on = True
        self._series: dict[tuple[str, str, int], tuple[str, ...]] = {}
        self._udp_binds = [parse_listen(a, "sip.listen_udp") for a in sip.listen_udp]
        self._tcp_binds = [parse_listen(a, "sip.listen_tcp") for a in sip.listen_tcp]
        self._limiter = SourceLimiter(sip.source_rate, sip.source_burst, sip.source_answers)
        self._core: ProxyCore | None = None
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._udp: dict[int, asyncio.DatagramTransport] = {}
        self._udp_inodes: set[int] = set()  # of the LAN UDP sockets, as /proc/net/udp names them
        self._queue_drops = 0  # datagrams the kernel dropped on them, counted so far
        self._servers: list[asyncio.Server] = []
        self._tcp: dict[int, _TcpLan] = {}
        #: One LanFlow per UDP source, shared by its transactions (see _UDP_FLOWS_KEPT).
        self._udp_flows: dict[tuple[str, int, int], LanFlow] = {}
        self._tcp_per_host: dict[str, int] = {}
        self._conn_ids = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._flow: _UpstreamFlow | None = None
        self._batch: list[bytes] | None = None  # upstream writes held while a batch is read
        self._connecting = False
        self._wanted = asyncio.Event()
        self._wake = asyncio.Event()
        self._failures = 0
        self._retry_at = 0.0
        self._last_failure: tuple[str, str] | None = None  # warning, reason text
        self._failed_snapshot: object | None = None  # the state a rejection was decided under
        self._stale_retries = 0  # stale rejections retried in a row (_STALE_RETRIES)
        self._needs_person = False  # the last failure was a rejection only a person can fix
        self._drop_logged: dict[tuple[str, str, str], float] = {}
        self._rng = random.Random()
        #: What the status view reads (shared across reloads when the caller passes one).
        self.status = status if status is not None else RelayStatus()
        self.status.configured(sip.upstream)
        self.connects = 0  # flows opened so far
        self._flow_waiters: list[asyncio.Future[None]] = []
        #: Called with every completed transaction (after the log line and the metric).
        self.observers: list[Callable[[TransactionDone], None]] = []

    @classmethod
    def from_config(
        cls,
        config: Config,
        connector: TlsConnector,
        *,
        metrics: MetricsRegistry | None = None,
        status: RelayStatus | None = None,
        settings: RelaySettings | None = None,
        handoff: HandOffLink | None = None,
    ) -> SipRelay:
        """The relay ``sipsgate run`` starts: the [sip] section, the shared connector."""
        return cls(
            config.sip,
            connector,
            metrics=metrics,
            settings=settings or RelaySettings(),
            handoff=handoff,
            agent=config.gateway.name,
            # Names a base station may give sipsgate as its outbound proxy (Route).
            host_names=(*config.gateway.host_names, socket.gethostname()),
            status=status,
        )

    @property
    def core(self) -> ProxyCore:
        assert self._core is not None, "the relay is not serving"
        return self._core

    # --- running -------------------------------------------------------------------------

    async def serve(self) -> None:
        """Listen, keep the upstream flow, relay; returns only by cancellation."""
        self._loop = asyncio.get_running_loop()
        try:
            listeners = await self._open_listeners()
            tuning = self.settings
            self._core = ProxyCore(
                ProxySettings(
                    listeners=listeners,
                    worker=tuning.worker,
                    workers=tuning.workers,
                    **({"key": tuning.token_key} if tuning.token_key is not None else {}),
                    timers=self.settings.timers,
                    max_pending=self.settings.max_pending,
                    source_inflight=self.sip.source_inflight,
                    max_transactions=self.sip.max_transactions,
                    keepalive=float(self.sip.keepalive),
                    pong_timeout=self.settings.pong_timeout,
                    agent=self.agent,
                    host_names=self.host_names,
                    upstream_uri=self.sip.upstream,
                )
            )
            self._log.info(
                "sip.relay.started",
                udp=[f"{h}:{p}" for h, p in self.udp_addresses],
                tcp=[f"{h}:{p}" for h, p in self.tcp_addresses],
                upstream=self.sip.upstream or None,
                upstream_address=self.sip.upstream_address or None,
            )
            if self.handoff is not None:
                self._loop.add_reader(self.handoff.inbox.fileno(), self._on_handoff)
            self.ready.set()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._keep_upstream(), name="sip-upstream")
                if self._tcp_binds:
                    tg.create_task(self._sweep_tcp(), name="sip-tcp-timeouts")
                if self._udp_inodes:
                    tg.create_task(self._count_queue_drops(), name="sip-udp-drops")
        finally:
            await self._close()

    async def _open_listeners(self) -> tuple[Listener, ...]:
        loop = self._loop
        listeners: list[Listener] = []
        for host, port in self._udp_binds:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_RCVBUF, self.settings.udp_receive_buffer
                )
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if self.settings.reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((host, port))
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            index = len(listeners)
            transport, _ = await loop.create_datagram_endpoint(
                lambda index=index, sock=sock: _UdpLan(self, index, sock),  # type: ignore[misc]
                sock=sock,
            )
            self._udp[index] = transport
            self._udp_inodes.add(os.fstat(sock.fileno()).st_ino)
            bound = sock.getsockname()[:2]
            self.udp_addresses.append((bound[0], bound[1]))
            listeners.append(Listener(transport="udp", host=_advertised(host), port=bound[1]))
        for host, port in self._tcp_binds:
            index = len(listeners)
            server = await loop.create_server(
                lambda index=index: _TcpLan(self, index),
                host,
                port,
                reuse_address=True,
                reuse_port=self.settings.reuse_port or None,
            )
            self._servers.append(server)
            bound = server.sockets[0].getsockname()[:2]
            self.tcp_addresses.append((bound[0], bound[1]))
            listeners.append(Listener(transport="tcp", host=_advertised(host), port=bound[1]))
        return tuple(listeners)

    async def _close(self) -> None:
        if self.handoff is not None and self._loop is not None:
            self._loop.remove_reader(self.handoff.inbox.fileno())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for transport in self._udp.values():
            transport.close()
        for server in self._servers:
            server.close()
        for conn in list(self._tcp.values()):
            if conn.transport is not None:
                conn.transport.abort()
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), _CLOSE_WAIT)
        flow = self._flow
        if flow is not None and flow.transport is not None:
            flow.transport.close()
            if isinstance(flow.transport, TlsTransport):
                with contextlib.suppress(TimeoutError):
                    await flow.transport.wait_closed()
        self._udp.clear()
        self._servers.clear()
        self.ready.clear()

    # --- the upstream flow -------------------------------------------------------------

    async def _keep_upstream(self) -> None:
        """Open the flow, watch it, reopen it with backoff; forever."""
        if not self.sip.upstream:
            self._last_failure = (
                "sip.upstream is not configured; set it to the provider's sips: URI.",
                "No upstream configured",
            )
            self._retry_at = math.inf
            await asyncio.Future()  # requests are answered 503 by _execute
        self._wanted.set()
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            delay = self._retry_at - self._loop.time()
            if delay > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            flow = await self._connect()
            if flow is None:
                self._wanted.set()  # keep trying, with backoff
                continue
            exc = await flow.lost
            self._flow = None
            self.upstream_connected.clear()
            self.metrics.flows.set(0)
            now = self._loop.time()
            if self._never_worked(flow, exc, now):
                self._wanted.set()  # with the backoff _never_worked counted
                continue
            if isinstance(exc, TrustRejected):
                self._log.warning(
                    "sip.upstream.revoked",
                    error=str(exc),
                    rule=str(exc.verdict.rule),
                )
            else:
                self._log.warning("sip.upstream.lost", error=str(exc) if exc else "closed")
            self.status.lost(time.time(), str(exc) if exc else "closed by the peer")
            self._execute(self.core.upstream_down(now))
            self._wanted.set()

    async def _connect(self) -> _UpstreamFlow | None:
        loop = self._loop
        self._connecting = True
        error: BaseException | None = None
        kind = "connect"
        try:
            try:
                targets = await resolve_upstream(
                    self.sip.upstream, override=self.sip.upstream_address, lookup=self.lookup
                )
            except ResolveError as exc:
                error, kind = exc, "resolve"
                targets = []
            for target in targets:
                try:
                    transport, flow = await self.connector.create_connection(
                        lambda: _UpstreamFlow(self), target
                    )
                except TrustRejected as exc:
                    error, kind = exc, "rejected"
                    break  # a decision, not an outage: trying the next server changes nothing
                except ClientCertificateRefused as exc:
                    error, kind = exc, "refused"
                except TlsTimeout as exc:
                    error, kind = exc, "timeout"
                except TlsError as exc:
                    error, kind = exc, "connect"
                else:
                    self._up(flow, transport, target.uri)
                    return flow
        finally:
            self._connecting = False
        assert error is not None
        now = loop.time()
        if isinstance(error, TrustRejected) and self._stale(error):
            return None
        if kind == "rejected":
            assert isinstance(error, TrustRejected)
            warning = (
                f"The upstream certificate was rejected: {error} The chain is in the "
                "rejected certificates list of sipsgate (admin pages, or "
                "`sipsgate certs rejected`)."
            )
            reason = "Upstream certificate rejected"
            # The state the verdict came from, not the one now: a change committed
            # while the attempt ended must end the backoff too.
            self._failed_snapshot = (
                error.snapshot if error.snapshot is not None else self._trust_state()
            )
        elif kind == "refused":
            warning = (
                f"The upstream server refused sipsgate's client certificate: {error} "
                f"{self._probe_hint(error)}"
            )
            reason = "Client certificate refused"
            self._failed_snapshot = None
        else:
            warning = f"The upstream server cannot be reached: {error} {self._probe_hint(error)}"
            reason = "Upstream unreachable"
            self._failed_snapshot = None
        warning = _sip_text(warning)
        backoff = self._count_failure(error, kind, warning, reason, now)
        self._execute(
            self.core.upstream_failed(
                warning, now, reason_text=reason, retry_after=self._retry_after(backoff)
            )
        )
        return None

    def _stale(self, error: TrustRejected) -> bool:
        """Whether the trust state changed after ``error`` was decided: then the verdict
        is not applied (requests that arrived after the change wait for the attempt
        that starts at once, under the new state)."""
        decided = error.snapshot
        if decided is None or self._stale_retries >= _STALE_RETRIES:
            return False
        current = self._trust_state()
        if current is None or same_state(decided, current):
            return False
        self._stale_retries += 1
        self._retry_at = 0.0
        self.metrics.connect_failures.inc(kind="rejected")
        self._log.info(
            "sip.upstream.retried",
            reason="the trust state changed after the certificate was rejected",
            error=str(error),
        )
        return True

    def _trust_state(self) -> object | None:
        """The trust state now; None when the store cannot be read (nothing is then
        taken as changed, and the next request asks again)."""
        try:
            state: object = self.connector.policy.snapshot()
        except Exception as exc:
            self._log.error("sip.snapshot.failed", error=f"{type(exc).__name__}: {exc}")
            return None
        return state

    def _probe_hint(self, error: BaseException) -> str:
        """The command that reproduces a failure (it dials sip.upstream_address too)."""
        target = getattr(error, "peer", None)
        uri = target.uri if isinstance(target, TlsTarget) else self.sip.upstream
        return f"Run `sipsgate probe {uri}` to see it again."

    def _retry_after(self, wait: float) -> int | None:
        """The Retry-After of a 503: long when a person must act, else the next attempt."""
        if self._needs_person:
            return self.settings.person_retry_after
        return max(1, math.ceil(wait)) if math.isfinite(wait) else None

    def _count_failure(
        self, error: BaseException | None, kind: str, warning: str, reason: str, now: float
    ) -> float:
        """One more failed connection: the next try waits longer; returns that wait."""
        self._failures += 1
        self._stale_retries = 0
        backoff: float = min(
            self.settings.reconnect_max, self.settings.reconnect_min * 2 ** (self._failures - 1)
        )
        backoff *= 0.5 + 0.5 * self._rng.random()  # jitter: never all gateways at once
        self._retry_at = now + backoff
        self._last_failure = (warning, reason)
        self._needs_person = kind in ("rejected", "refused")
        self.metrics.connect_failures.inc(kind=kind)
        wall = time.time()
        codes = tuple(error.verdict.reasons) if isinstance(error, TrustRejected) else ()
        self.status.failed(
            wall,
            UpstreamError(kind=kind, reason=reason, sentence=warning, codes=codes, at=wall),
            retry_at=wall + backoff,
        )
        self._log.warning(
            "sip.upstream.failed",
            kind=kind,
            error=str(error) if error else "closed",
            retry_in=round(backoff, 2),
            failures=self._failures,
        )
        return backoff

    def _never_worked(self, flow: _UpstreamFlow, exc: Exception | None, now: float) -> bool:
        """Whether a lost flow failed rather than ended: then it is counted for the
        backoff, and the requests in flight on it are told why."""
        if isinstance(exc, TrustRejected):
            return False  # revoked by the trust state: the reconnect is decided anew
        refused = isinstance(exc, ClientCertificateRefused)
        if not refused and (flow.heard or now - flow.opened_at >= self.settings.flow_settle):
            self._failures = 0  # it worked: the next connection starts afresh
            return False
        if refused:
            kind, reason = "refused", "Client certificate refused"
            warning = f"The upstream server refused sipsgate's client certificate: {exc}"
        else:
            kind, reason = "closed", "Upstream closed the connection"
            warning = (
                "The upstream server closed the TLS connection right after the handshake "
                f"({exc or 'closed by the peer'}); check that it accepts sipsgate's client "
                "certificate (see device-certificate.md) and look in its log."
            )
        self._failed_snapshot = None
        warning = _sip_text(warning)
        self._count_failure(exc, kind, warning, reason, now)
        self._execute(self.core.upstream_down(now, warning=warning, reason_text=reason))
        return True

    def _up(self, flow: _UpstreamFlow, transport: Any, uri: str) -> None:
        sockname = transport.get_extra_info("sockname")
        self._bound_unacknowledged(transport)
        self._flow = flow
        # _failures is kept until the flow proves to work (_never_worked): under TLS 1.3
        # a server refuses the client certificate only after the handshake.
        self._retry_at = 0.0
        self._last_failure = None
        self._needs_person = False
        self._failed_snapshot = None
        self._stale_retries = 0
        self.connects += 1
        self.metrics.reconnects.inc()
        self.metrics.flows.set(1)
        self.upstream_connected.set()
        self._notify_flow()
        self.status.up(
            time.time(),
            peer=_peer_text(transport.get_extra_info("peername")),
            tls_version=_tls_version(transport),
            certificate=_leaf_certificate(transport),
        )
        self._log.info(
            "sip.upstream.connected",
            upstream=uri,
            local=notation.address(sockname),
            peer=notation.address(transport.get_extra_info("peername")),
        )
        self._execute(self.core.upstream_up(sockname[0], sockname[1], self._loop.time()))

    def _bound_unacknowledged(self, transport: Any) -> None:
        """RFC 5626 §4.4.1: without pongs, a dead flow shows only as a TCP error. Data
        (our pings included) left unacknowledged this long makes the kernel end the
        connection, so a vanished upstream is noticed within about one interval."""
        keepalive = float(self.sip.keepalive)
        sock = transport.get_extra_info("socket")
        option = getattr(socket, "TCP_USER_TIMEOUT", None)
        if keepalive <= 0 or sock is None or option is None:
            return
        milliseconds = int((keepalive + self.settings.pong_timeout) * 1000)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, option, milliseconds)

    async def wait_for_flow(self, count: int) -> None:
        """Wait until ``count`` upstream flows have been opened since the start."""
        while self.connects < count:
            waiter = asyncio.get_running_loop().create_future()
            self._flow_waiters.append(waiter)
            await waiter

    def _notify_flow(self) -> None:
        waiters, self._flow_waiters = self._flow_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _demand(self) -> None:
        """Requests wait for the flow: connect now, or answer them with the last failure."""
        if self._flow is not None or self._connecting:
            return
        now = self._loop.time()
        trust_changed = False
        if self._failed_snapshot is not None and now < self._retry_at:
            current = self._trust_state()
            trust_changed = current is not None and not same_state(current, self._failed_snapshot)
        if now < self._retry_at and self._last_failure is not None and not trust_changed:
            warning, reason = self._last_failure
            retry = self._retry_at - now
            self._execute(
                self.core.upstream_failed(
                    warning,
                    now,
                    reason_text=reason,
                    retry_after=self._retry_after(retry),
                )
            )
            return
        if trust_changed:
            self._retry_at = 0.0
        self._wanted.set()
        self._wake.set()

    # --- LAN side ---------------------------------------------------------------------------

    def _receive(
        self, message: bytes | Wire | Request | Response, flow: LanFlow, method: str | None
    ) -> None:
        """One message from a base station, under sip.source_rate (the rule is
        :class:`~gateway.relay.limits.Admission`'s): relayed, answered 503, or dropped."""
        now = self._loop.time()
        host = flow.host
        verdict = self._limiter.admit(host, now, method)
        core = self.core
        if verdict is Admission.RELAY:
            if isinstance(message, bytes):
                self._execute(core.receive_lan_datagram(message, flow, now))
            else:
                self._execute(core.receive_lan(message, flow, now))
        elif verdict is Admission.ANSWER:
            retry = self._limiter.retry_after(host)
            self._execute(core.refuse_lan(message, flow, now, retry))
        else:
            self._dropped(Dropped("source-rate", "message rate above sip.source_rate", host))

    def _on_datagram(self, data: bytes, addr: Any, index: int) -> None:
        host = addr[0]
        key = (host, addr[1], index)
        flow = self._udp_flows.get(key)
        if flow is None:
            if len(self._udp_flows) >= _UDP_FLOWS_KEPT:
                self._udp_flows.clear()
            flow = self._udp_flows[key] = LanFlow("udp", host, addr[1], index)
        self._receive(data, flow, datagram_method(data))

    def _tcp_opened(self, conn: _TcpLan, host: str, port: int) -> None:
        count = self._tcp_per_host.get(host, 0)
        assert conn.transport is not None
        if count >= self.sip.source_connections or self._core is None:
            self._dropped(Dropped("source-connections", "too many TCP connections", host))
            conn.transport.abort()
            return
        if len(self._tcp) >= self.sip.max_connections:
            self._dropped(
                Dropped("max-connections", "sip.max_connections TCP connections are open", host)
            )
            conn.transport.abort()
            return
        self._tcp_per_host[host] = count + 1
        flow = LanFlow("tcp", host, port, conn.index, next(self._conn_ids))
        conn.flow = flow
        self._tcp[flow.conn_id] = conn
        self.core.lan_connection_opened(flow)
        self.metrics.lan_connections.inc()

    def _tcp_closed(self, conn: _TcpLan) -> None:
        flow = conn.flow
        if flow is None:
            return
        conn.flow = None
        self._tcp.pop(flow.conn_id, None)
        left = self._tcp_per_host.get(flow.host, 1) - 1
        if left > 0:
            self._tcp_per_host[flow.host] = left
        else:
            self._tcp_per_host.pop(flow.host, None)
        if self._core is not None:
            self._core.lan_connection_closed(flow)
        self.metrics.lan_connections.dec()

    async def _count_queue_drops(self) -> None:
        """Count what the kernel dropped before the relay could read it (a full receive
        queue: the relay is past its capacity), so that no request is lost unseen."""
        while True:
            await asyncio.sleep(_QUEUE_DROPS_SECONDS)
            drops = self._kernel_drops()
            if drops > self._queue_drops:
                new, self._queue_drops = drops - self._queue_drops, drops
                self.metrics.dropped.inc(new, reason="receive-queue")
                note = Dropped("receive-queue", f"{new} datagrams not read in time", "lan")
                self._note_limited("sip.message.dropped", note)

    def _kernel_drops(self) -> int:
        """Datagrams dropped on the LAN UDP sockets so far (/proc is memory: no wait)."""
        drops = 0
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            try:
                with open(table, encoding="ascii") as file:
                    drops += udp_drops(file.read(), self._udp_inodes)
            except OSError:
                continue  # not Linux, or no IPv6: nothing to count
        return drops

    async def _sweep_tcp(self) -> None:
        """Close LAN TCP connections that stay silent (sip.idle_timeout) or leave a message
        unfinished (sip.header_timeout): neither may hold a descriptor for ever."""
        idle = float(self.sip.idle_timeout)
        unfinished = float(self.sip.header_timeout)
        while True:
            await asyncio.sleep(_TCP_SWEEP_SECONDS)
            now = self._loop.time()
            for conn in list(self._tcp.values()):
                flow = conn.flow
                if flow is None or conn.transport is None:
                    continue
                if idle > 0 and now - conn.last_seen > idle:
                    self._dropped(Dropped("idle-timeout", "nothing received", flow.source))
                    conn.transport.close()
                elif (
                    unfinished > 0
                    and conn.partial_since is not None
                    and now - conn.partial_since > unfinished
                ):
                    self._dropped(
                        Dropped("header-timeout", "a message left unfinished", flow.source)
                    )
                    conn.transport.abort()

    def _tcp_malformed(self, conn: _TcpLan, exc: RemoteProtocolError) -> None:
        """The stream cannot be framed any more: answer what can be answered, log it,
        and close that connection only (close() writes the answer out first)."""
        if conn.flow is not None:
            self._execute(self.core.lan_stream_broken(exc, conn.flow))
        if conn.transport is not None:
            conn.transport.close()

    # --- carrying out the core's outputs -------------------------------------------------------

    def _execute(self, outputs: Iterable[Output]) -> None:
        for out in outputs:
            kind = type(out)
            if kind is SendUpstream:
                flow = self._flow
                if flow is None or flow.transport is None:
                    self.metrics.dropped.inc(reason="no-upstream")
                elif self._batch is not None:
                    self._batch.append(out.data)  # type: ignore[union-attr]
                else:
                    flow.transport.write(out.data)  # type: ignore[union-attr]
            elif kind is SendLan:
                self._send_lan(out.flow, out.data)  # type: ignore[union-attr]
            elif kind is TransactionDone:
                self._done(out)  # type: ignore[arg-type]
            elif kind is Dropped:
                self._dropped(out)  # type: ignore[arg-type]
            elif kind is Refused:
                self._refused(out)  # type: ignore[arg-type]
            elif kind is HandOff:
                self._hand_off(out)  # type: ignore[arg-type]
            elif kind is ConnectUpstream:
                self._demand()
            elif kind is CloseUpstream:
                flow = self._flow
                self._log.warning("sip.upstream.dead", reason=out.reason)  # type: ignore[union-attr]
                if flow is not None and flow.transport is not None:
                    flow.transport.close()
            elif kind is Registered:
                self.status.registered(
                    time.time(),
                    source=out.peer,  # type: ignore[union-attr]
                    transport=out.transport,  # type: ignore[union-attr]
                    aor=out.aor,  # type: ignore[union-attr]
                    expires=out.expires,  # type: ignore[union-attr]
                )
            elif kind is PongSupport:
                self._log.info("sip.keepalive.answered", detail=out.detail)  # type: ignore[union-attr]
            elif kind is PathSupport:
                (self._log.info if out.supported else self._log.warning)(  # type: ignore[union-attr]
                    "sip.registrar.path",
                    supported=out.supported,  # type: ignore[union-attr]
                    detail=out.detail,  # type: ignore[union-attr]
                )
        self._arm()

    def _hand_off(self, out: HandOff) -> None:
        """A request from upstream for another worker's base station goes to it."""
        failed = None if self.handoff is None else self.handoff.send(out.worker, out.data)
        if self.handoff is None or failed is not None:
            self._dropped(
                Dropped(
                    failed or "handoff-failed",
                    f"a request for worker {out.worker} could not be passed to it",
                    "upstream",
                )
            )

    def _on_handoff(self) -> None:
        """Requests another worker received from upstream for this worker's flows: they
        are relayed as if they had arrived on this worker's upstream flow."""
        assert self.handoff is not None
        for data in self.handoff.receive():
            if self._core is None:
                return
            try:
                message = scan_datagram(data) or parse_datagram(data)
            except RemoteProtocolError as exc:
                self._dropped(Dropped("malformed-handoff", str(exc), "upstream"))
                continue
            self._execute(self._core.receive_upstream(message, self._loop.time()))

    def _flush_batch(self) -> None:
        """One TLS write for everything the last batch of datagrams sends upstream."""
        batch, self._batch = self._batch, None
        if not batch:
            return
        flow = self._flow
        if flow is not None and flow.transport is not None:
            flow.transport.write(batch[0] if len(batch) == 1 else b"".join(batch))
        else:
            self.metrics.dropped.inc(len(batch), reason="no-upstream")

    def _send_lan(self, flow: LanFlow, data: bytes) -> None:
        if flow.transport == "udp":
            transport = self._udp.get(flow.listener)
            if transport is not None:
                transport.sendto(data, (flow.host, flow.port))
            return
        conn = self._tcp.get(flow.conn_id)
        if conn is not None and conn.transport is not None:
            conn.transport.write(data)
        else:
            self.metrics.dropped.inc(reason="lan-flow-closed")

    def _done(self, done: TransactionDone) -> None:
        method = done.method if done.method in KNOWN_METHODS else "other"
        series = (done.direction, method, done.status)
        key = self._series.get(series)
        if key is None:  # a bounded set: two directions, 15 method names, status codes
            key = self.metrics.transactions.key(
                direction=done.direction, method=method, status=str(done.status)
            )
            self._series[series] = key
        self.metrics.transactions.inc_key(key)
        if self._info_enabled():
            self._log.info(
                "sip.request.answered" if done.local else "sip.request.relayed",
                call_id=done.call_id,
                method=done.method,
                status=done.status,
                direction=done.direction,
                peer=done.peer,
                duration_ms=round(done.duration * 1000, 2),
            )
        self.status.answered(
            time.time(),
            source=done.peer,
            method=done.method,
            status=done.status,
            local=done.local,
            transport=done.transport,
        )
        for observer in self.observers:
            observer(done)

    def _info_enabled(self) -> bool:
        """Whether an info event would be written, without assembling a logger to ask.

        Read from the configured wrapper class at each call (the configuration can change
        while the relay runs); the answer is kept per class.
        """
        wrapper = structlog.get_config()["wrapper_class"]
        if wrapper is not self._level_wrapper:
            # Only a class that defines the check is asked (a generic wrapper would turn
            # the call into a log event of its own).
            self._info_on = not hasattr(wrapper, "is_enabled_for") or bool(
                self._log.bind().is_enabled_for(logging.INFO)
            )
            self._level_wrapper = wrapper
        return self._info_on

    def _dropped(self, dropped: Dropped) -> None:
        self.metrics.dropped.inc(reason=dropped.reason)
        self._note_limited("sip.message.dropped", dropped)

    def _refused(self, refused: Refused) -> None:
        self.metrics.refused.inc(reason=refused.reason)
        self._note_limited("sip.request.refused", refused)

    def _note_limited(self, event: str, note: Dropped | Refused) -> None:
        """Log ``note`` at most once a second per event, source and reason (a flood
        must not become a flood of log lines)."""
        key = (event, note.reason, note.peer)
        now = time.monotonic()
        if now - self._drop_logged.get(key, -math.inf) < 1.0:
            return
        if len(self._drop_logged) > 10000:
            self._drop_logged.clear()
        self._drop_logged[key] = now
        self._log.warning(event, reason=note.reason, peer=note.peer, detail=note.detail)

    def _arm(self) -> None:
        core = self._core
        if core is None:
            return
        deadline = core.get_timer()
        if deadline is None:
            return
        deadline = max(deadline, math.ceil(deadline / _TIMER_TICK) * _TIMER_TICK)
        if deadline >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        now = max(self._loop.time(), self._timer_at)
        self._timer = None
        self._timer_at = math.inf
        self._execute(self.core.handle_timer(now))
