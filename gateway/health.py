"""The state of each part of the running gateway, as the readiness view shows it.

The supervisor writes it (a part started, failed, is being restarted); ``/readyz``,
``/metrics`` and the log read it. One :class:`ServiceHealth` per gateway process,
handed to whoever needs it: nothing global.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from gateway.metrics import MetricsRegistry

# The part without which the gateway does not do its job: readiness needs it running.
# (The admin endpoint answers /readyz itself: when it can, its listeners are up; a
# failure of its background task makes the gateway degraded, not unready.)
ESSENTIAL_SERVICES = frozenset({"sip"})


class ServiceState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"  # its work raised; a restart is scheduled
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceStatus:
    """One part: its state, how often it failed, and the last failure."""

    name: str
    state: ServiceState = ServiceState.STARTING
    failures: int = 0
    restarts: int = 0
    last_error: str | None = None
    last_failure_at: datetime | None = None
    retry_in: float | None = None

    def to_dict(self, *, errors: bool) -> dict[str, object]:
        out: dict[str, object] = {
            "state": self.state.value,
            "failures": self.failures,
            "restarts": self.restarts,
            "last_failure_at": self.last_failure_at.isoformat() if self.last_failure_at else None,
            "retry_in": self.retry_in,
        }
        if errors:
            out["last_error"] = self.last_error
        return out


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ServiceHealth:
    """The state of every supervised part, kept in step with the metrics."""

    def __init__(
        self,
        names: Iterable[str] = (),
        *,
        metrics: MetricsRegistry | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        registry = metrics or MetricsRegistry()
        self._up = registry.gauge(
            "sipsgate_service_up",
            "1 while a part of the gateway runs, 0 while it is failed or stopped, by service.",
            ("service",),
        )
        self._failures = registry.counter(
            "sipsgate_service_failures_total",
            "Failures of a part of the gateway (its work raised), by service.",
            ("service",),
        )
        self._restarts = registry.counter(
            "sipsgate_service_restarts_total",
            "Restarts of a failed part of the gateway, by service.",
            ("service",),
        )
        self._clock = clock
        self._services: dict[str, ServiceStatus] = {}
        for name in names:
            self.add(name)

    def add(self, name: str) -> None:
        if name not in self._services:
            self._services[name] = ServiceStatus(name=name)
            self._up.set(0, service=name)
            self._failures.inc(0, service=name)
            self._restarts.inc(0, service=name)

    def running(self, name: str) -> None:
        self._set(name, state=ServiceState.RUNNING, retry_in=None)
        self._up.set(1, service=name)

    def failed(self, name: str, error: str, *, retry_in: float) -> None:
        current = self.get(name)
        self._set(
            name,
            state=ServiceState.FAILED,
            failures=current.failures + 1,
            last_error=error,
            last_failure_at=self._clock(),
            retry_in=round(retry_in, 2),
        )
        self._up.set(0, service=name)
        self._failures.inc(service=name)

    def restarted(self, name: str) -> None:
        self._set(name, restarts=self.get(name).restarts + 1)
        self._restarts.inc(service=name)

    def stopped(self, name: str) -> None:
        self._set(name, state=ServiceState.STOPPED, retry_in=None)
        self._up.set(0, service=name)

    def get(self, name: str) -> ServiceStatus:
        self.add(name)
        return self._services[name]

    def all(self) -> tuple[ServiceStatus, ...]:
        return tuple(self._services.values())

    def readiness(self, *, errors: bool = False) -> tuple[bool, dict[str, object]]:
        """Whether the gateway does its job, and the view ``/readyz`` shows.

        Ready needs the SIP relay running; a failed other part makes the gateway
        ``degraded`` but still ready.
        """
        services = self.all()
        essential_ok = all(
            s.state is ServiceState.RUNNING for s in services if s.name in ESSENTIAL_SERVICES
        ) and any(s.name in ESSENTIAL_SERVICES for s in services)
        if not essential_ok:
            status = "not-ready"
        elif all(s.state is ServiceState.RUNNING for s in services):
            status = "ready"
        else:
            status = "degraded"
        view: dict[str, object] = {
            "status": status,
            "services": {s.name: s.to_dict(errors=errors) for s in services},
        }
        return essential_ok, view

    def _set(self, name: str, **changes: object) -> None:
        self._services[name] = replace(self.get(name), **changes)  # type: ignore[arg-type]
