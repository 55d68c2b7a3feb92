"""A bounded load test against a real ``sipsgate run``: while attackers on the LAN send
200 unauthenticated chunked bodies, 200 wrong logins and hold 2,000 idle TCP
connections at once, a logged-in admin lists the trust list and two SIPp base
stations register and call each other through kamailio over TLS.

What must hold: the admin's requests stay under 1 s (p99), the call completes, the
gateway's resident memory stays under 150 MB and its log under 1 MB. Loopback only;
every loop is counted and every wait bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import statistics
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from certstore.model import Actor, TrustSource
from certstore.sqlite import SqliteStore
from certstore.x509 import parse_der
from tests.admin_support import basic_header, login
from tests.gateway_process import GatewayProcess, start_gateway, write_config
from tests.pki import CertFactory, Issued
from tests.sip_peers import DOMAIN, KamailioRegistrar, Sipp

pytestmark = pytest.mark.slow

CHUNKED_BODIES = 200
WRONG_LOGINS = 200
IDLE_SIP = 2000  # from 125 sources, 16 each (the per-source cap)
ATTACKER_CONNECTIONS = 16  # each attacker's requests share this many connections
ADMIN_REQUESTS = 30
MB = 1000 * 1000


@pytest.fixture(scope="module")
def provider() -> tuple[Issued, Issued]:
    factory = CertFactory()
    root = factory.ca("Provider Root CA (load)")
    return root, factory.leaf(root, cn=DOMAIN, dns=(DOMAIN,))


@pytest.fixture
def kamailio(provider: tuple[Issued, Issued]) -> Iterator[KamailioRegistrar]:
    with KamailioRegistrar(provider[1]) as server:
        yield server


@pytest.fixture
def open_files() -> Iterator[None]:
    """The test itself holds over 2,000 sockets: its soft limit raised to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def rss(gateway: GatewayProcess) -> tuple[int, int]:
    """(current, peak) resident set size of the gateway, in bytes."""
    values = {}
    for line in Path(f"/proc/{gateway.process.pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]


async def chunks(total: int) -> AsyncIterator[bytes]:
    block = b"a" * 16384
    for _ in range(total // len(block)):
        yield block
        await asyncio.sleep(0)


async def chunked_login(client: aiohttp.ClientSession) -> int:
    try:
        async with client.post(
            "/login",
            data=chunks(1024 * 1024),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ) as response:
            await response.read()
            return response.status
    except aiohttp.ClientError:
        return 0


async def wrong_login(client: aiohttp.ClientSession) -> int:
    headers = {"Authorization": basic_header(password="wrong password")}
    try:
        async with client.get("/api/v1/trust", headers=headers) as response:
            await response.read()
            return response.status
    except aiohttp.ClientError:
        return 0  # the connection was refused: the source holds its share already


async def idle(address: tuple[str, int], source: str, held: list[socket.socket]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    held.append(sock)
    sock.bind((source, 0))
    with contextlib.suppress(OSError):
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, address), 10)


async def test_the_admin_and_a_call_are_served_under_attack(
    tmp_path: Path,
    kamailio: KamailioRegistrar,
    provider: tuple[Issued, Issued],
    open_files: None,
) -> None:
    config = tmp_path / "sipsgate.toml"
    write_config(config, tmp_path / "var", ["127.0.0.1:0"])
    config.write_text(config.read_text().replace('level = "debug"', 'level = "info"'))
    (tmp_path / "var").mkdir(mode=0o700)
    store = SqliteStore(tmp_path / "var" / "sipsgate.db")
    store.add_trust(
        [parse_der(provider[0].der)],
        source=TrustSource.UPLOADED,
        actor=Actor(name="test", interface="cli"),
    )
    store.close()
    gateway = await start_gateway(
        tmp_path,
        extra_env={
            "SIPSGATE_SIP_UPSTREAM": f"sips:{DOMAIN}",
            "SIPSGATE_SIP_UPSTREAM_ADDRESS": f"127.0.0.1:{kamailio.port}",
        },
    )
    held: list[socket.socket] = []
    peak = 0
    try:
        listeners = await gateway.relay_listeners()
        relay, sip_tcp = listeners["udp"], listeners["tcp"]

        admin = gateway.session(basic=False)
        assert (await login(admin)).status == 303

        callee = await Sipp(
            "register_answer.xml", sip_tcp, transport="tcp", service="bs2",
            call_id="load-call", timeout=60,
        ).start()  # fmt: skip
        await gateway.wait_for_log(
            '"call_id": "load-call", "method": "REGISTER", "status": 200', within=30
        )

        def attacker(source: str) -> aiohttp.ClientSession:
            return aiohttp.ClientSession(
                base_url=gateway.url,
                connector=aiohttp.TCPConnector(
                    ssl=gateway.client_context(),
                    limit=ATTACKER_CONNECTIONS,
                    local_addr=(source, 0),
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
            )

        sampling = True

        async def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, rss(gateway)[0])
                await asyncio.sleep(0.05)

        async def admin_lists() -> list[float]:
            loop = asyncio.get_running_loop()
            waits = []
            for _ in range(ADMIN_REQUESTS):
                started = loop.time()
                async with admin.get("/api/v1/trust") as response:
                    assert response.status == 200
                    await response.read()
                waits.append(loop.time() - started)
                await asyncio.sleep(0.1)
            return waits

        async def idle_connections() -> None:
            sources = [f"127.0.{n // 200 + 1}.{n % 200 + 1}" for n in range(IDLE_SIP // 16 + 1)]
            await asyncio.gather(*(idle(sip_tcp, sources[n // 16], held) for n in range(IDLE_SIP)))

        sampler = asyncio.create_task(sample())
        async with attacker("127.0.0.2") as bodies, attacker("127.0.0.3") as guesser:
            idle_task = asyncio.create_task(idle_connections())
            attack = asyncio.gather(
                *(chunked_login(bodies) for _ in range(CHUNKED_BODIES)),
                *(wrong_login(guesser) for _ in range(WRONG_LOGINS)),
            )
            waits, call = await asyncio.wait_for(
                asyncio.gather(
                    admin_lists(),
                    Sipp(
                        "call.xml", relay, service="bs1", call_id="load-call", auth=False,
                        keys={"callee": "bs2"}, timeout=60,
                    ).run(),
                ),
                120,
            )  # fmt: skip
            statuses = await asyncio.wait_for(attack, 120)
            await asyncio.wait_for(idle_task, 60)
        sampling = False
        await sampler
        answered = await callee.wait()

        chunked, logins = statuses[:CHUNKED_BODIES], statuses[CHUNKED_BODIES:]
        p99 = statistics.quantiles(waits, n=100)[98]
        log_bytes = sum(len(line) + 1 for line in gateway.stderr_lines)
        _, hwm = rss(gateway)
        print(
            f"\nload: admin p99 {p99 * 1000:.0f} ms, max {max(waits) * 1000:.0f} ms; "
            f"RSS peak {peak / MB:.1f} MB (VmHWM {hwm / MB:.1f} MB); log {log_bytes} bytes; "
            f"chunked {sorted(set(chunked))}; logins 401x{logins.count(401)} "
            f"429x{logins.count(429)}; sockets held {len(held)}"
        )
        assert call.ok, f"the call failed: {call!r}"
        assert answered.ok, f"the callee failed: {answered!r}"
        assert p99 < 1.0, waits
        assert set(chunked) <= {413, 0} and chunked.count(413) >= CHUNKED_BODIES // 2
        assert logins.count(401) <= 5 and logins.count(429) >= WRONG_LOGINS - 5
        assert hwm < 150 * MB, f"VmHWM {hwm / MB:.1f} MB"
        assert log_bytes < 1 * MB
    finally:
        for sock in held:
            sock.close()
        await Sipp.cleanup()
        with contextlib.suppress(Exception):
            await admin.close()
        assert await gateway.stop() == 0
