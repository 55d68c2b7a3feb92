"""The live outbound TLS connections: who is connected, to whom, with which leaf.

The connector adds a connection once its handshake was accepted and drops it when it
closes. ``revalidate`` re-runs the trust decision for every live connection against a
new trust state and closes (close_notify, then TCP) those it would now reject, so a
withdrawn trust takes effect on open flows too; their next connection is verified
from scratch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway.errors import TrustRejected

if TYPE_CHECKING:
    from gateway.tls.engine import TlsTransport
    from gateway.tls.policy import TlsTarget, TrustCheck, TrustPolicy


@dataclass(slots=True, kw_only=True, eq=False)
class LiveConnection:
    """One open, verified outbound TLS connection."""

    conn_id: str
    target: TlsTarget
    chain_der: tuple[bytes, ...] = field(repr=False)
    check: TrustCheck = field(repr=False)
    opened_at: datetime
    transport: TlsTransport = field(repr=False)
    revoked_by: TrustCheck | None = field(default=None, repr=False)

    @property
    def leaf_fingerprint(self) -> str | None:
        return self.check.verdict.leaf_fingerprint

    @property
    def rule(self) -> str:
        return str(self.check.verdict.rule)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (for the admin API and logs)."""
        return {
            "conn_id": self.conn_id,
            "peer": self.target.destination,
            "transport": self.target.scheme,
            "sni": self.target.sni,
            "address": list(self.target.address),
            "leaf_fingerprint": self.leaf_fingerprint,
            "rule": self.rule,
            "opened_at": self.opened_at.isoformat(),
        }


class ConnectionRegistry:
    """Every live connection the connector opened, by connection id."""

    def __init__(self) -> None:
        self._live: dict[str, LiveConnection] = {}

    def add(self, live: LiveConnection) -> None:
        self._live[live.conn_id] = live

    def discard(self, live: LiveConnection) -> None:
        if self._live.get(live.conn_id) is live:
            del self._live[live.conn_id]

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[LiveConnection]:
        return iter(list(self._live.values()))

    def get(self, conn_id: str) -> LiveConnection | None:
        return self._live.get(conn_id)

    def revalidate(self, policy: TrustPolicy, snapshot: Any, now: datetime) -> list[LiveConnection]:
        """Close every live connection the policy would now reject; return them.

        Nothing is recorded: no handshake took place, and the chain was seen (and
        recorded when it had to be) when the connection was opened.
        """
        closed: list[LiveConnection] = []
        for live in list(self._live.values()):
            if live.transport.is_closing():
                continue
            check = policy.decide(live.chain_der, live.target, now, snapshot)
            if check.verdict.accepted:
                continue
            live.revoked_by = check
            reasons = ", ".join(str(r) for r in check.verdict.reasons) or "no reason given"
            live.transport.close_with(
                TrustRejected(
                    f"The open connection to {live.target.uri} was closed because its "
                    f"certificate is no longer trusted (rule {check.verdict.rule}: "
                    f"{reasons}); it will be verified again when it is reopened.",
                    peer=live.target,
                    verdict=check.verdict,
                    chain=check.chain,
                    snapshot=snapshot,
                )
            )
            self.discard(live)
            closed.append(live)
        return closed
