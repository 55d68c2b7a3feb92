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

This module is the dispatch and the timers: which path a message takes, the
transactions on both sides, the upstream flow's keep-alive, and forwarding. The rest
lives beside it: :mod:`~gateway.relay.outputs` (what the core returns),
:mod:`~gateway.relay.settings`, :mod:`~gateway.relay.state` (the state and the
answering primitives), :mod:`~gateway.relay.routing` (Via, branch, loop hash,
Route, Record-Route), :mod:`~gateway.relay.registrar` (Path, the Contact
fallback, registration tracking) and :mod:`~gateway.relay.fastpath`.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.relay.fastpath import FastPath
from gateway.relay.flows import LanFlow, uri_user
from gateway.relay.outputs import (
    CONNECT,
    CloseUpstream,
    Dropped,
    HandOff,
    Output,
    PathSupport,
    PongSupport,
    Refused,
    SendUpstream,
)
from gateway.relay.registrar import (
    UDP_PEER_SECONDS,
    path_refused,
    path_shown,
    path_value,
    registered_note,
    registration_seconds,
    restore_contacts,
    rewrite_contacts,
    ua_supports_path,
)
from gateway.relay.routing import (
    DIALOG_METHODS,
    canonical_ip,
    has_to_tag,
    loop_hash,
    pop_token_routes,
    record_route_lan,
    record_route_tls,
    reply_flow,
    server_key,
    stamp_via,
    stateless_key,
    token_owner,
    uri_ip_address,
)
from gateway.relay.settings import ProxySettings
from gateway.relay.state import ClientTx, Pending, ServerTx
from gateway.relay.transaction import ResponseAction, State, TimerAction
from gateway.sip import (
    Headers,
    RemoteProtocolError,
    Request,
    Response,
    Via,
    parse_datagram,
    parse_via,
    serialise,
    split_comma_list,
    validate_request,
)
from gateway.sip.wire import Wire, scan_datagram

#: Requests shed past max_transactions: what starts a call or a registration.
_SHED = frozenset({"INVITE", "REGISTER"})
#: A shed request's Retry-After is 1 to this many seconds, at random.
_SHED_RETRY = 5


