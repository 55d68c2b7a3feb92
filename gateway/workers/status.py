"""A relay worker's status view, passed on to the gateway process's view.

A worker records what its relay does in a :class:`ForwardedStatus`, which also
queues each fact; the worker sends the queue every quarter second, and the gateway
process applies the facts (only the :data:`STATUS_CALLS`) to the one status view the
admin endpoint and ``/readyz`` read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.relay.status import RelayStatus

#: Status facts kept between two sends; beyond it, per-transaction facts are left out.
STATUS_BACKLOG = 20000

#: The RelayStatus calls a worker passes on (the gateway process applies only these).
STATUS_CALLS = frozenset(["configured", "up", "failed", "lost", "answered", "registered"])

#: One queued call: the method's name, its positional and its keyword arguments.
Fact = tuple[str, tuple[Any, ...], dict[str, Any]]


class ForwardedStatus(RelayStatus):
    """A worker's status view that also queues each fact for the gateway's view."""

    def __init__(self, *, upstream: str = "") -> None:
        self.calls: list[Fact] = []
        super().__init__(upstream=upstream)

    def _queue(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if name == "answered" and len(self.calls) >= STATUS_BACKLOG:
            return  # the gateway's view lags; the state changes still go
        self.calls.append((name, args, kwargs))

    def configured(self, upstream: str) -> None:
        super().configured(upstream)
        self._queue("configured", (upstream,), {})

    def up(self, now: float, **kwargs: Any) -> None:
        super().up(now, **kwargs)
        self._queue("up", (now,), kwargs)

    def failed(self, now: float, error: Any, *, retry_at: float | None) -> None:
        super().failed(now, error, retry_at=retry_at)
        self._queue("failed", (now, error), {"retry_at": retry_at})

    def lost(self, now: float, reason: str) -> None:
        super().lost(now, reason)
        self._queue("lost", (now, reason), {})

    def answered(self, now: float, **kwargs: Any) -> None:
        super().answered(now, **kwargs)
        self._queue("answered", (now,), kwargs)

    def registered(self, now: float, **kwargs: Any) -> None:
        super().registered(now, **kwargs)
        self._queue("registered", (now,), kwargs)

    def take(self) -> list[Fact]:
        calls, self.calls = self.calls, []
        return calls


def apply_facts(view: RelayStatus, facts: Iterable[Fact]) -> None:
    """What a worker's :class:`ForwardedStatus` queued, applied to the gateway's view
    (only the :data:`STATUS_CALLS`)."""
    for name, args, kwargs in facts:
        if name in STATUS_CALLS:
            getattr(view, name)(*args, **kwargs)
