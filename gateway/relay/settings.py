"""How the relay core is set up: its LAN listeners and :class:`ProxySettings`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from gateway.relay.transaction import DEFAULT_TIMERS, TimerSettings


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
    #: Transactions held in progress, all sources together; past it new INVITE and
    #: REGISTER are answered 503 at once (overload: answering is cheaper than the work).
    max_transactions: int = 10_000
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
    #: This relay's index among ``workers`` relay workers (``sip.workers``): its tokens
    #: name it, and a request from upstream for another worker's flow is handed over.
    worker: int = 0
    workers: int = 1
