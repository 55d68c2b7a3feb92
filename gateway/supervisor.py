"""The supervisor: runs the gateway's long-lived parts under one ``asyncio.TaskGroup``.

A part is a :class:`Service`. The supervisor starts the parts in order (a part that
fails to start stops the ones already started, and the gateway does not start: a
listener that cannot bind is a configuration error), runs each part's ``run()`` in
the task group, reloads every part with a new configuration on request, and on stop
cancels the tasks and stops the parts in reverse order, within a deadline.

Failure is contained: when a part's ``run()`` raises, the failure is logged
(``gateway.service.failed``), counted on ``/metrics`` and shown in the readiness view
(:class:`~gateway.health.ServiceHealth`), and the part is restarted after a backoff
(1 s, doubling, at most 60 s; afresh after it ran a minute without failing). Every
other part, the SIP relay above all, keeps running meanwhile. A part that needs more
than calling ``run()`` again to recover (the relay re-opens its listeners) has a
``recover()`` method.

This is the extension point for the gateway: the SIP relay and the provisioning
client become services next to the admin endpoint, in ``gateway.runtime``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from gateway.config import Config
from gateway.errors import GatewayError
from gateway.health import ServiceHealth
from gateway.log import get_logger
from gateway.systemd import Notifier

STOP_DEADLINE = 4.0  # seconds for all parts to stop; the process exits within 5 s
RESTART_MIN = 1.0  # seconds before the first restart of a failed part
RESTART_MAX = 60.0  # the restart backoff's ceiling
HEALTHY_AFTER = 60.0  # a part that ran this long since its last restart starts afresh

_log = get_logger(area="supervisor")


class Service(Protocol):
    """One long-lived part of the gateway."""

    name: str

    async def start(self) -> list[str]:
        """Bind and get ready; returns lines to show the operator (e.g. URLs)."""
        ...

    async def run(self) -> None:
        """Background work until cancelled; return at once when there is none."""
        ...

    async def reload(self, config: Config) -> None:
        """Apply a changed configuration without a restart where possible."""
        ...

    async def stop(self) -> None:
        """Release everything; must not take long."""
        ...


ConfigLoader = Callable[[], Config]
Announce = Callable[[str], None]


class Supervisor:
    def __init__(
        self,
        services: Sequence[Service],
        config: Config,
        notifier: Notifier | None = None,
        *,
        health: ServiceHealth | None = None,
        restart_min: float = RESTART_MIN,
        restart_max: float = RESTART_MAX,
        status_line: Callable[[], str] | None = None,
        announce_process: bool = True,
    ) -> None:
        self.services = tuple(services)
        # gateway.process.started/stopped speak for the gateway; a relay worker's own
        # supervisor logs sip.worker.* instead (watchers read the first as "ready").
        self.announce_process = announce_process
        # The STATUS= line sent with READY=1 (the relay's "running" / "degraded: ...").
        self.status_line = status_line or (lambda: "running")
        self.config = config
        self.notifier = notifier or Notifier({})  # outside systemd: every call is a no-op
        self.health = health or ServiceHealth()
        for service in self.services:
            self.health.add(service.name)
        self.restart_min = restart_min
        self.restart_max = restart_max
        self.stopping = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self.reloaded = asyncio.Event()  # set after each completed reload (tests wait on it)
        self._on_settled: Callable[[], None] | None = None

    def request_stop(self) -> None:
        self.stopping.set()

    def request_reload(self) -> None:
        self.reload_requested.set()

    async def serve(
        self,
        load: ConfigLoader,
        announce: Announce,
        on_started: Callable[[], None] | None = None,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        """Run until :meth:`request_stop`; ``announce`` gets each service's start lines.

        ``on_started`` runs once every service has started; ``on_settled`` then, and
        again after each reload (what the process does once its parts are in place).
        """
        self._on_settled = on_settled
        started: list[Service] = []
        try:
            for service in self.services:
                started.append(service)  # stopped too if its start fails half-way
                for line in await service.start():
                    announce(line)
                self.health.running(service.name)
            if self.announce_process:
                _log.info("gateway.process.started", services=[s.name for s in self.services])
            if on_started is not None:
                on_started()
            if on_settled is not None:
                on_settled()
            self.notifier.ready(status=self.status_line())
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._supervise(service), name=service.name)
                    for service in self.services
                ]
                tasks.append(group.create_task(self._reloads(load), name="reload"))
                tasks.append(group.create_task(self.notifier.watchdog(), name="watchdog"))
                await self.stopping.wait()
                self.notifier.stopping()
                for task in tasks:
                    task.cancel()
        finally:
            await self._stop(started)

    async def _supervise(self, service: Service) -> None:
        """Run ``service``; when its work fails, log it and restart it with backoff."""
        loop = asyncio.get_running_loop()
        name = service.name
        failures = 0
        while True:
            began = loop.time()
            try:
                await service.run()
                return  # a part without background work
            except Exception as exc:  # contained: one part must not stop the others
                if loop.time() - began >= HEALTHY_AFTER:
                    failures = 0
                failures += 1
                delay = self._failed(name, exc, failures)
            while True:
                await asyncio.sleep(delay)  # cancellation (stop) ends the wait
                try:
                    await _recover(service)
                except Exception as exc:
                    failures += 1
                    delay = self._failed(name, exc, failures)
                    continue
                break
            self.health.restarted(name)
            self.health.running(name)
            _log.info("gateway.service.restarted", service=name, failures=failures)

    def _failed(self, name: str, exc: BaseException, failures: int) -> float:
        delay = min(self.restart_max, self.restart_min * 2.0 ** (failures - 1))
        error = f"{type(exc).__name__}: {exc}"
        self.health.failed(name, error, retry_in=delay)
        _log.error(
            "gateway.service.failed",
            service=name,
            error=error,
            failures=failures,
            retry_in=delay,
            exc_info=exc,
        )
        return delay

    async def _reloads(self, load: ConfigLoader) -> None:
        while True:
            await self.reload_requested.wait()
            self.reload_requested.clear()
            await self.reload(load)

    async def reload(self, load: ConfigLoader) -> None:
        self.notifier.reloading()
        try:
            await self._reload(load)
        finally:
            if self._on_settled is not None:
                self._on_settled()
            self.notifier.ready(status=self.status_line())
            self.reloaded.set()

    async def _reload(self, load: ConfigLoader) -> None:
        try:
            new = await asyncio.to_thread(load)
        except GatewayError as exc:
            _log.error("config.reload.failed", error=str(exc))
            return
        changed = diff_config(self.config, new)
        _log.info("config.file.reloaded", changed=changed, source=new.source)
        restart_needed = [k for k in changed if k.split(".")[0] in ("gateway", "store", "log")]
        if restart_needed:
            _log.warning("config.restart.needed", keys=restart_needed)
        for service in self.services:
            try:
                await service.reload(new)
            except Exception as exc:  # a part that cannot take the change keeps the old one
                _log.error(
                    "config.reload.failed",
                    service=service.name,
                    error=str(exc)
                    if isinstance(exc, GatewayError)
                    else f"{type(exc).__name__}: {exc}",
                )
        self.config = new

    async def _stop(self, started: Sequence[Service]) -> None:
        try:
            async with asyncio.timeout(STOP_DEADLINE):
                for service in reversed(started):
                    self.health.stopped(service.name)
                    await service.stop()
        except TimeoutError:
            _log.error("gateway.stop.timeout", deadline=STOP_DEADLINE)
        if self.announce_process:
            _log.info("gateway.process.stopped")


async def _recover(service: Service) -> None:
    """Bring a failed part back: its own ``recover()`` when it has one."""
    recover: Callable[[], Awaitable[None]] | None = getattr(service, "recover", None)
    if recover is not None:
        await recover()


def diff_config(old: Config, new: Config) -> list[str]:
    """The ``section.key`` paths whose values differ."""
    from gateway.config import config_as_dict

    before, after = config_as_dict(old), config_as_dict(new)
    return [
        f"{section}.{key}"
        for section, values in after.items()
        for key, value in values.items()
        if before.get(section, {}).get(key) != value
    ]
