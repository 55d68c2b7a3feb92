"""``sipsgate run`` with one part of the gateway made to crash (tests only).

``python -m tests.e2e.faulty_gateway run --config FILE`` runs the real gateway after
replacing the work of the service named by ``FAULT_SERVICE`` with a version that
raises the first ``FAULT_TIMES`` times and then does the real work (``none``: no
fault): the ``run()`` of
provisioning, expiry, revocation and admin (a crash as the supervisor sees one), and
for ``sip`` the relay's upstream task inside its own task group (the relay's task
dies, its listeners close).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from gateway import runtime
from gateway.admin.server import AdminServer
from gateway.cli import main
from gateway.provisioning.service import ProvisioningService
from gateway.relay.service import SipRelay

SERVICES: dict[str, tuple[type[Any], str]] = {
    "provisioning": (ProvisioningService, "run"),
    "expiry": (runtime.ExpiryService, "run"),
    "revocation": (runtime.RevocationService, "run"),
    "admin": (AdminServer, "run"),
    "sip": (SipRelay, "_keep_upstream"),
}


def inject(name: str, times: int) -> None:
    if name == "none":
        return
    cls, method = SERVICES[name]
    original: Callable[[Any], Coroutine[Any, Any, None]] = getattr(cls, method)
    left = [times]

    async def run(self: Any) -> None:
        if left[0] > 0:
            left[0] -= 1
            raise RuntimeError(f"injected crash of the {name} service")
        await original(self)

    setattr(cls, method, run)


if __name__ == "__main__":
    inject(os.environ["FAULT_SERVICE"], int(os.environ.get("FAULT_TIMES", "1")))
    sys.exit(main())
