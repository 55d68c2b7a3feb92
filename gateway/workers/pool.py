"""The relay workers as one part of the gateway: :class:`WorkerPool`.

Under the gateway's supervisor it takes the place of the in-process relay (the
service is still called ``sip``). It starts worker 0 first, on the configured
addresses, then the others on the addresses worker 0 bound (a port 0 is resolved
once, so every worker shares it through SO_REUSEPORT). It restarts a worker that
dies (``sip.worker.exited``, then ``sip.worker.restarted``), with a backoff; passes
each reload to every worker; stops them on SIGTERM, then SIGKILL after a deadline.
Its metrics source sums the workers' latest snapshots (and the counters of workers
that died, so a counter never goes back), and the workers' status facts are applied
to the gateway's status view.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.config import Config
from gateway.errors import GatewayError
from gateway.log import get_logger
from gateway.metrics import MetricSnapshot, MetricsRegistry, merge_snapshots
from gateway.relay.handoff import socket_pair
from gateway.relay.status import RelayStatus
from gateway.workers import channel
from gateway.workers.status import apply_facts

START_SECONDS = 15.0  # a worker must report ready (listening) within this
RELOAD_SECONDS = 15.0  # every worker must have applied a reload within this
STOP_SECONDS = 2.5  # SIGTERM, then SIGKILL after this
RESTART_MIN = 0.5  # seconds before a dead worker is started again
RESTART_MAX = 30.0
HEALTHY_AFTER = 60.0  # a worker that ran this long starts its backoff afresh

_log = get_logger(area="sip")


@dataclass(eq=False)
class _Worker:
    index: int
    inbox: socket.socket
    outbox: socket.socket
    process: asyncio.subprocess.Process | None = None
    control: socket.socket | None = None
    writer: asyncio.StreamWriter | None = None
    reading: asyncio.Task[None] | None = None
    ready: asyncio.Future[tuple[list[Any], list[Any]]] | None = None
    reloaded: asyncio.Future[str | None] | None = None
    metrics: list[MetricSnapshot] = field(default_factory=list)
    restarts: int = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


def _host_port(address: Sequence[Any]) -> str:
    host, port = str(address[0]), int(address[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def exit_text(code: int | None) -> str:
    if code is None:
        return "running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class WorkerPool:
    """``sip.workers`` relay processes; a :class:`~gateway.supervisor.Service`."""

    name = "sip"

    def __init__(
        self,
        config: Config,
        count: int,
        registry: MetricsRegistry,
        status: RelayStatus | None = None,
        *,
        restart_min: float = RESTART_MIN,
    ) -> None:
        self._config = config
        self.count = count
        self.status = status if status is not None else RelayStatus(upstream=config.sip.upstream)
        self._restart_min = restart_min
        self._key = os.urandom(32)  # the flow token key all workers share
        self._workers: list[_Worker] = []
        self._bound: Config | None = None  # the config with worker 0's bound addresses
        self._stopping = False
        self._retired: list[MetricSnapshot] = []  # counters of workers that exited
        registry.add_source(self._metrics)

    @property
    def pids(self) -> list[int | None]:
        """Worker process ids by index (None while one is being restarted)."""
        return [w.pid for w in self._workers]

    # --- start -----------------------------------------------------------------------

    async def start(self) -> list[str]:
        self._stopping = False
        self._workers = [_Worker(i, *socket_pair()) for i in range(self.count)]
        try:
            udp, tcp = await self._spawn(self._workers[0], self._config)
            sip = replace(
                self._config.sip,
                listen_udp=tuple(_host_port(a) for a in udp),
                listen_tcp=tuple(_host_port(a) for a in tcp),
            )
            self._bound = replace(self._config, sip=sip)
            await asyncio.gather(*(self._spawn(w, self._bound) for w in self._workers[1:]))
        except BaseException:
            await self.stop()
            raise
        upstream = self._config.sip.upstream or "(no upstream configured: sip.upstream)"
        listening = [f"udp {_host_port(a)}" for a in udp] + [f"tcp {_host_port(a)}" for a in tcp]
        _log.info("sip.workers.started", workers=self.count, pids=self.pids)
        return [f"SIP relay: {', '.join(listening)} -> {upstream} ({self.count} workers)"]

    def _start_config(self) -> Config:
        """The configuration a (re)started worker gets: the bound addresses."""
        return self._bound if self._bound is not None else self._config

    async def _spawn(self, worker: _Worker, config: Config) -> tuple[list[Any], list[Any]]:
        """Start ``worker``'s process and wait until it listens; its bound addresses."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        theirs.set_inheritable(True)
        outboxes = [w.outbox for w in self._workers]
        fds = (theirs.fileno(), worker.inbox.fileno(), *(o.fileno() for o in outboxes))
        loop = asyncio.get_running_loop()
        worker.ready = loop.create_future()
        try:
            worker.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway.workers",
                "--control",
                str(theirs.fileno()),
                pass_fds=fds,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,  # standard output is the gateway's own
            )
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        worker.control, worker.writer = ours, writer
        worker.reading = asyncio.create_task(self._read(worker, reader))
        start = channel.WorkerStart(
            index=worker.index,
            workers=self.count,
            key=self._key,
            config=config,
            inbox=worker.inbox.fileno(),
            outboxes=tuple(o.fileno() for o in outboxes),
        )
        writer.write(channel.encode(channel.START, start))
        try:
            async with asyncio.timeout(START_SECONDS):
                return await worker.ready
        except TimeoutError:
            raise GatewayError(
                f"SIP relay worker {worker.index} did not start within {START_SECONDS:g} s."
            ) from None

    async def _read(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        """What one worker tells the gateway, until its channel closes."""
        try:
            while True:
                message = await channel.receive(reader)
                kind = message[0]
                if kind == channel.METRICS:
                    worker.metrics = message[1]
                elif kind == channel.STATUS:
                    apply_facts(self.status, message[1])
                elif kind == channel.READY and worker.ready and not worker.ready.done():
                    worker.ready.set_result((message[1], message[2]))
                elif kind == channel.FAILED and worker.ready and not worker.ready.done():
                    worker.ready.set_exception(
                        GatewayError(
                            f"SIP relay worker {worker.index} could not start: {message[1]}"
                        )
                    )
                elif kind == channel.RELOADED and worker.reloaded and not worker.reloaded.done():
                    worker.reloaded.set_result(message[1])
        except channel.ChannelClosed:
            pass
        finally:
            for waiting in (worker.ready, worker.reloaded):
                if waiting is not None and not waiting.done():
                    waiting.set_exception(GatewayError(f"SIP relay worker {worker.index} exited."))

    def _metrics(self) -> list[MetricSnapshot]:
        return merge_snapshots([self._retired, *(w.metrics for w in self._workers)])

    # --- run: restart workers that die ----------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for worker in self._workers:
                group.create_task(self._keep(worker), name=f"sip-worker-{worker.index}")

    async def _keep(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        began = loop.time()
        while True:
            process = worker.process
            if process is None:
                return
            code = await process.wait()
            if self._stopping:
                return
            await self._forget(worker)
            if loop.time() - began >= HEALTHY_AFTER:
                failures = 0
            failures += 1
            delay = min(RESTART_MAX, self._restart_min * 2.0 ** (failures - 1))
            _log.error(
                "sip.worker.exited",
                worker=worker.index,
                pid=process.pid,
                reason=exit_text(code),
                retry_in=delay,
            )
            while True:
                await asyncio.sleep(delay)
                began = loop.time()
                try:
                    await self._spawn(worker, self._start_config())
                except (GatewayError, OSError) as exc:
                    await self._forget(worker)
                    failures += 1
                    delay = min(RESTART_MAX, self._restart_min * 2.0 ** (failures - 1))
                    _log.error(
                        "sip.worker.failed", worker=worker.index, error=str(exc), retry_in=delay
                    )
                    continue
                break
            worker.restarts += 1
            _log.warning(
                "sip.worker.restarted",
                worker=worker.index,
                pid=worker.pid,
                restarts=worker.restarts,
                detail="its base stations come back with their next REGISTER refresh, "
                "or at once by RFC 5626 outbound",
            )

    async def _forget(self, worker: _Worker) -> None:
        """After a worker's exit: keep its counters, drop its channel, and empty its
        inbox (requests handed to it meanwhile belong to flows that are gone)."""
        process = worker.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        self._retired = merge_snapshots(
            [self._retired, [m for m in worker.metrics if m.kind == "counter"]]
        )
        worker.metrics = []
        if worker.writer is not None:
            worker.writer.close()
        if worker.reading is not None:
            worker.reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker.reading
        worker.writer = worker.reading = worker.control = None
        with contextlib.suppress(OSError):
            while worker.inbox.recv(65536):
                pass

    # --- reload and stop --------------------------------------------------------------------

    async def reload(self, config: Config) -> None:
        old = self._config
        if config.sip.workers != old.sip.workers:
            _log.warning(
                "config.restart.needed",
                keys=["sip.workers"],
                detail=f"{self.count} workers keep running until the next start",
            )
        self._config = config
        listen_same = (config.sip.listen_udp, config.sip.listen_tcp) == (
            old.sip.listen_udp,
            old.sip.listen_tcp,
        )
        if listen_same and self._bound is not None:
            # port 0 stays the port the workers share
            sip = replace(
                config.sip,
                listen_udp=self._bound.sip.listen_udp,
                listen_tcp=self._bound.sip.listen_tcp,
            )
            config = replace(config, sip=sip)
        self._bound = config
        loop = asyncio.get_running_loop()
        live = [w for w in self._workers if w.writer is not None and not w.writer.is_closing()]
        for worker in live:
            worker.reloaded = loop.create_future()
            assert worker.writer is not None
            worker.writer.write(channel.encode(channel.RELOAD, config))
        errors: list[str] = []
        for worker in live:
            assert worker.reloaded is not None
            try:
                async with asyncio.timeout(RELOAD_SECONDS):
                    error = await worker.reloaded
            except (TimeoutError, GatewayError) as exc:
                error = str(exc) or "no answer"
            if error:
                errors.append(f"worker {worker.index}: {error}")
        if errors:
            raise GatewayError("; ".join(errors))

    async def stop(self) -> None:
        self._stopping = True
        workers = self._workers
        for worker in workers:
            process = worker.process
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
        waiting = [w.process.wait() for w in workers if w.process is not None]
        try:
            async with asyncio.timeout(STOP_SECONDS):
                await asyncio.gather(*waiting)
        except TimeoutError:
            _log.error("sip.worker.stop_timeout", seconds=STOP_SECONDS)
        for worker in workers:
            await self._forget(worker)
            worker.process = None
            worker.inbox.close()
            worker.outbox.close()
