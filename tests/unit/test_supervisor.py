"""The supervisor contains failure: a failing part is restarted with backoff and shown
in the readiness view; only a failure to start stops the gateway."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from structlog.testing import capture_logs

from gateway.config import Config, load_config
from gateway.errors import ConfigError
from gateway.health import ServiceHealth, ServiceState
from gateway.metrics import MetricsRegistry
from gateway.supervisor import Supervisor

WAIT = 10.0


@dataclass
class Part:
    """A part whose ``run()`` fails ``crashes`` times, then runs until cancelled."""

    name: str
    crashes: int = 0
    start_error: Exception | None = None
    runs: int = 0
    recovered: int = 0
    running: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> list[str]:
        if self.start_error is not None:
            raise self.start_error
        return []

    async def run(self) -> None:
        self.runs += 1
        if self.runs <= self.crashes:
            raise RuntimeError(f"{self.name} crash {self.runs}")
        self.running.set()
        await asyncio.Event().wait()

    async def recover(self) -> None:
        self.recovered += 1

    async def reload(self, config: Config) -> None:
        return None

    async def stop(self) -> None:
        return None


def config() -> Config:
    return load_config(None, env={})


async def serve(supervisor: Supervisor) -> asyncio.Task[None]:
    return asyncio.create_task(supervisor.serve(config, lambda _: None))


class TestRestart:
    async def test_a_failing_part_is_restarted_and_the_others_keep_running(self) -> None:
        """Two crashes: logged, counted, recovered with a doubling delay; sip untouched."""
        sip, flaky = Part("sip"), Part("provisioning", crashes=2)
        registry = MetricsRegistry()
        health = ServiceHealth(metrics=registry)
        supervisor = Supervisor(
            [sip, flaky], config(), health=health, restart_min=0.01, restart_max=1.0
        )
        with capture_logs() as logs:
            task = await serve(supervisor)
            async with asyncio.timeout(WAIT):
                await flaky.running.wait()
            supervisor.request_stop()
            await asyncio.wait_for(task, WAIT)
        failed = [e for e in logs if e["event"] == "gateway.service.failed"]
        assert [(e["service"], e["failures"], e["retry_in"]) for e in failed] == [
            ("provisioning", 1, 0.01),
            ("provisioning", 2, 0.02),
        ]
        assert sum(e["event"] == "gateway.service.restarted" for e in logs) == 2
        assert flaky.recovered == 2 and flaky.runs == 3
        assert sip.runs == 1
        status = health.get("provisioning")
        assert (status.failures, status.restarts) == (2, 2)
        assert status.last_error == "RuntimeError: provisioning crash 2"
        text = registry.render()
        assert 'sipsgate_service_failures_total{service="provisioning"} 2' in text
        assert 'sipsgate_service_restarts_total{service="provisioning"} 2' in text
        assert 'sipsgate_service_failures_total{service="sip"} 0' in text

    async def test_a_failure_to_start_still_stops_the_gateway(self) -> None:
        """Its twin: a listener that cannot bind is a configuration error, not restarted."""
        broken = Part("sip", start_error=ConfigError("sip.listen_udp: address in use"))
        supervisor = Supervisor([Part("admin"), broken], config())
        with pytest.raises(ConfigError):
            await asyncio.wait_for(supervisor.serve(config, lambda _: None), WAIT)
        assert broken.runs == 0


class TestReadiness:
    def test_ready_when_every_part_runs(self) -> None:
        """Every part running: ready."""
        health = ServiceHealth(["sip", "admin", "expiry"])
        for name in ("sip", "admin", "expiry"):
            health.running(name)
        assert health.readiness() == (
            True,
            {
                "status": "ready",
                "services": {
                    name: {
                        "state": "running",
                        "failures": 0,
                        "restarts": 0,
                        "last_failure_at": None,
                        "retry_in": None,
                    }
                    for name in ("sip", "admin", "expiry")
                },
            },
        )

    def test_degraded_but_ready_when_another_part_failed(self) -> None:
        """A failed provisioning client: still ready (the relay runs), status degraded."""
        health = ServiceHealth(["sip", "provisioning"])
        health.running("sip")
        health.failed("provisioning", "RuntimeError: boom", retry_in=2.0)
        ready, view = health.readiness()
        assert ready and view["status"] == "degraded"
        assert health.get("provisioning").state is ServiceState.FAILED
        assert "last_error" not in view["services"]["provisioning"]  # type: ignore[index]

    def test_not_ready_while_the_relay_does_not_run(self) -> None:
        """The relay starting or failed: not ready."""
        health = ServiceHealth(["sip", "admin"])
        health.running("admin")
        assert health.readiness()[0] is False
        health.failed("sip", "RuntimeError: boom", retry_in=1.0)
        ready, view = health.readiness()
        assert not ready and view["status"] == "not-ready"


@pytest.mark.parametrize("announce", [True, False])
async def test_only_the_gateway_announces_the_process(announce: bool) -> None:
    """A relay worker's own supervisor does not log gateway.process.started/stopped:
    watchers take the first for "the gateway is up"."""
    part = Part("sip")
    supervisor = Supervisor([part], config(), announce_process=announce)
    with capture_logs() as logs:
        task = await serve(supervisor)
        async with asyncio.timeout(WAIT):
            await part.running.wait()
        supervisor.request_stop()
        await task
    names = [e["event"] for e in logs if e["event"].startswith("gateway.process.")]
    assert names == (["gateway.process.started", "gateway.process.stopped"] if announce else [])
