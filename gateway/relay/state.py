"""What the relay core keeps, and how every path answers on it.

- :class:`ServerTx` and :class:`ClientTx`: the RFC 3261 §17 transactions with the
  proxy's bookkeeping (the request kept for local answers, the base station's flow,
  the client transaction a server transaction forwarded on);
- :class:`ProxyState`: the transaction table, the requests waiting for the upstream
  flow, the per-source in-flight counts, the LAN TCP flows and UDP peers, what the
  registrar showed about Path; and the primitives shared by the full path and the
  fast path: send, answer locally (§8.2.6, §16.7), pass a response on a server
  transaction, and account for a transaction's end.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import NamedTuple

from gateway.relay.flows import FlowTokens, LanFlow
from gateway.relay.outputs import Output, SendLan, SendUpstream, TransactionDone
from gateway.relay.registrar import UdpPeers
from gateway.relay.routing import Branches, OwnRoutes
from gateway.relay.settings import ProxySettings
from gateway.relay.transaction import (
    ClientTransaction,
    ServerTransaction,
    State,
    TimerSettings,
    Transaction,
    TransactionTable,
)
from gateway.sip import Headers, Request, Response, serialise
from gateway.sip.headers import quote

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


class Pending(NamedTuple):
    """A request waiting for the upstream flow to open."""

    server: ServerTx
    request: Request


class ProxyState:
    """The relay core's state and the answering primitives; :class:`ProxyCore` is the
    whole behaviour."""

    def __init__(self, settings: ProxySettings, *, rng: Callable[[], float] | None = None) -> None:
        if not settings.listeners:
            raise ValueError("The relay needs at least one LAN listener.")
        self.settings = settings
        self.timers = settings.timers
        self.tokens = FlowTokens(settings.key, worker=settings.worker)
        self.branches = Branches(settings.key)
        self.own = OwnRoutes(settings.listeners, settings.host_names, self.tokens)
        self._rng = rng or random.Random().random
        self.table: TransactionTable[Transaction] = TransactionTable()
        self.upstream_local: str | None = None  # "host:port" of our end of the TLS flow
        self.path_supported: bool | None = None
        self._pending: list[Pending] = []
        self._connect_requested = False
        self._inflight: dict[str, int] = {}
        self._tcp_flows: dict[int, LanFlow] = {}
        self._tcp_by_addr: dict[tuple[str, int], LanFlow] = {}
        self.peers = UdpPeers()
        self._first_udp = next(
            (i for i, li in enumerate(settings.listeners) if li.transport == "udp"), None
        )

    # --- sending and answering -----------------------------------------------------------

    def _send(self, flow: LanFlow | None, data: bytes, out: list[Output]) -> None:
        out.append(SendUpstream(data) if flow is None else SendLan(flow, data))

    def _pass_response(
        self,
        stx: ServerTx,
        data: bytes,
        status: int,
        now: float,
        out: list[Output],
        *,
        local: bool = False,
    ) -> None:
        """Send ``data`` on ``stx`` (if its state takes it); ``local``: sipsgate made it."""
        first_final = stx.final_status is None
        if stx.send_response(status, data, now):
            self._send(stx.source, data, out)
            if status >= 200 and first_final:
                self._final(stx, status, now, out, local=local)
        self._keep(stx)

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
        extra = self._notice(status, warning, reason_text, retry_after)
        data = self._local_response(request, status, tag_seed=stx.key, extra=extra)
        self._pass_response(stx, data, status, now, out, local=True)

    def _notice(
        self, status: int, warning: str | None, reason_text: str | None, retry_after: int | None
    ) -> list[tuple[str, str]]:
        """The Warning, Reason and Retry-After of an answer sipsgate makes itself."""
        extra: list[tuple[str, str]] = []
        if warning is not None:
            extra.append(("Warning", f"399 {self.settings.agent} {quote(warning)}"))
        if reason_text is not None:
            extra.append(("Reason", f"SIP;cause={status};text={quote(reason_text)}"))
        if retry_after is not None:
            extra.append(("Retry-After", str(retry_after)))
        return extra

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
                    headers[to_index] = (name, f"{value};tag={self.branches.tag(tag_seed)}")
        headers.append(("Server", self.settings.agent))
        if extra:
            headers.extend(extra)
        response = Response(
            status=status,
            reason=reason or REASONS.get(status, "Error"),
            headers=Headers.from_pairs(headers),
        )
        return serialise(response)


_RESPONSE_COPY = {
    "via": True, "v": True, "from": True, "f": True, "to": True, "t": True,
    "call-id": True, "i": True, "cseq": True,
}  # fmt: skip
