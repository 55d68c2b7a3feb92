"""``sip.workers = 2`` end to end: a real ``sipsgate run`` with two relay worker
processes, SIPp base stations on UDP and TCP, kamailio as the upstream registrar.

Which worker owns a base station's flow is read from the relay's own log lines
(every worker's lines carry ``worker``). SO_REUSEPORT hashes UDP by source address,
so a base station that keeps its port keeps its worker while the workers stay the
same; the tests pick ports until both workers own some.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from certstore.revocation import RevocationSource, SourceKind
from certstore.sqlite import SqliteStore
from tests.e2e.conftest import Pki
from tests.e2e.test_gateway_sip import sipsgate
from tests.gateway_process import GatewayProcess, start_gateway, write_config
from tests.integration.trust_env import ADMIN
from tests.pki import Issued
from tests.revocation_support import make_crl
from tests.sip_peers import DOMAIN, KamailioRegistrar, Sipp, SippResult

pytestmark = pytest.mark.slow

WAIT = 30.0
REGISTERED = 'sipsgate_sip_transactions_total{direction="outbound",method="REGISTER",status="200"}'


@pytest.fixture
def kamailio(pki: Pki) -> Iterator[KamailioRegistrar]:
    with KamailioRegistrar(pki.leaf) as server:
        yield server


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def events(gateway: GatewayProcess, name: str) -> list[dict[str, Any]]:
    """The gateway's JSON log events called ``name`` (workers' lines included)."""
    found = []
    for line in gateway.stderr_lines:
        if f'"{name}"' not in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == name:
            found.append(event)
    return found


def assert_ok(result: SippResult, what: str) -> None:
    assert result.ok, f"{what} failed: {result!r}"


async def start(
    tmp_path: Path, kamailio: KamailioRegistrar, root: Issued, *, workers: str = "2"
) -> GatewayProcess:
    os.makedirs(tmp_path, exist_ok=True)
    write_config(tmp_path / "sipsgate.toml", tmp_path / "var", ["127.0.0.1:0"])
    (tmp_path / "provider-root.pem").write_bytes(root.pem)
    sipsgate(tmp_path, "certs", "add", "provider-root.pem")
    gateway = await start_gateway(
        tmp_path,
        extra_env={
            "SIPSGATE_SIP_UPSTREAM": f"sips:{DOMAIN}",
            "SIPSGATE_SIP_UPSTREAM_ADDRESS": f"127.0.0.1:{kamailio.port}",
            "SIPSGATE_SIP_WORKERS": workers,
        },
    )
    line = await gateway.wait_for_stdout("SIP relay: ")
    assert line.endswith(f"({workers} workers)"), line
    return gateway


async def wait_event(
    gateway: GatewayProcess, name: str, match: Callable[[dict[str, Any]], bool], count: int = 1
) -> dict[str, Any]:
    """The ``count``-th log event ``name`` that ``match`` accepts (waits for it)."""
    async with asyncio.timeout(WAIT):
        while True:
            found = [e for e in events(gateway, name) if match(e)]
            if len(found) >= count:
                return found[count - 1]
            seen = sum(1 for line in gateway.stderr_lines if f'"{name}"' in line)
            await gateway.wait_for_log(f'"{name}"', nth=seen + 1)


async def relayed_by(gateway: GatewayProcess, call_id: str, method: str, direction: str) -> int:
    """The worker that relayed ``method`` of ``call_id`` (``direction``) to its final answer."""
    event = await wait_event(
        gateway,
        "sip.request.relayed",
        lambda e: (
            (e.get("call_id"), e.get("method"), e.get("direction")) == (call_id, method, direction)
        ),
    )
    return int(event["worker"])


async def worker_of(gateway: GatewayProcess, call_id: str) -> int:
    """The worker that owns the base station whose REGISTER was ``call_id``."""
    event = await wait_event(
        gateway,
        "sip.request.relayed",
        lambda e: (
            (e.get("call_id"), e.get("method"), e.get("status")) == (call_id, "REGISTER", 200)
        ),
    )
    return int(event["worker"])


async def register_until_both(
    gateway: GatewayProcess, udp: tuple[str, int], tag: str
) -> dict[int, list[int]]:
    """Register UDP base stations from new ports until each worker owns at least one:
    {worker: [ports]}."""
    owned: dict[int, list[int]] = {0: [], 1: []}
    for n in range(24):
        if all(owned.values()):
            return owned
        port = udp_port()
        call_id = f"{tag}-{n}"
        result = await Sipp("register.xml", udp, service=f"bs{n}", port=port, call_id=call_id).run()
        assert_ok(result, f"REGISTER of bs{n} over UDP")
        owned[await worker_of(gateway, call_id)].append(port)
    raise AssertionError(f"24 base stations, and one worker owns none: {owned}")


async def metric(gateway: GatewayProcess, series: str) -> float:
    async with gateway.session() as http:
        response = await http.get("/metrics")
        assert response.status == 200
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def settled_metric(
    gateway: GatewayProcess, series: str, expected: float, *, below: bool = False
) -> float:
    """The value of ``series`` once it reached ``expected`` (from below, or with
    ``below`` from above: workers report each second), or the last value after WAIT."""
    value = await metric(gateway, series)
    for _ in range(int(WAIT / 0.25)):
        if (value <= expected) if below else (value >= expected):
            break
        await asyncio.sleep(0.25)
        value = await metric(gateway, series)
    return value


async def test_two_workers_register_over_udp_and_tcp_and_metrics_add_up(
    tmp_path: Path, kamailio: KamailioRegistrar, pki: Pki
) -> None:
    gateway = await start(tmp_path, kamailio, pki.root)
    try:
        listeners = await gateway.relay_listeners()
        owned = await register_until_both(gateway, listeners["udp"], "reg-udp")
        # TCP connections are spread by the kernel too (by connection).
        tcp_workers: list[int] = []
        for n in range(24):
            if set(tcp_workers) == {0, 1}:
                break
            result = await Sipp(
                "register.xml", listeners["tcp"], transport="tcp", service=f"tcp{n}",
                call_id=f"reg-tcp-{n}",
            ).run()  # fmt: skip
            assert_ok(result, f"REGISTER of tcp{n} over TCP")
            tcp_workers.append(await worker_of(gateway, f"reg-tcp-{n}"))
        assert set(tcp_workers) == {0, 1}, tcp_workers
        registered = sum(len(ports) for ports in owned.values()) + len(tcp_workers)
        # /metrics (served by the gateway process) adds up both workers' counters.
        series = (
            'sipsgate_sip_transactions_total{direction="outbound",method="REGISTER",status="200"}'
        )
        assert await settled_metric(gateway, series, registered) == registered
        assert await settled_metric(gateway, "sipsgate_sip_upstream_flows", 2) == 2
        flows = {e["worker"] for e in events(gateway, "sip.upstream.connected")}
        assert flows == {0, 1}, "each worker opens its own upstream flow"
        # An incoming call to a base station on TCP.
        callee = await Sipp(
            "register_answer.xml", listeners["tcp"], transport="tcp", service="tcp-in-b",
            call_id="tcp-in",
        ).start()  # fmt: skip
        owner = await worker_of(gateway, "tcp-in")
        outside = await Sipp(
            "call.xml", ("127.0.0.1", kamailio.udp_port), service="provider-user",
            call_id="tcp-in", auth=False, keys={"callee": "tcp-in-b"},
        ).run()  # fmt: skip
        assert_ok(outside, "the outside caller")
        assert_ok(await callee.wait(), "the called base station on TCP")
        assert await relayed_by(gateway, "tcp-in", "INVITE", "inbound") == owner
    finally:
        assert await gateway.stop() == 0


async def worker_pids(gateway: GatewayProcess) -> list[int]:
    line = await gateway.wait_for_log('"sip.workers.started"')
    return [int(pid) for pid in json.loads(line)["pids"]]


async def call_across(
    gateway: GatewayProcess, udp: tuple[str, int], owned: dict[int, list[int]], tag: str
) -> None:
    """bs on worker 0 calls bs on worker 1: INVITE/180/200/ACK/BYE through kamailio."""
    callee = await Sipp(
        "register_answer.xml", udp, service=f"{tag}-b", port=owned[1][0], call_id=tag
    ).start()
    assert await worker_of(gateway, tag) == 1
    caller = await Sipp(
        "call.xml", udp, service=f"{tag}-a", port=owned[0][0], call_id=tag, auth=False,
        keys={"callee": f"{tag}-b"},
    ).run()  # fmt: skip
    assert_ok(caller, f"the caller on worker 0 ({tag})")
    assert_ok(await callee.wait(), f"the callee on worker 1 ({tag})")
    assert await relayed_by(gateway, tag, "INVITE", "outbound") == 0
    assert await relayed_by(gateway, tag, "INVITE", "inbound") == 1


async def incoming_call(
    gateway: GatewayProcess, kamailio: KamailioRegistrar, udp: tuple[str, int], port: int, tag: str
) -> int:
    """A call from outside (kamailio's UDP side) to a base station; the worker it took."""
    callee = await Sipp(
        "register_answer.xml", udp, service=f"{tag}-b", port=port, call_id=tag
    ).start()
    await worker_of(gateway, tag)
    outside = await Sipp(
        "call.xml", ("127.0.0.1", kamailio.udp_port), service="provider-user",
        call_id=tag, auth=False, keys={"callee": f"{tag}-b"},
    ).run()  # fmt: skip
    assert_ok(outside, f"the outside caller ({tag})")
    assert_ok(await callee.wait(), f"the called base station ({tag})")
    return await relayed_by(gateway, tag, "INVITE", "inbound")


async def test_calls_across_workers_cancel_and_a_killed_worker(
    tmp_path: Path, kamailio: KamailioRegistrar, pki: Pki
) -> None:
    gateway = await start(tmp_path, kamailio, pki.root)
    try:
        udp = (await gateway.relay_listeners())["udp"]
        pids = await worker_pids(gateway)
        owned = await register_until_both(gateway, udp, "before")
        await call_across(gateway, udp, owned, "cross-1")
        assert await incoming_call(gateway, kamailio, udp, owned[0][0], "in-0") == 0
        assert await incoming_call(gateway, kamailio, udp, owned[1][0], "in-1") == 1

        # CANCEL while ringing, the caller on worker 0, the callee on worker 1.
        callee = await Sipp(
            "register_cancelled.xml", udp, service="cancel-b", port=owned[1][0],
            call_id="cancel-1",
        ).start()  # fmt: skip
        assert await worker_of(gateway, "cancel-1") == 1
        caller = await Sipp(
            "call_cancel.xml", udp, service="cancel-a", port=owned[0][0], call_id="cancel-1",
            auth=False, keys={"callee": "cancel-b"},
        ).run()  # fmt: skip
        assert_ok(caller, "the cancelling caller")
        assert_ok(await callee.wait(), "the cancelled callee")

        # Worker 1 dies (SIGKILL): the supervisor says so and starts it again.
        before = await metric(gateway, REGISTERED)
        os.kill(pids[1], signal.SIGKILL)
        exited = json.loads(await gateway.wait_for_log('"sip.worker.exited"'))
        assert (exited["worker"], exited["pid"]) == (1, pids[1])
        assert exited["reason"] == "killed by SIGKILL"
        restarted = json.loads(await gateway.wait_for_log('"sip.worker.restarted"'))
        assert restarted["worker"] == 1 and restarted["pid"] not in pids
        os.kill(pids[0], 0)  # worker 0 lives on, undisturbed
        await wait_event(gateway, "sip.upstream.connected", lambda e: e["worker"] == 1, count=2)
        # the dead worker's counters stay in the sum: a counter never goes back
        assert await metric(gateway, REGISTERED) == before

        # Base stations register again (their next refresh); calls work as before.
        owned = await register_until_both(gateway, udp, "after")
        await call_across(gateway, udp, owned, "cross-2")
        assert await incoming_call(gateway, kamailio, udp, owned[1][-1], "in-after") == 1
    finally:
        assert await gateway.stop() == 0


async def test_reload_and_revocation_reach_every_worker(
    tmp_path: Path, kamailio: KamailioRegistrar, pki: Pki
) -> None:
    gateway = await start(tmp_path, kamailio, pki.root)
    try:
        udp = (await gateway.relay_listeners())["udp"]
        await register_until_both(gateway, udp, "reg")
        for worker in (0, 1):
            await wait_event(
                gateway, "sip.upstream.connected", lambda e, w=worker: e["worker"] == w
            )

        # SIGHUP to the gateway: a changed [sip] key reaches both workers' relays.
        config = gateway.config_path.read_text()
        gateway.config_path.write_text(config.replace("[sip]\n", '[sip]\nkeepalive = "20s"\n'))
        gateway.process.send_signal(signal.SIGHUP)
        for worker in (0, 1):
            await wait_event(gateway, "sip.relay.restarting", lambda e, w=worker: e["worker"] == w)
            await wait_event(
                gateway, "sip.upstream.connected", lambda e, w=worker: e["worker"] == w, count=2
            )
        owned = await register_until_both(gateway, udp, "reloaded")
        assert all(owned.values())

        # A CRL revoking kamailio's certificate: every worker closes its own flow.
        store = SqliteStore(gateway.data_dir / "sipsgate.db")
        try:
            store.put_revocation(
                make_crl(pki.root, [pki.leaf], now=dt.datetime.now(dt.UTC)),
                kind=SourceKind.CRL,
                source=RevocationSource.UPLOADED,
                url=None,
                actor=ADMIN,
            )
        finally:
            store.close()
        for worker in (0, 1):
            revoked = await wait_event(
                gateway, "sip.upstream.revoked", lambda e, w=worker: e["worker"] == w
            )
            assert revoked["rule"]
        assert await settled_metric(gateway, "sipsgate_sip_upstream_flows", 0, below=True) == 0
        refused = await Sipp("register_503_revoked.xml", udp, service="bs-revoked").run()
        assert_ok(refused, "the REGISTER refused with 503 naming revoked")
    finally:
        assert await gateway.stop() == 0


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting to be reaped does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_workers_stop_with_the_gateway_even_when_it_is_killed(
    tmp_path: Path, kamailio: KamailioRegistrar, pki: Pki
) -> None:
    """SIGTERM stops the workers with the gateway; after a SIGKILL of the gateway the
    workers notice their control channel closing and stop by themselves."""
    gateway = await start(tmp_path, kamailio, pki.root)
    pids = await worker_pids(gateway)
    assert all(alive(pid) for pid in pids)
    await gateway.stop(signal.SIGKILL)
    for _ in range(int(WAIT / 0.1)):
        if not any(alive(pid) for pid in pids):
            break
        await asyncio.sleep(0.1)
    assert not any(alive(pid) for pid in pids), "a worker outlived its gateway"

    gateway = await start(tmp_path / "again", kamailio, pki.root)
    pids = await worker_pids(gateway)
    assert await gateway.stop() == 0
    assert not any(alive(pid) for pid in pids)


async def test_an_address_no_worker_can_bind_stops_the_start_with_the_reason(
    tmp_path: Path,
) -> None:
    """192.0.2.1 (TEST-NET-1) is no address of this machine: worker 0 cannot bind it,
    and the gateway stops with what went wrong and which keys to check."""
    gateway = await start_gateway(
        tmp_path,
        extra_env={"SIPSGATE_SIP_WORKERS": "2", "SIPSGATE_SIP_LISTEN_UDP": "192.0.2.1:5060"},
    )
    async with asyncio.timeout(WAIT):
        code = await gateway.process.wait()
    assert code != 0
    await gateway.stop()
    said = "\n".join(gateway.stderr_lines)
    assert "SIP relay worker 0 could not start: [Errno 99]" in said, said[-2000:]
    assert "check sip.listen_udp and sip.listen_tcp" in said
