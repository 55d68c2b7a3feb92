"""Stand-ins for tests: a monotonic clock the test moves by hand, and a trust policy
for engine and connector tests that need no store.

It trusts leaves by SHA-256 fingerprint and records what it is asked to record; the
integration matrix runs against the real decision and store instead.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.tls.policy import ClientIdentity, TlsTarget, TrustCheck


class ManualClock:
    """A monotonic clock (seconds) that moves only when the test sets ``now``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True, slots=True)
class FakeFinding:
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class FakeVerdict:
    accepted: bool
    rule: str
    findings: tuple[FakeFinding, ...]
    leaf_fingerprint: str | None

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.reason for f in self.findings))


@dataclass
class FakePolicy:
    """Accepts a chain whose leaf fingerprint is in ``trusted``; rejects the rest."""

    trusted: set[str] = field(default_factory=set)
    identity: ClientIdentity | None = None
    close_on_revoke: bool = True
    fail_with: Exception | None = None
    on_decide: Callable[[Sequence[bytes], TlsTarget], None] | None = None
    decisions: list[tuple[tuple[bytes, ...], TlsTarget]] = field(default_factory=list)
    recorded: list[TrustCheck] = field(default_factory=list)
    recorded_event: threading.Event = field(default_factory=threading.Event)
    snapshots: int = 0

    def snapshot(self) -> Any:
        self.snapshots += 1
        return frozenset(self.trusted)

    def decide(
        self, chain_der: Sequence[bytes], target: TlsTarget, now: datetime, snapshot: Any
    ) -> TrustCheck:
        if self.fail_with is not None:
            raise self.fail_with
        if self.on_decide is not None:
            self.on_decide(chain_der, target)
        self.decisions.append((tuple(chain_der), target))
        leaf = hashlib.sha256(chain_der[0]).hexdigest() if chain_der else None
        if leaf in snapshot:
            verdict = FakeVerdict(True, "chain-valid", (), leaf)
        else:
            verdict = FakeVerdict(
                False,
                "untrusted",
                (FakeFinding("unknown-issuer", "The issuer is not trusted."),),
                leaf,
            )
        return TrustCheck(
            verdict=verdict, chain=tuple(chain_der), peer=target, record=not verdict.accepted
        )

    def record(self, check: TrustCheck, now: datetime) -> None:
        self.recorded.append(check)
        self.recorded_event.set()

    def client_identity(self) -> ClientIdentity | None:
        return self.identity

    def close_flows_on_revoke(self, snapshot: Any) -> bool:
        return self.close_on_revoke
