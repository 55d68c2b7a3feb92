"""The edge proxy, sans-I/O: what sipsgate does with every SIP message.

Base stations on the LAN (UDP or TCP) on one side, one TLS flow to the upstream
registrar/proxy on the other. :class:`ProxyCore` is fed parsed messages (or raw
datagrams) with the flow they came from and the current time, and returns a list
of outputs for the asyncio adapter to carry out: bytes to send on a LAN flow or the
upstream flow, a request to (re)connect the upstream, and notes for logs and
metrics. It keeps the transactions (RFC 3261 §17) of both sides and arms a single
timer: ``get_timer()`` / ``handle_timer(now)``.

What it does to a request (RFC 3261 §16, RFC 3581, RFC 3327, RFC 5626, RFC 5658):

- stamps ``received``/``rport`` into the base station's Via, adds its own Via with
  a ``z9hG4bK`` branch that also carries a loop-detection hash (482), decrements
  Max-Forwards (483 at zero);
- removes its own Route entries, and Record-Routes itself twice (LAN side and TLS
  side) on dialog-creating requests, each URI carrying the base station's flow token;
- adds a ``Path`` with the flow token to REGISTER, so that requests for the base
  station come back over the flow it registered from; when the registrar shows it
  does not support Path, rewrites the Contact to a URI of its own that carries the
  flow token and the original Contact instead, and restores it in responses;
- passes 401/407 challenges and every other response through untouched but for
  its own Via;
- answers ``503 Service Unavailable`` with a Warning and a Reason when the
  upstream cannot be reached or its certificate was rejected.

What the upstream may reach: only base stations, through what sipsgate holds — a flow
token it signed, a TCP connection a base station opened, or the UDP address a base
station sent requests or registered from. A request for any other address is answered
404 and reported; a response without a transaction goes only to the base station whose
Via sits under a branch sipsgate computed for it, at an address it holds.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import random
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.relay.flows import DecodedToken, FlowTokens, LanFlow, uri_user
from gateway.relay.transaction import (
    DEFAULT_TIMERS,
    ClientTransaction,
    ResponseAction,
    ServerTransaction,
    State,
    TimerAction,
    TimerSettings,
    Transaction,
    TransactionTable,
)
from gateway.sip import (
    Headers,
    NameAddr,
    RemoteProtocolError,
    Request,
    Response,
    Via,
    parse_datagram,
    parse_name_addr_list,
    parse_via,
    parse_via_list,
    serialise,
    split_comma_list,
    validate_request,
)
from gateway.sip.headers import (
    check_call_id,
    parse_cseq,
    parse_max_forwards,
    parse_name_addr,
    quote,
)
from gateway.sip.uri import SipUri, parse_sip_uri
from gateway.sip.wire import SimpleVia, Wire, scan_datagram, simple_name_addr, simple_via

MAGIC = "z9hG4bK"
#: Methods whose initial request (no To tag) creates a dialog: these are Record-Routed.
DIALOG_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})
REASONS = {
    100: "Trying",
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    430: "Flow Failed",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    487: "Request Terminated",
    503: "Service Unavailable",
}

# UDP addresses of base stations the upstream may reach: a source of requests stays
# known this long after its last request, a registration until it expires.
UDP_PEER_SECONDS = 600.0
MAX_REGISTRATION_SECONDS = 86400.0
MAX_UDP_PEERS = 10_000

# --- outputs ---------------------------------------------------------------------------


class SendLan(NamedTuple):
    """Send ``data`` to a base station over ``flow``."""

    flow: LanFlow
    data: bytes


class SendUpstream(NamedTuple):
    """Send ``data`` over the upstream TLS flow."""

    data: bytes


class ConnectUpstream(NamedTuple):
    """Requests wait for the upstream flow: connect it (or report why not)."""


class CloseUpstream(NamedTuple):
    """The upstream flow is dead (no keep-alive answer): close it."""

    reason: str


class TransactionDone(NamedTuple):
    """A transaction got its final answer (for the per-transaction log and metrics)."""

    direction: str  # "outbound" (base station → upstream) or "inbound"
    method: str
    status: int
    call_id: str
    duration: float
    peer: str  # the base station, host:port
    local: bool  # the answer was made by sipsgate itself (408, 483, 503, ...)
    transport: str = ""  # the base station's: "udp" or "tcp" ("" for inbound)


class Dropped(NamedTuple):
    """A message was dropped (malformed, stray, over a limit)."""

    reason: str
    detail: str
    peer: str


class Registered(NamedTuple):
    """The registrar accepted a base station's REGISTER (for the status view)."""

    peer: str  # the base station, host:port
    transport: str
    aor: str  # the To URI: the address of record
    expires: int | None  # seconds granted: the longest Contact binding, else Expires


class PathSupport(NamedTuple):
    """What the registrar showed about RFC 3327 Path."""

    supported: bool
    detail: str


class PongSupport(NamedTuple):
    """The upstream showed it answers CRLF keep-alives (RFC 5626 §4.4.1): from now on a
    missing pong means a dead flow."""

    detail: str


Output = (
    SendLan
    | SendUpstream
    | ConnectUpstream
    | CloseUpstream
    | TransactionDone
    | Dropped
    | PathSupport
    | PongSupport
    | Registered
)

_CONNECT = ConnectUpstream()

# --- settings ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    """One LAN listening address; its index in ``ProxySettings.listeners`` is its id."""

    transport: str  # "udp" or "tcp"
    host: str
    port: int

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxySettings:
    listeners: tuple[Listener, ...]
    key: bytes = field(default_factory=lambda: os.urandom(32), repr=False)
    timers: TimerSettings = DEFAULT_TIMERS
    max_pending: int = 2000  # requests held while the upstream flow is being opened
    source_inflight: int = 1000  # transactions without a final answer, per base station host
    keepalive: float = 30.0  # RFC 5626 CRLF ping interval on the upstream flow; 0 = off
    #: RFC 5626 §4.4.1: no pong within this → the flow is dead, once the upstream has
    #: shown it answers pings (before that, only a TCP/TLS error ends a flow).
    pong_timeout: float = 10.0
    agent: str = "sipsgate"
    #: The upstream as configured (``sip.upstream``): the target of OPTIONS keep-alives.
    upstream_uri: str = ""
    #: Host names base stations may use for sipsgate (outbound proxy, Route); its
    #: listen addresses are recognised without being listed.
    host_names: tuple[str, ...] = ()


# --- transactions with the proxy's bookkeeping ---------------------------------------------


class ServerTx(ServerTransaction):
    """A server transaction and what the proxy needs to answer on it."""

    __slots__ = (
        "_build",
        "_request",
        "call_id",
        "client",
        "counted",
        "key",
        "source",
        "started",
        "ua_path",
    )

    def __init__(
        self,
        request: Request | None,
        *,
        method: str,
        key: str,
        source: LanFlow | None,
        reliable: bool,
        now: float,
        settings: TimerSettings,
        call_id: str,
    ) -> None:
        super().__init__(method, reliable=reliable, settings=settings)
        self.key = key
        self._request = request  # dropped once the final answer is out
        self._build: Callable[[], Request] | None = None
        self.source = source  # None: the upstream flow
        self.started = now
        self.call_id = call_id
        self.client: ClientTx | None = None
        self.counted = False
        self.ua_path = False

    def defer(self, build: Callable[[], Request]) -> None:
        """Keep ``build`` instead of the request: it is built only if an answer needs it."""
        self._build = build

    @property
    def live(self) -> bool:
        """Whether the request still waits for its final answer (it is kept until then)."""
        return self._request is not None or self._build is not None

    @property
    def request(self) -> Request | None:
        if self._request is None and self._build is not None:
            self._request = self._build()
            self._build = None
        return self._request

    @request.setter
    def request(self, request: Request | None) -> None:
        self._request = request
        self._build = None


