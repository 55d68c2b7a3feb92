"""sd_notify over a real Unix datagram socket, as systemd provides it."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.relay.status import RelayStatus, UpstreamError
from gateway.systemd import Notifier


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A listening datagram socket standing in for systemd's notify socket."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_and_stopping(manager: tuple[socket.socket, str]) -> None:
    sock, path = manager
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("admin on https://127.0.0.1:8443/")
    assert received(sock) == ["READY=1", "STATUS=admin on https://127.0.0.1:8443/"]
    assert notifier.stopping()
    assert received(sock) == ["STOPPING=1"]


def test_abstract_socket() -> None:
    """An ``@name`` socket is in the abstract namespace."""
    name = f"sipsgate-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == ["READY=1"]


def test_not_under_systemd_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog_interval is None


def test_missing_socket_does_not_raise(tmp_path: Path) -> None:
    """A vanished notify socket is logged, never fatal."""
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).ready() is False


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "10000000"}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], interval: float | None) -> None:
    assert Notifier({"NOTIFY_SOCKET": "/x", **env}).watchdog_interval == interval


async def test_watchdog_pings(manager: tuple[socket.socket, str]) -> None:
    """The watchdog task pings until cancelled."""
    sock, path = manager
    sock.setblocking(False)
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"})
    task = asyncio.create_task(notifier.watchdog())
    loop = asyncio.get_running_loop()
    pings = [await asyncio.wait_for(loop.sock_recv(sock, 100), 5) for _ in range(3)]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pings == [b"WATCHDOG=1"] * 3


def test_status_line_follows_the_upstream(manager: tuple[socket.socket, str]) -> None:
    """systemctl status says what /readyz says: degraded with the reason, then running."""
    sock, path = manager
    notifier = Notifier({"NOTIFY_SOCKET": path})
    status = RelayStatus(upstream="sips:provider.example")
    status.watchers.append(notifier.status)
    error = UpstreamError(
        kind="rejected",
        reason="Upstream certificate rejected",
        sentence="The upstream certificate was rejected:\nunknown-issuer.",
        codes=("unknown-issuer",),
        at=100.0,
    )
    status.failed(100.0, error, retry_at=130.0)
    assert received(sock) == [
        "STATUS=degraded: Upstream certificate rejected: The upstream certificate was "
        "rejected: unknown-issuer."
    ]
    status.failed(101.0, error, retry_at=131.0)  # the same line again: nothing sent
    status.up(102.0, peer="127.0.0.1:5061", tls_version="TLSv1.3", certificate=None)
    assert received(sock) == ["STATUS=running"]
    assert status.status_line() == "running"