class ProxyCore(FastPath):
    """The whole relay's SIP behaviour; no I/O, time passed in."""

    def __init__(self, settings: ProxySettings, *, rng: Callable[[], float] | None = None) -> None:
        super().__init__(settings, rng=rng)
        self._ping_at: float | None = None
        self._pong_due: float | None = None
        # RFC 5626 §4.4.1: pongs are expected only from an upstream that negotiated
        # outbound (Require/Supported: outbound on a REGISTER 2xx) or has answered a
        # ping before. Many registrars ignore CRLF pings; their flows stay open.
        self.pongs_answered = False
        self._pings_unanswered = False  # a ping went out on this flow and got no pong
        self._keepalive_count = 0

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
        branch = self.branches.branch_with(key, "00000000")
        target = self.settings.upstream_uri or f"sip:{local};transport=tls"
        request = Request(
            method="OPTIONS",
            uri=target,
            headers=Headers.from_pairs(
                [
                    ("Via", f"SIP/2.0/TLS {local};branch={branch}"),
                    ("Max-Forwards", "0"),
                    ("From", f"<sip:{self.settings.agent}@{local}>;tag={self.branches.tag(key)}"),
                    ("To", f"<{target}>"),
                    ("Call-ID", f"keepalive-{self.branches.instance}-{n}@{local}"),
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
        if self.table.live >= self.settings.max_transactions and self._shed(message, flow, out):
            return out
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

    def refuse_lan(
        self, message: bytes | Request | Response | Wire, flow: LanFlow, now: float, retry: int
    ) -> list[Output]:
        """A request from a source over ``sip.source_rate`` that may be answered
        (:class:`~gateway.relay.limits.Admission` ``ANSWER``): a ``503`` with
        ``Retry-After``, stateless, before any upstream work. A retransmission of a
        transaction already held is absorbed as usual instead (its answer is not changed
        under the base station's feet)."""
        out: list[Output] = []
        try:
            if isinstance(message, bytes):
                message = parse_datagram(message)
            elif isinstance(message, Wire):
                message = message.to_message()
            if isinstance(message, Response):
                out.append(
                    Dropped("source-rate", "message rate above sip.source_rate", flow.source)
                )
                return out
            via = message.top_via
            if via is None:
                raise RemoteProtocolError("The request has no Via header.")
            key = server_key(message, via, message.method)
            if key in self.table:  # live or retired: a retransmission
                return self.receive_lan(message, flow, now)
            self._refuse(
                message, via, key, flow, out,
                Refused("source-rate", "message rate above sip.source_rate", flow.source),
                f"Message rate from {flow.host} above the limit; try again later.",
                "Source rate limit reached", retry,
            )  # fmt: skip
        except RemoteProtocolError as exc:
            out.append(Dropped("malformed", str(exc), flow.source))
        return out

    def _refuse(
        self, request: Request, via: Via, key: str, flow: LanFlow, out: list[Output],
        note: Refused, warning: str, reason_text: str, retry: int,
    ) -> None:  # fmt: skip
        """Answer ``request`` 503 with Retry-After, holding nothing. Its To tag is
        derived from ``key``: the ACK that answers a refused INVITE is recognised by it
        (:meth:`_refused_ack`) and absorbed, not sent upstream."""
        extra = self._notice(503, warning, reason_text, retry)
        data = self._local_response(request, 503, tag_seed=key, extra=extra)
        out.append(note)
        self._send(reply_flow(flow, via), data, out)

    def _shed(self, message: Request | Response | Wire, flow: LanFlow, out: list[Output]) -> bool:
        """Past ``max_transactions`` in progress: a new INVITE or REGISTER (the work
        that grows the load: a call, a registration) is answered 503 at once, before
        any upstream work; in-dialog requests, retransmissions and the rest go on, so
        calls in progress can end. True when it was answered."""
        try:
            if isinstance(message, Wire):
                if message.status or message.method not in _SHED:
                    return False
                message = message.to_message()
            if isinstance(message, Response) or message.method not in _SHED:
                return False
            via = message.top_via
            if via is None or has_to_tag(message):
                return False
            key = server_key(message, via, message.method)
        except RemoteProtocolError:
            return False  # the full path reports it
        if key in self.table:
            return False
        retry = 1 + int(self._rng() * _SHED_RETRY)  # spread: not all back at once
        self._refuse(
            message, via, key, flow, out,
            Refused("overload", "sip.max_transactions transactions in progress", flow.source),
            "sipsgate is overloaded; try again shortly.", "Overloaded", retry,
        )  # fmt: skip
        return True

    def _refused_ack(self, request: Request, key: str) -> bool:
        """An ACK for a 503 that :meth:`_refuse` made (its To tag says so)."""
        to = request.to
        return to is not None and to.tag == self.branches.tag(key)

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
        key = server_key(request, via, method)
        if method == "ACK":
            stx = self.table.get(key)
            if isinstance(stx, ServerTx) and stx.invite and stx.state is not State.ACCEPTED:
                stx.on_ack(now)
                self.table.schedule(key, stx)
                return
            if stx is None and self._refused_ack(request, key):
                return
            self._stateless_upstream(stamp_via(request, via, flow), now, out, flow)
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
        request = stamp_via(request, via, flow)
        source = reply_flow(flow, via)
        self.peers.note(source, now + UDP_PEER_SECONDS)
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

    def _checks(self, stx: ServerTx, request: Request, now: float, out: list[Output]) -> bool:
        """Max-Forwards (483) and loop detection (482, RFC 3261 §16.3)."""
        max_forwards = request.max_forwards
        if max_forwards is not None and max_forwards <= 0:
            self._answer(stx, 483, now, out)
            return False
        prefix = self.branches.prefix
        for line in request.headers.get_all("Via"):
            if prefix in line:
                loop = loop_hash(request)
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
                self._stateless_upstream(stamp_via(request, via, flow), now, out, flow)
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
        raw = b""
        if isinstance(message, Wire):
            if message.status and self._fast_response(message, None, now, out):
                return out
            raw = message.raw
            message = message.to_message()
        try:
            if isinstance(message, Response):
                self._response(message, None, now, out)
            elif self.settings.workers > 1 and self._hand_off(message, raw, out):
                return out
            else:
                self._upstream_request(message, now, out)
        except RemoteProtocolError as exc:
            self._malformed(message, None, exc, out)
        return out

    def _hand_off(self, request: Request, raw: bytes, out: list[Output]) -> bool:
        """A request naming another worker's flow goes to that worker, whole: its
        transactions (CANCEL and ACK too, which carry the same Route) live there."""
        owner = token_owner(request, self.tokens)
        if owner is None or owner == self.settings.worker:
            return False
        if owner >= self.settings.workers:
            out.append(Dropped("unknown-worker", f"a flow token names worker {owner}", "upstream"))
            return True
        out.append(HandOff(owner, raw or serialise(request)))
        return True

    def _upstream_request(self, request: Request, now: float, out: list[Output]) -> None:
        method = request.method
        via = request.top_via
        if via is None:
            raise RemoteProtocolError("The request has no Via header.")
        key = server_key(request, via, method)
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
        request, flow = pop_token_routes(request, self.tokens)
        if flow is not None:
            return request, flow
        return request, self._flow_for_uri(request.uri, now)

    def _flow_for_uri(self, uri: str, now: float) -> LanFlow | None:
        """A flow for a Request-URI naming a base station by IP address (no token): only
        an address a base station sent requests or registered from."""
        address = uri_ip_address(uri)
        if address is None or self._first_udp is None:
            return None
        host, port = address
        if not self.peers.known(host, port, now):
            return None
        return LanFlow("udp", host, port, self._first_udp)

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
        if not branch.startswith(self.branches.prefix):
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
            headers = response.headers
            self._outbound_negotiated(
                (*headers.get_all("Require"), *headers.get_all("Supported")), out
            )
        if ctx.path_added and 200 <= status < 300:
            response = self._registered(ctx, stx, response, out)
        elif ctx.path_added and status == 420 and stx.live and path_refused(response):
            self.path_supported = False
            out.append(PathSupport(False, "the registrar answered 420 Unsupported: path"))
            request = stx.request
            assert request is not None
            self._forward_upstream(stx, request, now, out)  # again, Contact rewritten
            return
        if flow is None and stx.live and stx.method == "REGISTER" and "Contact" in response.headers:
            if 200 <= status < 300 and stx.source is not None:
                self.peers.note(stx.source, now + registration_seconds(response))
            response = restore_contacts(response, self.tokens)
        if flow is None and stx.method == "REGISTER" and 200 <= status < 300 and stx.source:
            out.append(registered_note(stx.source, response))
        self._pass_response(stx, serialise(response), status, now, out)

    def _registered(
        self, ctx: ClientTx, stx: ServerTx, response: Response, out: list[Output]
    ) -> Response:
        """A 2xx to a REGISTER we added Path to: did the registrar take it (RFC 3327 §5.3)?"""
        shown = path_shown(response, self.path_supported)
        if shown is not None:
            self.path_supported = shown.supported
            out.append(shown)
        if not stx.ua_path and "Path" in response.headers:
            response = response.remove_header("Path")
        return response

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
        if via is not None and self.branches.covers(branch, via, method):
            dest = self._via_flow(via, now)
        if dest is None:
            shown = _short(response.headers.get("Via") or "none")
            out.append(Dropped("stray-response", f"no request came from Via {shown}", "upstream"))
            return
        self._send(dest, serialise(response), out)

    def _via_flow(self, via: Via, now: float) -> LanFlow | None:
        host = via.received or via.host
        port = via.rport or via.port or 5060
        if via.transport.upper() == "TCP":
            return self._tcp_by_addr.get((host, port))
        canonical = canonical_ip(host)
        if self._first_udp is None or canonical is None:
            return None
        if not self.peers.known(canonical, port, now):
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
            self._pending.append(Pending(stx, request))
            if not self._connect_requested:
                self._connect_requested = True
                out.append(CONNECT)
            return
        flow = stx.source
        assert flow is not None
        request, route_popped = self.own.strip(request)
        headers = request.headers
        method = request.method
        max_forwards = request.max_forwards
        headers = headers.set(
            "Max-Forwards", "70" if max_forwards is None else str(max_forwards - 1)
        )
        token = self.tokens.flow_token(flow)
        path_added = False
        if method in DIALOG_METHODS and not route_popped and not has_to_tag(request):
            listener = self.settings.listeners[flow.listener]
            headers = headers.prepend("Record-Route", record_route_lan(token, listener))
            headers = headers.prepend("Record-Route", record_route_tls(token, local))
        elif method == "REGISTER":
            stx.ua_path = ua_supports_path(request.headers.get_all("Supported"))
            if self.path_supported is not False:
                headers = headers.prepend("Path", path_value(token, local))
                if not stx.ua_path:
                    headers = headers.append("Supported", "path")
                path_added = True
            elif "Contact" in headers:
                headers = rewrite_contacts(request, headers, flow, local, self.tokens)
        if headers is not request.headers:
            request = request.replace_headers(headers)
        branch = self.branches.branch(stx.key, request)
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
        if method in DIALOG_METHODS and not has_to_tag(request) and local is not None:
            token = self.tokens.flow_token(dest)
            headers = headers.prepend("Record-Route", record_route_tls(token, local))
            headers = headers.prepend("Record-Route", record_route_lan(token, listener))
        request = request.replace_headers(headers)
        key = stx.key if stx is not None else stateless_key(request)
        branch = self.branches.branch(key, request)
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
        request, _ = self.own.strip(request)
        headers = request.headers
        max_forwards = request.max_forwards
        if max_forwards is not None and max_forwards <= 0:
            return
        headers = headers.set(
            "Max-Forwards", "70" if max_forwards is None else str(max_forwards - 1)
        )
        request = request.replace_headers(headers)
        branch = self.branches.branch(stateless_key(request), request)
        request = request.prepend_header("Via", f"SIP/2.0/TLS {local};branch={branch}")
        out.append(SendUpstream(serialise(request)))

    # --- hop-by-hop requests of its own ------------------------------------------------------

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


def _short(text: str) -> str:
    text = text.replace("\r", " ").replace("\n", " ")
    return text if len(text) <= 120 else text[:117] + "..."
