"""The MAC address of the primary network interface, for ``{mac}`` in the URL.

The primary interface is the one holding the IPv4 default route (``/proc/net/route``);
without one, the first interface (by name) with a real hardware address. The address
is read from ``/sys/class/net/<if>/address``. Both roots are parameters so tests can
give a made-up tree. The client takes any ``Callable[[], str | None]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

MacSource = Callable[[], str | None]

_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
_NO_MAC = "00:00:00:00:00:00"


def format_mac(address: str) -> str:
    """``7c:2f:80:c6:e5:c2`` → ``7C2F80C6E5C2`` (the form provisioning servers key on)."""
    return address.replace(":", "").replace("-", "").upper()


class PrimaryInterfaceMac:
    """Reads the primary interface's MAC address from the kernel's files."""

    def __init__(
        self,
        *,
        sys_class_net: Path = Path("/sys/class/net"),
        proc_net_route: Path = Path("/proc/net/route"),
    ) -> None:
        self.sys_class_net = sys_class_net
        self.proc_net_route = proc_net_route

    def __call__(self) -> str | None:
        for interface in self._candidates():
            address = self._address(interface)
            if address is not None:
                return format_mac(address)
        return None

    def _candidates(self) -> list[str]:
        ordered: list[str] = []
        try:
            lines = self.proc_net_route.read_text(encoding="ascii", errors="replace").splitlines()
        except OSError:
            lines = []
        for line in lines[1:]:
            fields = line.split()
            # Iface Destination Gateway Flags ...: the default route has destination 0.
            if len(fields) >= 2 and fields[1] == "00000000" and fields[0] not in ordered:
                ordered.append(fields[0])
        try:
            names = sorted(p.name for p in self.sys_class_net.iterdir())
        except OSError:
            names = []
        ordered += [name for name in names if name not in ordered and name != "lo"]
        return ordered

    def _address(self, interface: str) -> str | None:
        if "/" in interface or interface in ("", ".", ".."):
            return None
        try:
            text = (self.sys_class_net / interface / "address").read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError):
            return None
        address = text.strip().lower()
        if not _MAC.match(address) or address == _NO_MAC:
            return None
        return address
