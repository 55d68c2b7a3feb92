"""The provisioning client as a long-lived part of the gateway.

:meth:`ProvisioningService.serve` fetches at start, then every
``provisioning.interval``; after a run that did not succeed it tries again sooner
(one minute, doubling, never later than the interval). :meth:`trigger` asks for a
run now; :meth:`fetch_now` runs one and returns its result (the API's
``POST /api/v1/provisioning/fetch``). Runs never overlap: the client serialises them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace

import structlog

from certstore.facade import RepositoryStore
from certstore.model import Actor
from gateway.config import Config
from gateway.metrics import MetricsRegistry
from gateway.provisioning.client import ProvisioningClient, RetryPolicy
from gateway.provisioning.mac import MacSource, PrimaryInterfaceMac
from gateway.provisioning.result import FetchResult, Trigger
from gateway.provisioning.state import ProvisioningState
from gateway.tls.connector import TlsConnector
from gateway.tls.factory import build_connector

FAILURE_DELAY = 60.0  # seconds before the first retry of a run that did not succeed


def build_client(
    config: Config,
    store: RepositoryStore,
    *,
    tls: TlsConnector | None = None,
    metrics: MetricsRegistry | None = None,
    mac: MacSource | None = None,
    retry: RetryPolicy | None = None,
) -> ProvisioningClient:
    """The provisioning client of ``config`` over ``store``."""
    return ProvisioningClient(
        store=store,
        settings=store.get_settings,
        tls=tls or build_connector(config, store, metrics),
        state=ProvisioningState(config.data_dir),
        url_template=config.provisioning.url,
        name=config.gateway.name,
        mac=mac or PrimaryInterfaceMac(),
        running=config,
        metrics=metrics,
        timeout=max(5.0, float(config.tls.handshake_timeout) * 3),
        retry=retry,
    )


class ProvisioningService:
    """Runs the client at start, on the interval, and on demand, until cancelled."""

    name = "provisioning"

    def __init__(
        self,
        client: ProvisioningClient,
        *,
        interval: float,
        failure_delay: float = FAILURE_DELAY,
        on_result: Callable[[FetchResult], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("provisioning.interval must be a positive duration.")
        self.client = client
        self.interval = interval
        self.failure_delay = failure_delay
        self._wake = asyncio.Event()
        self._on_result = on_result
        self._log = structlog.get_logger("gateway.provisioning")

    def trigger(self) -> None:
        """Ask :meth:`serve` for a run now."""
        self._wake.set()

    async def fetch_now(self, *, force: bool = False) -> FetchResult:
        return await self.client.fetch(trigger=Trigger.DEMAND, force=force)

    async def apply(self, data: bytes, *, actor: Actor) -> FetchResult:
        return await self.client.apply_bytes(data, trigger=Trigger.API, actor=actor)

    async def last_result(self) -> FetchResult | None:
        return await self.client.last_result()

    def next_delay(self, result: FetchResult, failures: int) -> float:
        if result.ok or failures == 0:
            return self.interval
        return min(self.interval, self.failure_delay * 2.0 ** (failures - 1))

    async def serve(self) -> None:
        """Fetch at start and on every interval until cancelled."""
        if not self.client.configured:
            self._log.info("provisioning.client.disabled", reason="provisioning.url is empty")
            await asyncio.Event().wait()  # nothing to do until cancelled
        trigger = Trigger.START
        failures = 0
        while True:
            result = await self.client.fetch(trigger=trigger)
            failures = 0 if result.ok else failures + 1
            if self._on_result is not None:
                self._on_result(result)
            delay = self.next_delay(result, failures)
            self._wake.clear()
            trigger = Trigger.INTERVAL
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
                    trigger = Trigger.DEMAND

    # -- the supervisor's service interface ------------------------------------------------

    async def start(self) -> list[str]:
        if not self.client.configured:
            return []
        return [
            f"Provisioning from {self.client.url_template} every {self.interval:g} s "
            "(digest credentials from the settings)."
        ]

    async def run(self) -> None:
        await self.serve()

    async def reload(self, config: Config) -> None:
        changed = (
            config.provisioning.url != self.client.url_template
            or float(config.provisioning.interval) != self.interval
            or config.gateway.name != self.client.name
        )
        self.client.url_template = config.provisioning.url
        self.client.name = config.gateway.name
        self.client.running = config
        self.interval = float(config.provisioning.interval)
        if changed:
            self.trigger()

    async def stop(self) -> None:
        return None


def with_interval(config: Config, seconds: float) -> Config:
    """``config`` with another provisioning interval (tests, tools)."""
    from gateway.config import Duration

    return replace(config, provisioning=replace(config.provisioning, interval=Duration(seconds)))