class ClientTx(ClientTransaction):
    """A client transaction and the request it sent (kept for ACK, CANCEL, resending)."""

    __slots__ = (
        "branch",
        "cancel",
        "data",
        "dest",
        "key",
        "path_added",
        "request",
        "server",
    )

    def __init__(
        self,
        request: Request | None,
        data: bytes,
        *,
        method: str,
        key: str,
        branch: str,
        dest: LanFlow | None,
        server: ServerTx | None,
        now: float,
        settings: TimerSettings,
    ) -> None:
        reliable = dest is None or dest.transport == "tcp"
        super().__init__(method, reliable=reliable, now=now, settings=settings)
        self.key = key
        self.branch = branch
        self.dest = dest  # None: the upstream flow
        self.server = server
        self.data = data if not reliable else b""
        self.request: Request | None = request if self.invite or server is None else None
        self.cancel = 0  # 1: a CANCEL waits for a provisional response; 2: sent
        self.path_added = False


class _Pending(NamedTuple):
    server: ServerTx
    request: Request


# --- the core ------------------------------------------------------------------------------


class ProxyCore:
    """The whole relay's SIP behaviour; no I/O, time passed in."""

    def __init__(self, settings: ProxySettings, *, rng: Callable[[], float] | None = None) -> None:
        if not settings.listeners:
            raise ValueError("The relay needs at least one LAN listener.")
        self.settings = settings
        self.timers = settings.timers
        self.tokens = FlowTokens(settings.key)
        self._hash_key = hashlib.sha256(b"branch" + settings.key).digest()
        self._instance = hashlib.sha256(b"instance" + settings.key).hexdigest()[:4]
        self._prefix = f"{MAGIC}sg{self._instance}"
        self._rng = rng or random.Random().random
        self.table: TransactionTable[Transaction] = TransactionTable()
        self.upstream_local: str | None = None  # "host:port" of our end of the TLS flow
        self.path_supported: bool | None = None
        self._pending: list[_Pending] = []
        self._connect_requested = False
        self._inflight: dict[str, int] = {}
        self._tcp_flows: dict[int, LanFlow] = {}
        self._tcp_by_addr: dict[tuple[str, int], LanFlow] = {}
        self._udp_peers: OrderedDict[tuple[str, int], float] = OrderedDict()
        self._first_udp = next(
            (i for i, li in enumerate(settings.listeners) if li.transport == "udp"), None
        )
        self._ping_at: float | None = None
        self._pong_due: float | None = None
        # RFC 5626 §4.4.1: pongs are expected only from an upstream that negotiated
        # outbound (Require/Supported: outbound on a REGISTER 2xx) or has answered a
        # ping before. Many registrars ignore CRLF pings; their flows stay open.
        self.pongs_answered = False
        self._pings_unanswered = False  # a ping went out on this flow and got no pong
        self._keepalive_count = 0
        # What names sipsgate in a Route or Request-URI (RFC 3261 §16.4): listen
        # addresses with their ports, and host names with any of those ports.
        self._own_addresses = frozenset(
            (_normal_host(li.host), li.port) for li in settings.listeners
        )
        self._own_names = frozenset(n.lower().rstrip(".") for n in settings.host_names if n)
        self._own_ports = frozenset(li.port for li in settings.listeners)

    # --- timers ------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must run next (the earliest of all deadlines), or None."""
        deadline = self.table.get_timer()
        for t in (self._ping_at, self._pong_due):
            if t is not None and (deadline is None or t < deadline):
                deadline = t
        return deadline

    def handle_timer(self, now: float) -> list[Output]:
        out: list[Output] = []
        if self._pong_due is not None and now >= self._pong_due:
            self._pong_due = None
            self._ping_at = None
            out.append(
                CloseUpstream(
                    f"no keep-alive answer within {self.settings.pong_timeout:g} s "
                    "(RFC 5626 CRLF ping)"
                )
            )
        elif self._ping_at is not None and now >= self._ping_at:
            out.append(SendUpstream(b"\r\n\r\n"))
            if self.pongs_answered and self._pong_due is None:
                # The deadline runs from the first unanswered ping: later pings (an
                # interval under the pong timeout) must not push it back.
                self._pong_due = now + self.settings.pong_timeout
            elif not self.pongs_answered and self._pings_unanswered:
                self._options_keepalive(now, out)
            self._pings_unanswered = not self.pongs_answered
            self._ping_at = self._next_ping(now)
        for key, tx in self.table.due(now):
            action = tx.on_timer(now)
            if isinstance(tx, ClientTx):
                self._client_timer(tx, action, now, out)
            else:
                assert isinstance(tx, ServerTx)
                self._server_timer(tx, action, now, out)
            self.table.schedule(key, tx)
        return out

    def _next_ping(self, now: float) -> float | None:
        interval = self.settings.keepalive
        if interval <= 0:
            return None
        return now + interval * (0.8 + 0.2 * self._rng())  # RFC 5626 §4.4.1

    def _client_timer(
        self, ctx: ClientTx, action: TimerAction, now: float, out: list[Output]
    ) -> None:
        if action is TimerAction.RETRANSMIT:
            self._send(ctx.dest, ctx.data, out)
        elif action is TimerAction.TIMEOUT:
            stx = ctx.server
            if stx is not None and stx.live:
                self._answer(stx, 408, now, out)

    def _server_timer(
        self, stx: ServerTx, action: TimerAction, now: float, out: list[Output]
    ) -> None:
        if action is TimerAction.RETRANSMIT and stx.last_response is not None:
            self._send(stx.source, stx.last_response, out)
        elif action in (TimerAction.TERMINATED, TimerAction.NO_ACK):
            self._uncount(stx)

    # --- the upstream flow ---------------------------------------------------------------

    def upstream_up(self, local_host: str, local_port: int, now: float) -> list[Output]:
        """The TLS flow is open; ``local_*`` is our end of it (named in Via, Path, RR)."""
        host = f"[{local_host}]" if ":" in local_host else local_host
        self.upstream_local = f"{host}:{local_port}"
        self._connect_requested = False
        self._pong_due = None
        self._pings_unanswered = False
        self._ping_at = self._next_ping(now)
        out: list[Output] = []
        pending, self._pending = self._pending, []
        for item in pending:
            if item.server.live:
                self._forward_upstream(item.server, item.request, now, out)
        return out

    def upstream_down(
        self,
        now: float,
        *,
        warning: str = "The connection to the upstream server was lost while the request "
        "was in progress; it is being re-established.",
        reason_text: str = "Upstream connection lost",
    ) -> list[Output]:
        """The TLS flow closed: requests in flight on it get a 503 (RFC 3261 §18.4),
        with ``warning`` saying why when the relay knows more than "lost"."""
        self.upstream_local = None
        self._ping_at = self._pong_due = None
        out: list[Output] = []
        for key, tx in list(self.table.by_key.items()):
            if isinstance(tx, ClientTx) and tx.dest is None and tx.state in _OPEN_CLIENT:
                tx.state = State.TERMINATED
                tx.deadline = None
                self.table.discard(key, tx)
                stx = tx.server
                if stx is not None and stx.live:
                    self._answer(
                        stx,
                        503,
                        now,
                        out,
                        warning=warning,
                        reason_text=reason_text,
                    )
        return out

    def upstream_failed(
        self,
        warning: str,
        now: float,
        *,
        reason_text: str = "Upstream unreachable",
        retry_after: int | None = None,
    ) -> list[Output]:
        """The flow could not be opened: every waiting request is answered 503."""
        self._connect_requested = False
        out: list[Output] = []
        pending, self._pending = self._pending, []
        for item in pending:
            if item.server.live:
                self._answer(
                    item.server,
                    503,
                    now,
                    out,
                    warning=warning,
                    reason_text=reason_text,
                    retry_after=retry_after,
                )
        return out

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _options_keepalive(self, now: float, out: list[Output]) -> None:
        """A SIP-level keep-alive for an upstream that ignores CRLF pings.

        Such registrars often do not count the pings as activity either (Net::SIP
        closes a connection after 120 s without a SIP message), and a closed flow
        takes the registrations made over it along. An OPTIONS with Max-Forwards 0
        (RFC 3261 §11, §16.3) is answered by the first hop, never forwarded; its
        answer, or the lack of one, is not used to judge the flow.
        """
        local = self.upstream_local
        if local is None:
            return
        self._keepalive_count += 1
        n = self._keepalive_count
        key = f"keepalive|{n}"
        branch = self._branch_with(key, "00000000")
        target = self.settings.upstream_uri or f"sip:{local};transport=tls"
        request = Request(
            method="OPTIONS",
            uri=target,
            headers=Headers.from_pairs(
                [
                    ("Via", f"SIP/2.0/TLS {local};branch={branch}"),
                    ("Max-Forwards", "0"),
                    ("From", f"<sip:{self.settings.agent}@{local}>;tag={self._tag(key)}"),
                    ("To", f"<{target}>"),
                    ("Call-ID", f"keepalive-{self._instance}-{n}@{local}"),
                    ("CSeq", f"{n} OPTIONS"),
                ]
            ),
        )
        data = serialise(request)
        ctx = ClientTx(
            None, data, method="OPTIONS", key=f"c|{branch}|OPTIONS", branch=branch,
            dest=None, server=None, now=now, settings=self.timers,
        )  # fmt: skip
        self.table.add(ctx.key, ctx)
        out.append(SendUpstream(data))

    def receive_pong(self) -> list[Output]:
        """A CRLF pong arrived on the upstream flow."""
        self._pong_due = None
        self._pings_unanswered = False
        if self.pongs_answered:
            return []
        self.pongs_answered = True
        return [PongSupport("the upstream answered a CRLF keep-alive")]

    def _outbound_negotiated(self, response: Response, out: list[Output]) -> None:
        """RFC 5626 §6: a registrar supporting outbound names it in its REGISTER 2xx."""
        if self.pongs_answered:
            return
        tags = ",".join(
            (*response.headers.get_all("Require"), *response.headers.get_all("Supported"))
        )
        if "outbound" in (t.strip().lower() for t in tags.split(",")):
            self.pongs_answered = True
            out.append(PongSupport("the registrar's 2xx to REGISTER names 'outbound'"))

    # --- LAN TCP connections ---------------------------------------------------------------

    def lan_connection_opened(self, flow: LanFlow) -> None:
        self._tcp_flows[flow.conn_id] = flow
        self._tcp_by_addr[(flow.host, flow.port)] = flow

    def lan_connection_closed(self, flow: LanFlow) -> None:
        self._tcp_flows.pop(flow.conn_id, None)
        if self._tcp_by_addr.get((flow.host, flow.port)) == flow:
            del self._tcp_by_addr[(flow.host, flow.port)]

    # --- messages from the LAN ------------------------------------------------------------------

    def receive_lan_datagram(self, data: bytes, flow: LanFlow, now: float) -> list[Output]:
        """One UDP datagram from a base station (malformed ones are dropped, RFC 3261 §18)."""
        wire = scan_datagram(data)
        if wire is not None:
            return self.receive_lan(wire, flow, now)
        if not data.strip(b"\r\n\x00 "):
            return []  # a keep-alive (CRLF, NUL words): nothing to answer on UDP
        try:
            message = parse_datagram(data)
        except RemoteProtocolError as exc:
            return [Dropped("malformed", str(exc), flow.source)]
        return self.receive_lan(message, flow, now)

    def receive_lan(
        self, message: Request | Response | Wire, flow: LanFlow, now: float
    ) -> list[Output]:
        """One parsed (or scanned) message from a base station."""
        out: list[Output] = []
        if isinstance(message, Wire):
            if message.status:
                if self._fast_response(message, flow, now, out):
                    return out
            elif self._fast_request(message, flow, now, out):
                return out
            message = message.to_message()
        try:
            if isinstance(message, Response):
                self._lan_response(message, flow, now, out)
            else:
                self._lan_request(message, flow, now, out)
        except RemoteProtocolError as exc:
            self._malformed(message, flow, exc, out)
        return out

    def lan_stream_broken(self, exc: RemoteProtocolError, flow: LanFlow) -> list[Output]:
        """A base station's TCP stream cannot be framed any more (the caller closes it).

        When the offending request's headers were read (no Content-Length, a body above
        the limit), it is answered first (RFC 3261 §18.3, §21.4.11): the field engineer
        sees why in the base station's log, not only a closed connection.
        """
        out: list[Output] = []
        if exc.head is None:
            out.append(Dropped("malformed", str(exc), flow.source))
        else:
            self._malformed(exc.head, flow, exc, out)
        return out

    def _malformed(
        self,
        message: Request | Response,
        flow: LanFlow | None,
        exc: RemoteProtocolError,
        out: list[Output],
    ) -> None:
        peer = flow.source if flow is not None else "upstream"
        out.append(Dropped("malformed", str(exc), peer))
        # DESIGN §9: dropped on UDP, answered 400 on a stream (when it can be answered).
        if (
            isinstance(message, Request)
            and message.method != "ACK"
            and (flow is None or flow.transport == "tcp")
        ):
            try:
                data = self._local_response(
                    message,
                    exc.status_hint if exc.status_hint >= 400 else 400,
                    tag_seed=peer,
                    reason=_short(str(exc)),
                )
            except RemoteProtocolError:
                return
            self._send(flow, data, out)

    def _lan_request(self, request: Request, flow: LanFlow, now: float, out: list[Output]) -> None:
        method = request.method
        via = request.top_via
        if via is None:
            raise RemoteProtocolError("The request has no Via header.")
        key = self._server_key(request, via, method)
        if method == "ACK":
            stx = self.table.get(key)
            if isinstance(stx, ServerTx) and stx.invite and stx.state is not State.ACCEPTED:
                stx.on_ack(now)
                self.table.schedule(key, stx)
                return
            self._stateless_upstream(self._stamp_via(request, via, flow), now, out, flow)
            return
        existing = self.table.get(key)
        if existing is not None:
            assert isinstance(existing, ServerTx)
            again = existing.on_retransmission()
            if again is not None:
                self._send(existing.source, again, out)
            return
        answered = self.table.get_retired(key)
        if answered is not None:
            data, host, port, listener = answered
            self._send(LanFlow("udp", host, port, listener), data, out)
            return
        if method == "CANCEL":
            self._cancel(request, key, flow, now, out)
            return
        validate_request(request, require_max_forwards=False)  # §16.6: we add 70
        request = self._stamp_via(request, via, flow)
        source = self._reply_flow(flow, via)
        self._note_peer(source, now + UDP_PEER_SECONDS)
        stx = ServerTx(
            request,
            method=method,
            key=key,
            source=source,
            reliable=flow.transport == "tcp",
            now=now,
            settings=self.timers,
            call_id=request.call_id or "",
        )
        host = flow.host
        if self._inflight.get(host, 0) >= self.settings.source_inflight:
            self.table.add(key, stx)
            out.append(Dropped("source-limit", "too many transactions in progress", flow.source))
            self._answer(
                stx, 503, now, out,
                warning=f"Too many requests in progress from {host}; try again shortly.",
                reason_text="Per-source limit reached", retry_after=1,
            )  # fmt: skip
            return
        self._inflight[host] = self._inflight.get(host, 0) + 1
        stx.counted = True
        self.table.add(key, stx)
        if not self._checks(stx, request, now, out):
            return
        if stx.invite:
            self._answer(stx, 100, now, out)
        self._forward_upstream(stx, request, now, out)

    # --- the fast path: plain requests and responses, spliced line by line -----------------
    #
    # Taken only when the outcome is the one the full path would reach; anything else
    # (no flow yet, a retransmission, Route, dialogs, INVITE, ACK, CANCEL, a loop, a
    # header the plain recognisers do not know) returns False before any state changed,
    # and the message goes the full way.

    def _fast_request(self, w: Wire, flow: LanFlow, now: float, out: list[Output]) -> bool:
        method = w.method
        local = self.upstream_local
        keys = w.keys
        if (
            local is None
            or method in _FULL_PATH_METHODS
            or "route" in keys
            or (method == "REGISTER" and self.path_supported is False)
            or "via" not in keys
        ):
            return False
        values = w.values
        vi = keys.index("via")
        via = simple_via(values[vi])
        if via is None:
            return False
        branch = via.param("branch")[1]
        if branch is None or not branch.startswith(MAGIC):
            return False
        key = f"s|{branch}|{via.sent_by}|{method}"
        if key in self.table:
            return False  # a retransmission
        max_forwards = self._fast_valid(w, vi)
        host = flow.host
        if max_forwards <= 0 or self._inflight.get(host, 0) >= self.settings.source_inflight:
            return False
        call_id = values[keys.index("call-id")]
        has_rport, _ = via.param("rport")
        if flow.transport == "tcp" or has_rport or (via.port or 5060) == flow.port:
            source = flow
        else:
            source = LanFlow("udp", host, via.port or 5060, flow.listener)
        self._note_peer(source, now + UDP_PEER_SECONDS)
        stx = ServerTx(
            None, method=method, key=key, source=source, reliable=flow.transport == "tcp",
            now=now, settings=self.timers, call_id=call_id,
        )  # fmt: skip
        stx.defer(lambda: self._full_request(w, flow))
        self._inflight[host] = self._inflight.get(host, 0) + 1
        stx.counted = True
        self.table.add(key, stx)

        # What _stamp_via and _forward_upstream do, on the lines.
        lines = w.lines.copy()
        stamped = _stamp_simple(via, flow)
        if stamped is not None:
            lines[vi] = f"Via: {stamped}"
        mi = keys.index("max-forwards")
        lines[mi] = f"{w.lines[mi][: -len(values[mi]) - 2]}: {max_forwards - 1}"
        path_at = -1
        path_line = ""
        if method == "REGISTER":
            token = self.tokens.flow_token(flow)
            stx.ua_path = "path" in ",".join(w.get_all("supported")).lower()
            path_line = f"Path: <sip:{token}@{local};transport=tls;lr;ob>"
            if "path" in keys:
                path_at = keys.index("path")
            else:
                lines.append(path_line)
            if not stx.ua_path:
                lines.append("Supported: path")
        loop = _loop_hash(
            w.uri, w.get("from"), w.get("to"), call_id, values[keys.index("cseq")], None
        )
        ours = self._branch_with(key, loop)
        via_line = f"Via: SIP/2.0/TLS {local};branch={ours}"
        if path_at > vi:
            lines.insert(path_at, path_line)
        lines.insert(vi, via_line)
        if 0 <= path_at <= vi:
            lines.insert(path_at, path_line)
        data = w.render(lines)
        ctx = ClientTx(
            None, data, method=method, key=f"c|{ours}|{method}", branch=ours, dest=None,
            server=stx, now=now, settings=self.timers,
        )  # fmt: skip
        ctx.path_added = method == "REGISTER"
        stx.client = ctx
        self.table.add(ctx.key, ctx)
        out.append(SendUpstream(data))
        return True

    def _fast_valid(self, w: Wire, top: int) -> int:
        """Max-Forwards when ``validate_request`` passes and no Via is ours; else -1."""
        keys = w.keys
        for name in _SINGLE:
            if keys.count(name) != 1:
                return -1
        prefix = self._prefix
        try:
            for i, (k, v) in enumerate(zip(keys, w.values, strict=True)):
                if k == "via":
                    if prefix in v:
                        return -1  # maybe a loop: the full path looks closer
                    if i != top and ("," in v or simple_via(v) is None):
                        parse_via_list(v)
                elif k == "to" or k == "from":
                    if not simple_name_addr(v):
                        parse_name_addr(v)
                elif k in _ADDRESS_LISTS and ("," in v or not simple_name_addr(v)):
                    parse_name_addr_list(v, allow_wildcard=k == "contact")
            check_call_id(w.values[keys.index("call-id")])
            cseq = parse_cseq(w.values[keys.index("cseq")])
            max_forwards = parse_max_forwards(w.values[keys.index("max-forwards")])
        except RemoteProtocolError:
            return -1
        return max_forwards if cseq.method == w.method else -1

    def _full_request(self, w: Wire, flow: LanFlow) -> Request:
        """The request the full path would have kept for a transaction the fast path took."""
        request = w.to_message()
        assert isinstance(request, Request)
        via = request.top_via
        assert via is not None
        return self._stamp_via(request, via, flow)

    def _fast_response(self, w: Wire, flow: LanFlow | None, now: float, out: list[Output]) -> bool:
        keys = w.keys
        if "via" not in keys or "cseq" not in keys:
            return False
        vi = keys.index("via")
        value = w.values[vi]
        rest: str | None = None
        if "," in value:  # our Via and the ones below it on one line, as some stacks write
            elements = split_comma_list(value)
            value, rest = elements[0], ", ".join(elements[1:])
        via = simple_via(value)
        if via is None:
            return False
        branch = via.param("branch")[1]
        if branch is None or not branch.startswith(self._prefix):
            return False
        try:
            cseq = parse_cseq(w.values[keys.index("cseq")])
        except RemoteProtocolError:
            return False
        ctx = self.table.by_key.get(f"c|{branch}|{cseq.method}")
        if type(ctx) is not ClientTx or ctx.invite or ctx.path_added or ctx.cancel:
            return False
        stx = ctx.server
        if stx is None or stx.method == "REGISTER":
            return False
        status = w.status
        action = ctx.on_response(status, now)
        self.table.schedule(ctx.key, ctx)
        if action is ResponseAction.ABSORB:
            return True
        lines = w.lines.copy()
        if rest is None:
            del lines[vi]
        else:  # what pop_first_value leaves: the other values, joined by ", "
            lines[vi] = f"{lines[vi][: -len(w.values[vi]) - 2]}: {rest}"
        self._pass_response(stx, w.render(lines), status, now, out)
        return True

    def _checks(self, stx: ServerTx, request: Request, now: float, out: list[Output]) -> bool:
        """Max-Forwards (483) and loop detection (482, RFC 3261 §16.3)."""
        max_forwards = request.max_forwards
        if max_forwards is not None and max_forwards <= 0:
            self._answer(stx, 483, now, out)
            return False
        prefix = self._prefix
        for line in request.headers.get_all("Via"):
            if prefix in line:
                loop = self._loop_hash(request)
                for value in split_comma_list(line):
                    branch = parse_via(value).branch or ""
                    if branch.startswith(prefix) and branch.endswith(loop):
                        self._answer(stx, 482, now, out)
                        return False
        return True

    def _cancel(
        self, request: Request, key: str, flow: LanFlow | None, now: float, out: list[Output]
    ) -> None:
        """RFC 3261 §16.10: answer the CANCEL, cancel our pending client transaction."""
        invite_key = key[: key.rfind("|") + 1] + "INVITE"
        stx = self.table.get(invite_key)
        if not isinstance(stx, ServerTx):
            # No transaction to cancel: forward statelessly (§16.10).
            if flow is None:
                self._answer_stateless(request, 481, out, None)
            else:
                via = request.top_via
                assert via is not None
                self._stateless_upstream(self._stamp_via(request, via, flow), now, out, flow)
            return
        self._send(stx.source, self._local_response(request, 200, tag_seed=stx.key), out)
        ctx = stx.client
        if ctx is None or stx.state is not State.PROCEEDING:
            if stx.live and ctx is None:
                self._answer(stx, 487, now, out)  # never forwarded (waiting for the flow)
            return
        if ctx.state is State.PROCEEDING:
            self._send_cancel(ctx, now, out)
        elif ctx.state is State.CALLING:
            ctx.cancel = 1  # RFC 3261 §9.1: wait for a provisional response first

    def _send_cancel(self, ctx: ClientTx, now: float, out: list[Output]) -> None:
        assert ctx.request is not None
        ctx.cancel = 2
        inv = ctx.request
        headers = [("Via", inv.headers.get("Via") or "")]
        headers += [(n, v) for n, v in inv.headers if n.lower() in ("route",)]
        headers += [
            ("Max-Forwards", "70"),
            ("From", inv.headers.get("From") or ""),
            ("To", inv.headers.get("To") or ""),
            ("Call-ID", inv.headers.get("Call-ID") or ""),
            ("CSeq", f"{inv.cseq.number if inv.cseq else 1} CANCEL"),
        ]
        cancel = Request(method="CANCEL", uri=inv.uri, headers=Headers.from_pairs(headers))
        data = serialise(cancel)
        cancel_tx = ClientTx(
            cancel, data, method="CANCEL", key=f"c|{ctx.branch}|CANCEL", branch=ctx.branch,
            dest=ctx.dest,
            server=None, now=now, settings=self.timers,
        )  # fmt: skip
        self.table.add(cancel_tx.key, cancel_tx)
        ctx.cancel_timeout(now)
        self.table.schedule(ctx.key, ctx)
        self._send(ctx.dest, data, out)

    def _lan_response(
        self, response: Response, flow: LanFlow, now: float, out: list[Output]
    ) -> None:
        self._response(response, flow, now, out)

    # --- messages from upstream ---------------------------------------------------------------

    def receive_upstream(self, message: Request | Response | Wire, now: float) -> list[Output]:
        """One message that arrived over the upstream TLS flow."""
        out: list[Output] = []
        if isinstance(message, Wire):
            if message.status and self._fast_response(message, None, now, out):
                return out
            message = message.to_message()
        try:
            if isinstance(message, Response):
                self._response(message, None, now, out)
            else:
                self._upstream_request(message, now, out)
        except RemoteProtocolError as exc:
            self._malformed(message, None, exc, out)
        return out

    def _upstream_request(self, request: Request, now: float, out: list[Output]) -> None:
        method = request.method
        via = request.top_via
        if via is None:
            raise RemoteProtocolError("The request has no Via header.")
        key = self._server_key(request, via, method)
        if method == "ACK":
            stx = self.table.get(key)
            if isinstance(stx, ServerTx) and stx.invite and stx.state is not State.ACCEPTED:
                stx.on_ack(now)
                self.table.schedule(key, stx)
                return
        else:
            existing = self.table.get(key)
            if existing is not None:
                assert isinstance(existing, ServerTx)
                again = existing.on_retransmission()
                if again is not None:
                    self._send(None, again, out)
                return
            if method == "CANCEL":
                self._cancel(request, key, None, now, out)
                return
        validate_request(request, require_max_forwards=False)  # §16.6: we add 70
        request, dest = self._route_to_lan(request, now)
        if method == "ACK":
            if dest is not None:
                self._forward_lan(None, request, dest, now, out)
            return
        stx = ServerTx(
            request, method=method, key=key, source=None, reliable=True, now=now,
            settings=self.timers,
            call_id=request.call_id or "",
        )  # fmt: skip
        self.table.add(key, stx)
        if not self._checks(stx, request, now, out):
            return
        if dest is None:
            if method == "OPTIONS" and uri_user(request.uri) is None:
                self._answer(stx, 200, now, out)  # a keep-alive OPTIONS for sipsgate itself
            else:
                out.append(
                    Dropped(
                        "unknown-destination",
                        f"{method} for {_short(request.uri)} names no flow or registration "
                        "of a base station; answered 404",
                        "upstream",
                    )
                )
                self._answer(stx, 404, now, out)
            return
        if dest.transport == "tcp" and dest.conn_id not in self._tcp_flows:
            self._answer(
                stx, 430, now, out,
                warning=f"The TCP connection from base station {dest.source} is closed.",
            )  # fmt: skip
            return
        if stx.invite:
            self._answer(stx, 100, now, out)
        self._forward_lan(stx, request, dest, now, out)

    def _route_to_lan(self, request: Request, now: float) -> tuple[Request, LanFlow | None]:
        """Remove our Route entries and find the flow the request leaves on."""
        token: DecodedToken | None = None
        headers = request.headers
        while "Route" in headers:
            value, rest = headers.pop_first_value("Route")
            if not value:
                break
            user = uri_user(parse_name_addr_list(value, header="Route")[0].uri)
            decoded = self.tokens.decode(user) if user else None
            if decoded is None:
                break
            token = token or decoded
            headers = rest
        if headers is not request.headers:
            request = request.replace_headers(headers)
        user = uri_user(request.uri)
        if user is not None and len(user) > 40:
            decoded = self.tokens.decode(user)
            if decoded is not None and decoded.contact is not None:
                # Contact rewriting: the Request-URI is ours; restore the base station's.
                return _with_uri(request, decoded.contact), decoded.flow
        if token is not None:
            return request, token.flow
        return request, self._flow_for_uri(request.uri, now)

    def _flow_for_uri(self, uri: str, now: float) -> LanFlow | None:
        """A flow for a Request-URI naming a base station by IP address (no token): only
        an address a base station sent requests or registered from."""
        match = _URI_HOST.match(uri)
        if match is None or self._first_udp is None:
            return None
        host = _canonical_ip(match.group(1).strip("[]"))
        if host is None:
            return None
        port = int(match.group(2) or 5060)
        if not self._known_peer(host, port, now):
            return None
        return LanFlow("udp", host, port, self._first_udp)

    def _note_peer(self, flow: LanFlow, until: float) -> None:
        """Remember a base station's UDP address until ``until`` (never shortened)."""
        if flow.transport != "udp":
            return
        key = (flow.host, flow.port)
        peers = self._udp_peers
        known = peers.pop(key, None)
        peers[key] = until if known is None else max(known, until)
        while len(peers) > MAX_UDP_PEERS:
            peers.popitem(last=False)

    def _known_peer(self, host: str, port: int, now: float) -> bool:
        until = self._udp_peers.get((host, port))
        if until is None:
            return False
        if until < now:
            del self._udp_peers[(host, port)]
            return False
        return True

    # --- responses (both directions) -----------------------------------------------------------

    def _response(
        self, response: Response, flow: LanFlow | None, now: float, out: list[Output]
    ) -> None:
        value, headers = response.headers.pop_first_value("Via")
        peer = flow.source if flow is not None else "upstream"
        if not value:
            out.append(Dropped("stray-response", "a response without Via", peer))
            return
        branch = parse_via(value).branch or ""
        if not branch.startswith(self._prefix):
            out.append(Dropped("stray-response", f"top Via {value!r} is not ours", peer))
            return
        cseq = response.cseq
        if cseq is None:
            raise RemoteProtocolError("The response has no CSeq header.")
        status = response.status
        response = response.replace_headers(headers)
        ctx = self.table.get(f"c|{branch}|{cseq.method}")
        if not isinstance(ctx, ClientTx):
            self._stateless_response(response, flow, branch, cseq.method, now, out)
            return
        action = ctx.on_response(status, now)
        self.table.schedule(ctx.key, ctx)
        if action is ResponseAction.ABSORB:
            return
        if action is ResponseAction.ACK_AGAIN or action is ResponseAction.PASS_AND_ACK:
            self._send(ctx.dest, self._ack_for(ctx, response), out)
            if action is ResponseAction.ACK_AGAIN:
                return
        if ctx.cancel == 1 and status < 200:
            self._send_cancel(ctx, now, out)
        stx = ctx.server
        if stx is None:
            return  # our own CANCEL's answer
        if flow is None and stx.method == "REGISTER" and 200 <= status < 300:
            self._outbound_negotiated(response, out)
        if ctx.path_added and 200 <= status < 300:
            response = self._registered(ctx, stx, response, out)
        elif ctx.path_added and status == 420 and stx.live:
            unsupported = ",".join(response.headers.get_all("Unsupported")).lower()
            if "path" in unsupported:
                self.path_supported = False
                out.append(PathSupport(False, "the registrar answered 420 Unsupported: path"))
                request = stx.request
                assert request is not None
                self._forward_upstream(stx, request, now, out)  # again, Contact rewritten
                return
        if flow is None and stx.live and stx.method == "REGISTER" and "Contact" in response.headers:
            if 200 <= status < 300 and stx.source is not None:
                self._note_peer(stx.source, now + _registration_seconds(response))
            response = self._restore_contacts(response)
        if flow is None and stx.method == "REGISTER" and 200 <= status < 300 and stx.source:
            out.append(_registered_note(stx.source, response))
        self._pass_response(stx, serialise(response), status, now, out)

    def _pass_response(
        self, stx: ServerTx, data: bytes, status: int, now: float, out: list[Output]
    ) -> None:
        first_final = stx.final_status is None
        if stx.send_response(status, data, now):
            self._send(stx.source, data, out)
            if status >= 200 and first_final:
                self._final(stx, status, now, out, local=False)
        self._keep(stx)

    def _registered(
        self, ctx: ClientTx, stx: ServerTx, response: Response, out: list[Output]
    ) -> Response:
        """A 2xx to a REGISTER we added Path to: did the registrar take it (RFC 3327 §5.3)?"""
        if "Contact" in response.headers:
            supported = "Path" in response.headers
            if supported is not self.path_supported:
                self.path_supported = supported
                out.append(
                    PathSupport(
                        supported,
                        "the registrar returned the Path"
                        if supported
                        else "the registrar's 2xx to REGISTER carries no Path: "
                        "Contacts are rewritten from the next registration on",
                    )
                )
        if not stx.ua_path and "Path" in response.headers:
            response = response.remove_header("Path")
        return response

    def _restore_contacts(self, response: Response) -> Response:
        values: list[str] = []
        changed = False
        for na in response.contacts:
            user = uri_user(na.uri)
            decoded = self.tokens.decode(user) if user and len(user) > 40 else None
            if decoded is not None and decoded.contact is not None:
                na = NameAddr(display_name=na.display_name, uri=decoded.contact, params=na.params)
                changed = True
            values.append(str(na))
        if not changed:
            return response
        headers = response.headers.remove("Contact")
        for value in values:
            headers = headers.append("Contact", value)
        return response.replace_headers(headers)

    def _stateless_response(
        self,
        response: Response,
        flow: LanFlow | None,
        branch: str,
        method: str,
        now: float,
        out: list[Output],
    ) -> None:
        """RFC 3261 §16.7 without a transaction (e.g. a 2xx retransmission): by Via.

        From the upstream, only to where a request came from: the next Via must be the
        one our branch was computed over, and its address one a base station holds.
        """
        if flow is not None:  # from the LAN: towards upstream
            self._send(None, serialise(response), out)
            return
        via = response.top_via
        dest = None
        if via is not None and self._branch_covers(branch, via, method):
            dest = self._via_flow(via, now)
        if dest is None:
            shown = _short(response.headers.get("Via") or "none")
            out.append(Dropped("stray-response", f"no request came from Via {shown}", "upstream"))
            return
        self._send(dest, serialise(response), out)

    def _branch_covers(self, branch: str, via: Via, method: str) -> bool:
        """Was ``branch`` made by us for a request whose top Via was ``via``?"""
        if method == "ACK":
            method = "INVITE"
        start = len(self._prefix)
        unique = branch[start : start + 12]
        for key in (
            f"s|{via.branch}|{via.sent_by}|{method}",  # a transaction (_server_key)
            f"{via.branch}|{via.sent_by}|{method}",  # forwarded statelessly (_stateless_key)
        ):
            mine = hashlib.blake2s(key.encode(), key=self._hash_key, digest_size=6).hexdigest()
            if hmac.compare_digest(mine, unique):
                return True
        return False

    def _via_flow(self, via: Via, now: float) -> LanFlow | None:
        host = via.received or via.host
        port = via.rport or via.port or 5060
        if via.transport.upper() == "TCP":
            return self._tcp_by_addr.get((host, port))
        canonical = _canonical_ip(host)
        if self._first_udp is None or canonical is None:
            return None
        if not self._known_peer(canonical, port, now):
            return None
        return LanFlow("udp", canonical, port, self._first_udp)

    # --- forwarding -------------------------------------------------------------------------------

    def _forward_upstream(
        self, stx: ServerTx, request: Request, now: float, out: list[Output]
    ) -> None:
        local = self.upstream_local
        if local is None:
            if len(self._pending) >= self.settings.max_pending:
                self._answer(
                    stx, 503, now, out,
                    warning="Too many requests wait for the upstream connection.",
                    reason_text="Upstream unreachable", retry_after=5,
                )  # fmt: skip
                return
            self._pending.append(_Pending(stx, request))
            if not self._connect_requested:
                self._connect_requested = True
                out.append(_CONNECT)
            return
        flow = stx.source
        assert flow is not None
        request, route_popped = self._own_routes(request)
        headers = request.headers
        method = request.method
        max_forwards = request.max_forwards
        headers = headers.set(
            "Max-Forwards", "70" if max_forwards is None else str(max_forwards - 1)
        )
        token = self.tokens.flow_token(flow)
        path_added = False
        if method in DIALOG_METHODS and not route_popped and not _has_to_tag(request):
            listener = self.settings.listeners[flow.listener]
            lan = f"<sip:{token}@{listener.hostport};transport={listener.transport};lr>"
            headers = headers.prepend("Record-Route", lan)
            headers = headers.prepend("Record-Route", f"<sip:{token}@{local};transport=tls;lr>")
        elif method == "REGISTER":
            stx.ua_path = "path" in ",".join(request.headers.get_all("Supported")).lower()
            if self.path_supported is not False:
                headers = headers.prepend("Path", f"<sip:{token}@{local};transport=tls;lr;ob>")
                if not stx.ua_path:
                    headers = headers.append("Supported", "path")
                path_added = True
            elif "Contact" in headers:
                headers = self._rewrite_contacts(request, headers, flow, local)
        if headers is not request.headers:
            request = request.replace_headers(headers)
        branch = self._branch(stx.key, request)
        request = request.prepend_header("Via", f"SIP/2.0/TLS {local};branch={branch}")
        data = serialise(request)
        ctx = ClientTx(
            request, data, method=method, key=f"c|{branch}|{method}", branch=branch, dest=None,
            server=stx,
            now=now, settings=self.timers,
        )  # fmt: skip
        ctx.path_added = path_added
        stx.client = ctx
        self.table.add(ctx.key, ctx)
        out.append(SendUpstream(data))

    def _own_routes(self, request: Request) -> tuple[Request, bool]:
        """RFC 3261 §16.4 for a request from the LAN: take away what names sipsgate.

        A strict router (or an outbound proxy set without ``;lr``) sends the request
        to sipsgate's URI with the real target as the last Route: that target becomes
        the Request-URI again. Then every top Route entry naming sipsgate goes — the
        outbound-proxy entry a base station preloads (address or host name) and the
        two Record-Route entries of ours an in-dialog request carries. Returns the
        request and whether an entry of ours with a flow token was among them (an
        in-dialog request sipsgate already Record-Routed).
        """
        headers = request.headers
        if "Route" not in headers:
            return request, False
        routes = headers.get_list("Route")
        if self._strict_routed(request.uri):
            last = parse_name_addr(routes[-1], header="Route")
            kept = routes[:-1]
            headers = headers.remove("Route")
            if kept:
                headers = headers.append("Route", ", ".join(kept))
            request = Request(
                method=request.method, uri=last.uri, version=request.version,
                headers=headers, body=request.body,
            )  # fmt: skip
        token_popped = False
        while "Route" in headers:
            value, rest = headers.pop_first_value("Route")
            uri = parse_name_addr(value or "", header="Route").uri
            ours = self._route_token(uri)
            if ours is None:
                break
            headers = rest
            token_popped = token_popped or ours
        if headers is not request.headers:
            request = request.replace_headers(headers)
        return request, token_popped

    def _route_token(self, uri: str) -> bool | None:
        """None: ``uri`` does not name sipsgate; else whether it carries a flow token."""
        try:
            parsed = parse_sip_uri(uri)
        except RemoteProtocolError:
            return None
        if parsed.user and self.tokens.decode(parsed.user) is not None:
            return True
        return False if self._names_us(parsed) else None

    def _names_us(self, uri: SipUri) -> bool:
        """Whether ``uri``'s host and port are one of sipsgate's LAN listeners or names."""
        port = uri.port or uri.default_port
        if (_normal_host(uri.host), port) in self._own_addresses:
            return True
        return uri.host.rstrip(".") in self._own_names and port in self._own_ports

    def _strict_routed(self, request_uri: str) -> bool:
        """The Request-URI is a Record-Route value of ours, or sipsgate's bare address."""
        try:
            parsed = parse_sip_uri(request_uri)
        except RemoteProtocolError:
            return False
        if parsed.user:
            return self.tokens.decode(parsed.user) is not None
        return self._names_us(parsed)

    def _rewrite_contacts(
        self, request: Request, headers: Headers, flow: LanFlow, local: str
    ) -> Headers:
        """RFC 3327 fallback: the Contact becomes a URI of ours carrying flow and Contact."""
        values: list[str] = []
        for na in request.contacts:
            if not na.is_wildcard:
                token = self.tokens.contact_token(flow, na.uri)
                na = NameAddr(
                    display_name=na.display_name,
                    uri=f"sip:{token}@{local};transport=tls",
                    params=na.params,
                )
            values.append(str(na))
        headers = headers.remove("Contact")
        for value in values:
            headers = headers.append("Contact", value)
        return headers

    def _forward_lan(
        self, stx: ServerTx | None, request: Request, dest: LanFlow, now: float, out: list[Output]
    ) -> None:
        headers = request.headers
        method = request.method
        max_forwards = request.max_forwards
        headers = headers.set(
            "Max-Forwards", "70" if max_forwards is None else str(max_forwards - 1)
        )
        listener = self.settings.listeners[dest.listener]
        local = self.upstream_local
        if method in DIALOG_METHODS and not _has_to_tag(request) and local is not None:
            token = self.tokens.flow_token(dest)
            headers = headers.prepend("Record-Route", f"<sip:{token}@{local};transport=tls;lr>")
            lan = f"<sip:{token}@{listener.hostport};transport={listener.transport};lr>"
            headers = headers.prepend("Record-Route", lan)
        request = request.replace_headers(headers)
        key = stx.key if stx is not None else self._stateless_key(request)
        branch = self._branch(key, request)
        transport = "UDP" if dest.transport == "udp" else "TCP"
        request = request.prepend_header(
            "Via", f"SIP/2.0/{transport} {listener.hostport};branch={branch};rport"
        )
        data = serialise(request)
        if stx is not None:
            ctx = ClientTx(
                request, data, method=method, key=f"c|{branch}|{method}", branch=branch,
                dest=dest, server=stx,
                now=now, settings=self.timers,
            )  # fmt: skip
            stx.client = ctx
            self.table.add(ctx.key, ctx)
        self._send(dest, data, out)

    def _stateless_upstream(
        self, request: Request, now: float, out: list[Output], flow: LanFlow
    ) -> None:
        """ACK for a 2xx, or a CANCEL nothing matches: forward without a transaction."""
        local = self.upstream_local
        if local is None:
            out.append(
                Dropped("no-upstream", f"{request.method} while the flow is down", flow.source)
            )
            return
        request, _ = self._own_routes(request)
        headers = request.headers
        max_forwards = request.max_forwards
        if max_forwards is not None and max_forwards <= 0:
            return
        headers = headers.set(
            "Max-Forwards", "70" if max_forwards is None else str(max_forwards - 1)
        )
        request = request.replace_headers(headers)
        branch = self._branch(self._stateless_key(request), request)
        request = request.prepend_header("Via", f"SIP/2.0/TLS {local};branch={branch}")
        out.append(SendUpstream(serialise(request)))

    # --- local answers -----------------------------------------------------------------

    def _answer(
        self,
        stx: ServerTx,
        status: int,
        now: float,
        out: list[Output],
        *,
        warning: str | None = None,
        reason_text: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        request = stx.request
        assert request is not None
        extra: list[tuple[str, str]] = []
        if warning is not None:
            extra.append(("Warning", f"399 {self.settings.agent} {quote(warning)}"))
        if reason_text is not None:
            extra.append(("Reason", f"SIP;cause={status};text={quote(reason_text)}"))
        if retry_after is not None:
            extra.append(("Retry-After", str(retry_after)))
        data = self._local_response(request, status, tag_seed=stx.key, extra=extra)
        first_final = stx.final_status is None
        if stx.send_response(status, data, now):
            self._send(stx.source, data, out)
            if status >= 200 and first_final:
                self._final(stx, status, now, out, local=True)
        self._keep(stx)

    def _answer_stateless(
        self, request: Request, status: int, out: list[Output], flow: LanFlow | None
    ) -> None:
        self._send(flow, self._local_response(request, status, tag_seed=request.uri), out)

    def _final(
        self, stx: ServerTx, status: int, now: float, out: list[Output], *, local: bool
    ) -> None:
        stx.request = None
        self._uncount(stx)
        source = stx.source
        out.append(
            TransactionDone(
                "inbound" if source is None else "outbound",
                stx.method,
                status,
                stx.call_id,
                now - stx.started,
                source.source if source is not None else "upstream",
                local,
                source.transport if source is not None else "",
            )
        )
        ctx = stx.client
        if ctx is not None and ctx.terminated:
            stx.client = None

    def _keep(self, stx: ServerTx) -> None:
        """Re-arm ``stx`` after it answered, or retire it once it only waits out Timer J."""
        source = stx.source
        data = stx.last_response
        if (
            stx.state is State.COMPLETED
            and not stx.invite
            and source is not None
            and source.transport == "udp"
            and data is not None
            and stx.deadline is not None
        ):
            record = (data, source.host, source.port, source.listener)
            self.table.retire(stx.key, stx, record, stx.deadline)
        else:
            self.table.schedule(stx.key, stx)

    def _uncount(self, stx: ServerTx) -> None:
        if stx.counted and stx.source is not None:
            stx.counted = False
            host = stx.source.host
            left = self._inflight.get(host, 1) - 1
            if left > 0:
                self._inflight[host] = left
            else:
                self._inflight.pop(host, None)

    def _local_response(
        self,
        request: Request,
        status: int,
        *,
        tag_seed: str,
        extra: list[tuple[str, str]] | None = None,
        reason: str | None = None,
    ) -> bytes:
        headers: list[tuple[str, str]] = [
            (name, value) for name, value in request.headers if _RESPONSE_COPY.get(name.lower())
        ]
        if status > 100:
            to_index = next(
                (i for i, (n, _) in enumerate(headers) if n.lower() in ("to", "t")), None
            )
            if to_index is not None:
                name, value = headers[to_index]
                if ";tag=" not in value.lower().replace(" ", ""):
                    headers[to_index] = (name, f"{value};tag={self._tag(tag_seed)}")
        headers.append(("Server", self.settings.agent))
        if extra:
            headers.extend(extra)
        response = Response(
            status=status,
            reason=reason or REASONS.get(status, "Error"),
            headers=Headers.from_pairs(headers),
        )
        return serialise(response)

    # --- helpers ----------------------------------------------------------------------------------

    def _send(self, flow: LanFlow | None, data: bytes, out: list[Output]) -> None:
        out.append(SendUpstream(data) if flow is None else SendLan(flow, data))

    def _server_key(self, request: Request, via: Via, method: str) -> str:
        if method == "ACK":
            method = "INVITE"
        branch = via.branch
        if branch is not None and branch.startswith(MAGIC):
            return f"s|{branch}|{via.sent_by}|{method}"
        # RFC 2543 peers (§17.2.3): Request-URI, tags, Call-ID, CSeq number, top Via.
        from_ = request.from_
        cseq = request.cseq
        return (
            f"s|2543|{request.uri}|{from_.tag if from_ else ''}|{request.call_id}|"
            f"{cseq.number if cseq else ''}|{via}|{method}"
        )

    def _stateless_key(self, request: Request) -> str:
        via = request.top_via
        return f"{via.branch if via else ''}|{via.sent_by if via else ''}|{request.method}"

    def _branch(self, key: str, request: Request) -> str:
        return self._branch_with(key, self._loop_hash(request))

    def _branch_with(self, key: str, loop_hash: str) -> str:
        unique = hashlib.blake2s(key.encode(), key=self._hash_key, digest_size=6).hexdigest()
        return f"{self._prefix}{unique}{loop_hash}"

    def _loop_hash(self, request: Request) -> str:
        """RFC 3261 §16.6 step 8: what a looped request would carry unchanged."""
        h = request.headers
        return _loop_hash(
            request.uri, h.get("From"), h.get("To"), h.get("Call-ID"), h.get("CSeq"), h.get("Route")
        )

    def _tag(self, seed: str) -> str:
        return hashlib.blake2s(seed.encode(), key=self._hash_key, digest_size=6).hexdigest()

    def _stamp_via(self, request: Request, via: Via, flow: LanFlow) -> Request:
        """RFC 3261 §18.2.1 and RFC 3581: note where the request really came from."""
        params = list(via.params)
        changed = False
        if via.host != flow.host:
            params = [(k, v) for k, v in params if k.lower() != "received"]
            params.append(("received", flow.host))
            changed = True
        if via.has_rport and via.rport != flow.port:
            params = [(k, v) if k.lower() != "rport" else (k, str(flow.port)) for k, v in params]
            changed = True
        if not changed:
            return request
        stamped = Via(
            protocol=via.protocol, version=via.version, transport=via.transport,
            host=via.host, port=via.port, params=tuple(params),
        )  # fmt: skip
        _, headers = request.headers.pop_first_value("Via")
        return request.replace_headers(headers.prepend("Via", str(stamped)))

    def _reply_flow(self, flow: LanFlow, via: Via) -> LanFlow:
        """Where responses go (RFC 3261 §18.2.2, RFC 3581 §4)."""
        if flow.transport == "tcp" or via.has_rport:
            return flow
        port = via.port or 5060
        if port == flow.port:
            return flow
        return LanFlow("udp", flow.host, port, flow.listener)

    def _ack_for(self, ctx: ClientTx, response: Response) -> bytes:
        """RFC 3261 §17.1.1.3: the ACK for a non-2xx final response, hop by hop."""
        inv = ctx.request
        assert inv is not None
        headers = [("Via", inv.headers.get("Via") or "")]
        headers += [(n, v) for n, v in inv.headers if n.lower() == "route"]
        headers += [
            ("Max-Forwards", "70"),
            ("From", inv.headers.get("From") or ""),
            ("To", response.headers.get("To") or inv.headers.get("To") or ""),
            ("Call-ID", inv.headers.get("Call-ID") or ""),
            ("CSeq", f"{inv.cseq.number if inv.cseq else 1} ACK"),
        ]
        return serialise(Request(method="ACK", uri=inv.uri, headers=Headers.from_pairs(headers)))


_OPEN_CLIENT = (State.CALLING, State.TRYING, State.PROCEEDING)
_FULL_PATH_METHODS = frozenset({"ACK", "CANCEL", *DIALOG_METHODS})
_SINGLE = ("to", "from", "cseq", "call-id", "max-forwards")
_ADDRESS_LISTS = frozenset({"contact", "record-route", "path"})


def _stamp_simple(via: SimpleVia, flow: LanFlow) -> str | None:
    """What ``ProxyCore._stamp_via`` writes for this Via, or None when it leaves it."""
    params = via.params
    changed = False
    if via.host != flow.host:
        params = [(k, v) for k, v in params if k.lower() != "received"]
        params.append(("received", flow.host))
        changed = True
    present, rport = via.param("rport")
    if present and (rport is None or int(rport) != flow.port):
        params = [(k, v) if k.lower() != "rport" else (k, str(flow.port)) for k, v in params]
        changed = True
    if not changed:
        return None
    return str(SimpleVia(via.transport, via.host, via.port, params))


_RESPONSE_COPY = {
    "via": True, "v": True, "from": True, "f": True, "to": True, "t": True,
    "call-id": True, "i": True, "cseq": True,
}  # fmt: skip


def _loop_hash(
    uri: str,
    from_: str | None,
    to: str | None,
    call_id: str | None,
    cseq: str | None,
    route: str | None,
) -> str:
    number = (cseq or "").split(" ", 1)[0]
    text = f"{uri}|{from_}|{to}|{call_id}|{number}|{route or ''}"
    return hashlib.blake2s(text.encode(), digest_size=4).hexdigest()


def _has_to_tag(request: Request) -> bool:
    to = request.headers.get("To") or ""
    return ";tag=" in to.replace(" ", "").lower()


def _with_uri(request: Request, uri: str) -> Request:
    return Request(method=request.method, uri=uri, version=request.version,
                   headers=request.headers, body=request.body)  # fmt: skip


_URI_HOST = re.compile(r"sips?:[^@;?]+@(\[[0-9A-Fa-f:.]+\]|[^:;?>]+)(?::([0-9]{1,5}))?", re.I)


def _normal_host(host: str) -> str:
    """``host`` as :func:`parse_sip_uri` gives it: lower-case, IPv6 compressed, no brackets."""
    host = host.strip("[]").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _canonical_ip(host: str) -> str | None:
    """``host`` as the socket layer writes it, or None when it is not an IP address."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _registration_seconds(response: Response) -> float:
    """How long a 2xx to REGISTER keeps the base station registered (RFC 3261 §10.3)."""
    default = response.headers.get("Expires") or "3600"
    longest = 0.0
    for contact in response.contacts:
        text = contact.param("expires") or default
        try:
            longest = max(longest, float(int(text.strip())))
        except ValueError:
            continue
    return min(longest, MAX_REGISTRATION_SECONDS) + 32.0  # Timer F of the next refresh


def _short(text: str) -> str:
    text = text.replace("\r", " ").replace("\n", " ")
    return text if len(text) <= 120 else text[:117] + "..."


def _registered_note(source: LanFlow, response: Response) -> Registered:
    """What a 2xx to REGISTER says: the AOR (To) and the seconds granted (RFC 3261 §10.3:
    each Contact's expires, else the Expires header)."""
    to = response.to
    granted: list[int] = []
    for contact in response.contacts:
        for name, value in contact.params:
            if name.lower() == "expires" and value is not None and value.isdigit():
                granted.append(int(value))
    header = response.headers.get("Expires")
    if not granted and header is not None and header.strip().isdigit():
        granted.append(int(header.strip()))
    aor = to.uri if to is not None else ""
    return Registered(source.source, source.transport, aor, max(granted, default=None))
