"""One relay worker process: ``python -m gateway.workers --control FD``.

Started only by :class:`gateway.workers.pool.WorkerPool`. It reads its
:class:`~gateway.workers.channel.WorkerStart` from the control channel, then runs,
under a :class:`~gateway.supervisor.Supervisor` of its own, the SIP relay (LAN
sockets with SO_REUSEPORT, its own upstream flow) and the revocation watch over its
own store connection: a change of the trust state closes this worker's flows too.
It sends its metrics and status facts to the gateway process, applies reloads it is
sent, stops on SIGTERM, and stops by itself when the gateway process is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

import structlog

from gateway.config import Config
from gateway.errors import GatewayError
from gateway.heap import settle_heap
from gateway.limits import raise_open_file_limit
from gateway.log import configure_logging, get_logger
from gateway.metrics import MetricsRegistry
from gateway.relay.handoff import HandOffLink
from gateway.relay.service import RelaySettings
from gateway.runtime import STOP_THREADS_SECONDS, RelayService, RevocationService
from gateway.storage import open_configured_store
from gateway.supervisor import Service, Supervisor
from gateway.systemd import Notifier
from gateway.tls.factory import build_connector
from gateway.workers import channel
from gateway.workers.status import ForwardedStatus

#: How often a worker sends its metrics (``/metrics`` is at most this old).
METRICS_SECONDS = 1.0
#: How often it sends what its status view learnt.
STATUS_SECONDS = 0.25
#: Octets of reports waiting for the gateway process beyond which reports are skipped.
SEND_BACKLOG = 4 * 1024 * 1024

_log = get_logger(area="sip")


async def serve_worker(control_fd: int) -> int:
    sock = socket.socket(fileno=control_fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    message = await channel.receive(reader)
    start = message[1]
    if message[0] != channel.START or not isinstance(start, channel.WorkerStart):
        raise GatewayError("A relay worker must be started by sipsgate run.")
    config: Config = start.config
    configure_logging(config.log.level, config.log.format)
    structlog.contextvars.bind_contextvars(worker=start.index)
    raise_open_file_limit()

    def send(kind: str, *values: Any) -> None:
        if writer.is_closing():
            return
        if kind in (channel.METRICS, channel.STATUS) and (
            writer.transport.get_write_buffer_size() > SEND_BACKLOG
        ):
            return  # the gateway process is not reading: bounded, the next report follows
        writer.write(channel.encode(kind, *values))

    code = 0
    # The configured store, as the gateway process opens it (on PostgreSQL each worker
    # listens for the fleet's changes itself).
    store = open_configured_store(config)
    handoff = HandOffLink.from_fds(start.inbox, start.outboxes)
    try:
        registry = MetricsRegistry()
        connector = build_connector(config, store, registry)
        # OCSP and CRLs are fetched once, by the gateway process; what it stores
        # reaches this worker's revocation watch through the store's trust state.
        connector.fetcher = None
        status = ForwardedStatus(upstream=config.sip.upstream)
        relay = RelayService(
            config,
            connector,
            registry,
            status,
            settings=RelaySettings(
                worker=start.index, workers=start.workers, token_key=start.key, reuse_port=True
            ),
            handoff=handoff,
        )
        services: list[Service] = [relay, RevocationService(connector)]
        supervisor = Supervisor(
            services,
            config,
            Notifier({}),
            status_line=status.status_line,
            announce_process=False,
        )
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, supervisor.request_stop)
        # Ctrl-C and SIGHUP reach the gateway process, which stops or reloads workers.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

        def started() -> None:
            running = relay.relay
            assert running is not None
            relay.keep_bound()
            _log.info("sip.worker.started", workers=start.workers, pid=os.getpid())
            send(channel.READY, list(running.udp_addresses), list(running.tcp_addresses))

        async with asyncio.TaskGroup() as group:
            chores = [
                group.create_task(_control(reader, supervisor, services, send)),
                group.create_task(_every(METRICS_SECONDS, lambda: _metrics(registry, send))),
                group.create_task(_every(STATUS_SECONDS, lambda: _status(status, send))),
            ]
            try:
                await supervisor.serve(lambda: config, lambda line: None, started, _settle)
            except Exception as exc:  # the start failed (an address in use, ...): say why
                send(channel.FAILED, _why(exc))
                code = 1
            finally:
                _status(status, send)
                _metrics(registry, send)
                for task in chores:
                    task.cancel()
    finally:
        # Store calls still running in threads end before the store is closed.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_THREADS_SECONDS):
                await asyncio.get_running_loop().shutdown_default_executor()
        handoff.close()
        _log.info("sip.worker.stopped", pid=os.getpid())
        with contextlib.suppress(Exception):
            await writer.drain()
        writer.close()
        store.close()
    return code


def _settle() -> None:
    """Every part runs: the garbage-collection policy of the gateway (gateway.heap)."""
    settle_heap()


def _why(exc: Exception) -> str:
    if isinstance(exc, GatewayError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc}; check sip.listen_udp and sip.listen_tcp"
    return f"{type(exc).__name__}: {exc}"


def _metrics(registry: MetricsRegistry, send: Callable[..., None]) -> None:
    send(channel.METRICS, registry.snapshot())


def _status(status: ForwardedStatus, send: Callable[..., None]) -> None:
    calls = status.take()
    if calls:
        send(channel.STATUS, calls)


async def _every(seconds: float, chore: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(seconds)
        chore()


async def _control(
    reader: asyncio.StreamReader,
    supervisor: Supervisor,
    services: list[Service],
    send: Callable[..., None],
) -> None:
    """Reloads from the gateway process; its end of the channel closing stops us."""
    while True:
        try:
            message = await channel.receive(reader)
        except channel.ChannelClosed:
            _log.warning("sip.worker.orphaned", reason="the gateway process is gone")
            supervisor.request_stop()
            return
        if message[0] == channel.RELOAD:
            config: Config = message[1]
            errors = []
            for service in services:
                try:
                    await service.reload(config)
                except Exception as exc:
                    errors.append(_why(exc))
            supervisor.config = config
            settle_heap()
            send(channel.RELOADED, "; ".join(errors) or None)
