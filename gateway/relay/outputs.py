"""What the relay core asks of its adapter: the output values of :class:`ProxyCore`.

Each call into the sans-I/O core returns a list of these: bytes to send on a LAN flow
or the upstream flow, a request to (re)connect or close the upstream flow, and notes
for the log, the metrics and the status view. Values only; nothing here acts.
"""

from __future__ import annotations

from typing import NamedTuple

from gateway.relay.flows import LanFlow


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


class HandOff(NamedTuple):
    """A request from upstream for a flow another relay worker owns: pass ``data`` (the
    message as it arrived) to worker ``worker``, which relays it as its own."""

    worker: int
    data: bytes


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


class Refused(NamedTuple):
    """A request was answered 503 by sipsgate before any work (over a limit)."""

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
    | HandOff
    | TransactionDone
    | Dropped
    | Refused
    | PathSupport
    | PongSupport
    | Registered
)

#: The one ConnectUpstream value (it carries nothing).
CONNECT = ConnectUpstream()
