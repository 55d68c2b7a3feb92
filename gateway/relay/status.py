"""What the relay is doing now, as the status view shows it.

The relay writes small facts here as they happen (a flow opened or failed, a
transaction answered); the admin endpoint reads :meth:`RelayStatus.view` — a copy
built from a bounded amount of state, so reading never touches the relay's sockets
and costs the relay nothing per request. Times are passed in (wall-clock seconds).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from certstore.model import Reason
from gateway.tls.advice import FIXES

UpstreamState = Literal["not-configured", "connecting", "up", "down"]

#: Base stations kept (the least recently heard one is forgotten first).
MAX_STATIONS = 1000
#: Counters cover this many one-minute buckets.
WINDOW_MINUTES = 15


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamCertificate:
    subject: str
    fingerprint: str
    not_after: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamError:
    """The last failure: what kind, a short reason, the sentence, and each reason code
    with its fix (the same text ``sipsgate probe`` prints)."""

    kind: str  # rejected, refused, connect, timeout, resolve, closed, lost
    reason: str
    sentence: str
    codes: tuple[str, ...]
    at: float


@dataclass(slots=True)
class _Station:
    source: str
    first_seen: float
    last_seen: float
    last_method: str
    last_status: int
    messages: int
    transport: str = ""
    aor: str | None = None
    registered_until: float | None = None  # None: not registered (or never said)


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(round(seconds), UTC).isoformat()


def fix_for(code: str) -> str | None:
    """The fix ``probe`` gives for a reason code; None for a code it does not know."""
    try:
        return FIXES[Reason(code)]
    except ValueError:
        return None


class RelayStatus:
    """Live state of one gateway's relay; outlives a reload (the new relay goes on)."""

    def __init__(self, *, upstream: str = "", max_stations: int = MAX_STATIONS) -> None:
        self.upstream = upstream
        self.state: UpstreamState = "connecting" if upstream else "not-configured"
        self.peer: str | None = None
        self.tls_version: str | None = None
        self.certificate: UpstreamCertificate | None = None
        self.connected_since: float | None = None
        self.last_error: UpstreamError | None = None
        self.retry_at: float | None = None
        self._max_stations = max_stations
        self._stations: OrderedDict[str, _Station] = OrderedDict()
        # minute -> [relayed, rejected handshakes, 503 answered by sipsgate]
        self._buckets: OrderedDict[int, list[int]] = OrderedDict()
        #: Called with the new :meth:`status_line` whenever it changes (sd_notify STATUS).
        self.watchers: list[Callable[[str], object]] = []
        self._line = self.status_line()

    # --- written by the relay ------------------------------------------------------

    def configured(self, upstream: str) -> None:
        self.upstream = upstream
        if not upstream:
            self.state = "not-configured"
        elif self.state == "not-configured":
            self.state = "connecting"
        self._changed()

    def up(
        self,
        now: float,
        *,
        peer: str,
        tls_version: str | None,
        certificate: UpstreamCertificate | None,
    ) -> None:
        self.state = "up"
        self.peer = peer
        self.tls_version = tls_version
        self.certificate = certificate
        self.connected_since = now
        self.retry_at = None
        self._changed()

    def failed(self, now: float, error: UpstreamError, *, retry_at: float | None) -> None:
        self.state = "down"
        self.connected_since = None
        self.last_error = error
        self.retry_at = retry_at
        if error.kind == "rejected":
            self._count(now, 1)
        self._changed()

    def lost(self, now: float, reason: str) -> None:
        self.state = "down"
        self.connected_since = None
        self.last_error = UpstreamError(
            kind="lost", reason="Upstream connection lost", sentence=reason, codes=(), at=now
        )
        self._changed()

    def status_line(self) -> str:
        """One line for the service manager: ``running`` or ``degraded: <reason>``."""
        if self.readiness_problem() is None:
            return "running"
        problems = self.problems()
        return " ".join(f"degraded: {problems[0]}".split())  # one line, whatever the error says

    def _changed(self) -> None:
        line = self.status_line()
        if line == self._line:
            return
        self._line = line
        for watcher in self.watchers:
            watcher(line)

    def answered(
        self,
        now: float,
        *,
        source: str,
        method: str,
        status: int,
        local: bool,
        transport: str = "",
    ) -> None:
        """A transaction from a base station (``source``) got its final answer."""
        if not local:
            self._count(now, 0)
        elif status == 503:
            self._count(now, 2)
        if source == "upstream":
            return
        station = self._station(source, now)
        station.last_seen = now
        station.last_method = method
        station.last_status = status
        station.messages += 1
        if transport:
            station.transport = transport

    def registered(
        self, now: float, *, source: str, transport: str, aor: str, expires: int | None
    ) -> None:
        """The registrar accepted ``source``'s REGISTER for ``aor`` for ``expires`` s."""
        station = self._station(source, now)
        station.transport = transport
        station.aor = aor
        station.registered_until = now + expires if expires else None

    def _station(self, source: str, now: float) -> _Station:
        station = self._stations.get(source)
        if station is None:
            if len(self._stations) >= self._max_stations:
                self._stations.popitem(last=False)
            station = self._stations[source] = _Station(source, now, now, "", 0, 0)
        else:
            self._stations.move_to_end(source)
        return station

    def _count(self, now: float, index: int) -> None:
        minute = int(now // 60)
        bucket = self._buckets.get(minute)
        if bucket is None:
            bucket = self._buckets[minute] = [0, 0, 0]
            while len(self._buckets) > WINDOW_MINUTES:
                self._buckets.popitem(last=False)
        bucket[index] += 1

    # --- read by the admin endpoint ------------------------------------------------

    def problems(self) -> list[str]:
        """Sentences for what is wrong now, the most important first."""
        if self.state == "not-configured":
            return ["No upstream is configured: set sip.upstream to the provider's sips: URI."]
        if self.state == "down" and self.last_error is not None:
            return [f"{self.last_error.reason}: {self.last_error.sentence}"]
        return []

    def readiness_problem(self) -> str | None:
        """Why the gateway is degraded because of its upstream, in a few words, or None.

        Short on purpose: ``/readyz`` answers anyone who reaches the endpoint; the
        sentence (addresses, certificate details) is in the authenticated status view.
        """
        if self.state == "down" and self.last_error is not None:
            return self.last_error.reason
        if self.state == "not-configured":
            return "No upstream configured"
        return None

    def view(self, now: float) -> dict[str, object]:
        """The JSON-ready status (ISO times in UTC)."""
        first = int(now // 60) - WINDOW_MINUTES + 1
        totals = [0, 0, 0]
        for minute, bucket in self._buckets.items():
            if minute >= first:
                for i in range(3):
                    totals[i] += bucket[i]
        error = self.last_error
        cert = self.certificate
        return {
            "upstream": {
                "uri": self.upstream or None,
                "state": self.state,
                "peer": self.peer if self.state == "up" else None,
                "tls_version": self.tls_version if self.state == "up" else None,
                "certificate": None
                if cert is None or self.state != "up"
                else {
                    "subject": cert.subject,
                    "fingerprint": cert.fingerprint,
                    "not_after": cert.not_after.isoformat(),
                },
                "connected_since": _iso(self.connected_since),
                "retry_at": _iso(self.retry_at),
                "last_error": None
                if error is None
                else {
                    "kind": error.kind,
                    "reason": error.reason,
                    "sentence": error.sentence,
                    "at": _iso(error.at),
                    "codes": [{"code": c, "fix": fix_for(c)} for c in error.codes],
                },
            },
            "base_stations": [
                {
                    "source": s.source,
                    "transport": s.transport or None,
                    "aor": s.aor,
                    "registered_until": _iso(s.registered_until)
                    if s.registered_until is not None and s.registered_until > now
                    else None,
                    "first_seen": _iso(s.first_seen),
                    "last_message_at": _iso(s.last_seen),
                    "last_method": s.last_method,
                    "last_status": s.last_status,
                    "messages": s.messages,
                }
                for s in reversed(self._stations.values())
            ],
            "counters": {
                "window_minutes": WINDOW_MINUTES,
                "relayed": totals[0],
                "rejected_handshakes": totals[1],
                "service_unavailable": totals[2],
            },
        }
