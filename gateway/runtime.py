"""``sipsgate run``: assemble the gateway from its configuration and supervise it.

Start order: the store, the device identity (the standard one is generated on first
start), the admin password (generated and printed once on first start), then the
services under :class:`~gateway.supervisor.Supervisor`. SIGTERM and SIGINT stop the
gateway cleanly; SIGHUP reloads the configuration file.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from certstore.device_service import AsyncDeviceService, DeviceService
from certstore.facade import RepositoryStore
from certstore.model import Actor
from gateway.admin.app import create_app
from gateway.admin.auth import ADMIN_USER, AdminAuth, credentials_path, ensure_password
from gateway.admin.server import AdminServer, ListenAddress, parse_listen_all
from gateway.admin.tls import DeviceTls
from gateway.config import Config, load_config, usable_cpus
from gateway.errors import GatewayError
from gateway.expiry import ExpiryWatch
from gateway.health import ServiceHealth
from gateway.log import get_logger
from gateway.metrics import MetricsRegistry
from gateway.provisioning.service import ProvisioningService, build_client
from gateway.relay.handoff import HandOffLink
from gateway.relay.service import RelaySettings, SipRelay
from gateway.relay.status import RelayStatus
from gateway.storage import open_configured_store
from gateway.supervisor import Service, Supervisor
from gateway.systemd import Notifier
from gateway.tls.connector import TlsConnector
from gateway.tls.factory import build_connector
from gateway.workers.pool import WorkerPool

GATEWAY_ACTOR = Actor(name="gateway", interface="gateway")
RELAY_START_SECONDS = 10.0
STOP_THREADS_SECONDS = 0.8  # with the supervisor's deadline, the process exits within 5 s

_log = get_logger(area="gateway")


def _say(out: TextIO) -> Callable[[str], None]:
    def announce(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    return announce


class ExpiryService:
    """The expiry watch (warning events and a gauge) as a part of the gateway."""

    name = "expiry"

    def __init__(self, watch: ExpiryWatch) -> None:
        self._watch = watch

    async def start(self) -> list[str]:
        return []

    async def run(self) -> None:
        await self._watch.serve()

    async def reload(self, config: Config) -> None:
        return None

    async def stop(self) -> None:
        return None


class RevocationService:
    """Closes live TLS flows whose peer the trust state no longer accepts (DESIGN §5)."""

    name = "revocation"

    def __init__(self, connector: TlsConnector) -> None:
        self._connector = connector

    async def start(self) -> list[str]:
        return []

    async def run(self) -> None:
        await self._connector.watch_revocations()

    async def reload(self, config: Config) -> None:
        return None

    async def stop(self) -> None:
        return None


class RelayService:
    """The SIP relay as a part of the gateway: listeners are bound before READY."""

    name = "sip"

    def __init__(
        self,
        config: Config,
        connector: TlsConnector,
        registry: MetricsRegistry,
        status: RelayStatus | None = None,
        *,
        settings: RelaySettings | None = None,
        handoff: HandOffLink | None = None,
    ) -> None:
        self._config = config
        self._settings = settings  # a worker's index, key, SO_REUSEPORT
        self._handoff = handoff
        # One status for the life of the gateway: a reload's new relay goes on writing it.
        self.status = status if status is not None else RelayStatus(upstream=config.sip.upstream)
        self._connector = connector
        self._registry = registry
        self._relay: SipRelay | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()  # set while a relay task has been started

    async def start(self) -> list[str]:
        relay = SipRelay.from_config(
            self._config,
            self._connector,
            metrics=self._registry,
            status=self.status,
            settings=self._settings,
            handoff=self._handoff,
        )
        task = asyncio.create_task(relay.serve(), name="sip-relay")
        self._relay, self._task = relay, task
        ready = asyncio.create_task(relay.ready.wait())
        done, _ = await asyncio.wait(
            {task, ready}, timeout=RELAY_START_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            if task in done:
                task.result()  # the listener's own error (address in use, ...)
            await self.stop()
            raise GatewayError(
                f"The SIP relay did not start within {RELAY_START_SECONDS:g} s; "
                "check sip.listen_udp and sip.listen_tcp."
            )
        self._started.set()  # run() follows this task from now on
        upstream = self._config.sip.upstream or "(no upstream configured: sip.upstream)"
        listening = [f"udp {h}:{p}" for h, p in relay.udp_addresses]
        listening += [f"tcp {h}:{p}" for h, p in relay.tcp_addresses]
        return [f"SIP relay: {', '.join(listening)} -> {upstream}"]

    async def run(self) -> None:
        # The relay's own task; a reload replaces it, and then the new one is followed.
        while True:
            await self._started.wait()
            task = self._task
            if task is None:
                continue
            try:
                await asyncio.shield(task)
                return
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if (current is not None and current.cancelling()) or self._task is task:
                    raise  # the gateway stops (a reload would have replaced the task)

    @property
    def relay(self) -> SipRelay | None:
        """The relay running now (a reload replaces it)."""
        return self._relay

    def _as_bound(self, config: Config) -> Config:
        """``config`` with the addresses the running relay bound (port 0 resolved)."""
        relay = self._relay
        if relay is None or not (relay.udp_addresses or relay.tcp_addresses):
            return config
        sip = replace(
            config.sip,
            listen_udp=tuple(_host_port(a) for a in relay.udp_addresses),
            listen_tcp=tuple(_host_port(a) for a in relay.tcp_addresses),
        )
        return replace(config, sip=sip)

    def keep_bound(self) -> None:
        """From now on the configuration names the addresses bound (a port 0 resolved):
        a relay worker's reload with the same listen addresses then rebinds nothing."""
        self._config = self._as_bound(self._config)

    async def _start_with(self, config: Config) -> None:
        running, self._config = self._config, config
        try:
            for line in await self.start():
                _log.info("sip.relay.restarted", detail=line)
        finally:
            self._config = running

    async def recover(self) -> None:
        """After the relay's task failed: start it again on the addresses it had bound
        (a port 0 in the config would otherwise move the relay to new ports)."""
        bound = self._as_bound(self._config)
        await self.stop()
        await self._start_with(bound)

    async def reload(self, config: Config) -> None:
        old = self._config
        if (
            config.sip == old.sip
            and config.gateway.name == old.gateway.name
            and config.gateway.host_names == old.gateway.host_names
        ):
            self._config = config
            return
        _log.info("sip.relay.restarting", reason="the [sip] configuration changed")
        previous = self._as_bound(old)
        await self.stop()
        try:
            await self._start_with(config)
        except Exception as exc:
            # A new address that cannot be bound must not leave the base stations
            # without a relay: go back to the addresses that worked.
            await self.stop()
            await self._start_with(previous)
            raise GatewayError(
                f"The changed [sip] configuration could not be applied ({exc}); the relay "
                "keeps running with the previous one. Fix sip.listen_udp / sip.listen_tcp "
                "and reload again."
            ) from exc
        self._config = config

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._started.clear()
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _host_port(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def build_services(
    config: Config,
    store: RepositoryStore,
    device: AsyncDeviceService,
    registry: MetricsRegistry,
    health: ServiceHealth | None = None,
) -> list[Service]:
    """Every long-lived part of the gateway, in start order. New parts go here."""
    device_tls = DeviceTls(store, min_version=config.tls.min_version)
    auth = AdminAuth(config.data_dir, clock=time.monotonic)
    # One connector for every outbound TLS connection: SIPS upstream and HTTPS provisioning.
    connector = build_connector(config, store, registry)
    provisioning = ProvisioningService(
        build_client(config, store, tls=connector, metrics=registry),
        interval=float(config.provisioning.interval),
    )
    relay_status = RelayStatus(upstream=config.sip.upstream)
    workers = config.sip.workers.resolve(usable_cpus())
    relay: Service
    if workers > 1:
        relay = WorkerPool(config, workers, registry, relay_status)
    else:
        relay = RelayService(config, connector, registry, relay_status)
    app = create_app(
        store,
        config,
        auth=auth,
        registry=registry,
        device_tls=device_tls,
        device=device,
        provisioning=provisioning,
        health=health,
        relay_status=relay_status,
        connector=connector,
        revocation_errors=lambda: dict(connector.fetcher.last_errors) if connector.fetcher else {},
    )
    watch = ExpiryWatch(store, metrics=registry, clock=lambda: datetime.now(UTC))
    return [
        AdminServer(app, device_tls, config),
        relay,
        provisioning,
        RevocationService(connector),
        ExpiryService(watch),
    ]


def identity_names(config: Config, listen: Sequence[ListenAddress]) -> tuple[str, ...]:
    """SANs of the standard identity: the configured host names and the addresses the
    admin endpoint listens on (so a browser can check the name it connected to)."""
    names = list(config.gateway.host_names)
    for address in listen:
        if address.host not in ("", "0.0.0.0", "::"):  # noqa: S104 - compared, not bound
            names.append(address.host)
    return tuple(dict.fromkeys(names))


def _tighten(data_dir: Path) -> None:
    """The data directory holds keys and secrets: one that already existed with access
    for others (made by hand, an old install) is set to 0700."""
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & 0o077:
        try:
            data_dir.chmod(0o700)
        except OSError as exc:
            _log.warning(
                "gateway.data_dir.open", path=str(data_dir), mode=oct(mode), error=str(exc)
            )
            return
        _log.warning("gateway.data_dir.tightened", path=str(data_dir), was=oct(mode), now="0o700")


async def run_gateway(
    config: Config,
    *,
    config_path: str | None,
    env: Mapping[str, str],
    out: TextIO,
    on_settled: Callable[[], None] | None = None,
) -> int:
    listen = parse_listen_all(config)  # refuse a bad admin.listen before anything is created
    announce = _say(out)
    data_dir = config.data_dir
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(data_dir)
    store = open_configured_store(config)
    try:
        service = DeviceService(
            store,
            name=config.gateway.name,
            host_names=identity_names(config, listen),
            machine_host_name=socket.gethostname(),
            allow_weak_keys=config.gateway.allow_weak_keys,
        )
        identity = await asyncio.to_thread(service.ensure_standard_identity, actor=GATEWAY_ACTOR)
        _log.info(
            "device.identity.ready",
            kind=identity.kind,
            fingerprint=identity.certificate.fingerprint,
        )
        generated = await asyncio.to_thread(ensure_password, data_dir, env)
        registry = MetricsRegistry()
        health = ServiceHealth(metrics=registry)
        services = build_services(config, store, AsyncDeviceService(service), registry, health)
        notifier = Notifier(env)
        relay_status = next(s.status for s in services if isinstance(s, RelayService | WorkerPool))
        supervisor = Supervisor(
            services, config, notifier, health=health, status_line=relay_status.status_line
        )
        # systemctl status says what /readyz says: "running", or "degraded: <reason>".
        relay_status.watchers.append(notifier.status)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, supervisor.request_stop)
        loop.add_signal_handler(signal.SIGINT, supervisor.request_stop)
        loop.add_signal_handler(signal.SIGHUP, supervisor.request_reload)

        shown = False

        def started() -> None:
            nonlocal shown
            if generated is not None:
                announce(f"Admin password (user {ADMIN_USER}), shown only this once: {generated}")
                shown = True

        try:
            await supervisor.serve(
                lambda: load_config(config_path, env=env), announce, started, on_settled
            )
        except BaseException:
            if generated is not None and not shown:
                # The start failed before the generated password was shown: forget it, so
                # the next start generates (and shows) a new one instead of locking out.
                credentials_path(data_dir).unlink(missing_ok=True)
            raise
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
    finally:
        # Store calls still running in worker threads (a cancelled to_thread does not
        # stop its thread) must end before the store's connections are closed.
        try:
            async with asyncio.timeout(STOP_THREADS_SECONDS):
                await asyncio.get_running_loop().shutdown_default_executor()
        except TimeoutError:
            # Every change is its own transaction: leaving the file to the process exit
            # is safe; closing it under a running query is not.
            _log.error("gateway.stop.threads_timeout", seconds=STOP_THREADS_SECONDS)
        else:
            store.close()
    return 0
