"""systemd service notification (sd_notify), without a dependency.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a Unix datagram socket, ``@``
for the abstract namespace) and, with ``WatchdogSec=``, ``WATCHDOG_USEC`` and
``WATCHDOG_PID``. sipsgate sends ``READY=1`` once its listeners are up,
``WATCHDOG=1`` at half the watchdog interval while the event loop is responsive,
``RELOADING=1``/``READY=1`` around a configuration reload, and ``STOPPING=1`` on
shutdown. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Mapping

from gateway.log import get_logger


class Notifier:
    """Sends state lines to the service manager named by the environment."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_interval = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of ``WatchdogSec``), or None."""
        return self._watchdog_interval

    def notify(self, *states: str) -> bool:
        """Send ``KEY=value`` lines; True when a service manager received them."""
        if self._address is None:
            return False
        message = "\n".join(states).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(message)
        except OSError as exc:
            get_logger().warning("systemd.notify.failed", error=str(exc), states=list(states))
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """A new status line (``systemctl status`` shows it)."""
        return self.notify(f"STATUS={text}")

    def reloading(self) -> bool:
        # systemd 253+ wants the monotonic time with RELOADING=1; older ones ignore it.
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    async def watchdog(self) -> None:
        """Ping the watchdog until cancelled; a stuck event loop stops the pings."""
        interval = self._watchdog_interval
        if interval is None or self._address is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(interval)


def _socket_address(value: str) -> str | None:
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock and other forms are not used on the boxes sipsgate runs on


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # the watchdog is meant for another process
    return int(usec) / 1_000_000 / 2
