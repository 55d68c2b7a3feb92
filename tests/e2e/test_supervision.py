"""Supervision that contains failure: a real ``sipsgate run`` in which one part crashes.

For each part (provisioning, expiry watch, revocation watch, the admin endpoint's
identity task) a crash is injected twice (``tests.e2e.faulty_gateway``). The failure
is logged, counted on ``/metrics`` and shown in ``/readyz``; the part is restarted
with backoff; and SIPp base stations register through the relay to kamailio the
whole time.
"""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from certstore.model import Actor, TrustSource
from certstore.sqlite import SqliteStore
from certstore.x509 import parse_der
from tests.gateway_process import GatewayProcess, start_gateway, write_config
from tests.pki import CertFactory, Issued
from tests.sip_peers import DOMAIN, KamailioRegistrar, Sipp

pytestmark = pytest.mark.slow
CRASHES = 2


@pytest.fixture(scope="module")
def provider() -> tuple[Issued, Issued]:
    factory = CertFactory()
    root = factory.ca("Provider Root CA (supervision e2e)")
    return root, factory.leaf(root, cn=DOMAIN, dns=(DOMAIN,))


@pytest.fixture
def kamailio(provider: tuple[Issued, Issued]) -> Iterator[KamailioRegistrar]:
    with KamailioRegistrar(provider[1]) as server:
        yield server


async def start(
    workdir: Path, root: Issued, kamailio: KamailioRegistrar, service: str
) -> GatewayProcess:
    data_dir = workdir / "var"
    data_dir.mkdir(mode=0o700)
    write_config(workdir / "sipsgate.toml", data_dir, ["127.0.0.1:0"])
    store = SqliteStore(data_dir / "sipsgate.db")
    try:
        store.add_trust(
            [parse_der(root.der)],
            source=TrustSource.UPLOADED,
            actor=Actor(name="test", interface="cli"),
        )
    finally:
        store.close()
    return await start_gateway(
        workdir,
        module="tests.e2e.faulty_gateway",
        extra_env={
            "FAULT_SERVICE": service,
            "FAULT_TIMES": str(CRASHES),
            "SIPSGATE_SIP_UPSTREAM": f"sips:{DOMAIN}",
            "SIPSGATE_SIP_UPSTREAM_ADDRESS": f"127.0.0.1:{kamailio.port}",
        },
    )


def failures_metric(text: str, service: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'sipsgate_service_failures_total{{service="{service}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no failure count for {service} in /metrics")


@pytest.mark.parametrize("service", ["provisioning", "expiry", "revocation", "admin"])
async def test_a_crashing_part_is_restarted_while_the_relay_keeps_relaying(
    tmp_path: Path, provider: tuple[Issued, Issued], kamailio: KamailioRegistrar, service: str
) -> None:
    """The part crashes twice: logged, on /metrics and /readyz, restarted; REGISTERs
    through the relay succeed before, during and after."""
    gateway = await start(tmp_path, provider[0], kamailio, service)
    try:
        relay = (await gateway.relay_listeners())["udp"]

        failed = json.loads(await gateway.wait_for_log('"gateway.service.failed"'))
        assert failed["service"] == service
        assert f"injected crash of the {service} service" in failed["error"]

        during = await Sipp("register.xml", relay, service="bs1").run()
        assert during.ok, f"REGISTER while {service} is failed: {during!r}"
        async with gateway.session() as http:
            async with http.get("/metrics") as response:
                assert failures_metric(await response.text(), service) >= 1
            async with http.get("/readyz") as response:
                assert response.status == 200  # the relay and the admin endpoint run
                view = await response.json()
            assert view["services"][service]["failures"] >= 1
            assert view["services"]["sip"]["state"] == "running"

            await gateway.wait_for_log('"gateway.service.restarted"', nth=CRASHES)
            async with http.get("/readyz") as response:
                assert response.status == 200
                after = await response.json()
        assert after["status"] == "ready"
        assert after["services"][service] | {"last_failure_at": None} == {
            "state": "running",
            "failures": CRASHES,
            "restarts": CRASHES,
            "last_failure_at": None,
            "retry_in": None,
        }
        later = await Sipp("register.xml", relay, service="bs2").run()
        assert later.ok, f"REGISTER after {service} was restarted: {later!r}"
        assert gateway.process.returncode is None
    finally:
        assert await gateway.stop() == 0


async def test_a_crashed_relay_comes_back_on_its_addresses(
    tmp_path: Path, provider: tuple[Issued, Issued], kamailio: KamailioRegistrar
) -> None:
    """The relay's task dies after the start: not ready while it is down, then restarted
    on the addresses it had bound (port 0 in the config), and REGISTERs work again."""
    gateway = await start(tmp_path, provider[0], kamailio, "sip")
    try:
        relay = (await gateway.relay_listeners())["udp"]
        failed = json.loads(await gateway.wait_for_log('"gateway.service.failed"'))
        assert failed["service"] == "sip"
        await gateway.wait_for_log('"gateway.service.restarted"', nth=CRASHES)
        async with gateway.session() as http, http.get("/readyz") as response:
            assert response.status == 200
            after = await response.json()
        assert after["status"] == "ready"
        assert after["services"]["sip"]["restarts"] == CRASHES
        registered = await Sipp("register.xml", relay, service="bs1").run()
        assert registered.ok, f"REGISTER after the relay was restarted: {registered!r}"
        assert gateway.process.returncode is None
    finally:
        assert await gateway.stop() == 0


async def test_a_reload_to_an_address_in_use_keeps_the_relay_on_the_old_one(
    tmp_path: Path, provider: tuple[Issued, Issued], kamailio: KamailioRegistrar
) -> None:
    """SIGHUP with sip.listen_udp on a port another socket holds: the reload of the
    relay fails with a sentence, the relay keeps serving its old address."""
    gateway = await start(tmp_path, provider[0], kamailio, "none")
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        taken.bind(("127.0.0.1", 0))
        relay = (await gateway.relay_listeners())["udp"]
        text = gateway.config_path.read_text(encoding="utf-8")
        port = taken.getsockname()[1]
        gateway.config_path.write_text(
            text.replace('listen_udp = ["127.0.0.1:0"]', f'listen_udp = ["127.0.0.1:{port}"]'),
            encoding="utf-8",
        )
        gateway.process.send_signal(signal.SIGHUP)
        failed = json.loads(await gateway.wait_for_log('"config.reload.failed"'))
        assert failed["service"] == "sip"
        assert "keeps running with the previous one" in failed["error"]
        registered = await Sipp("register.xml", relay, service="bs1").run()
        assert registered.ok, f"REGISTER after the failed reload: {registered!r}"
        async with gateway.session() as http, http.get("/readyz") as response:
            assert response.status == 200
        assert gateway.process.returncode is None
    finally:
        taken.close()
        assert await gateway.stop() == 0
