"""The supervisor: runs the gateway's long-lived parts under one ``asyncio.TaskGroup``.

A part is a :class:`Service`. The supervisor starts the parts in order (a part that
fails to start stops the ones already started), runs each part's ``run()`` in the
task group, reloads every part with a new configuration on request, and on stop
cancels the tasks and stops the parts in reverse order, within a deadline.

This is the extension point for the gateway: the SIP relay and the provisioning
client become services next to the admin endpoint, in ``gateway.runtime``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from gateway.config import Config
from gateway.errors import GatewayError
from gateway.log import get_logger
from gateway.systemd import Notifier

STOP_DEADLINE = 4.0  # seconds for all parts to stop; the process exits within 5 s

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
        self, services: Sequence[Service], config: Config, notifier: Notifier | None = None
    ) -> None:
        self.services = tuple(services)
        self.config = config
        self.notifier = notifier or Notifier({})  # outside systemd: every call is a no-op
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
            _log.info("gateway.process.started", services=[s.name for s in self.services])
            if on_started is not None:
                on_started()
            if on_settled is not None:
                on_settled()
            self.notifier.ready(status="running")
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(_guard(service.name, service.run()), name=service.name)
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
            self.notifier.ready(status="running")
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
            except GatewayError as exc:
                _log.error("config.reload.failed", service=service.name, error=str(exc))
        self.config = new

    async def _stop(self, started: Sequence[Service]) -> None:
        try:
            async with asyncio.timeout(STOP_DEADLINE):
                for service in reversed(started):
                    await service.stop()
        except TimeoutError:
            _log.error("gateway.stop.timeout", deadline=STOP_DEADLINE)
        _log.info("gateway.process.stopped")


async def _guard(name: str, work: Awaitable[None]) -> None:
    try:
        await work
    except asyncio.CancelledError:
        raise
    except BaseException:
        _log.exception("gateway.service.failed", service=name)
        raise


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
