"""``sipsgate run`` holds a bounded number of descriptors whatever LAN clients do: a
global cap on LAN TCP connections, idle and unfinished-message timeouts, an open-file
limit raised at start, and log lines bounded per kind."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
from collections.abc import Iterator
from pathlib import Path

from tests.gateway_process import GatewayProcess, start_gateway, write_config

WAIT = 10.0


def configure(workdir: Path, **sip: str) -> None:
    """The test config with extra ``[sip]`` keys (values are TOML literals)."""
    path = workdir / "sipsgate.toml"
    write_config(path, workdir / "var", ["127.0.0.1:0"])
    extra = "".join(f"{key} = {value}\n" for key, value in sip.items())
    path.write_text(path.read_text().replace("[sip]\n", f"[sip]\n{extra}"))


async def sip_tcp_address(gateway: GatewayProcess) -> tuple[str, int]:
    return (await gateway.relay_listeners())["tcp"]


def open_files_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit in /proc/PID/limits")


@contextlib.contextmanager
def soft_open_files(limit: int) -> Iterator[None]:
    """This process's soft RLIMIT_NOFILE lowered (children inherit it), then restored."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, soft), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def closed_within(sock: socket.socket, within: float) -> bool:
    """True when the peer closes (or resets) ``sock`` within ``within`` seconds."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(within):
            while await loop.sock_recv(sock, 4096):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def connect_from(source: str, address: tuple[str, int]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.bind((source, 0))
    await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, address), WAIT)
    return sock


async def test_the_open_file_limit_is_raised_at_start(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with soft_open_files(1024):
        gateway = await start_gateway(tmp_path)
    try:
        assert open_files_limit(gateway.process.pid) == min(hard, 65536)
        assert '"gateway.limits.set"' in "\n".join(gateway.stderr_lines)
    finally:
        assert await gateway.stop() == 0


async def test_lan_tcp_connections_are_capped_for_all_sources_together(tmp_path: Path) -> None:
    """Five sources with ten connections each (under the per-source 16) meet the global
    cap of 30: the rest are closed at once, and the admin endpoint still answers."""
    configure(tmp_path, max_connections="30")
    gateway = await start_gateway(tmp_path)
    sockets: list[socket.socket] = []
    try:
        address = await sip_tcp_address(gateway)
        for source in range(2, 7):
            for _ in range(10):
                sockets.append(await connect_from(f"127.0.0.{source}", address))
        closed = await asyncio.gather(*(closed_within(s, 2.0) for s in sockets))
        assert closed.count(True) == 20, closed
        assert closed.count(False) == 30
        async with gateway.session() as client, client.get("/healthz") as response:
            assert response.status == 200
        assert '"max-connections"' in "\n".join(gateway.stderr_lines)
    finally:
        for sock in sockets:
            sock.close()
        assert await gateway.stop() == 0


async def test_idle_and_unfinished_connections_are_closed(tmp_path: Path) -> None:
    configure(tmp_path, idle_timeout='"3s"', header_timeout='"1s"')
    gateway = await start_gateway(tmp_path)
    try:
        address = await sip_tcp_address(gateway)
        idle = await connect_from("127.0.0.1", address)
        slow = await connect_from("127.0.0.1", address)
        busy = await connect_from("127.0.0.1", address)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(slow, b"OPTIONS sip:x@example.net SIP/2.0\r\nVia: SIP/2.0/TCP ")
        started = loop.time()
        assert await closed_within(slow, 3.0)
        assert loop.time() - started < 3.0
        # A connection that keeps talking (CRLF keep-alives, RFC 5626) stays open.
        for _ in range(5):
            await loop.sock_sendall(busy, b"\r\n\r\n")
            await asyncio.sleep(1.0)
        assert await closed_within(idle, 3.0)
        assert not await closed_within(busy, 0.2)
        log = "\n".join(gateway.stderr_lines)
        assert '"header-timeout"' in log
        assert '"idle-timeout"' in log
        for sock in (idle, slow, busy):
            sock.close()
    finally:
        assert await gateway.stop() == 0


def test_the_systemd_unit_sets_the_open_file_limit() -> None:
    unit = (Path(__file__).resolve().parents[2] / "deploy" / "sipsgate.service").read_text()
    assert "\nLimitNOFILE=65536\n" in unit


async def test_admin_connections_are_capped_per_source(tmp_path: Path) -> None:
    """Every accepted TLS connection costs buffers before any request: one address
    holds at most admin.source_connections (16); the rest are closed at once, and
    another address is still served."""
    gateway = await start_gateway(tmp_path)
    sockets: list[socket.socket] = []
    try:
        host, port = gateway.url.split("//")[1].rstrip("/").rsplit(":", 1)
        for _ in range(20):
            sockets.append(await connect_from("127.0.0.9", (host, int(port))))
        closed = await asyncio.gather(*(closed_within(s, 2.0) for s in sockets))
        assert closed.count(True) == 4, closed
        async with gateway.session() as client, client.get("/healthz") as response:
            assert response.status == 200
    finally:
        for sock in sockets:
            sock.close()
        assert await gateway.stop() == 0
